"""RDP accountant: naive references, edge cases, the ledger, dp-accounting as oracle, and properties."""
from __future__ import annotations

import itertools
import json
import logging
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minidp.errors import PrivacyError
from minidp.privacy import (
    DEFAULT_ORDERS,
    OrderAtGridEdgeWarning,
    RDPAccountant,
    compute_rdp,
    epsilon_from_rdp,
    get_noise_multiplier,
)
from minidp.privacy.rdp import log_a_fractional, log_a_integer, log_a_quadrature
from tests.helpers import require_module

# Hypothesis ranges: the accountant's tested grid (docs/accountant.md).
rates = st.floats(1e-4, 0.5)
sigmas = st.floats(0.5, 5.0)
step_counts = st.integers(1, 100_000)
deltas = st.sampled_from([1e-10, 1e-8, 1e-5, 1e-3])
PROPERTY = settings(max_examples=15, deadline=None)


def epsilon(sigma, q, steps, delta):
    acc = RDPAccountant()
    acc.step(noise_multiplier=sigma, sample_rate=q, steps=steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OrderAtGridEdgeWarning)
        return acc.get_epsilon(delta)


# --------------------------------------------------------------------------------------------
# log A_α: fast paths against naive references

@pytest.mark.parametrize("q,sigma", [(0.01, 1.0), (0.1, 0.8), (0.3, 2.0), (0.5, 5.0), (0.001, 0.5)])
@pytest.mark.parametrize("alpha", [2, 3, 8, 17])
def test_integer_series_matches_quadrature(q, sigma, alpha):
    fast = log_a_integer(sample_rate=q, noise_multiplier=sigma, alpha=alpha)
    naive = log_a_quadrature(sample_rate=q, noise_multiplier=sigma, alpha=alpha)
    # quad is accurate to ~1e-12 of A itself, i.e. ~1e-12/log A relative in log A
    assert abs(fast - naive) <= 1e-6 * abs(naive) + 1e-11, (fast, naive)


@pytest.mark.parametrize("q,sigma,alpha", [
    (1e-4, 0.5, 2), (1e-4, 0.5, 11), (0.01, 1.0, 5), (0.01, 1.0, 30), (0.3, 2.0, 11), (0.3, 2.0, 40),
    (0.5, 5.0, 2), (0.5, 5.0, 63),   # e^{(α²−α)/2σ²} must stay below the float range here
])
def test_integer_series_matches_plain_sum(q, sigma, alpha):
    """The log1p(A − 1) form against the textbook sum Σ C(α,k)(1−q)^{α−k} q^k e^{(k²−k)/2σ²} in float."""
    k = np.arange(alpha + 1)
    plain = sum(math.comb(alpha, int(i)) * (1 - q) ** (alpha - i) * q**i * math.exp((i * i - i) / (2 * sigma**2))
                for i in k)
    fast = log_a_integer(sample_rate=q, noise_multiplier=sigma, alpha=alpha)
    # the plain float sum loses ~1e-16/(A−1) relative accuracy in log A; allow for it
    assert abs(fast - math.log(plain)) <= 1e-9 * abs(fast) + 4e-16 * alpha, (fast, math.log(plain))


@pytest.mark.parametrize("q,sigma", [(1e-4, 0.5), (0.01, 1.0), (0.1, 0.8), (0.5, 5.0)])
@pytest.mark.parametrize("alpha", [2, 3, 7, 20])
def test_fractional_series_at_integer_order_is_exact(q, sigma, alpha):
    """At integer α every C(α, i>α) vanishes: the §3.3 series must reproduce the binomial expansion."""
    frac = log_a_fractional(sample_rate=q, noise_multiplier=sigma, alpha=float(alpha))
    exact = log_a_integer(sample_rate=q, noise_multiplier=sigma, alpha=alpha)
    assert abs(frac - exact) <= 1e-7 * abs(exact) + 1e-15, (frac, exact)


@pytest.mark.parametrize("q,sigma", [(1e-3, 0.5), (0.01, 1.0), (0.1, 2.0), (0.3, 5.0), (0.5, 0.8)])
@pytest.mark.parametrize("alpha", [1.1, 1.5, 2.5, 3.7, 7.8])
def test_fractional_series_is_an_upper_bound_tight_at_higher_orders(q, sigma, alpha):
    """|C(α,i)| makes the fractional series an upper bound on the true A_α (quadrature)."""
    series = log_a_fractional(sample_rate=q, noise_multiplier=sigma, alpha=alpha)
    truth = log_a_quadrature(sample_rate=q, noise_multiplier=sigma, alpha=alpha)
    assert series >= truth * (1 - 1e-9) - 1e-13, (series, truth)
    if alpha >= 7:
        assert series <= truth * (1 + 1e-3), (series, truth)


# --------------------------------------------------------------------------------------------
# edge cases, ledger, conversion

def test_known_value():
    acc = RDPAccountant()
    acc.step(noise_multiplier=1.0, sample_rate=0.01, steps=1000)
    eps, order = acc.get_epsilon_and_order(1e-5)
    assert abs(eps - 2.1014) < 1e-4 and order == 7.8


def test_default_orders_grid():
    assert len(DEFAULT_ORDERS) == 99 + 53 + 4
    assert DEFAULT_ORDERS[:3] == (1.1, 1.2, 1.3) and DEFAULT_ORDERS[98] == 10.9
    assert DEFAULT_ORDERS[99:101] == (11.0, 12.0) and DEFAULT_ORDERS[-4:] == (128.0, 256.0, 512.0, 1024.0)
    assert 2.0 in DEFAULT_ORDERS and 10.0 in DEFAULT_ORDERS   # exact integers on the fine grid


def test_edge_cases():
    orders = np.array(DEFAULT_ORDERS)
    assert np.all(compute_rdp(noise_multiplier=1.0, sample_rate=0.0, steps=10) == 0.0)
    assert np.allclose(compute_rdp(noise_multiplier=2.0, sample_rate=1.0, steps=3), 3 * orders / 8.0, rtol=1e-15)
    assert np.all(np.isinf(compute_rdp(noise_multiplier=0.0, sample_rate=0.1, steps=1)))
    assert np.all(compute_rdp(noise_multiplier=1.0, sample_rate=0.1, steps=0) == 0.0)
    assert epsilon(0.0, 0.1, 1, 1e-5) == math.inf
    assert epsilon(1.0, 0.0, 100, 1e-5) == 0.0
    assert RDPAccountant().get_epsilon(1e-5) == 0.0


def test_ledger_merges_and_round_trips_through_json():
    acc = RDPAccountant()
    for _ in range(5):
        acc.step(noise_multiplier=1.0, sample_rate=0.01)
    acc.step(noise_multiplier=1.0, sample_rate=0.01, steps=0)
    acc.step(noise_multiplier=0.8, sample_rate=0.02, steps=7)
    acc.step(noise_multiplier=1.0, sample_rate=0.01, steps=2)
    assert [(s.noise_multiplier, s.sample_rate, s.steps) for s in acc.ledger] == [
        (1.0, 0.01, 5), (0.8, 0.02, 7), (1.0, 0.01, 2)]
    state = json.loads(json.dumps(acc.state_dict()))
    again = RDPAccountant.from_state_dict(state)
    assert again.ledger == acc.ledger and again.orders == acc.orders
    assert again.get_epsilon(1e-5) == acc.get_epsilon(1e-5)
    with pytest.raises(PrivacyError, match="ledger"):
        RDPAccountant.from_state_dict({"ledger": [{"noise_multiplier": 1.0}]})


def test_conversion_formula_and_grid_edge_warning():
    orders, rdp, delta = [2.0, 3.0], [0.5, 0.6], 1e-5
    expected = [r + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1) for a, r in zip(orders, rdp)]
    eps, order = epsilon_from_rdp(orders=orders, rdp=rdp, delta=delta)
    assert abs(eps - min(expected)) < 1e-15 and order == 3.0
    acc = RDPAccountant(orders=[2.0, 3.0])
    acc.step(noise_multiplier=1.0, sample_rate=0.01, steps=100)
    with pytest.warns(OrderAtGridEdgeWarning):
        acc.get_epsilon_and_order(1e-5)
    acc = RDPAccountant()
    acc.step(noise_multiplier=1.0, sample_rate=0.01, steps=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # interior optimum: no warning
        acc.get_epsilon(1e-5)


@pytest.mark.parametrize("call,name", [
    (lambda: RDPAccountant().step(noise_multiplier=-1.0, sample_rate=0.1), "noise_multiplier"),
    (lambda: RDPAccountant().step(noise_multiplier=1.0, sample_rate=1.5), "sample_rate"),
    (lambda: RDPAccountant().step(noise_multiplier=1.0, sample_rate=0.1, steps=-2), "steps"),
    (lambda: RDPAccountant().get_epsilon(0.0), "delta"),
    (lambda: RDPAccountant().get_epsilon(1.0), "delta"),
    (lambda: get_noise_multiplier(0.0, 1e-5, 0.01, 100), "epsilon"),
    (lambda: get_noise_multiplier(1.0, 1e-5, -0.1, 100), "sample_rate"),
    (lambda: get_noise_multiplier(1e-9, 1e-5, 0.01, 1000), "not reachable"),
    (lambda: compute_rdp(noise_multiplier=1.0, sample_rate=0.1, steps=1, orders=[0.5]), "orders"),
])
def test_bad_input_raises_privacy_error_naming_the_argument(call, name):
    with pytest.raises(PrivacyError, match=name):
        call()


def test_calibration_trivial_cases():
    assert get_noise_multiplier(1.0, 1e-5, 0.0, 100) == 0.0
    assert get_noise_multiplier(1.0, 1e-5, 0.1, 0) == 0.0


# --------------------------------------------------------------------------------------------
# dp-accounting as oracle

def _oracle(segments, deltas_):
    dp_accounting = require_module("dp_accounting")
    logging.getLogger().setLevel(logging.ERROR)   # its "failed to converge" messages
    acc = dp_accounting.rdp.RdpAccountant()
    for sigma, q, steps in segments:
        acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    gave_up = bool(np.any(np.isinf(acc._rdp)))   # its 1000-term cap: those orders are dropped
    return [acc.get_epsilon_and_optimal_order(d) for d in deltas_], gave_up


def _mine(segments, deltas_):
    acc = RDPAccountant()
    for sigma, q, steps in segments:
        acc.step(noise_multiplier=sigma, sample_rate=q, steps=steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OrderAtGridEdgeWarning)
        return [acc.get_epsilon_and_order(d) for d in deltas_]


def _compare(segments, deltas_, stats):
    theirs, gave_up = _oracle(segments, deltas_)
    mine = _mine(segments, deltas_)
    for d, (e, o), (e_ref, o_ref) in zip(deltas_, mine, theirs):
        if gave_up and o_ref != o:
            # dp-accounting dropped low fractional orders (series not converged in 1000 terms); ours
            # converged there, so our ε can only be smaller (both are upper bounds on the truth)
            assert e <= e_ref * (1 + 1e-9), (segments, d, e, e_ref)
            stats["dropped"] += 1
            continue
        rel = abs(e - e_ref) / max(e_ref, 1e-300)
        stats["max_rel"] = max(stats["max_rel"], rel)
        stats["fractional"] += int(not float(o).is_integer())
        assert rel <= 1e-6, (segments, d, e, e_ref)
        assert o == o_ref or rel <= 1e-12, (segments, d, o, o_ref)


def test_matches_dp_accounting_on_grid():
    stats = {"max_rel": 0.0, "fractional": 0, "dropped": 0}
    grid_deltas = [1e-10, 1e-5, 1e-3]
    for q, sigma, steps in itertools.product([1e-4, 1e-3, 0.01, 0.1, 0.5], [0.5, 1.0, 2.0, 5.0],
                                             [1, 100, 100_000]):
        _compare([(sigma, q, steps)], grid_deltas, stats)
    print(f"max relative difference to dp-accounting: {stats['max_rel']:.2e}; "
          f"fractional optimal orders: {stats['fractional']}; oracle-dropped-order cases: {stats['dropped']}")
    assert stats["fractional"] >= 30          # the grid exercises the fractional-order path
    assert stats["max_rel"] <= 1e-6


@pytest.mark.parametrize("segments", [
    [(1.0, 0.01, 1000)],                                        # ε ≈ 2.10 at α = 7.8
    [(1.1, 0.004, 2500), (0.9, 0.01, 300)],                     # heterogeneous
    [(0.7, 0.02, 10), (3.0, 0.3, 5), (1.5, 1e-3, 50_000), (2.0, 1.0, 1)],   # includes q = 1
    [(4.0, 0.05, 2000)],                                        # large σ: optimum at low fractional α
    [(0.6, 0.0005, 20_000)],
])
def test_matches_dp_accounting_fractional_and_heterogeneous(segments):
    stats = {"max_rel": 0.0, "fractional": 0, "dropped": 0}
    _compare(segments, [1e-10, 1e-7, 1e-5, 1e-3], stats)
    assert stats["dropped"] == 0


@PROPERTY
@given(sigma=sigmas, q=rates, steps=step_counts, delta=deltas)
def test_matches_dp_accounting_random(sigma, q, steps, delta):
    _compare([(sigma, q, steps)], [delta], {"max_rel": 0.0, "fractional": 0, "dropped": 0})


# --------------------------------------------------------------------------------------------
# properties

@PROPERTY
@given(sigma=sigmas, q=rates, steps=step_counts, extra=st.integers(1, 10_000), delta=deltas)
def test_epsilon_non_decreasing_in_steps(sigma, q, steps, extra, delta):
    assert epsilon(sigma, q, steps, delta) <= epsilon(sigma, q, steps + extra, delta)


@PROPERTY
@given(sigma=sigmas, q=rates, factor=st.floats(1.0, 4.0), steps=step_counts, delta=deltas)
def test_epsilon_non_decreasing_in_sample_rate(sigma, q, factor, steps, delta):
    assert epsilon(sigma, q, steps, delta) <= epsilon(sigma, min(1.0, q * factor), steps, delta) * (1 + 1e-9)


@PROPERTY
@given(sigma=sigmas, factor=st.floats(1.0, 4.0), q=rates, steps=step_counts, delta=deltas)
def test_epsilon_non_increasing_in_noise(sigma, factor, q, steps, delta):
    assert epsilon(sigma * factor, q, steps, delta) <= epsilon(sigma, q, steps, delta) * (1 + 1e-9)


@PROPERTY
@given(segments=st.lists(st.tuples(sigmas, rates, st.integers(1, 1000)), min_size=1, max_size=4))
def test_rdp_of_a_composition_is_the_sum(segments):
    acc = RDPAccountant()
    for sigma, q, steps in segments:
        acc.step(noise_multiplier=sigma, sample_rate=q, steps=steps)
    total = sum(compute_rdp(noise_multiplier=s, sample_rate=q, steps=t, orders=DEFAULT_ORDERS)
                for s, q, t in segments)
    assert np.max(np.abs(acc.get_rdp() - total) / total) <= 1e-12


@settings(max_examples=10, deadline=None)
@given(target=st.floats(0.2, 20.0), q=st.floats(1e-3, 0.5), steps=st.integers(1, 10_000), delta=deltas)
def test_calibration_never_overshoots_and_is_within_one_percent(target, q, steps, delta):
    sigma = get_noise_multiplier(target, delta, q, steps)
    eps = epsilon(sigma, q, steps, delta)
    assert 0.99 * target <= eps <= target, (sigma, eps, target)
