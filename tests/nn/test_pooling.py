"""minidp.nn.pooling: cls and mean pooling against float64 finite differences and the plain formulas.

Masks are drawn per example (a real prefix, padding after it, and rows that are all padding); the bar is
1e-6 as for the other layers (tests/nn/test_layers.py), through tests/nn/gradcheck.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minidp.nn import pooling
from tests.nn.gradcheck import check_grad

SETTINGS = settings(max_examples=15, deadline=None)
dims = st.integers(1, 5)


def _inputs(B, T, C, seed):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(B, T, C))  # (B, T, C)
    lengths = rng.integers(0, T + 1, size=B)  # 0: an all-padding row
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)  # (B, T)
    R = rng.normal(size=(B, C))  # dL/dz for L = Σ z · R
    return h, mask, R


@SETTINGS
@given(B=dims, T=dims, C=dims, seed=st.integers(0, 2**16), mode=st.sampled_from(pooling.POOLING_CHOICES))
def test_pooling_backward_matches_finite_differences(B, T, C, seed, mode):
    h, mask, R = _inputs(B, T, C, seed)
    z, cache = pooling.forward(h, mask, mode)
    assert z.shape == (B, C)
    dh = pooling.backward(cache, R)
    assert dh.shape == h.shape
    check_grad(lambda: pooling.forward(h, mask, mode)[0] * R, h, dh, name=f"{mode} pooling dh")


@SETTINGS
@given(B=dims, T=dims, C=dims, seed=st.integers(0, 2**16))
def test_mean_pooling_is_the_masked_mean_and_zero_at_padding(B, T, C, seed):
    h, mask, R = _inputs(B, T, C, seed)
    z, cache = pooling.mean_forward(h, mask)
    dh = pooling.mean_backward(cache, R)
    for i in range(B):
        n = int(mask[i].sum())
        expected = h[i, :n].mean(axis=0) if n else np.zeros(C)  # an all-padding row pools to 0
        assert np.allclose(z[i], expected, rtol=0, atol=1e-12)
        assert np.allclose(dh[i, :n], R[i] / max(n, 1), rtol=0, atol=1e-15)  # dz_i / n_i at every real token
        assert not dh[i, n:].any()  # exactly 0 at padding
    # padding values never reach the output
    h2 = h.copy()
    h2[mask == 0] = 1e6
    assert np.array_equal(pooling.mean_forward(h2, mask)[0], z)


def test_cls_pooling_reads_and_feeds_only_position_0():
    h, mask, R = _inputs(3, 4, 2, seed=1)
    z, cache = pooling.cls_forward(h)
    assert np.array_equal(z, h[:, 0]) and z.flags.c_contiguous
    dh = pooling.cls_backward(cache, R)
    assert np.array_equal(dh[:, 0], R) and not dh[:, 1:].any()
    assert np.array_equal(pooling.forward(h, mask, "cls")[0], z)  # the mask is not read


def test_unknown_mode_is_refused():
    h, mask, _ = _inputs(2, 3, 2, seed=0)
    with pytest.raises(ValueError, match="max"):
        pooling.forward(h, mask, "max")
