"""Poisson sampling: the batch-size law Binomial(N, q), per-index inclusion rate q, empty batches,
and virtual batches that cover a batch exactly once.

Statistical checks use a fixed seed and a 5-standard-error tolerance derived from the law being tested.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minidp.errors import ConfigError, PrivacyError
from minidp.privacy.sampling import poisson_sample, virtual_batches


def test_sample_is_sorted_unique_int64_in_range():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = poisson_sample(300, 0.2, rng)
        assert idx.dtype == np.int64
        assert np.all(np.diff(idx) > 0)
        assert idx.size == 0 or (idx[0] >= 0 and idx[-1] < 300)
    np.testing.assert_array_equal(poisson_sample(17, 1.0, rng), np.arange(17))


def test_batch_size_mean_and_variance_match_binomial():
    N, q, draws = 1000, 0.05, 4000
    rng = np.random.default_rng(1)
    sizes = np.array([poisson_sample(N, q, rng).size for _ in range(draws)])
    mean, var = N * q, N * q * (1 - q)  # Binomial(N, q)
    se_mean = np.sqrt(var / draws)
    se_var = var * np.sqrt(2.0 / (draws - 1))  # sample variance of ~normal data
    print(f"mean {sizes.mean():.3f} vs {mean}, var {sizes.var(ddof=1):.3f} vs {var}")
    assert abs(sizes.mean() - mean) < 5 * se_mean
    assert abs(sizes.var(ddof=1) - var) < 5 * se_var


def test_each_index_included_with_probability_q():
    N, q, draws = 200, 0.3, 5000
    rng = np.random.default_rng(2)
    counts = np.zeros(N)
    for _ in range(draws):
        counts[poisson_sample(N, q, rng)] += 1
    freq = counts / draws  # (N,)
    se = np.sqrt(q * (1 - q) / draws)
    print(f"max |freq - q| = {np.abs(freq - q).max():.4f} (5 se = {5 * se:.4f})")
    assert np.abs(freq - q).max() < 5 * se


def test_empty_batches_happen_when_qN_is_small():
    N, q, draws = 10, 0.01, 2000
    rng = np.random.default_rng(3)
    empty = np.mean([poisson_sample(N, q, rng).size == 0 for _ in range(draws)])
    p_empty = (1 - q) ** N  # ≈ 0.904
    assert abs(empty - p_empty) < 5 * np.sqrt(p_empty * (1 - p_empty) / draws)
    assert virtual_batches(np.array([], dtype=np.int64), 4) == []


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 200), size=st.integers(1, 64))
def test_virtual_batches_cover_the_batch_once(n, size):
    idx = np.sort(np.random.default_rng(n).choice(1000, size=n, replace=False)).astype(np.int64)
    chunks = virtual_batches(idx, size)
    assert len(chunks) == -(-n // size)
    assert all(1 <= c.size <= size for c in chunks)
    joined = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
    np.testing.assert_array_equal(joined, idx)


def test_invalid_arguments():
    rng = np.random.default_rng(0)
    for q in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(PrivacyError):
            poisson_sample(10, q, rng)
    with pytest.raises(ConfigError):
        poisson_sample(0, 0.5, rng)
    with pytest.raises(ConfigError):
        virtual_batches(np.arange(3), 0)
