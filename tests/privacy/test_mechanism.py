"""The Gaussian mechanism: clipping bounds each example's influence by C (any input), the noise is
N(0, (σC)²) elementwise, and the release is exactly (clipped sum + noise) / qN."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minidp.backend import RandomStreams
from minidp.errors import ConfigError, PrivacyError
from minidp.privacy.mechanism import add_noise, clip_factors, noise_std_of_average

REL_TOL = 1e-9  # float64 rounding slack on norm bounds


@st.composite
def per_example_grads(draw):
    """{name: (B, *shape)} float64 per-example gradients with wildly different scales per example."""
    B = draw(st.integers(1, 8))
    n_params = draw(st.integers(1, 3))
    grads = {}
    for k in range(n_params):
        shape = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=2)))
        g = draw(hnp.arrays(np.float64, (B, *shape), elements=st.floats(-1, 1, allow_nan=False)))
        grads[f"p{k}"] = g
    scales = draw(hnp.arrays(np.float64, (B,), elements=st.sampled_from([0.0, 1e-4, 1e-2, 1.0, 10.0, 1e4])))
    return {name: g * scales.reshape((B,) + (1,) * (g.ndim - 1)) for name, g in grads.items()}


def norms_of(grads):
    """Per-example L2 norm over all parameters together: (B,)."""
    B = next(iter(grads.values())).shape[0]
    return np.sqrt(sum((g.reshape(B, -1) ** 2).sum(axis=1) for g in grads.values()))


def clipped_sum(grads, C, method):
    c = clip_factors(norms_of(grads), C, method=method)  # (B,)
    return {name: np.tensordot(c, g, axes=1) for name, g in grads.items()}, c


def dist(a, b):
    return np.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in a))


def drop(grads, j):
    return {k: np.delete(g, j, axis=0) for k, g in grads.items()}


@settings(max_examples=150, deadline=None)
@given(grads=per_example_grads(), C=st.floats(0.01, 10.0), method=st.sampled_from(["flat", "automatic"]),
       data=st.data())
def test_one_example_moves_the_clipped_sum_by_at_most_C(grads, C, method, data):
    norms = norms_of(grads)
    c = clip_factors(norms, C, method=method)
    assert np.all(np.isfinite(c)) and np.all(c >= 0)
    assert np.all(c * norms <= C * (1 + REL_TOL))  # every clipped example has norm ≤ C
    if method == "flat":
        assert np.all(c <= 1.0)  # flat clipping never scales up

    full, _ = clipped_sum(grads, C, method)
    B = norms.size
    j = data.draw(st.integers(0, B - 1))
    # remove example j (the neighbouring dataset under add/remove adjacency)
    if B > 1:
        without, _ = clipped_sum(drop(grads, j), C, method)
    else:
        without = {k: np.zeros_like(v) for k, v in full.items()}
    assert dist(full, without) <= C * (1 + REL_TOL)
    # replace example j by another one, far out and pointing the other way: moves the sum by ≤ 2C
    replaced = {k: g.copy() for k, g in grads.items()}
    for k in replaced:
        replaced[k][j] = -1e3 * grads[k][j] + 7.0
    other, _ = clipped_sum(replaced, C, method)
    assert dist(full, other) <= 2 * C * (1 + REL_TOL)


def test_clip_factor_formulas():
    norms = np.array([0.0, 0.5, 1.0, 4.0])
    np.testing.assert_allclose(clip_factors(norms, 1.0), [1.0, 1.0, 1 / (1 + 1e-6), 1 / (4 + 1e-6)], rtol=1e-15)
    np.testing.assert_allclose(clip_factors(norms, 2.0, method="automatic", gamma=0.5), 2.0 / (norms + 0.5),
                               rtol=1e-15)
    with pytest.raises(ConfigError):
        clip_factors(norms, 1.0, method="hard")
    with pytest.raises(PrivacyError):
        clip_factors(norms, 0.0)


def test_noise_has_mean_zero_and_std_sigma_C():
    sigma, C, n = 1.3, 0.7, 1_000_000
    rng = np.random.default_rng(0)
    s = {"w": np.zeros((1000, 1000))}
    released, noise = add_noise(s, noise_multiplier=sigma, max_grad_norm=C, expected_batch_size=1.0, rng=rng)
    z = noise["w"].ravel()
    std = sigma * C
    se_mean = std / np.sqrt(n)
    se_std = std / np.sqrt(2 * n)
    print(f"mean {z.mean():.2e} (5 se {5 * se_mean:.1e}), std {z.std():.5f} vs {std} (5 se {5 * se_std:.1e})")
    assert abs(z.mean()) < 5 * se_mean
    assert abs(z.std() - std) < 5 * se_std
    within_one = np.mean(np.abs(z) < std)  # Gaussian: P(|Z| < 1) = 0.682689...
    assert abs(within_one - 0.6826894921) < 5 * np.sqrt(0.6827 * 0.3173 / n)


def test_release_is_exactly_sum_plus_noise_over_qN():
    rng = np.random.default_rng(5)
    s = {"a.weight": rng.normal(size=(7, 3)), "a.bias": rng.normal(size=(3,)).astype(np.float32)}
    kw = dict(noise_multiplier=0.9, max_grad_norm=0.1, expected_batch_size=12.5)
    released, noise = add_noise(s, rng=np.random.default_rng(1), **kw)
    for name in s:
        assert noise[name].shape == s[name].shape and noise[name].dtype == s[name].dtype
        assert released[name].dtype == s[name].dtype
        np.testing.assert_array_equal(released[name], (s[name] + noise[name]) / 12.5)
    assert noise_std_of_average(**kw) == pytest.approx(0.9 * 0.1 / 12.5, rel=1e-15)


def test_zero_noise_multiplier_releases_the_plain_average():
    s = {"w": np.arange(6.0).reshape(2, 3)}
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    released, noise = add_noise(s, noise_multiplier=0.0, max_grad_norm=1.0, expected_batch_size=4.0, rng=rng)
    np.testing.assert_array_equal(released["w"], s["w"] / 4.0)
    assert not noise["w"].any()
    assert rng.bit_generator.state == state  # no randomness spent


def test_same_seed_same_noise_independent_of_dict_order():
    s1 = {"a": np.zeros((4, 5)), "b": np.zeros(3)}
    s2 = {"b": np.zeros(3), "a": np.zeros((4, 5))}
    kw = dict(noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=2.0)
    _, n1 = add_noise(s1, rng=RandomStreams(seed=3, device="cpu").noise, **kw)
    _, n2 = add_noise(s2, rng=RandomStreams(seed=3, device="cpu").noise, **kw)
    _, n3 = add_noise(s1, rng=RandomStreams(seed=4, device="cpu").noise, **kw)
    for k in s1:
        np.testing.assert_array_equal(n1[k], n2[k])
    assert not np.array_equal(n1["a"], n3["a"])


@pytest.mark.parametrize("bad", [dict(noise_multiplier=-0.1), dict(max_grad_norm=0.0), dict(expected_batch_size=0.0),
                                 dict(noise_multiplier=float("nan"))])
def test_invalid_privacy_parameters(bad):
    kw = dict(noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=8.0) | bad
    with pytest.raises(PrivacyError):
        add_noise({"w": np.zeros(2)}, rng=np.random.default_rng(0), **kw)
    with pytest.raises(PrivacyError):
        noise_std_of_average(**kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_noise_is_the_whole_array_draw_bit_for_bit(monkeypatch, dtype):
    """The training path (in place, noise not kept) draws large arrays' noise in chunks: the same values as
    the whole-array draw, since NumPy's Generator continues one stream across calls."""
    from minidp.privacy import mechanism

    rng = np.random.default_rng(3)
    sums = {"big": rng.standard_normal((37, 29)).astype(dtype), "small": rng.standard_normal(5).astype(dtype)}
    kw = dict(noise_multiplier=0.9, max_grad_norm=0.3, expected_batch_size=11.0)
    whole, _ = add_noise({k: v.copy() for k, v in sums.items()}, rng=np.random.default_rng(9), **kw)
    monkeypatch.setattr(mechanism, "NOISE_CHUNK", 100)  # 1073 entries: 10 full chunks and a partial one
    chunked, kept = add_noise({k: v.copy() for k, v in sums.items()}, rng=np.random.default_rng(9),
                              keep_noise=False, in_place=True, **kw)
    assert kept is None
    for name in sums:
        assert chunked[name].dtype == dtype and np.array_equal(chunked[name], whole[name])
