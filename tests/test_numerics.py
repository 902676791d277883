"""minidp/numerics.py: the one log-sum-exp, on either device, and its −inf guard (an empty sum); the normal
CDF's fast float32 form against SciPy's float64 ndtr and against the plain erf form it replaces."""
from __future__ import annotations

import math

import numpy as np
import scipy.special

from minidp import numerics
from minidp.backend import get_xp, to_host
from minidp.numerics import INV_SQRT2, log_softmax, logsumexp, normal_cdf
from minidp.privacy.rdp import log_sum_exp


def test_logsumexp_equals_scipy_on_either_device(device):
    xp = get_xp()
    x = np.random.default_rng(0).normal(size=(4, 7)) * 50.0
    x[1, :3] = -np.inf
    x[2, :] = -np.inf  # an empty sum
    for axis in (0, -1):
        got = to_host(logsumexp(xp.asarray(x), axis=axis))
        want = scipy.special.logsumexp(x, axis=axis)
        assert np.array_equal(np.isneginf(got), np.isneginf(want))
        finite = np.isfinite(want)
        diff = np.max(np.abs(got[finite] - want[finite]))
        print(f"axis {axis}: max |diff| = {diff:.2e}")
        assert diff < 1e-12


def test_all_minus_inf_is_minus_inf_without_nan():
    x = np.full(5, -np.inf)
    with np.errstate(all="raise"):
        assert logsumexp(x) == -np.inf
        assert log_sum_exp(x) == -math.inf
    assert not np.isnan(log_softmax(np.array([[0.0, -np.inf]]))).any()



FIT_ERROR = 9.9e-9  # the rational form's error in float64 (scripts/numerics/fit_normal_cdf.py prints it)


def _float32_grid():
    """Every 2^-12-th float32 in [−8, 8] (65,537 values apart from the dense block), a dense block of
    consecutive float32 values around the cut at −X, and values far outside."""
    grid = np.arange(-8.0, 8.0 + 2.0**-12, 2.0**-12, dtype=np.float32)
    cut = np.float32(-numerics.CDF_CLAMP)
    around_cut = cut + np.arange(-2000, 2000, dtype=np.float32) * np.spacing(cut)
    far = np.array([-3e38, -1e6, -40.0, 40.0, 1e6, 3e38, 1e-40, -1e-40, 0.0, -0.0], dtype=np.float32)
    return np.concatenate([grid, around_cut, far])


def test_fast_normal_cdf_is_within_its_fit_error_plus_one_rounding():
    x = _float32_grid()
    fast = normal_cdf(x)
    want = scipy.special.ndtr(x.astype(np.float64))
    assert fast.dtype == np.float32
    bound = FIT_ERROR + np.spacing(want.astype(np.float32)) / 2  # + half a float32 step at the true value
    err = np.abs(fast.astype(np.float64) - want)
    print(f"max |fast - ndtr| = {err.max():.3g}")
    assert np.all(err <= bound)


def test_fast_normal_cdf_is_no_less_accurate_than_the_plain_float32_form():
    x = _float32_grid()
    plain = (scipy.special.erf(x * np.float32(INV_SQRT2)) + np.float32(1.0)) * np.float32(0.5)
    want = scipy.special.ndtr(x.astype(np.float64))
    fast_err = np.abs(normal_cdf(x).astype(np.float64) - want).max()
    plain_err = np.abs(plain.astype(np.float64) - want).max()
    print(f"max error: fast {fast_err:.3g}, plain float32 {plain_err:.3g}")
    assert fast_err <= plain_err


def test_fast_normal_cdf_is_exactly_0_and_1_beyond_the_cut_and_keeps_nan():
    x = np.array([-np.inf, -3e38, -1e3, -numerics.CDF_CLAMP, numerics.CDF_CLAMP, 1e3, np.inf, np.nan],
                 dtype=np.float32)
    got = normal_cdf(x)
    assert np.array_equal(got[:4], np.zeros(4, np.float32)) and np.array_equal(got[4:7], np.ones(3, np.float32))
    assert np.isnan(got[7])
    assert np.all(x[1:4] * got[1:4] == 0)  # x Φ(x) of a large negative x is 0, not x times a small error


def test_normal_cdf_in_float64_is_the_plain_erf_form_bit_for_bit():
    x = np.random.default_rng(0).standard_normal(1000) * 4
    assert np.array_equal(normal_cdf(x), (scipy.special.erf(x * INV_SQRT2) + 1.0) * 0.5)


def test_fast_normal_cdf_is_elementwise_across_chunks_and_layouts(monkeypatch):
    x = (np.random.default_rng(1).standard_normal((7, 301)) * 3).astype(np.float32)
    whole = normal_cdf(x)
    monkeypatch.setattr(numerics, "CDF_CHUNK", 64)  # 2107 elements: 32 full chunks and a partial one
    assert np.array_equal(normal_cdf(x), whole)
    out = np.empty((301, 7), np.float32).T  # a non-contiguous out
    assert normal_cdf(x, out=out) is out and np.array_equal(out, whole)
    assert np.array_equal(normal_cdf(np.asfortranarray(x)), whole)
    assert np.array_equal(normal_cdf(x[3, 5]), whole[3, 5]) and normal_cdf(x[:0]).shape == (0, 301)


def test_normal_cdf_on_either_device(device):
    xp = get_xp()
    x = np.linspace(-6, 6, 101)
    for dtype in (np.float32, np.float64):
        got = to_host(normal_cdf(xp.asarray(x.astype(dtype))))
        assert got.dtype == dtype
        assert np.abs(got - scipy.special.ndtr(x.astype(dtype).astype(np.float64))).max() < 1e-7
