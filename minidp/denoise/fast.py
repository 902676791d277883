"""The same RMT denoiser for less work: only the top singular triplets, same-shape matrices batched.

Only the few singular values above κ·s(√m+√n) change Ĝ (rmt.py), so a full SVD (O(mn·min(m,n)) per
matrix) is wasted work. Here, for a stack G of L same-shape matrices (L, m, n), e.g. all Q/K/V/O
weights of all layers, one batched call runs **randomized subspace iteration with Rayleigh–Ritz**
(Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1) with an adaptive block:

    Q = orth(G Ω)                                 Ω (n, ℓ) Gaussian, ℓ = k + p (k wanted, p oversampling)
    repeat:
        B = Qᵀ G                 (ℓ, n)
        B = Ũ diag(λ̃) Ṽᵀ                          small SVD, float64: the Ritz values λ̃ ≤ λ (interlacing)
        U = Q Ũ,  V = Ṽ                           then Gᵀ u_i = λ̃_i v_i exactly
        r_i = ‖G v_i − λ̃_i u_i‖                   the residual: a true singular value lies within r_i of λ̃_i
        c = #{λ̃_i > τ},  τ = κ s(√m+√n)           c ≤ kept (λ̃_i ≤ λ_i)
        grow k (×2) while c ≥ k                   all k pass: more may pass too
        done when  r_i ≤ tol·λ̃_1 for i ≤ c          kept triplets converged
              and  λ̃_{c+1} + r_{c+1} ≤ τ            the first discarded value is safely below τ
        Q = orth(G V)
    then the weights of rmt.shrunk_weights on λ̃_1..λ̃_c, and Ĝ = U_c diag(w) V_cᵀ.

A matrix that is not done after ``max_iter`` iterations, or in which k would reach min(m,n)/2, is handed
to the exact reference (rmt.py), so the fast path is always *the same algorithm*; the test holds it equal
to rmt.py to ≤1e-6 (float64). The test matrix Ω is drawn from a NumPy generator of its own (seeded;
post-processing must not touch the DP noise stream), shared by the matrices of a stack, and moved to the
device, so NumPy and CuPy draw the same Ω.

Dtypes: the products with G (the only O(mn) work) run in G's dtype; the small SVDs (ℓ × n) in float64.
Any module with the NumPy API (numpy, cupy) works: xp.linalg.qr / svd on stacks are used where the
module supports them, else a loop over the stack.
"""
from __future__ import annotations

import numpy as np

from minidp.backend import array_module
from minidp.denoise.rmt import (
    _check_matrix,
    bulk_edge,
    check_noise_std,
    check_options,
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
    xp = array_module(Y)
    try:
        Q, _ = xp.linalg.qr(Y, mode="reduced")  # stacked QR: numpy >= 1.22, cupy >= 12
    except (TypeError, ValueError, NotImplementedError):
        Q = xp.stack([xp.linalg.qr(y, mode="reduced")[0] for y in Y])
    return Q


def _svd_small(B):
    """Thin SVD of a stack of small matrices (L, ℓ, n) -> U (L, ℓ, ℓ), λ (L, ℓ), Vt (L, ℓ, n)."""
    xp = array_module(B)
    try:
        return xp.linalg.svd(B, full_matrices=False)  # stacked SVD: numpy, cupy (batched gesvdj)
    except (TypeError, ValueError, NotImplementedError):
        parts = [xp.linalg.svd(b, full_matrices=False) for b in B]
        return tuple(xp.stack([p[i] for p in parts]) for i in range(3))


def _times_shared(G, Omega):
    """G_i Ω for every matrix of the stack: (L, m, n) · (n, k) -> (L, m, k), as one (L·m, n) GEMM.

    (numpy's stacked matmul broadcasting a 2-D right operand does not call BLAS; the reshape does.)
    """
    L, m, n = G.shape
    return (G.reshape(L * m, n) @ Omega).reshape(L, m, Omega.shape[1])


def _gaussian(rng: np.random.Generator, shape, xp, dtype):
    """A Gaussian test matrix drawn on the host from ``rng``, moved to ``xp``'s device in ``dtype``."""
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


# ------------------------------------------------------------------------------------------------
# the top singular triplets of a stack
# ------------------------------------------------------------------------------------------------
def top_triplets(G, threshold: float, *, rng: np.random.Generator, k0: int = 4, oversample: int = 8,
                 tol: float | None = None, max_iter: int = 100):
    """Top singular triplets of each matrix of the stack G (L, m, n) above ``threshold`` (τ).

    Returns a list of L entries, each ``(U_c (m, c), λ̃ (c,) float64, V_c (n, c), top λ̃_1, iterations)``,
    or ``None``
    for a matrix that did not converge within ``max_iter`` iterations or where k would reach
    min(m, n)/2 (the caller then uses the exact SVD). See the module docstring for the iteration.
    """
    xp = array_module(G)
    L, m, n = G.shape
    r = min(m, n)
    k_cap = max(r // 2, 1)  # adaptive k stops here: past it a full SVD is as cheap
    if tol is None:
        tol = DEFAULT_TOL.get(np.dtype(G.dtype).name, 1e-4)
    k = max(1, min(k0, k_cap))
    ell = min(k + oversample, r)

    results: list = [None] * L
    active = np.arange(L)  # indices (into the stack) still iterating
    Ga = xp.ascontiguousarray(G)  # (A, m, n)  the active matrices
    Q = _orth(_times_shared(Ga, _gaussian(rng, (n, ell), xp, G.dtype)))  # (A, m, ℓ);  one Ω shared by the stack

    for iteration in range(1, max_iter + 1):
        # (contiguous operands: numpy's stacked matmul only calls BLAS for C-ordered stacks)
        B = xp.ascontiguousarray(_T(Q)) @ Ga  # (A, ℓ, n)  B = Qᵀ G
        Ub, lam, Vt = _svd_small(B.astype(xp.float64))  # (A, ℓ, ℓ), (A, ℓ), (A, ℓ, n)
        U = Q @ Ub.astype(G.dtype)  # (A, m, ℓ)  left Ritz vectors
        V = xp.ascontiguousarray(_T(Vt).astype(G.dtype))  # (A, n, ℓ)  right Ritz vectors
        GV = Ga @ V  # (A, m, ℓ)
        res = xp.sqrt(xp.sum((GV - U * lam.astype(G.dtype)[:, None, :]) ** 2, axis=1, dtype=xp.float64))  # (A, ℓ)

        lam_h, res_h = np.asarray(_host(lam)), np.asarray(_host(res))  # (A, ℓ) small, on the host
        count = (lam_h > threshold).sum(axis=1)  # (A,)  c per matrix
        done = np.zeros(len(active), dtype=bool)
        give_up = np.zeros(len(active), dtype=bool)
        for a in range(len(active)):
            c = int(count[a])
            if c >= k:  # all k wanted pass: grow k (below) or give up at the cap
                give_up[a] = k >= k_cap
                continue
            converged = bool(np.all(res_h[a, :c] <= tol * lam_h[a, 0]))
            boundary_safe = lam_h[a, c] + res_h[a, c] <= threshold
            done[a] = converged and boundary_safe
            if done[a]:
                results[active[a]] = (U[a, :, :c], lam[a, :c], V[a, :, :c], float(lam_h[a, 0]), iteration)
        # matrices that gave up stay None (exact fallback); the rest continue
        keep = ~(done | give_up)
        if not keep.any():
            return results
        if not keep.all():
            idx = np.nonzero(keep)[0]
            active, Ga, GV, count = active[idx], Ga[xp.asarray(idx)], GV[xp.asarray(idx)], count[idx]
        if int(count.max()) >= k and k < k_cap:  # adaptive k: all k passed somewhere, double the block
            k = min(2 * k, k_cap)
            new_ell = min(k + oversample, r)
            extra = _times_shared(Ga, _gaussian(rng, (n, new_ell - ell), xp, G.dtype))  # (A, m, ℓ' − ℓ) fresh directions
            GV = xp.concatenate([GV, extra], axis=2)  # (A, m, ℓ')
            ell = new_ell
        Q = _orth(GV)  # (A, m, ℓ)  next basis: one more power step
    return results  # the still-active ones stay None


def _host(x):
    xp = array_module(x)
    return x if xp is np else x.get()


# ------------------------------------------------------------------------------------------------
# denoise a group of same-shape matrices
# ------------------------------------------------------------------------------------------------
def denoise_group(mats, noise_std, *, kappa=1.05, norm_correction="noisy", fallback="noisy",
                  rng: np.random.Generator | None = None, seed: int = 0, k0: int = 4, oversample: int = 8,
                  tol: float | None = None, max_iter: int = 100):
    """Denoise a list of same-shape, same-dtype m×n matrices in one batched call.

    Same result as ``[rmt.rmt_denoise(G, ...) for G in mats]`` (to the iteration tolerance ``tol``,
    default 1e-10 for float64, 1e-4 for float32, relative to λ̃_1). ``rng`` (or a fresh generator from
    ``seed``) draws the test matrices. Returns ``(outs, stats)``: lists parallel to ``mats``.
    """
    s = check_noise_std(noise_std)
    kappa = check_options(kappa, norm_correction, fallback)
    if not mats:
        return [], []
    for G in mats:
        _check_matrix(G)
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
    stack = xp.stack(mats)  # (L, m, n)
    frobs = _host(xp.sqrt(xp.sum(stack * stack, axis=(1, 2), dtype=xp.float64)))  # (L,)  ‖G‖_F
    triplets = top_triplets(stack, threshold, rng=rng, k0=k0, oversample=oversample, tol=tol, max_iter=max_iter)

    outs, stats = [], []
    for G, frob, trip in zip(mats, frobs, triplets):
        if trip is None:  # not converged or too many components: the exact reference
            out, st = rmt_denoise_with_stats(G, s, kappa, norm_correction, fallback)
            st["method"] = "fast->exact"
            outs.append(out)
            stats.append(st)
            continue
        U, lam, V, top, iterations = trip  # (m, c), (c,) float64, (n, c)
        w, kept = shrunk_weights(lam, s, m, n, kappa=kappa, norm_correction=norm_correction,
                                 frob_norm=float(frob))
        if kept == 0:
            out = G if fallback == "noisy" else xp.zeros_like(G)
            norm_after = float(frob) if fallback == "noisy" else 0.0
        else:
            out = (U * w.astype(G.dtype)) @ _T(V)  # (m, c) · (c, n) -> (m, n)
            norm_after = float(xp.sqrt(xp.sum(w * w)))
        outs.append(out)
        stats.append(matrix_stats(shape=shape, kept=kept, top=top, edge=edge, norm_before=float(frob),
                                  norm_after=norm_after, method="fast"))
        stats[-1]["iterations"] = iterations
    return outs, stats


def rmt_denoise_fast(G, noise_std, kappa=1.05, norm_correction="noisy", fallback="noisy", *,
                     seed: int = 0, **options):
    """One matrix through the fast path (``options``: k0, oversample, tol, max_iter of :func:`denoise_group`)."""
    return denoise_group([G], noise_std, kappa=kappa, norm_correction=norm_correction, fallback=fallback,
                         seed=seed, **options)[0][0]
