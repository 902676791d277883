"""The fast path (minidp/denoise/fast.py) equals the reference (rmt.py)."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minidp.denoise import denoise_gradients, denoise_group, denoise_groups, rmt_denoise, rmt_denoise_fast
from minidp.denoise.fast import _grow_gram, _Stack, check_depths
from minidp.denoise.rmt import DEFAULT_KAPPA, bulk_edge
from tests.denoise.planted import planted
from tests.denoise.test_rmt import hf_grads

seeds = st.integers(min_value=0, max_value=2**32 - 1)
# noisy singular values / edge: pure noise, clearly kept, near the κ = 1.02 threshold, or many components
ratio_lists = st.one_of(
    st.just([]),
    st.lists(st.floats(1.3, 8.0), min_size=1, max_size=3),
    st.lists(st.floats(1.0, 1.15), min_size=1, max_size=2),
    st.lists(st.floats(1.2, 4.0), min_size=4, max_size=12),
)


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(6, 70), n=st.integers(6, 70), L=st.integers(1, 3), rs=ratio_lists, seed=seeds,
       s=st.floats(1e-2, 1e2), corr=st.sampled_from(["noisy", "estimate", "none"]),
       fallback=st.sampled_from(["noisy", "zero"]), block=st.sampled_from([1, 2, 4]))
def test_fast_equals_exact_float64(m, n, L, rs, seed, s, corr, fallback, block):
    rng = np.random.default_rng(seed)
    mats = [planted(m, n, s, rs[: min(m, n) // 2], rng)[1] for _ in range(L)]
    outs, stats = denoise_group(mats, s, norm_correction=corr, fallback=fallback, seed=seed, block=block)
    for G, out, st_ in zip(mats, outs, stats):
        ref = rmt_denoise(G, s, norm_correction=corr, fallback=fallback)
        lam = np.linalg.svd(G, compute_uv=False)
        kept = int(np.sum(lam > DEFAULT_KAPPA * bulk_edge(m, n, s)))
        assert st_["kept"] == kept
        if kept < min(m, n) / 2:
            rel = _rel(out, ref)
            assert rel <= 1e-6, (rel, st_)
        if kept == 0 and fallback == "noisy":
            assert out is G


def test_fast_on_hf_dict_equals_exact_and_is_deterministic():
    grads = hf_grads(np.random.default_rng(3), hidden=24, ffn=48, layers=3)
    state = np.random.get_state()[1].copy()
    exact, exact_stats = denoise_gradients(grads, 1.0, method="exact")
    fast, fast_stats = denoise_gradients(grads, 1.0, method="fast", seed=7)
    again, _ = denoise_gradients(grads, 1.0, method="fast", seed=7)
    assert np.array_equal(np.random.get_state()[1], state)  # no global RNG touched
    assert list(fast) == list(grads)
    for name in exact_stats:
        assert fast_stats[name]["kept"] == exact_stats[name]["kept"]
        assert _rel(fast[name], exact[name]) <= 1e-6
        np.testing.assert_array_equal(fast[name], again[name])  # same seed, same bits
    for name in set(grads) - set(exact_stats):
        assert fast[name] is grads[name]


def test_fast_float32_close_to_exact():
    rng = np.random.default_rng(5)
    mats = [planted(256, 128, 0.05, rs, rng)[1].astype(np.float32) for rs in ([], [3.0, 1.6], [2.0])]
    outs, stats = denoise_group(mats, 0.05)
    for G, out, st_ in zip(mats, outs, stats):
        assert out.dtype == np.float32
        ref = rmt_denoise(G, 0.05)
        assert _rel(out, ref) <= 1e-3, (_rel(out, ref), st_)
    assert [st_["kept"] for st_ in stats] == [0, 2, 1]


def test_many_components_fall_back_to_exact():
    rng = np.random.default_rng(6)
    _, G = planted(20, 16, 1.0, [3.0 + i for i in range(10)], rng)  # 10 of 16 pass: more than half
    out = rmt_denoise_fast(G, 1.0, block=2)
    np.testing.assert_allclose(out, rmt_denoise(G, 1.0), atol=1e-10 * np.linalg.norm(G))


@settings(max_examples=12, deadline=None)
@given(shape=st.sampled_from([(320, 192), (192, 320), (256, 256)]), seed=seeds,
       rs=st.sampled_from([[], [4.0], [3.0, 1.6, 0.8], [1.08, 1.12], [1.5, 2.0, 3.0, 5.0, 8.0]]))
def test_krylov_path_itself_equals_exact(shape, seed, rs):
    """Medium matrices, so the Krylov iteration (not its exact fallback) produces the answer.

    (Values just above κ = 1.02 need a deep Krylov space; there the exact fallback may answer. So may pure
    noise: its top singular value sits only ≈1–3% below 1.02 × the edge, and certifying that can take more
    depth than the min(m, n)/2 cap.)"""
    m, n = shape
    rng = np.random.default_rng(seed)
    mats = [planted(m, n, 0.3, rs, rng)[1] for _ in range(3)]
    outs, stats = denoise_group(mats, 0.3, seed=seed)
    for G, out, st_ in zip(mats, outs, stats):
        assert st_["method"] == "fast" or min(rs, default=1.0) < 1.2, st_  # near κ: fallback allowed
        assert _rel(out, rmt_denoise(G, 0.3)) <= 1e-6, st_


def test_check_depths():
    """The host reads the Krylov run at depths 4, 6, 9, 14, ... (×1.5, rounded up) and at the last depth."""
    assert check_depths(48) == [4, 6, 9, 14, 21, 32, 48]
    assert check_depths(14) == [4, 6, 9, 14]
    assert check_depths(3) == [3] and check_depths(1) == [1]


@settings(max_examples=10, deadline=None)
@given(shape=st.sampled_from([(40, 30), (30, 64), (48, 48)]), seed=seeds, depth=st.integers(1, 5),
       block=st.sampled_from([1, 2, 4]), rs=st.sampled_from([[], [3.0], [1.5, 6.0]]))
def test_residuals_from_r_equal_the_residuals_from_stored_products(shape, seed, depth, block, rs):
    """Plain beside fast: the check reads r_i = ‖R y_i[K−ℓ:]‖ / λ̃_i (the block Lanczos identity: with full
    reorthogonalisation only the newest block leaves span W, and X = Y_d − W Wᵀ Y_d = Q R). The plain
    residual r_i = ‖Y y_i − θ_i W y_i‖ / λ̃_i from Y = GᵀG W computed here must agree to rounding (float64)."""
    m, n = shape
    rng = np.random.default_rng(seed)
    mats = [planted(m, n, 1.0, rs, rng)[1] for _ in range(2)]
    stack = _Stack(mats, threshold=np.inf, rng=np.random.default_rng(seed), block=block, tol=None, max_depth=64)
    depth = min(depth, stack.last)
    for _ in range(depth):
        stack.advance()
    K = stack.ell * depth
    R, H = stack.R, stack.new_cols[0]
    for col in stack.new_cols[1:]:
        H = _grow_gram(H, col)
    for a, G in enumerate(mats):
        W = stack.Wt[a, :K].T  # (n, K)
        Y = G.T @ (G @ W)  # (n, K)  A W, computed plainly
        np.testing.assert_allclose(W.T @ Y, H[a], atol=1e-12 * np.linalg.norm(G, 2) ** 2)  # H = Wᵀ A W
        theta, vecs = np.linalg.eigh(0.5 * (H[a] + H[a].T))
        lam = np.sqrt(np.maximum(theta, 0.0))
        plain = np.linalg.norm(Y @ vecs - W @ vecs * theta, axis=0) / lam  # (K,)
        from_r = np.linalg.norm(R[a] @ vecs[K - stack.ell:], axis=0) / lam  # (K,)
        assert np.abs(plain - from_r).max() <= 1e-9 * lam.max(), (plain, from_r)


def test_groups_iterated_together_equal_groups_one_by_one():
    """denoise_groups runs every shape's stack in one Krylov loop (one host copy per check for all of them);
    each stack computes exactly what it computes alone, with the test matrices drawn in the same order."""
    rng = np.random.default_rng(11)
    groups = [[planted(64, 48, 0.5, rs, rng)[1] for rs in ([], [3.0])],
              [planted(48, 96, 0.5, rs, rng)[1] for rs in ([2.0, 1.4], [], [5.0])],
              [planted(3, 48, 0.5, [], rng)[1]]]  # too thin for the Krylov run: the exact reference
    outs, stats = denoise_groups(groups, 0.5, rng=np.random.default_rng(4))
    alone = np.random.default_rng(4)
    for mats, group_outs, group_stats in zip(groups, outs, stats):
        ref_outs, ref_stats = denoise_group(mats, 0.5, rng=alone)
        for out, ref, st_, ref_st in zip(group_outs, ref_outs, group_stats, ref_stats):
            np.testing.assert_array_equal(out, ref)
            assert st_ == ref_st
    assert [st_["kept"] for st_ in stats[1]] == [2, 0, 1] and stats[2][0]["method"] == "exact"
