"""The same RMT denoiser for less work: only the top singular triplets, same-shape matrices batched.

    outs, stats = denoise_groups([[G_q0, G_q1, ...], [G_ffn0, ...]], s, seed=step)   # lists per group
    outs, stats = denoise_group([G_q0, G_q1, ...], s, seed=step)                     # one group

Only the few singular values above τ = κ·s(√m+√n) change Ĝ (rmt.py), so a full SVD (O(mn·min(m,n))
per matrix) is wasted work. Here, for a stack G of L same-shape matrices (L, m, n), e.g. all Q/K/V/O
weights of all layers, one batched call runs **randomized block Krylov iteration with Rayleigh–Ritz**
(block Lanczos on A = GᵀG with full reorthogonalisation; Musco & Musco 2015, Golub & Van Loan §10.3):

    W_0 = orth(Ω)                                   Ω (n, ℓ) Gaussian, ℓ = ``block`` (default 4)
    depth d = 1, 2, ...:
        Z_d = G W_d        (m, ℓ)                   the only O(mn) work: two products per depth
        Y_d = Gᵀ Z_d       (n, ℓ)   = A W_d
        W = [W_0 … W_d] (n, K),  Y = [Y_0 … Y_d] = A W,  Z = [Z_0 … Z_d] = G W,   K = ℓ(d+1)
        X = Y_d − W Wᵀ Y_d = Q R                     (projected twice: classical Gram–Schmidt, reorthogonalised)
        W_{d+1} = Q                                  the next block
      at a check depth (below), on the host:
        H = Wᵀ Y = Θ-eigh: H y_i = θ_i y_i           (K, K), float64; Ritz values λ̃_i = √θ_i
        v_i = W y_i,  u_i = Z y_i / λ̃_i               then G v_i = λ̃_i u_i exactly
        r_i = ‖Gᵀu_i − λ̃_i v_i‖ = ‖Y y_i − θ_i W y_i‖ / λ̃_i = ‖R y_i[K−ℓ:]‖ / λ̃_i   (no pass over G, no Y kept)
        c = #{λ̃_i > τ}
        done when  r_i ≤ tol·λ̃_1 for i ≤ c                      the kept triplets converged
              and  λ̃_{c+1} + r_{c+1} ≤ τ                          the first discarded value sits below τ
              and  λ̃_{c+1} rose by ≤ ½(τ − λ̃_{c+1}) since depth d−1   ... and has stopped climbing
    then the weights of rmt.shrunk_weights on λ̃_1..λ̃_c, and Ĝ = U_c diag(w) V_cᵀ.

The residual from R is block Lanczos' identity: Y − W H = (I − W Wᵀ) Y, and every block but the newest lies
in span W already (Y_j = A W_j ∈ span(W_0 … W_{j+1}), since W_{j+1} was made from Y_j), so only
(I − W Wᵀ) Y_d = X = Q R survives and ‖(Y − W H) y_i‖ = ‖R y_i[K−ℓ:]‖ (Q has orthonormal columns). The
test holds it equal to the residual computed from stored products. The Ritz values of depth d−1 are those
of H's leading (K−ℓ)×(K−ℓ) block: the spaces are nested.

Why Krylov and not plain subspace (power) iteration: the subspaces are nested, so each Ritz value
climbs monotonically towards its singular value (Cauchy interlacing, λ̃_i ≤ λ_i), and the Krylov space
holds the best polynomial filter of each degree, not just the power (GᵀG)^d. Pure noise — the case of
real DP runs — is certified in ≈5–7 depths of a 4-wide block instead of ≈7 iterations of a 12-wide one:
about 3–4× fewer flops (``scripts/bench_denoise.py``). The last rule guards the monotone climb: a Ritz
value still rising fast may yet cross τ, so we wait until it has settled.

A matrix not done by the last depth (K at min(m, n)/2, or ``max_depth``), or whose Krylov space breaks
down (rank-deficient G; flagged at every depth, read at the next check), is handed to the exact reference (rmt.py), so the fast path is always *the same
algorithm*; the test holds it equal to rmt.py to ≤1e-6 (float64). The test matrix Ω is drawn from a
NumPy generator of its own (seeded; post-processing must not touch the DP noise stream), shared by the
matrices of a stack, and moved to the device, so NumPy and CuPy draw the same Ω.

Dtypes: the products with G run in G's dtype; the small K×K eigenproblems in float64.
Any module with the NumPy API works (numpy >= 1.24 and cupy >= 13, the supported versions, both have the
stacked QR used here).

Devices: everything of size m or n stays where G lives. The small K×K eigenproblems are solved on the
host (NumPy/LAPACK): they are tiny, and on a GPU cuSOLVER's batched Jacobi solver (syevj) is tuned for
K ≤ 32 and fails silently when it does not converge.

When the host is asked: only at the check depths 4, 6, 9, 14, 21, ... (``check_depths``: ×1.5, rounded up,
and the last depth), not at every depth; between checks the device runs on alone, since nothing it computes
waits for the host (H's columns, R and the breakdown flags wait on the device). Every stack of every shape
advances together (``top_triplets_stacks``), so one check is one copy for all of them: H's new columns, R
and the flags of every matrix still running. A call makes one copy per check reached, whatever the number
of layers: ≈4 for MiniLM's 37 weight matrices at κ = 1.02 (depths 6–14), where two copies per depth per
stack made ≈60. The price is work: a matrix done at depth d is read only at the next check, ≈1.5 d at
most (on MiniLM's shapes ≈20% more Krylov products than stopping at the first possible depth). The
Frobenius norms come in one copy for all matrices (rmt.frobenius_norms), and every statistic is made from
host values: no further copies.
"""
from __future__ import annotations

import math

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
# When the host reads the iteration: at depth 4 (pure noise at κ = 1.02 is certified at ≈5–11 on MiniLM shapes,
# docs/denoiser.md), then at depths growing by half: a matrix done at depth d is read by depth ≈1.5 d, and a call
# makes ≈log_1.5(depth / 4) + 1 host copies, for any number of matrices.
FIRST_CHECK = 4
CHECK_GROWTH = 1.5


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
# the top singular triplets of every stack, iterated together
# ------------------------------------------------------------------------------------------------
def check_depths(last: int) -> list:
    """The Krylov depths at which the host reads the iteration (module docstring, "When the host is asked"):
    FIRST_CHECK, then each ⌈CHECK_GROWTH × the previous⌉, and ``last``; e.g. last = 48: [4, 6, 9, 14, 21, 32, 48]."""
    depths, depth = [], FIRST_CHECK
    while depth < last:
        depths.append(depth)
        depth = math.ceil(depth * CHECK_GROWTH)
    return depths + [last]


class _Stack:
    """The block Krylov iteration of one stack of same-shape matrices (module docstring), as state.

    ``advance`` adds one depth on the device; ``payload`` is what a check reads (device, float64, flat);
    ``check`` takes it back on the host, decides which matrices are done and builds their triplets."""

    def __init__(self, mats, threshold: float, *, rng, block: int, tol, max_depth: int):
        self.mats, self.threshold = mats, float(threshold)
        self.xp = xp = array_module(mats[0])
        L, (m, n), self.dtype = len(mats), mats[0].shape, mats[0].dtype
        k_cap = max(min(m, n) // 2, 1)  # past this many basis vectors a full SVD is as cheap
        self.tol = DEFAULT_TOL.get(np.dtype(self.dtype).name, 1e-4) if tol is None else tol
        self.ell = ell = max(1, min(int(block), k_cap))
        self.checks = set(check_depths(max(1, min(int(max_depth), k_cap // ell))))  # K = ℓ·depth ≤ k_cap
        self.last = max(self.checks)
        self.breakdown = float(np.sqrt(np.finfo(self.dtype).eps))  # a new direction this small is not new
        self.results: list = [None] * L
        self.active = np.arange(L)  # indices (into the stack) still iterating
        W0 = _orth(_gaussian(rng, (1, n, ell), xp, self.dtype))  # (1, n, ℓ); one Ω shared by the stack
        self.Wt = xp.ascontiguousarray(xp.broadcast_to(_T(W0), (L, ell, n)))  # (A, K + ℓ, n) W and the next block
        self.Zt = None  # (A, K, m)  (G W)ᵀ
        self.H = None  # (A, K, K) Wᵀ A W, float64 on the host, as of the last check
        self.new_cols: list = []  # device (A, K_j, ℓ) blocks Wᵀ Y_j of H since the last check
        self.R = None  # (A, ℓ, ℓ) device: X = Q R, the newest block before orthonormalisation
        self.broke = xp.zeros(L)  # (A,) device float64: 1.0 once a matrix's Krylov space stopped growing
        self.depth = 0
        self.running = True

    def advance(self) -> None:
        """One depth, on the device only: Z_d = G W_d, Y_d = Gᵀ Z_d (the two passes over each G, back to back so
        the second finds G still in cache), H's new column block Wᵀ Y_d, and the next block W_{d+1} = orth(X)
        with X = Y_d − W Wᵀ Y_d = Q R (R kept for the residuals)."""
        xp, ell = self.xp, self.ell
        K = self.Wt.shape[1] - ell  # basis vectors before this depth's block W_d
        Wd = xp.ascontiguousarray(_T(self.Wt[:, K:]))  # (A, n, ℓ)
        z_rows, y_rows = [], []
        for a, i in enumerate(self.active):
            z_rows.append(_T(self.mats[i] @ Wd[a]))  # (ℓ, m)
            y_rows.append(z_rows[-1] @ self.mats[i])  # (ℓ, n)  Y_dᵀ = Z_dᵀ G
        Zd_t, Yd_t = xp.stack(z_rows), xp.stack(y_rows)  # (A, ℓ, m), (A, ℓ, n)
        self.Zt = Zd_t if self.Zt is None else xp.concatenate([self.Zt, Zd_t], axis=1)  # (A, K + ℓ, m)
        self.new_cols.append((self.Wt @ _T(Yd_t)).astype(xp.float64))  # (A, K + ℓ, ℓ)  Wᵀ Y_d
        X, broke = _project_out(Yd_t, self.Wt, self.breakdown)  # (A, ℓ, n), (A,)
        Q, self.R = xp.linalg.qr(xp.ascontiguousarray(_T(X)), mode="reduced")  # (A, n, ℓ), (A, ℓ, ℓ)
        self.broke = xp.maximum(self.broke, broke)
        self.Wt = xp.concatenate([self.Wt, xp.ascontiguousarray(_T(Q))], axis=1)  # (A, K + 2ℓ, n)
        self.depth += 1

    def payload(self):
        """What the host needs at a check, as one flat float64 device vector: H's new columns, R, the flags."""
        xp = self.xp
        parts = self.new_cols + [self.R.astype(xp.float64), self.broke]
        return xp.concatenate([part.ravel() for part in parts])

    def check(self, flat: np.ndarray) -> None:
        """Take the payload back (host float64), and finish the matrices that are done (module docstring)."""
        xp, ell, A = self.xp, self.ell, len(self.active)
        offset = 0
        for col in self.new_cols:  # grow H by each new block column, in depth order
            size = int(np.prod(col.shape))
            block = flat[offset:offset + size].reshape(col.shape)  # (A, K_j, ℓ)
            self.H = block if self.H is None else _grow_gram(self.H, block)
            offset += size
        R = flat[offset:offset + A * ell * ell].reshape(A, ell, ell)  # (A, ℓ, ℓ)
        broke = flat[offset + A * ell * ell:] > 0  # (A,)
        self.new_cols = []
        H = 0.5 * (self.H + _T(self.H))  # (A, K, K)
        K = H.shape[1]
        theta, Yv = _eigh_desc(H)  # (A, K), (A, K, K); Ritz values θ_i = λ̃_i²
        lam = np.sqrt(np.maximum(theta, 0.0))  # (A, K)
        prev = None  # the Ritz values one depth earlier: H's leading block is that depth's H (nested spaces)
        if K > ell:
            prev = np.sqrt(np.maximum(np.linalg.eigvalsh(H[:, :K - ell, :K - ell])[:, ::-1], 0.0))  # (A, K − ℓ)
        # r_i = ‖Y y_i − θ_i W y_i‖ / λ̃_i = ‖X y_i[K−ℓ:]‖ / λ̃_i = ‖R y_i[K−ℓ:]‖ / λ̃_i  (module docstring)
        res = np.linalg.norm(R @ Yv[:, K - ell:, :], axis=1) / np.maximum(lam, 1e-300)  # (A, K)
        count = (lam > self.threshold).sum(axis=1)  # (A,)  c per matrix
        done = np.zeros(A, dtype=bool)
        for a in range(A):
            c = int(count[a])
            done[a] = not broke[a] and _is_done(c, lam[a], res[a], None if prev is None else prev[a],
                                                self.threshold, self.tol)
            if done[a]:
                y_c = xp.asarray(np.ascontiguousarray(_T(Yv[a, :, :c])).astype(self.dtype))  # (c, K)
                V = _T(y_c @ self.Wt[a, :K])  # (n, c)  v_i = W y_i
                U = _T(y_c @ self.Zt[a]) / xp.asarray(lam[a, :c].astype(self.dtype))  # (m, c)  u_i = G v_i / λ̃_i
                self.results[self.active[a]] = (U, lam[a, :c], V, float(lam[a, 0]), self.depth)
        keep = ~done & ~broke  # a Krylov space that stopped growing goes to the exact SVD (stays None)
        if self.depth >= self.last or not keep.any():
            self.running = False
            return
        if not keep.all():
            idx = np.nonzero(keep)[0]
            sel = xp.asarray(idx)
            self.active, self.H = self.active[idx], self.H[idx]
            self.Wt, self.Zt, self.broke = self.Wt[sel], self.Zt[sel], self.broke[sel]


def top_triplets_stacks(stacks, thresholds, *, rng: np.random.Generator, block: int = 4, tol: float | None = None,
                        max_depth: int = 64) -> list:
    """``top_triplets`` for several stacks of same-shape matrices (one threshold each), iterated together.

    All stacks advance one depth at a time on the device; at each depth of ``check_depths`` one host copy
    carries every stack's H columns, R factors and breakdown flags (``_Stack.payload``), so the copies per
    call do not depend on how many stacks or matrices there are. The test matrices Ω are drawn from ``rng``
    in the order of ``stacks``. Returns one list per stack, as ``top_triplets``."""
    states = [_Stack(mats, threshold, rng=rng, block=block, tol=tol, max_depth=max_depth)
              for mats, threshold in zip(stacks, thresholds)]
    while any(state.running for state in states):
        running = [state for state in states if state.running]
        for state in running:
            state.advance()
        due = [state for state in running if state.depth in state.checks]
        if due:
            xp = due[0].xp
            payloads = [state.payload() for state in due]
            flat = to_host(xp.concatenate(payloads))  # the one host copy of this check, for every stack
            offset = 0
            for state, payload in zip(due, payloads):
                state.check(flat[offset:offset + payload.shape[0]])
                offset += payload.shape[0]
    return [state.results for state in states]


def top_triplets(mats, threshold: float, *, rng: np.random.Generator, block: int = 4,
                 tol: float | None = None, max_depth: int = 64):
    """Top singular triplets of each of the same-shape matrices ``mats`` (L of m×n) above ``threshold`` (τ).

    The two O(mn) products per depth are one 2-D GEMM per matrix, on the caller's arrays (no copy into a
    stack: a (L, m, n) copy, re-sliced each time matrices finish, cost more than the products); the
    small K-wide work is batched over the stack.

    Returns a list of L entries, each ``(U_c (m, c), λ̃ (c,) float64, V_c (n, c), top λ̃_1, depth)``, or
    ``None`` for a matrix that was not done by the last depth (the Krylov space at min(m, n)/2 columns, or
    ``max_depth``), or whose Krylov space broke down; the caller then uses the exact SVD. ``depth`` is the
    check at which the matrix was done. See the module docstring for the iteration and its stopping rule.
    """
    return top_triplets_stacks([mats], [threshold], rng=rng, block=block, tol=tol, max_depth=max_depth)[0]


# ------------------------------------------------------------------------------------------------
# denoise groups of same-shape matrices
# ------------------------------------------------------------------------------------------------
def denoise_groups(groups, noise_std, *, kappa=DEFAULT_KAPPA, norm_correction=DEFAULT_NORM_CORRECTION,
                   fallback="noisy", rng: np.random.Generator | None = None, seed: int = 0, block: int = 4,
                   tol: float | None = None, max_depth: int = 64, frob_norms=None):
    """Denoise several groups, each a list of same-shape, same-dtype m×n matrices, in one Krylov run.

    Same result as ``[[rmt.rmt_denoise(G, ...) for G in mats] for mats in groups]`` (to the iteration
    tolerance ``tol``, default 1e-10 for float64, 1e-4 for float32, relative to λ̃_1). ``rng`` (or a fresh
    generator from ``seed``) draws the test matrices, group by group. ``frob_norms``: per group, the
    matrices' ‖G‖_F as host floats, if the caller has them (else computed here, in one host copy).
    Returns ``(outs, stats)``: lists of lists parallel to ``groups``.
    """
    s = check_noise_std(noise_std)
    kappa = check_options(kappa, norm_correction, fallback)
    for mats in groups:
        for G in mats:
            check_matrix(G)
        if any(G.shape != mats[0].shape or G.dtype != mats[0].dtype for G in mats):
            raise ConfigError("denoise_group needs matrices of one shape and dtype")
    if rng is None:
        rng = np.random.default_rng(seed)
    if frob_norms is None:
        flat = frobenius_norms([G for mats in groups for G in mats])  # ‖G‖_F, host floats: one copy
        sizes = np.cumsum([0] + [len(mats) for mats in groups])
        frob_norms = [flat[a:b] for a, b in zip(sizes[:-1], sizes[1:])]
    # tiny matrices or no noise: the reference is as fast; the rest share one Krylov run
    krylov = [g for g, mats in enumerate(groups) if mats and min(mats[0].shape) >= 4 and s > 0.0]
    edges = {g: bulk_edge(*groups[g][0].shape, s) for g in krylov}
    triplets = dict(zip(krylov, top_triplets_stacks([groups[g] for g in krylov], [kappa * edges[g] for g in krylov],
                                                    rng=rng, block=block, tol=tol, max_depth=max_depth)))
    outs, stats = [], []
    for g, mats in enumerate(groups):
        pairs = [_from_triplet(G, s, trip, frob, edges.get(g), kappa, norm_correction, fallback)
                 for G, frob, trip in zip(mats, frob_norms[g], triplets.get(g, [None] * len(mats)))]
        outs.append([pair[0] for pair in pairs])
        stats.append([pair[1] for pair in pairs])
    return outs, stats


def _from_triplet(G, s: float, trip, frob, edge, kappa, norm_correction, fallback):
    """One matrix's (denoised G, stats) from its top triplets; the exact reference when there are none
    (tiny, noiseless, or not done by the Krylov iteration: method "fast->exact")."""
    if trip is None:
        out, st = rmt_denoise_with_stats(G, s, kappa, norm_correction, fallback)
        if edge is not None:
            st["method"] = "fast->exact"
        return out, st
    xp, (m, n) = array_module(G), G.shape
    U, lam, V, top, depth = trip  # (m, c), (c,) float64 on the host, (n, c)
    w, kept = shrunk_weights(lam, s, m, n, kappa=kappa, norm_correction=norm_correction, frob_norm=float(frob))
    if kept == 0:
        out = G if fallback == "noisy" else xp.zeros_like(G)
        norm_after = float(frob) if fallback == "noisy" else 0.0
    else:
        out = (U * xp.asarray(w.astype(G.dtype))) @ _T(V)  # (m, c) · (c, n) -> (m, n)
        norm_after = float(np.sqrt(np.sum(w * w)))
    st = matrix_stats(shape=(m, n), kept=kept, top=top, edge=edge, norm_before=float(frob), norm_after=norm_after,
                      method="fast")
    st["iterations"] = depth  # the Krylov depth (the check) at which it was done
    return out, st


def denoise_group(mats, noise_std, *, kappa=DEFAULT_KAPPA, norm_correction=DEFAULT_NORM_CORRECTION, fallback="noisy",
                  rng: np.random.Generator | None = None, seed: int = 0, block: int = 4,
                  tol: float | None = None, max_depth: int = 64, frob_norms=None):
    """Denoise a list of same-shape, same-dtype m×n matrices in one batched call: ``denoise_groups([mats])``.

    Same result as ``[rmt.rmt_denoise(G, ...) for G in mats]`` (to the iteration tolerance ``tol``).
    Returns ``(outs, stats)``: lists parallel to ``mats``.
    """
    outs, stats = denoise_groups([mats], noise_std, kappa=kappa, norm_correction=norm_correction, fallback=fallback,
                                 rng=rng, seed=seed, block=block, tol=tol, max_depth=max_depth,
                                 frob_norms=None if frob_norms is None else [frob_norms])
    return outs[0], stats[0]


def rmt_denoise_fast(G, noise_std, kappa=DEFAULT_KAPPA, norm_correction=DEFAULT_NORM_CORRECTION, fallback="noisy", *,
                     seed: int = 0, **options):
    """One matrix through the fast path (``options``: block, tol, max_depth of :func:`denoise_group`)."""
    return denoise_group([G], noise_std, kappa=kappa, norm_correction=norm_correction, fallback=fallback,
                         seed=seed, **options)[0][0]
