"""ε lower bounds from attack results: closed forms, brute-force p-values, and validity on simulated
ε-DP randomized response (the bound exceeds the true ε at most 1 − confidence of the time)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from minidp.errors import PrivacyError
from minidp.privacy.lower_bounds import (
    clopper_pearson_lower,
    clopper_pearson_upper,
    hypothesis_test_epsilon,
    one_run_epsilon,
    one_run_p_value,
)


@pytest.mark.parametrize("r,v,m,eps,delta", [(10, 9, 100, 1.0, 0.0), (50, 40, 1000, 0.5, 1e-5),
                                             (60, 55, 1000, 2.0, 1e-4), (7, 3, 7, 0.1, 1e-3)])
def test_one_run_p_value_brute_force(r, v, m, eps, delta):
    p = math.exp(eps) / (1 + math.exp(eps))
    beta = sum(binom.pmf(k, r, p) for k in range(v, r + 1))
    alpha = max(sum(binom.pmf(v - j, r, p) for j in range(1, i + 1)) / i for i in range(1, v + 1))
    expected = min(1.0, beta + 2 * m * delta * alpha)
    assert one_run_p_value(guesses=r, correct=v, canaries=m, epsilon=eps, delta=delta) == pytest.approx(expected,
                                                                                                      rel=1e-9)


def test_one_run_epsilon_closed_form_all_correct():
    """δ = 0 and all r guesses right: the p-value is p^r, so p = (1 − c)^{1/r} and ε = logit(p)."""
    for r in (5, 50, 500):
        p = 0.05 ** (1 / r)
        assert one_run_epsilon(guesses=r, correct=r, canaries=r, delta=0.0) == pytest.approx(math.log(p / (1 - p)),
                                                                                               abs=1e-9)
    assert one_run_epsilon(guesses=100, correct=50, canaries=100, delta=1e-5) == 0.0      # chance level
    assert one_run_epsilon(guesses=0, correct=0, canaries=100, delta=1e-5) == 0.0
    with pytest.raises(PrivacyError, match="correct <= guesses"):
        one_run_p_value(guesses=3, correct=4, canaries=10, epsilon=1.0, delta=0.0)


def test_clopper_pearson_closed_forms():
    n, c = 40, 0.95
    assert clopper_pearson_upper(0, n, c) == pytest.approx(1 - (1 - c) ** (1 / n))
    assert clopper_pearson_lower(n, n, c) == pytest.approx((1 - c) ** (1 / n))
    assert clopper_pearson_lower(0, n, c) == 0.0 and clopper_pearson_upper(n, n, c) == 1.0
    lo, hi = clopper_pearson_lower(13, n, c), clopper_pearson_upper(13, n, c)
    assert lo < 13 / n < hi
    assert binom.sf(12, n, lo) == pytest.approx(1 - c)       # P[X ≥ 13 | rate = lo] = 1 − c
    assert binom.cdf(13, n, hi) == pytest.approx(1 - c)      # P[X ≤ 13 | rate = hi] = 1 − c


def test_hypothesis_test_epsilon_closed_form():
    n, c = 1000, 0.95
    each = 1 - (1 - c) / 2
    tpr_lo, fpr_hi = (1 - each) ** (1 / n), 1 - (1 - each) ** (1 / n)
    got = hypothesis_test_epsilon(true_positives=n, positives=n, false_positives=0, negatives=n, delta=0.0)
    assert got == pytest.approx(max(math.log(tpr_lo / fpr_hi), math.log((1 - fpr_hi) / (1 - tpr_lo))))
    assert hypothesis_test_epsilon(true_positives=500, positives=1000, false_positives=500, negatives=1000,
                                   delta=1e-5) == 0.0


def test_bounds_are_valid_on_randomized_response():
    """ε-DP randomized response (each guess right w.p. e^ε/(1+e^ε), independently): at 95 % confidence the
    bounds may exceed ε in at most ~5 % of repetitions; over 100 repetitions we allow 12."""
    rng = np.random.default_rng(0)
    eps, r = 1.0, 400
    p = math.exp(eps) / (1 + math.exp(eps))
    over_one_run = over_test = 0
    for _ in range(100):
        v = int(rng.binomial(r, p))
        over_one_run += one_run_epsilon(guesses=r, correct=v, canaries=r, delta=0.0) > eps
        # as a test: "in" canaries answered "in" w.p. p, "out" canaries w.p. 1 − p
        tp, fp = int(rng.binomial(r, p)), int(rng.binomial(r, 1 - p))
        over_test += hypothesis_test_epsilon(true_positives=tp, positives=r, false_positives=fp, negatives=r,
                                             delta=0.0) > eps
    assert over_one_run <= 12 and over_test <= 12
