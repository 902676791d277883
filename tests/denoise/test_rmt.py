"""Properties of the reference RMT denoiser (minidp/denoise/rmt.py), float64 unless said otherwise."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minidp.denoise import denoise_gradients, rmt_denoise, rmt_denoise_with_stats, summarize
from minidp.denoise.rmt import DEFAULT_KAPPA, bulk_edge, shrink, signal_sq_estimate
from minidp.errors import ConfigError
from tests.denoise.planted import cos, planted

dims = st.integers(min_value=2, max_value=40)
noise = st.floats(min_value=1e-3, max_value=1e3)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
ratios = st.lists(st.floats(min_value=1.2, max_value=6.0), min_size=0, max_size=4)
corrections = st.sampled_from(["noisy", "estimate", "none"])
kappas = st.floats(min_value=1.0, max_value=1.5)
SETTINGS = settings(max_examples=60, deadline=None)


def _case(m, n, s, rs, seed):
    rs = rs[: min(m, n) // 2]
    return planted(m, n, s, rs, np.random.default_rng(seed))


@SETTINGS
@given(m=dims, n=dims, s=noise, seed=seeds, fallback=st.sampled_from(["noisy", "zero"]))
def test_nothing_kept_gives_the_fallback_exactly(m, n, s, seed, fallback):
    G = s * np.random.default_rng(seed).standard_normal((m, n))
    top = np.linalg.svd(G, compute_uv=False)[0]
    s_big = 1.001 * top / (np.sqrt(m) + np.sqrt(n))  # edge just above λ_1: nothing can pass
    out, stats = rmt_denoise_with_stats(G, s_big, fallback=fallback)
    assert stats["kept"] == 0
    if fallback == "noisy":
        assert out is G  # unchanged, bit for bit
    else:
        assert out.shape == G.shape and not np.any(out)


@SETTINGS
@given(m=dims, n=dims, s=noise, frac=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=20))
def test_shrinkage_is_between_zero_and_lambda(m, n, s, frac):
    lam = bulk_edge(m, n, s) * (1.0 + np.array(frac))  # (k,) at or above the edge
    w = shrink(lam, s, m, n)
    assert np.all(w >= 0.0)
    assert np.all(w < lam)


@SETTINGS
@given(m=dims, n=dims, s=noise, rs=ratios, seed=seeds, kappa=kappas)
def test_rank_equals_kept_and_shrinks(m, n, s, rs, seed, kappa):
    _, G = _case(m, n, s, rs, seed)
    out, stats = rmt_denoise_with_stats(G, s, kappa=kappa, norm_correction="none", fallback="zero")
    lam = np.linalg.svd(G, compute_uv=False)
    kept = int(np.sum(lam > kappa * bulk_edge(m, n, s)))
    assert stats["kept"] == kept
    sv = np.linalg.svd(out, compute_uv=False)  # the w_i, then zeros
    assert int(np.sum(sv > 1e-9 * lam[0])) == kept  # rank(Ĝ) = kept
    assert np.all(sv[:kept] < lam[:kept])  # 0 ≤ w_i < λ_i, seen on the output
    np.testing.assert_allclose(sv[:kept], np.sort(shrink(lam[:kept], s, m, n))[::-1], rtol=1e-9, atol=1e-12 * lam[0])


@SETTINGS
@given(m=dims, n=dims, s=noise, rs=ratios, seed=seeds)
def test_norm_correction_is_exact(m, n, s, rs, seed):
    _, G = _case(m, n, s, rs, seed)
    lam = np.linalg.svd(G, compute_uv=False)
    kept_lam = lam[lam > DEFAULT_KAPPA * bulk_edge(m, n, s)]
    noisy = rmt_denoise(G, s, norm_correction="noisy")
    estimate = rmt_denoise(G, s, norm_correction="estimate", fallback="zero")
    rel_noisy = abs(np.linalg.norm(noisy) - np.linalg.norm(G)) / np.linalg.norm(G)
    target = np.sqrt(np.sum(signal_sq_estimate(kept_lam, s, m, n)))  # √Σ θ̂², from the formula
    assert rel_noisy <= 1e-12, rel_noisy
    assert abs(np.linalg.norm(estimate) - target) <= 1e-12 * max(target, 1.0) + 1e-12 * lam[0]


@SETTINGS
@given(m=dims, n=dims, s=noise, rs=ratios, seed=seeds, corr=corrections)
def test_transpose_equivariance(m, n, s, rs, seed, corr):
    _, G = _case(m, n, s, rs, seed)
    a = rmt_denoise(G.T, s, norm_correction=corr)
    b = rmt_denoise(G, s, norm_correction=corr).T
    diff = np.max(np.abs(a - b))
    assert diff <= 1e-10 * np.linalg.norm(G), diff


@SETTINGS
@given(m=dims, n=dims, s=noise, rs=ratios, seed=seeds, corr=corrections,
       c=st.floats(min_value=1e-3, max_value=1e3))
def test_scale_equivariance(m, n, s, rs, seed, corr, c):
    _, G = _case(m, n, s, rs, seed)
    a = rmt_denoise(c * G, c * s, norm_correction=corr)
    b = c * rmt_denoise(G, s, norm_correction=corr)
    diff = np.max(np.abs(a - b))
    assert diff <= 1e-10 * c * np.linalg.norm(G), diff


@settings(max_examples=25, deadline=None)
@given(m=st.integers(12, 60), n=st.integers(12, 60), s=noise, seed=seeds,
       rs=st.lists(st.floats(min_value=1.3, max_value=5.0), min_size=1, max_size=3))
def test_planted_signal_cosine_improves_on_average(m, n, s, seed, rs):
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(8):  # fresh signal and noise each time
        X, G = planted(m, n, s, rs, rng)
        gains.append(cos(rmt_denoise(G, s), X) - cos(G, X))
    assert np.mean(gains) > 0.0, gains


@settings(max_examples=30, deadline=None)
@given(seed=seeds, blocks=st.lists(st.tuples(st.integers(8, 40), st.integers(8, 40),
                                               st.lists(st.floats(0.0, 4.0), max_size=3)),
                                     min_size=2, max_size=5))
def test_theorem_1_block_gains_imply_whole_gain(seed, blocks):
    """With the "noisy" correction every block keeps ‖G_b‖, so with X the signal
    cos(Ĝ, X) − cos(G, X) = Σ_b ‖G_b‖‖X_b‖/(‖G‖‖X‖) · (cos(Ĝ_b, X_b) − cos(G_b, X_b)):
    a positive combination of the block gains (Theorem 1). Checked as an identity, and its consequence."""
    rng = np.random.default_rng(seed)
    s = 0.5
    Xs, Gs, Ds = [], [], []
    for m, n, rs in blocks:
        rs = [1.0 + r for r in rs if r > 0.3][: min(m, n) // 2]  # some above the edge, some blocks pure noise
        X, G = planted(m, n, s, rs, rng)
        if not np.any(X):
            X = X + 1e-3 * rng.standard_normal((m, n))  # a weak signal, so every cosine is defined
        Xs.append(X)
        Gs.append(G)
        Ds.append(rmt_denoise(G, s, norm_correction="noisy"))
    flat = lambda arrs: np.concatenate([a.ravel() for a in arrs])  # noqa: E731
    whole_gain = cos(flat(Ds), flat(Xs)) - cos(flat(Gs), flat(Xs))
    norm_G, norm_X = np.linalg.norm(flat(Gs)), np.linalg.norm(flat(Xs))
    block_gains = [cos(D, X) - cos(G, X) for D, G, X in zip(Ds, Gs, Xs)]
    weights = [np.linalg.norm(G) * np.linalg.norm(X) / (norm_G * norm_X) for G, X in zip(Gs, Xs)]
    assert abs(whole_gain - np.dot(weights, block_gains)) <= 1e-12
    if min(block_gains) >= 0.0:
        assert whole_gain >= -1e-15


def test_float32_in_float32_out():
    X, G = planted(60, 40, 0.1, [3.0, 1.5], np.random.default_rng(0))
    out32 = rmt_denoise(G.astype(np.float32), np.float32(0.1))
    out64 = rmt_denoise(G, 0.1)
    assert out32.dtype == np.float32
    rel = np.linalg.norm(out32 - out64) / np.linalg.norm(out64)
    assert rel <= 1e-5, rel


def test_noise_std_as_0d_array_and_bad_arguments():
    G = np.random.default_rng(0).standard_normal((10, 8))
    np.testing.assert_array_equal(rmt_denoise(G, np.array(0.2)), rmt_denoise(G, 0.2))
    for kwargs, word in [({"noise_std": -1.0}, "noise_std"), ({"noise_std": float("nan")}, "noise_std"),
                         ({"noise_std": 1.0, "kappa": 0.9}, "kappa"),
                         ({"noise_std": 1.0, "norm_correction": "frob"}, "norm_correction"),
                         ({"noise_std": 1.0, "fallback": "none"}, "fallback")]:
        with pytest.raises(ConfigError, match=word):
            rmt_denoise(G, **kwargs)
    with pytest.raises(ConfigError, match="2-D"):
        rmt_denoise(G[0], 1.0)


def test_zero_noise_keeps_the_matrix():
    G = np.random.default_rng(1).standard_normal((7, 5))
    np.testing.assert_allclose(rmt_denoise(G, 0.0), G, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# the gradient dict
# ------------------------------------------------------------------------------------------------
def hf_grads(rng, hidden=16, ffn=32, layers=2, vocab=50, labels=2):
    """A RoBERTa-like gradient dict (HF names and layouts), with a planted signal in the query weights."""
    g = {"roberta.embeddings.word_embeddings.weight": rng.standard_normal((vocab, hidden)),
         "roberta.embeddings.LayerNorm.weight": rng.standard_normal(hidden),
         "roberta.embeddings.LayerNorm.bias": rng.standard_normal(hidden)}
    for i in range(layers):
        p = f"roberta.encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            g[p + f"attention.self.{proj}.weight"] = rng.standard_normal((hidden, hidden))
            g[p + f"attention.self.{proj}.bias"] = rng.standard_normal(hidden)
        g[p + "attention.output.dense.weight"] = rng.standard_normal((hidden, hidden))
        g[p + "attention.output.LayerNorm.weight"] = rng.standard_normal(hidden)
        g[p + "intermediate.dense.weight"] = rng.standard_normal((ffn, hidden))
        g[p + "output.dense.weight"] = rng.standard_normal((hidden, ffn))
        g[p + "output.dense.bias"] = rng.standard_normal(hidden)
        g[p + "attention.self.query.weight"] += planted(hidden, hidden, 1.0, [4.0], rng)[0]
    g["classifier.dense.weight"] = rng.standard_normal((hidden, hidden))
    g["classifier.out_proj.weight"] = rng.standard_normal((labels, hidden))
    g["classifier.out_proj.bias"] = rng.standard_normal(labels)
    return g


def test_denoise_gradients_selects_linear_weights_and_passes_the_rest():
    grads = hf_grads(np.random.default_rng(0))
    new, stats = denoise_gradients(grads, 1.0)
    expected = {k for k, v in grads.items() if v.ndim == 2 and "embeddings" not in k}
    assert set(stats) == expected
    assert list(new) == list(grads)  # same keys, same order
    for name, g in grads.items():
        if name not in expected:
            assert new[name] is g  # biases, LayerNorm, embeddings: untouched objects
    for name in expected:
        np.testing.assert_array_equal(new[name], rmt_denoise(grads[name], 1.0))
    assert stats["roberta.encoder.layer.0.attention.self.query.weight"]["kept"] == 1
    json.dumps(stats)  # JSON-friendly
    total = summarize(stats)
    assert total["total_kept"] == sum(st["kept"] for st in stats.values())
    assert total["matrices_with_kept"] == sum(st["kept"] > 0 for st in stats.values())
    assert total["matrices"] == len(expected)
    json.dumps(total)
    one = stats["roberta.encoder.layer.1.attention.self.query.weight"]
    assert set(one) >= {"kept", "top_singular_value", "edge", "top_over_edge", "norm_before", "norm_after"}
    assert one["edge"] == pytest.approx(1.0 * (4 + 4))
    assert one["top_over_edge"] == pytest.approx(one["top_singular_value"] / one["edge"])


def test_denoise_gradients_include_list_and_callable():
    grads = hf_grads(np.random.default_rng(1))
    emb = "roberta.embeddings.word_embeddings.weight"
    new, stats = denoise_gradients(grads, 1.0, include=[emb])
    assert list(stats) == [emb]
    new, stats = denoise_gradients(grads, 1.0, include=lambda name, a: a.ndim == 2 and "classifier" in name)
    assert set(stats) == {"classifier.dense.weight", "classifier.out_proj.weight"}
    with pytest.raises(ConfigError, match="method"):
        denoise_gradients(grads, 1.0, method="svd")
    with pytest.raises(ConfigError, match="2-D"):
        denoise_gradients(grads, 1.0, include=["classifier.out_proj.bias"])
