"""From a membership attack's results to a lower bound on ε, at a stated confidence (used by minidp/run/audit/attack.py).

    one_run_epsilon(guesses=r, correct=v, canaries=m, delta=δ, confidence=0.95)
    hypothesis_test_epsilon(true_positives=tp, positives=n_in, false_positives=fp, negatives=n_out,
                            delta=δ, confidence=0.95)

Each returns the largest ε that the observation rejects: "the mechanism is not (ε, δ)-DP", wrong with
probability at most 1 − confidence. 0 means nothing was shown.

* One run (Steinke, Nasr & Jagielski 2023, "Privacy auditing with one (1) training run", main theorem):
  m canaries, each included independently with probability ½; an attacker that sees only the output
  guesses r of them (abstaining on the rest) and gets v right. If the mechanism is (ε, δ)-DP with respect to
  each canary, then with p = e^ε/(1 + e^ε)

      P[≥ v correct] ≤ β + 2mδ·α,  β = P[Bin(r, p) ≥ v],  α = max_{1≤i≤v} P[v − i ≤ Bin(r, p) < v] / i.

  ε is rejected when that p-value is ≤ 1 − confidence; it grows with ε, so the bound is found by bisection.
  Nothing is assumed about how the canaries interact.
* Hypothesis test (Kairouz, Oh & Viswanath 2015; Jagielski, Ullman & Oprea 2020): any test of "in" vs
  "out" with true/false positive rates TPR, FPR satisfies, under (ε, δ)-DP,
      TPR ≤ e^ε·FPR + δ   and   1 − FPR ≤ e^ε·(1 − TPR) + δ.
  With one-sided Clopper–Pearson bounds TPR ≥ TPR_lo and FPR ≤ FPR_hi, each at confidence
  1 − (1 − confidence)/2, ε ≥ max(log((TPR_lo − δ)/FPR_hi), log((1 − FPR_hi − δ)/(1 − TPR_lo))).
  The binomial counts assume independent observations.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta as beta_dist
from scipy.stats import binom

from minidp.errors import PrivacyError

MAX_EPSILON = 100.0      # the bisection's upper end: no audit here can show more
BISECTION_STEPS = 40      # 100 / 2^40: far below any reported digit


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise PrivacyError(f"confidence must be in (0, 1), got {confidence!r}")
    return c


def _check_counts(**counts) -> None:
    for name, value in counts.items():
        if int(value) != value or value < 0:
            raise PrivacyError(f"{name} must be a whole number >= 0, got {value!r}")


# ---------------------------------------------------------------------------------------------
# One run

def one_run_p_value(*, guesses: int, correct: int, canaries: int, epsilon: float, delta: float) -> float:
    """P[at least ``correct`` of ``guesses`` right] under (ε, δ)-DP, per the one-run theorem (docstring)."""
    _check_counts(guesses=guesses, correct=correct, canaries=canaries)
    r, v, m = int(guesses), int(correct), int(canaries)
    if not v <= r <= m:
        raise PrivacyError(f"need correct <= guesses <= canaries, got {v}, {r}, {m}")
    if v == 0:
        return 1.0
    p = 1.0 / (1.0 + math.exp(-epsilon))                     # accuracy of ε-DP randomized response
    tail = float(binom.sf(v - 1, r, p))                       # β = P[Bin(r, p) ≥ v]
    below = binom.pmf(np.arange(v - 1, -1, -1), r, p)         # P[Bin = v − i] for i = 1..v
    alpha = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))
    return min(1.0, tail + 2.0 * m * delta * alpha)


def one_run_epsilon(*, guesses: int, correct: int, canaries: int, delta: float, confidence: float = 0.95) -> float:
    """The largest ε rejected at ``confidence`` by v = ``correct`` right out of r = ``guesses`` guesses."""
    c = _check_confidence(confidence)
    level = 1.0 - c

    def rejected(eps: float) -> bool:
        return one_run_p_value(guesses=guesses, correct=correct, canaries=canaries, epsilon=eps,
                               delta=delta) <= level

    if not rejected(0.0):
        return 0.0
    lo, hi = 0.0, MAX_EPSILON
    if rejected(hi):
        return hi
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rejected(mid) else (lo, mid)
    return lo


# ---------------------------------------------------------------------------------------------
# Hypothesis test with Clopper–Pearson intervals

def clopper_pearson_lower(successes: int, trials: int, confidence: float) -> float:
    """One-sided lower bound on a binomial rate: P[rate < bound] ≤ 1 − confidence (exact, conservative)."""
    _check_counts(successes=successes, trials=trials)
    if successes == 0:
        return 0.0
    return float(beta_dist.ppf(1.0 - confidence, successes, trials - successes + 1))


def clopper_pearson_upper(successes: int, trials: int, confidence: float) -> float:
    """One-sided upper bound on a binomial rate: P[rate > bound] ≤ 1 − confidence."""
    _check_counts(successes=successes, trials=trials)
    if successes >= trials:
        return 1.0
    return float(beta_dist.ppf(confidence, successes + 1, trials - successes))


def hypothesis_test_epsilon(*, true_positives: int, positives: int, false_positives: int, negatives: int,
                            delta: float, confidence: float = 0.95) -> float:
    """ε ≥ max(log((TPR_lo − δ)/FPR_hi), log((1 − FPR_hi − δ)/(1 − TPR_lo))), both rates bounded at
    confidence 1 − (1 − confidence)/2 so that the pair holds jointly (see module docstring)."""
    c = _check_confidence(confidence)
    each = 1.0 - (1.0 - c) / 2.0
    if positives == 0 or negatives == 0:
        return 0.0
    tpr_lo = clopper_pearson_lower(true_positives, positives, each)
    fpr_hi = clopper_pearson_upper(false_positives, negatives, each)
    best = 0.0
    for num, den in ((tpr_lo - delta, fpr_hi), (1.0 - fpr_hi - delta, 1.0 - tpr_lo)):
        if num > 0.0:
            best = max(best, MAX_EPSILON if den <= 0.0 else math.log(num / den))
    return min(best, MAX_EPSILON)
