"""Log-space math for the Rényi DP of the Poisson-subsampled Gaussian mechanism.

One step samples each example with probability q and adds N(0, σ²) noise to a sum of sensitivity 1.
Against a neighbouring dataset the output is μ0 = N(0, σ²) versus the mixture μ = (1−q)μ0 + qμ1 with
μ1 = N(1, σ²). Its Rényi divergence of order α > 1 is

    RDP(α) = log A_α / (α − 1),     A_α = E_{z~μ0}[(μ(z)/μ0(z))^α] = E_{z~μ0}[(1 − q + q·μ1(z)/μ0(z))^α]

(Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism", §3).
A_α is huge or tiny for extreme (α, σ, q), so everything here works with log A_α and sums terms with
log-sum-exp. The helpers are host-side float64 scalar math (NumPy + SciPy), not device array code:
the accountant runs once per logged step on a handful of numbers. Derivations: docs/accountant.md.

Three ways to get log A_α, each checked against the others in tests/privacy/test_accountant.py:
  * ``log_a_integer``    exact binomial expansion, integer α (MTZ 2019 §3.2);
  * ``log_a_fractional`` two convergent series split at z0, fractional α (MTZ 2019 §3.3), an upper
                         bound (absolute binomial coefficients, as in dp-accounting);
  * ``log_a_quadrature`` the naive reference: numerical integration of the definition.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, special

from minidp.numerics import logsumexp

# Series for fractional α: terms are summed in chunks; a chunk ends the series once every term in it
# is decreasing and below exp(-SERIES_LOG_TOL) times the running total (MTZ 2019 §3.3 stopping rule).
SERIES_LOG_TOL = 30.0      # e^-30 ≈ 1e-13: far below float64 resolution of the total's relative error
SERIES_CHUNK = 128         # terms evaluated per vectorised chunk
SERIES_MAX_TERMS = 1 << 15  # give up (return +inf: the order is then unusable, never optimistic)


def log_add_exp(log_x: float, log_y: float) -> float:
    """log(x + y) from log x and log y, without overflow: max + log1p(exp(min − max))."""
    if log_x == -math.inf:
        return log_y
    if log_y == -math.inf:
        return log_x
    high, low = max(log_x, log_y), min(log_x, log_y)
    return high + math.log1p(math.exp(low - high))


def log_sum_exp(log_terms: np.ndarray) -> float:
    """log Σ_i exp(t_i) for a non-empty 1-D array of log-terms (−inf entries allowed), in host float64."""
    return float(logsumexp(np.asarray(log_terms, dtype=np.float64)))


def log_abs_binom(alpha: float, i: np.ndarray) -> np.ndarray:
    """log |C(α, i)| = log|Γ(α+1)| − log Γ(i+1) − log|Γ(α−i+1)| for real α and integers i ≥ 0.

    For non-integer α, C(α, i) > 0 for i ≤ ⌊α⌋ + 1 and alternates in sign after that; the series
    below sum absolute values (see ``log_a_fractional``). gammaln returns log|Γ| for negative arguments.
    """
    i = np.asarray(i, dtype=np.float64)
    return special.gammaln(alpha + 1.0) - special.gammaln(i + 1.0) - special.gammaln(alpha - i + 1.0)


def log_half_erfc(x: np.ndarray) -> np.ndarray:
    """log(½·erfc(x)) = log Φ(−√2·x), accurate far into both tails (scipy's log_ndtr)."""
    return special.log_ndtr(-math.sqrt(2.0) * np.asarray(x, dtype=np.float64))


def log_expm1(x: np.ndarray) -> np.ndarray:
    """log(e^x − 1) for x > 0: x + log1p(−e^{−x}) (exact for large x, no overflow)."""
    x = np.asarray(x, dtype=np.float64)
    return x + np.log1p(-np.exp(-x))


def log1p_exp(log_x: float) -> float:
    """log(1 + x) from log x (softplus), accurate when x is tiny and when it is huge."""
    if log_x > 0.0:
        return log_x + math.log1p(math.exp(-log_x))
    return math.log1p(math.exp(log_x))


def log_a_integer(*, sample_rate: float, noise_multiplier: float, alpha: int) -> float:
    """log A_α for integer α ≥ 2 and 0 < q < 1: the exact binomial expansion (MTZ 2019 §3.2)

        A_α = Σ_{k=0}^{α} C(α, k) (1−q)^{α−k} q^k exp((k² − k) / (2σ²)),

    using E_{μ0}[(μ1/μ0)^k] = exp((k² − k)/(2σ²)). Since the binomial weights sum to 1 and the k = 0, 1
    exponents vanish, A_α − 1 = Σ_{k≥2} C(α,k) (1−q)^{α−k} q^k (e^{(k²−k)/(2σ²)} − 1), a sum of positive
    terms; log A_α = log1p(A_α − 1) keeps full relative accuracy even when A_α − 1 ~ 1e-12 (tiny q).
    """
    q, sigma = sample_rate, noise_multiplier
    k = np.arange(2, alpha + 1, dtype=np.float64)                       # (α−1,)
    log_terms = (log_abs_binom(float(alpha), k) + k * math.log(q) + (alpha - k) * math.log1p(-q)
                 + log_expm1((k * k - k) / (2.0 * sigma**2)))           # (α−1,)
    return log1p_exp(log_sum_exp(log_terms))


def log_a_fractional(*, sample_rate: float, noise_multiplier: float, alpha: float) -> float:
    """log A_α for real α > 1 and 0 < q < 1: the two series of MTZ 2019 §3.3.

    Split the line at z0 = σ² log(1/q − 1) + ½, where (1−q)μ0(z) = qμ1(z). Left of z0 expand
    ((1−q) + qμ1/μ0)^α around (1−q); right of it around qμ1/μ0 (the ratio of the two parts is ≤ 1 on
    each side, so each binomial series converges):

        A_α = Σ_{i≥0} |C(α,i)| (1−q)^{α−i} q^i  e^{(i²−i)/(2σ²)} ½erfc((i − z0)/(√2σ))          (A0)
            + Σ_{i≥0} |C(α,i)| q^{α−i} (1−q)^i  e^{(j²−j)/(2σ²)} ½erfc((z0 − j)/(√2σ)),  j = α−i  (A1)

    where e^{(i²−i)/(2σ²)}·½erfc(...) = E_{μ0}[(μ1/μ0)^i ; z ≤ z0] (a shifted Gaussian tail).
    Taking |C(α, i)| (as the paper's reference code and dp-accounting do) replaces the alternating
    tail i ≥ ⌊α⌋+2 by its absolute value, so this is an UPPER bound on A_α (a valid, conservative RDP
    bound): the truncated alternating remainder is smaller than the first negative term counted with
    the wrong sign. The bound is tight for α ≳ 3 but loose at the lowest orders (α = 1.1 can be several
    times the true A_α − 1, see docs/accountant.md); those orders rarely give the optimal ε.
    Terms are summed chunk by chunk until both series are decreasing and below e^-30 of the total.
    """
    q, sigma = sample_rate, noise_multiplier
    z0 = sigma**2 * math.log(1.0 / q - 1.0) + 0.5
    log_q, log_1mq = math.log(q), math.log1p(-q)
    scale = math.sqrt(2.0) * sigma
    log_a0 = log_a1 = -math.inf
    last0 = last1 = math.inf          # the last term of the previous chunk, for the "decreasing" test
    for start in range(0, SERIES_MAX_TERMS, SERIES_CHUNK):
        i = np.arange(start, start + SERIES_CHUNK, dtype=np.float64)     # (chunk,)
        j = alpha - i                                                    # (chunk,)
        log_binom = log_abs_binom(alpha, i)                              # (chunk,)
        log_s0 = (log_binom + i * log_q + j * log_1mq + (i * i - i) / (2.0 * sigma**2)
                  + log_half_erfc((i - z0) / scale))                     # (chunk,) A0 terms
        log_s1 = (log_binom + j * log_q + i * log_1mq + (j * j - j) / (2.0 * sigma**2)
                  + log_half_erfc((z0 - j) / scale))                     # (chunk,) A1 terms
        log_a0 = log_add_exp(log_a0, log_sum_exp(log_s0))
        log_a1 = log_add_exp(log_a1, log_sum_exp(log_s1))
        total = log_add_exp(log_a0, log_a1)
        # Stop once, over this whole chunk, both sequences decrease and every term is negligible.
        decreasing = _strictly_decreasing(last0, log_s0) and _strictly_decreasing(last1, log_s1)
        small = max(float(np.max(log_s0)), float(np.max(log_s1))) < total - SERIES_LOG_TOL
        if decreasing and small:
            return total
        last0, last1 = float(log_s0[-1]), float(log_s1[-1])
    return math.inf  # did not converge: report no guarantee at this order rather than a false one


def _strictly_decreasing(previous: float, log_terms: np.ndarray) -> bool:
    """Whether previous > t_0 > t_1 > ... (terms that underflowed to −inf count as decreasing)."""
    seq = np.concatenate(([previous], log_terms))                        # (chunk+1,)
    later, earlier = seq[1:], seq[:-1]
    return bool(np.all((later < earlier) | (later == -np.inf)))


def log_a_quadrature(*, sample_rate: float, noise_multiplier: float, alpha: float) -> float:
    """Naive reference: log A_α by numerical integration of A_α = ∫ μ0(z) (1 − q + q·μ1(z)/μ0(z))^α dz.

    Integrand in log space relative to its peak, over a window wide enough to hold all its mass.
    Slow and only accurate for moderate α/σ (no overflow guard beyond the peak shift): tests only.
    """
    q, sigma = sample_rate, noise_multiplier

    def log_integrand(z: float) -> float:
        log_ratio = (z - 0.5) / sigma**2                  # log μ1(z)/μ0(z)
        log_mix = log_add_exp(math.log1p(-q), math.log(q) + log_ratio)
        return -0.5 * (z / sigma) ** 2 - math.log(sigma * math.sqrt(2.0 * math.pi)) + alpha * log_mix

    # The integrand is log-concave-ish with its peak between 0 and α (the tilted means); find it.
    grid = np.linspace(-12.0 * sigma, alpha + 12.0 * sigma, 4001)
    logs = np.array([log_integrand(z) for z in grid])
    peak = float(np.max(logs))
    z_peak = float(grid[int(np.argmax(logs))])
    value = 0.0
    pieces = [(-math.inf, z_peak - 10 * sigma), (z_peak - 10 * sigma, z_peak),
              (z_peak, z_peak + 10 * sigma), (z_peak + 10 * sigma, math.inf)]
    for lo, hi in pieces:
        part, _ = integrate.quad(lambda z: math.exp(log_integrand(z) - peak), lo, hi,
                                 epsabs=0.0, epsrel=1e-12, limit=500)
        value += part
    return peak + math.log(value)
