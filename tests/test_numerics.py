"""minidp/numerics.py: the one log-sum-exp, on either device, and its −inf guard (an empty sum)."""
from __future__ import annotations

import math

import numpy as np
import scipy.special

from minidp.backend import get_xp, to_host
from minidp.numerics import log_softmax, logsumexp
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

