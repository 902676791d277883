"""The same RMT denoiser for less work: only the top singular triplets, same-shape matrices batched.

Only the few singular values above τ = κ·s(√m+√n) change Ĝ (rmt.py), so a full SVD (O(mn·min(m,n))
per matrix) is wasted work. Here, for a stack G of L same-shape matrices (L, m, n), e.g. all Q/K/V/O
weights of all layers, one batched call runs **randomized block Krylov iteration with Rayleigh–Ritz**
(block Lanczos on A = GᵀG with full reorthogonalisation; Musco & Musco 2015, Golub & Van Loan §10.3):

    W_0 = orth(Ω)                                   Ω (n, ℓ) Gaussian, ℓ = ``block`` (default 4)
    depth d = 1, 2, ...:
        Z_d = G W_d        (m, ℓ)                   the only O(mn) work: two products per depth
        Y_d = Gᵀ Z_d       (n, ℓ)   = A W_d
        W = [W_0 … W_d] (n, K),  Y = [Y_0 … Y_d] = A W,  Z = [Z_0 … Z_d] = G W,   K = ℓ(d+1)
        H = Wᵀ Y = Θ-eigh: H y_i = θ_i y_i           (K, K), float64; Ritz values λ̃_i = √θ_i
        v_i = W y_i,  u_i = Z y_i / λ̃_i               then G v_i = λ̃_i u_i exactly
        r_i = ‖Gᵀu_i − λ̃_i v_i‖ = ‖Y y_i − θ_i W y_i‖ / λ̃_i   (no extra pass over G)
        c = #{λ̃_i > τ}
        done when  r_i ≤ tol·λ̃_1 for i ≤ c                      the kept triplets converged
              and  λ̃_{c+1} + r_{c+1} ≤ τ                          the first discarded value sits below τ
              and  λ̃_{c+1} rose by ≤ ½(τ − λ̃_{c+1}) since depth d−1   ... and has stopped climbing
        W_{d+1} = orth(Y_d − W Wᵀ Y_d)                 (projected twice: classical Gram–Schmidt, reorthogonalised)
    then the weights of rmt.shrunk_weights on λ̃_1..λ̃_c, and Ĝ = U_c diag(w) V_cᵀ.

Why Krylov and not plain subspace (power) iteration: the subspaces are nested, so each Ritz value
climbs monotonically towards its singular value (Cauchy interlacing, λ̃_i ≤ λ_i), and the Krylov space
holds the best polynomial filter of each degree, not just the power (GᵀG)^d. Pure noise — the case of
real DP runs — is certified in ≈5–7 depths of a 4-wide block instead of ≈7 iterations of a 12-wide one:
about 3–4× fewer flops (``scripts/bench_denoise.py``). The last rule guards the monotone climb: a Ritz
value still rising fast may yet cross τ, so we wait until it has settled.

A matrix not done once K would pass min(m, n)/2 (or after ``max_depth``), or whose Krylov space breaks
down (rank-deficient G), is handed to the exact reference (rmt.py), so the fast path is always *the same
algorithm*; the test holds it equal to rmt.py to ≤1e-6 (float64). The test matrix Ω is drawn from a
NumPy generator of its own (seeded; post-processing must not touch the DP noise stream), shared by the
matrices of a stack, and moved to the device, so NumPy and CuPy draw the same Ω.

Dtypes: the products with G run in G's dtype; the small K×K eigenproblems in float64.
Any module with the NumPy API works (numpy >= 1.24 and cupy >= 13, the supported versions, both have the
stacked QR used here).

Devices: everything of size m or n stays where G lives. The small K×K eigenproblems are solved on the
host (NumPy/LAPACK): they are tiny, and on a GPU cuSOLVER's batched Jacobi solver (syevj) is tuned for
K ≤ 32 and fails silently when it does not converge. So each depth copies to the host twice per stack of
same-shape matrices, whatever the stack's size: H (L, K, K), then the residual and breakdown norms (L, ~K).
The Frobenius norms come in one copy for all matrices (rmt.frobenius_norms), and every statistic is made
from host values: no further copies.
"""
from __future__ import annotations

import numpy as np

from minidp.backend import array_module, to_host
from minidp.denoise.rmt import (
    DEFAULT_KAPPA,
    DEFAULT_NORM_CORRECTION,
    check_matrix,
    bulk_edge,
    check_noise_std,
    check_options,
    frobenius_norms,
    matrix_stats,
    rmt_denoise_with_stats,
    shrunk_weights,
)
from minidp.errors import ConfigError

DEFAULT_TOL = {"float32": 1e-4, "float64": 1e-10}  # residual / λ̃_1 at which kept triplets count as converged


# ------------------------------------------------------------------------------------------------
# batched linear algebra that works on numpy and cupy
# ------------------------------------------------------------------------------------------------
def _T(A):
    """Swap the last two axes: (L, a, b) -> (L, b, a)."""
    return A.swapaxes(-1, -2)


def _orth(Y):
    """Orthonormal basis of each matrix's columns: (L, m, ℓ) -> (L, m, ℓ), by reduced QR."""
    Q, _ = array_module(Y).linalg.qr(Y, mode="reduced")  # stacked QR (numpy >= 1.22, cupy >= 12)
    return Q


def _eigh_desc(H: np.ndarray):
    """Eigenpairs of a stack of symmetric HOST matrices H (L, K, K): θ (L, K) descending, vectors (L, K, K).

    NumPy (LAPACK syevd) on the host, whatever device the caller's matrices live on (module docstring)."""
    theta, vecs = np.linalg.eigh(H)  # stacked
    return np.ascontiguousarray(theta[:, ::-1]), np.ascontiguousarray(vecs[:, :, ::-1])


def _gaussian(rng: np.random.Generator, shape, xp, dtype):
    """A Gaussian test matrix drawn on the host from ``rng``, moved to ``xp``'s device in ``dtype``."""
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


def _grow_gram(H: np.ndarray, H_col: np.ndarray) -> np.ndarray:
    """H = Wᵀ A W grown by the new block: H (A, K−ℓ, K−ℓ) and its new columns H_col = Wᵀ Y_d (A, K, ℓ) ->
    (A, K, K); the new rows are the new columns' transpose (H is symmetric)."""
    A, K, ell = H_col.shape
    grown = np.empty((A, K, K))
    grown[:, :K - ell, :K - ell] = H
    grown[:, :, K - ell:] = H_col
    grown[:, K - ell:, :K - ell] = _T(H_col[:, :K - ell])
    return grown


def _project_out(Yd_t, Wt, breakdown: float):
    """The next block's rows before orthonormalisation: X = Y_dᵀ with the basis W projected out twice
    (classical Gram–Schmidt, reorthogonalised). Yd_t (A, ℓ, n), Wt (A, K, n) -> X (A, ℓ, n), and per matrix
    1.0 where a row lost all but ``breakdown`` of its norm (the Krylov space stopped growing) else 0.0 (A,)."""
    xp = array_module(Yd_t)
    X = Yd_t
    for _ in range(2):
        X = X - (X @ _T(Wt)) @ Wt  # (A, ℓ, K) · (A, K, n)
    scale = xp.sqrt(xp.sum(Yd_t * Yd_t, axis=2, dtype=xp.float64))  # (A, ℓ)
    left = xp.sqrt(xp.sum(X * X, axis=2, dtype=xp.float64))  # (A, ℓ)
    return X, xp.any(left <= breakdown * scale, axis=1).astype(xp.float64)


def _is_done(c: int, lam, res, prev_lam, threshold: float, tol: float) -> bool:
    """The stopping rule of one matrix (module docstring), on host values: c Ritz values above τ, the
    Ritz values λ̃ (K,), the residuals r (p,) of the top p ≥ c + 1 pairs, the Ritz values one depth
    earlier (K − ℓ,) or None at the first depth."""
    if c >= lam.shape[0]:  # every Ritz value passes: the space must grow before we can judge
        return False
    converged = bool(np.all(res[:c] <= tol * lam[0]))  # the kept triplets converged
    below = lam[c] + res[c] <= threshold  # the first discarded value sits below τ
    settled = (prev_lam is not None and c < prev_lam.shape[0]  # ... and has stopped climbing
               and lam[c] - prev_lam[c] <= 0.5 * (threshold - lam[c]))
    return bool(converged and below and settled)


# ------------------------------------------------------------------------------------------------
# the top singular triplets of a stack
# ------------------------------------------------------------------------------------------------
def top_triplets(mats, threshold: float, *, rng: np.random.Generator, block: int = 4,
                 tol: float | None = None, max_depth: int = 64):
    """Top singular triplets of each of the same-shape matrices ``mats`` (L of m×n) above ``threshold`` (τ).

    The two O(mn) products per depth are one 2-D GEMM per matrix, on the caller's arrays (no copy into a
    stack: a (L, m, n) copy, re-sliced each time matrices finish, cost more than the products); the
    small K-wide work is batched over the stack.

    Returns a list of L entries, each ``(U_c (m, c), λ̃ (c,) float64, V_c (n, c), top λ̃_1, depth)``, or
    ``None`` for a matrix that was not done before the Krylov space would pass min(m, n)/2 columns (or
    ``max_depth``), or whose Krylov space broke down; the caller then uses the exact SVD.
    See the module docstring for the iteration and its stopping rule.
    """
    xp = array_module(mats[0])
    L, (m, n), dtype = len(mats), mats[0].shape, mats[0].dtype
    k_cap = max(min(m, n) // 2, 1)  # past this many basis vectors a full SVD is as cheap
    if tol is None:
        tol = DEFAULT_TOL.get(np.dtype(dtype).name, 1e-4)
    ell = max(1, min(int(block), k_cap))
    breakdown = float(np.sqrt(np.finfo(dtype).eps))  # a new direction this small (relative) is not new

    results: list = [None] * L
    active = np.arange(L)  # indices (into the stack) still iterating
    W0 = _orth(_gaussian(rng, (1, n, ell), xp, dtype))  # (1, n, ℓ); one Ω shared by the stack
    new_rows = xp.ascontiguousarray(xp.broadcast_to(_T(W0), (L, ell, n)))  # (A, ℓ, n)  W_dᵀ
    Wt = new_rows  # (A, K, n)  the basis W, as rows
    Zt = Yt = H = None  # (A, K, m) (GW)ᵀ, (A, K, n) (AW)ᵀ, (A, K, K) Wᵀ A W in float64 (host)
    prev_lam = None  # (A, K − ℓ) the Ritz values one depth earlier (host)

    for depth in range(1, max_depth + 1):
        # the two passes over each G: Z_d = G W_d, Y_d = Gᵀ Z_d (kept as rows, Y_dᵀ = Z_dᵀ G), back to
        # back per matrix so the second pass finds G still in cache
        Wd = xp.ascontiguousarray(_T(new_rows))  # (A, n, ℓ)
        z_rows, y_rows = [], []
        for a, i in enumerate(active):
            z_rows.append(_T(mats[i] @ Wd[a]))  # (ℓ, m)
            y_rows.append(z_rows[-1] @ mats[i])  # (ℓ, n)
        Zd_t, Yd_t = xp.stack(z_rows), xp.stack(y_rows)  # (A, ℓ, m), (A, ℓ, n)
        Zt = Zd_t if Zt is None else xp.concatenate([Zt, Zd_t], axis=1)  # (A, K, m)
        Yt = Yd_t if Yt is None else xp.concatenate([Yt, Yd_t], axis=1)  # (A, K, n)
        K = Wt.shape[1]

        # H = Wᵀ A W (host, float64) grows by one block column (and, by symmetry, row): H[:, new] = Wᵀ Y_d
        H_col = to_host((Wt @ _T(Yd_t)).astype(xp.float64))  # (A, K, ℓ): host copy 1 of this depth
        H = H_col if H is None else _grow_gram(H, H_col)
        theta, Yv = _eigh_desc(0.5 * (H + _T(H)))  # (A, K), (A, K, K) host; Ritz values θ_i = λ̃_i²
        lam_h = np.sqrt(np.maximum(theta, 0.0))  # (A, K)
        count = (lam_h > threshold).sum(axis=1)  # (A,)  c per matrix

        # residuals of the top p = max c + 1 Ritz pairs: r_i = ‖Y y_i − θ_i W y_i‖ / λ̃_i
        p = min(int(count.max()) + 1, K)
        yp_t = xp.asarray(np.ascontiguousarray(_T(Yv[:, :, :p])).astype(dtype))  # (A, p, K)
        R = yp_t @ Yt - xp.asarray(theta[:, :p, None].astype(dtype)) * (yp_t @ Wt)  # (A, p, n)
        res_sq = xp.sum(R * R, axis=2, dtype=xp.float64)  # (A, p)
        # the next block, before knowing which matrices continue: Y_d with the basis projected out twice
        X, broke_dev = _project_out(Yd_t, Wt, breakdown)  # (A, ℓ, n), (A,)
        both = to_host(xp.concatenate([res_sq, broke_dev[:, None]], axis=1))  # host copy 2 of this depth
        res_h = np.sqrt(both[:, :p]) / np.maximum(lam_h[:, :p], 1e-300)  # (A, p)
        broke = both[:, p] > 0  # (A,) the Krylov space stopped growing

        done = np.zeros(len(active), dtype=bool)
        for a in range(len(active)):
            c = int(count[a])
            done[a] = _is_done(c, lam_h[a], res_h[a], None if prev_lam is None else prev_lam[a], threshold, tol)
            if done[a]:
                y_c = yp_t[a, :c]  # (c, K)
                V = _T(y_c @ Wt[a])  # (n, c)  v_i = W y_i
                U = _T(y_c @ Zt[a]) / xp.asarray(lam_h[a, :c].astype(dtype))  # (m, c)  u_i = G v_i / λ̃_i
                results[active[a]] = (U, lam_h[a, :c], V, float(lam_h[a, 0]), depth)
        if done.all() or K + ell > k_cap:
            return results  # the rest stay None (exact fallback)

        keep = ~done & ~broke  # a Krylov space that stopped growing goes to the exact SVD (stays None)
        if not keep.any():
            return results
        idx = np.nonzero(keep)[0]
        if not keep.all():
            sel = xp.asarray(idx)
            active, Wt, Zt, Yt, H, X = active[idx], Wt[sel], Zt[sel], Yt[sel], H[idx], X[sel]
        prev_lam = lam_h[idx]
        new_rows = xp.ascontiguousarray(_T(_orth(xp.ascontiguousarray(_T(X)))))  # (A, ℓ, n)
        Wt = xp.concatenate([Wt, new_rows], axis=1)  # (A, K + ℓ, n)
    return results  # the still-active ones stay None


# ------------------------------------------------------------------------------------------------
# denoise a group of same-shape matrices
# ------------------------------------------------------------------------------------------------
def denoise_group(mats, noise_std, *, kappa=DEFAULT_KAPPA, norm_correction=DEFAULT_NORM_CORRECTION, fallback="noisy",
                  rng: np.random.Generator | None = None, seed: int = 0, block: int = 4,
                  tol: float | None = None, max_depth: int = 64, frob_norms=None):
    """Denoise a list of same-shape, same-dtype m×n matrices in one batched call.

    Same result as ``[rmt.rmt_denoise(G, ...) for G in mats]`` (to the iteration tolerance ``tol``,
    default 1e-10 for float64, 1e-4 for float32, relative to λ̃_1). ``rng`` (or a fresh generator from
    ``seed``) draws the test matrices. ``frob_norms``: the matrices' ‖G‖_F as host floats, if the caller
    has them (else computed here, in one host copy). Returns ``(outs, stats)``: lists parallel to ``mats``.
    """
    s = check_noise_std(noise_std)
    kappa = check_options(kappa, norm_correction, fallback)
    if not mats:
        return [], []
    for G in mats:
        check_matrix(G)
    shape, dtype = mats[0].shape, mats[0].dtype
    if any(G.shape != shape or G.dtype != dtype for G in mats):
        raise ConfigError("denoise_group needs matrices of one shape and dtype")
    m, n = shape
    if min(m, n) < 4 or s == 0.0:  # tiny matrices or no noise: the reference is as fast
        pairs = [rmt_denoise_with_stats(G, s, kappa, norm_correction, fallback) for G in mats]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    if rng is None:
        rng = np.random.default_rng(seed)

    xp = array_module(mats[0])
    edge = bulk_edge(m, n, s)
    threshold = kappa * edge
    frobs = frobenius_norms(mats) if frob_norms is None else frob_norms  # ‖G‖_F, host floats
    triplets = top_triplets(mats, threshold, rng=rng, block=block, tol=tol, max_depth=max_depth)

    outs, stats = [], []
    for G, frob, trip in zip(mats, frobs, triplets):
        if trip is None:  # not converged or too many components: the exact reference
            out, st = rmt_denoise_with_stats(G, s, kappa, norm_correction, fallback)
            st["method"] = "fast->exact"
            outs.append(out)
            stats.append(st)
            continue
        U, lam, V, top, iterations = trip  # (m, c), (c,) float64 on the host, (n, c)
        w, kept = shrunk_weights(lam, s, m, n, kappa=kappa, norm_correction=norm_correction,
                                 frob_norm=float(frob))  # (kept,) host
        if kept == 0:
            out = G if fallback == "noisy" else xp.zeros_like(G)
            norm_after = float(frob) if fallback == "noisy" else 0.0
        else:
            out = (U * xp.asarray(w.astype(G.dtype))) @ _T(V)  # (m, c) · (c, n) -> (m, n)
            norm_after = float(np.sqrt(np.sum(w * w)))
        outs.append(out)
        stats.append(matrix_stats(shape=shape, kept=kept, top=top, edge=edge, norm_before=float(frob),
                                  norm_after=norm_after, method="fast"))
        stats[-1]["iterations"] = iterations  # Krylov depth
    return outs, stats


def rmt_denoise_fast(G, noise_std, kappa=DEFAULT_KAPPA, norm_correction=DEFAULT_NORM_CORRECTION, fallback="noisy", *,
                     seed: int = 0, **options):
    """One matrix through the fast path (``options``: block, tol, max_depth of :func:`denoise_group`)."""
    return denoise_group([G], noise_std, kappa=kappa, norm_correction=norm_correction, fallback=fallback,
                         seed=seed, **options)[0][0]
