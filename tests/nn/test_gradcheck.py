"""The gradient-check helper itself (tests/nn/gradcheck.py): tight where it must be, quiet where it must be.

It must catch a wrong backward: a LayerNorm backward with one term dropped, and one off by 1e-5 relative.
It must pass the right backward on the draws that made the old fixed-step check (H = 1e-6) fail: LayerNorm
with eps = 1e-12 on three channels, a cross-entropy gradient of ~1e-5 computed from logits of ~6, a
gradient that is exactly 0.
"""
from __future__ import annotations

import numpy as np
import pytest

from minidp.nn import layernorm, loss
from tests.nn.gradcheck import TOL, check_grad, grad_error, numerical_grad

SHAPES = [(1, 1, 3, 1e-12), (2, 3, 4, 1e-5), (3, 2, 6, 1e-12), (1, 4, 5, 1e-5)]  # (B, T, C, eps)


def _layernorm_case(B, T, C, eps, seed):
    rng = np.random.default_rng(seed)
    p = {"weight": rng.normal(size=C), "bias": rng.normal(size=C)}
    x = rng.normal(size=(B, T, C)) * 3 + 1  # (B, T, C)
    R = rng.normal(size=(B, T, C))  # dL/dy
    _, cache = layernorm.forward(p, x, eps)
    return p, x, R, cache


def _backward_without_projection(p, cache, dy):
    """The mutation: dx = rstd · (dxhat − mean(dxhat)), the term − xhat · mean(dxhat · xhat) dropped."""
    dxhat = dy * p["weight"]  # (B, T, C)
    return (dxhat - dxhat.mean(axis=-1, keepdims=True)) * cache.rstd


@pytest.mark.parametrize("B, T, C, eps", SHAPES)
@pytest.mark.parametrize("seed", range(3))
def test_right_layernorm_backward_passes(B, T, C, eps, seed):
    p, x, R, cache = _layernorm_case(B, T, C, eps, seed)
    dx, _ = layernorm.backward(p, cache, R)
    assert check_grad(lambda: layernorm.forward(p, x, eps)[0] * R, x, dx) <= TOL


@pytest.mark.parametrize("B, T, C, eps", SHAPES)
@pytest.mark.parametrize("seed", range(3))
def test_dropped_term_is_caught(B, T, C, eps, seed):
    p, x, R, cache = _layernorm_case(B, T, C, eps, seed)
    wrong = _backward_without_projection(p, cache, R)
    numeric, noise = numerical_grad(lambda: layernorm.forward(p, x, eps)[0] * R, x, with_noise=True)
    err = grad_error(wrong, numeric, noise)
    print(f"dropped term: max rel err {err:.2e} (bar {TOL:.0e})")
    assert err > 1e3 * TOL  # not a near miss: the dropped term is of the gradient's own size
    with pytest.raises(AssertionError, match="max rel err"):
        check_grad(lambda: layernorm.forward(p, x, eps)[0] * R, x, wrong)


@pytest.mark.parametrize("relative", [1e-5, -3e-5])
def test_small_relative_error_is_caught(relative):
    """A backward off by 1e-5 of its scale in one entry: ten times the bar, still caught."""
    p, x, R, cache = _layernorm_case(2, 3, 4, 1e-5, seed=0)
    dx, _ = layernorm.backward(p, cache, R)
    wrong = dx.copy()
    wrong[1, 2, 0] += relative * np.abs(dx).max()
    with pytest.raises(AssertionError, match="max rel err"):
        check_grad(lambda: layernorm.forward(p, x, eps=1e-5)[0] * R, x, wrong)


def test_tiny_gradient_from_large_logits_is_resolved():
    """The draw that failed before: B = 1, K = 2, logits (5.87, −3.44), dL/dz ≈ ±2.7e-5."""
    z = np.array([[5.86845054, -3.44045391]])  # (B, K)
    labels = np.array([0])
    w = np.array([0.7])
    losses, cache = loss.forward(z, labels)
    dz = loss.backward(cache, w)
    assert np.abs(dz).max() < 1e-4
    check_grad(lambda: loss.forward(z, labels)[0] * w, z, dz, name="logits")
    wrong = dz.copy()
    wrong[0, 0] *= 1.001  # 1e-3 relative, on a gradient of 2.7e-5: still caught
    with pytest.raises(AssertionError):
        check_grad(lambda: loss.forward(z, labels)[0] * w, z, wrong, name="logits")


def test_exactly_zero_gradient_passes_and_a_nonzero_one_does_not():
    """f(x) = Σ softmax(x) = 1 for every x: the gradient is exactly 0, the numerical one is roundoff."""
    x = np.random.default_rng(4).normal(size=(3, 5)) * 4

    def total():
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)  # the terms of L = 3

    assert check_grad(total, x, np.zeros_like(x)) == 0.0
    with pytest.raises(AssertionError):
        check_grad(total, x, np.full_like(x, 1e-6))


def test_step_follows_each_inputs_scale():
    """f = Σ log(x²) at x ~ 1e-8 and ~1e8: a fixed step of 1e-6 would be meaningless at either scale."""
    for scale in (1e-8, 1.0, 1e8):
        x = np.random.default_rng(5).uniform(1, 2, size=6) * scale
        check_grad(lambda: np.log(x * x), x, 2 / x, name=f"log(x²) at {scale:g}")


def test_array_is_restored_bit_for_bit():
    x = np.random.default_rng(6).normal(size=(2, 3))
    before = x.copy()
    numerical_grad(lambda: np.sin(x), x)
    assert np.array_equal(x, before)
