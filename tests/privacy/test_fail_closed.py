"""Accounting and clipping fail closed (privacy as shipped): a broken number never makes the privacy claim smaller."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minidp.per_example import DenseRecord, LinearRecord
from minidp.privacy import DEFAULT_ORDERS, compute_rdp, epsilon_from_rdp
from minidp.privacy.clipping import clip_and_sum

BAD = st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -1e-3])


@settings(max_examples=60, deadline=None)
@given(sigma=st.floats(0.5, 5), q=st.floats(1e-3, 0.5), steps=st.integers(1, 2000),
       delta=st.floats(1e-8, 1e-3), bad=BAD, where=st.lists(st.integers(0, len(DEFAULT_ORDERS) - 1), min_size=1))
def test_non_finite_or_negative_rdp_never_gives_a_smaller_finite_epsilon(sigma, q, steps, delta, bad, where):
    rdp = np.asarray(compute_rdp(noise_multiplier=sigma, sample_rate=q, steps=steps, orders=DEFAULT_ORDERS))
    honest, _ = epsilon_from_rdp(orders=DEFAULT_ORDERS, rdp=rdp, delta=delta)
    broken = rdp.copy()
    broken[where] = bad
    eps, _ = epsilon_from_rdp(orders=DEFAULT_ORDERS, rdp=broken, delta=delta)
    assert eps >= honest  # the broken orders are dropped: the minimum over fewer orders is never smaller


def test_the_issue_example_fails_closed():
    eps, order = epsilon_from_rdp(orders=[2, 3, 4], rdp=[math.nan, 50, 60], delta=1e-5)
    assert eps > 50 and order == 3.0
    eps, _ = epsilon_from_rdp(orders=[2, 3, 4], rdp=[math.nan] * 3, delta=1e-5)
    assert eps == math.inf


def test_a_non_finite_example_is_dropped_and_the_sum_stays_finite():
    rng = np.random.default_rng(0)
    a, g = rng.normal(size=(4, 3, 5)), rng.normal(size=(4, 3, 2))  # (B, T, d_in), (B, T, d_out)
    bias = rng.normal(size=(4, 2))
    g[1, 0, 0] = np.nan  # example 1's weight gradient is NaN
    bias[2, 1] = np.inf  # example 2's bias gradient is infinite
    records = {"w": LinearRecord(a.copy(), g.copy()), "b": DenseRecord(bias.copy())}
    sums, norms, factors, dropped = clip_and_sum(records, 1.0)
    assert dropped == 2
    assert factors[1] == 0 and factors[2] == 0 and np.all(factors[[0, 3]] > 0)
    assert np.isnan(norms[1]) and np.isnan(norms[2])
    assert all(np.all(np.isfinite(v)) for v in sums.values())
    # equal to clipping the two healthy examples alone
    keep = [0, 3]
    healthy = {"w": LinearRecord(a[keep], g[keep]), "b": DenseRecord(bias[keep])}
    ref, _, _, _ = clip_and_sum(healthy, 1.0)
    for name in sums:
        assert np.max(np.abs(sums[name] - ref[name])) <= 1e-12


def test_a_squared_norm_rounding_below_zero_is_clamped():
    record = DenseRecord(np.zeros((2, 3)))
    record.norm_sq = lambda: np.array([-1e-18, 4.0])  # what a ghost norm can round to
    _, norms, factors, dropped = clip_and_sum({"x": record}, 1.0)
    assert dropped == 0 and norms[0] == 0.0 and factors[0] == 1.0 and norms[1] == 2.0
