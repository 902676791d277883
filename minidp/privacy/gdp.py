"""μ-GDP of Poisson-subsampled Gaussian steps by the central limit theorem, and its (ε, δ) conversion.

    mu = mu_poisson(noise_multiplier=1.0, sample_rate=0.01, steps=1000)   # ≈ 0.4145
    eps = epsilon_from_mu(mu=mu, delta=1e-5)                              # ≈ 1.6177 (an approximation)

Gaussian differential privacy (Dong, Roth & Su 2022) measures privacy by the trade-off curve of testing
N(0, 1) against N(μ, 1). Bu, Dong, Long & Su 2020 ("Deep learning with Gaussian differential privacy",
Harvard Data Science Review, §3 and Appendix) show that T Poisson-subsampled Gaussian steps with sampling
rate q and noise multiplier σ approach μ-GDP with

    μ = q √T √(exp(1/σ²) − 1)                                   (their Eq. for Poisson subsampling)

as T → ∞ with q√T held fixed. μ-GDP is (ε, δ(ε))-DP for every ε ≥ 0 with (Dong, Roth & Su, Cor. 2.13)

    δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2),

and ``epsilon_from_mu`` inverts that for ε. Both functions equal Opacus's
``opacus.accountants.analysis.gdp.compute_mu_poisson`` and ``eps_from_mu`` (tests/privacy/test_gdp.py).

**This is an approximation, not an upper bound.** The CLT is a limit; for a finite number of steps the true
privacy curve of the composed mechanism can lie below the μ-GDP curve, so the GDP ε can be *smaller* than
the mechanism's real ε — it can understate the privacy loss. It does so when the limit is far away:
few steps (few federated rounds), a large sampling rate q (few clients, or a large share of them per
round), or a small σ. Gopi, Lee & Wutschitz 2021 ("Numerical composition of differential privacy") show the
underestimate against the exact privacy loss distribution; tests/privacy/test_gdp.py pins one case against
minidp's PLD accountant (a tight upper bound): q = 0.1, T = 20, σ = 1, δ = 1e-5 gives GDP ε ≈ 2.38 where
the PLD's is ≈ 3.59 (and RDP's ≈ 4.22). minidp therefore calibrates σ and states guarantees with the
RDP accountant (``accountant.py``) and shows the GDP ε only beside it, labelled as an approximation.

Host-side float64 (NumPy/SciPy), keyword-only privacy parameters, like the rest of ``minidp.privacy``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

from minidp.errors import PrivacyError
from minidp.privacy.ledger import check_delta, check_noise_multiplier, check_sample_rate, check_steps

EPSILON_BRACKET = 500.0  # Opacus searches ε in [0, 500]; larger answers are searched by doubling
MAX_EPSILON = 1e6  # beyond this ε is reported as +∞ (nothing meaningful is left to state)


def mu_poisson(*, noise_multiplier: float, sample_rate: float, steps: int) -> float:
    """μ of ``steps`` Poisson-subsampled Gaussian steps by the CLT: μ = q √T √(exp(1/σ²) − 1).

    σ = 0 with q > 0 and T > 0 is no privacy at all: μ = +∞. q = 0 or T = 0: μ = 0.
    """
    sigma = check_noise_multiplier(noise_multiplier)
    q = check_sample_rate(sample_rate)
    T = check_steps(steps)
    if q == 0.0 or T == 0:
        return 0.0
    if sigma == 0.0:
        return math.inf
    return float(np.sqrt(np.expm1(sigma ** -2)) * np.sqrt(T) * q)  # expm1: exp(1/σ²) − 1 without cancellation


def delta_from_mu(*, epsilon: float, mu: float) -> float:
    """δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) of μ-GDP (the second term in log space: no overflow)."""
    if mu == 0.0:
        return 0.0
    first = special.ndtr(-epsilon / mu + mu / 2)
    second = math.exp(epsilon + special.log_ndtr(-epsilon / mu - mu / 2))
    return float(first - second)


def epsilon_from_mu(*, mu: float, delta: float) -> float:
    """The smallest ε with δ(ε) ≤ ``delta`` for μ-GDP (root of δ(ε) = delta by Brent's method).

    δ(ε) falls from δ(0) = Φ(μ/2) − Φ(−μ/2) to 0, so: μ = 0 or delta ≥ δ(0) gives ε = 0; μ = +∞ gives +∞;
    an ε above ``MAX_EPSILON`` is reported as +∞.
    """
    delta = check_delta(delta)
    mu = float(mu)
    if not mu >= 0.0:  # also NaN
        raise PrivacyError(f"mu must be >= 0, got {mu!r}")
    if mu == 0.0:
        return 0.0
    if math.isinf(mu):
        return math.inf

    def excess(eps: float) -> float:
        return delta_from_mu(epsilon=eps, mu=mu) - delta

    if excess(0.0) <= 0.0:
        return 0.0
    hi = EPSILON_BRACKET
    while excess(hi) > 0.0:
        if hi >= MAX_EPSILON:
            return math.inf
        hi *= 2.0
    return float(optimize.brentq(excess, 0.0, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps))
