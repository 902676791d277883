"""minidp.privacy.gdp against Opacus's GDP analysis (the oracle), and the CLT's known underestimate."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants.analysis import gdp as opacus_gdp

from minidp.errors import PrivacyError
from minidp.privacy import PLDAccountant, RDPAccountant
from minidp.privacy.gdp import delta_from_mu, epsilon_from_mu, mu_poisson

RTOL = 1e-6

CASES = [  # (σ, q, T, δ)
    (1.0, 0.01, 1000, 1e-5),
    (0.8, 0.05, 100, 1e-6),
    (1.5, 0.2, 30, 1e-4),
    (2.0, 0.5, 10, 1e-3),
    (0.7, 0.1, 5, 1e-5),
    (5.0, 0.001, 10000, 1e-8),
]


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.mark.parametrize("sigma, q, steps, delta", CASES)
def test_equal_to_opacus(sigma, q, steps, delta):
    mu = mu_poisson(noise_multiplier=sigma, sample_rate=q, steps=steps)
    mu_ref = opacus_gdp.compute_mu_poisson(steps=steps, noise_multiplier=sigma, sample_rate=q)
    eps = epsilon_from_mu(mu=mu, delta=delta)
    eps_ref = opacus_gdp.eps_from_mu(mu=mu_ref, delta=delta)
    eps_full = opacus_gdp.compute_eps_poisson(steps=steps, noise_multiplier=sigma, sample_rate=q, delta=delta)
    print(f"σ={sigma} q={q} T={steps}: mu {mu:.10g} vs {mu_ref:.10g}, eps {eps:.10g} vs {eps_ref:.10g}")
    assert rel(mu, mu_ref) <= RTOL
    assert rel(eps, eps_ref) <= RTOL
    assert rel(eps, eps_full) <= RTOL


@settings(max_examples=60, deadline=None)
@given(sigma=st.floats(0.5, 20.0), q=st.floats(1e-4, 1.0), steps=st.integers(1, 100_000),
       log10_delta=st.floats(-10.0, -2.0))
def test_equal_to_opacus_drawn(sigma, q, steps, log10_delta):
    delta = 10.0 ** log10_delta
    mu = mu_poisson(noise_multiplier=sigma, sample_rate=q, steps=steps)
    mu_ref = opacus_gdp.compute_mu_poisson(steps=steps, noise_multiplier=sigma, sample_rate=q)
    assert rel(mu, mu_ref) <= RTOL
    # Opacus brackets ε in [0, 500] and needs δ(0) > delta to have a root there
    if delta_from_mu(epsilon=0.0, mu=mu_ref) > delta and delta_from_mu(epsilon=500.0, mu=mu_ref) < delta:
        eps_ref = opacus_gdp.eps_from_mu(mu=mu_ref, delta=delta)
        eps = epsilon_from_mu(mu=mu, delta=delta)
        assert abs(eps - eps_ref) <= RTOL * max(eps_ref, 1e-3), (eps, eps_ref)


def test_delta_from_mu_is_opacus_dual():
    for mu in (0.1, 1.0, 3.0):
        for eps in (0.0, 0.5, 2.0, 8.0):
            assert abs(delta_from_mu(epsilon=eps, mu=mu) - opacus_gdp.delta_eps_mu(eps=eps, mu=mu)) <= 1e-14


def test_edges():
    assert mu_poisson(noise_multiplier=1.0, sample_rate=0.0, steps=10) == 0.0
    assert mu_poisson(noise_multiplier=1.0, sample_rate=0.1, steps=0) == 0.0
    assert mu_poisson(noise_multiplier=0.0, sample_rate=0.1, steps=3) == math.inf
    assert epsilon_from_mu(mu=0.0, delta=1e-5) == 0.0
    assert epsilon_from_mu(mu=math.inf, delta=1e-5) == math.inf
    # delta above δ(0): ε = 0 is already enough
    assert epsilon_from_mu(mu=0.01, delta=0.5) == 0.0
    # a huge μ: ε beyond Opacus's bracket is found by doubling, and increases with μ
    assert epsilon_from_mu(mu=60.0, delta=1e-5) > epsilon_from_mu(mu=30.0, delta=1e-5) > 500.0


@pytest.mark.parametrize("kwargs", [dict(noise_multiplier=-1.0, sample_rate=0.1, steps=1),
                                    dict(noise_multiplier=1.0, sample_rate=1.5, steps=1),
                                    dict(noise_multiplier=1.0, sample_rate=0.1, steps=-1),
                                    dict(noise_multiplier=float("nan"), sample_rate=0.1, steps=1)])
def test_bad_arguments(kwargs):
    with pytest.raises(PrivacyError):
        mu_poisson(**kwargs)


def test_bad_mu_or_delta():
    for bad in (dict(mu=-1.0, delta=1e-5), dict(mu=float("nan"), delta=1e-5), dict(mu=1.0, delta=0.0),
                dict(mu=1.0, delta=1.0)):
        with pytest.raises(PrivacyError):
            epsilon_from_mu(**bad)


def test_keyword_only():
    with pytest.raises(TypeError):
        mu_poisson(1.0, 0.1, 10)  # noqa
    with pytest.raises(TypeError):
        epsilon_from_mu(1.0, 1e-5)  # noqa


def test_clt_underestimates_with_few_steps():
    """The docstring's case: few steps and a large q, the GDP ε is below the tight PLD ε (not an upper bound)."""
    sigma, q, steps, delta = 1.0, 0.1, 20, 1e-5
    gdp = epsilon_from_mu(mu=mu_poisson(noise_multiplier=sigma, sample_rate=q, steps=steps), delta=delta)
    pld, rdp = PLDAccountant(), RDPAccountant()
    pld.step(noise_multiplier=sigma, sample_rate=q, steps=steps)
    rdp.step(noise_multiplier=sigma, sample_rate=q, steps=steps)
    print(f"GDP {gdp:.4f}  PLD {pld.get_epsilon(delta):.4f}  RDP {rdp.get_epsilon(delta):.4f}")
    assert gdp < 0.8 * pld.get_epsilon(delta)
    assert abs(gdp - 2.38) < 0.01 and abs(pld.get_epsilon(delta) - 3.59) < 0.01
