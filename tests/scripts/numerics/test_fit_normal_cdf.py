"""scripts/numerics/fit_normal_cdf.py: the fit reaches the stored coefficients' accuracy, and the stored
coefficients are the script's form (positive denominator, the error the docstrings quote)."""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from minidp import numerics
from scripts.numerics import fit_normal_cdf


def test_stored_coefficients_meet_the_quoted_error_in_float64():
    p, q = np.array(numerics.CDF_P), np.array(numerics.CDF_Q)
    assert fit_normal_cdf.X == numerics.CDF_CLAMP and q[0] == 1.0 and np.all(q > 0)  # so Q(u) ≥ 1 on u ≥ 0
    grid = np.linspace(-8.0, 8.0, 400_001)
    err = np.abs(fit_normal_cdf.cdf(grid, p, q) - ndtr(grid))
    assert err.max() <= 9.9e-9


def test_a_short_fit_converges_toward_the_stored_accuracy():
    p, q, err = fit_normal_cdf.fit(points=2000, rounds=80)
    assert err < 3e-8  # the full fit (20,000 points, 300 rounds) reaches 9.9e-9
    grid = np.linspace(0.0, fit_normal_cdf.X, 20_001)
    assert np.abs(fit_normal_cdf.cdf(grid, p, q) - ndtr(grid)).max() < 3e-8
