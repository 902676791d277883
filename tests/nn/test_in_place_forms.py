"""The training path's in-place forms against the plain expressions they replace.

Each layer builds its result in fewer arrays than the textbook expression (docs/performance.md). Where the
operations and their order are unchanged the result must be bit-identical (float32 and float64); the
attention's 1/√D moved from the scores onto q changes the rounding only, so it is held to 1e-10 in float64.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from minidp.nn import activations, attention, dropout, layernorm
from minidp.numerics import INV_SQRT2, INV_SQRT_2PI, normal_cdf
from minidp.optim import AdamW
from minidp.privacy.mechanism import add_noise
from scipy.special import erf


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def test_gelu_forward_is_the_plain_expression(dtype):
    """Φ from numerics.normal_cdf (in float64 the plain erf form; in float32 its rational form, held to
    SciPy in tests/test_numerics.py), then y = x Φ(x) exactly."""
    x = np.random.default_rng(0).standard_normal((3, 5, 7)).astype(dtype)
    y, (_, cdf) = activations.gelu_forward(x)
    plain_cdf = normal_cdf(x)
    if dtype == np.float64:
        assert np.array_equal(plain_cdf, (erf(x * INV_SQRT2) + 1.0) * 0.5)
    assert np.array_equal(cdf, plain_cdf)
    assert np.array_equal(y, x * plain_cdf)


def test_softmax_in_place_is_the_plain_softmax(dtype):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 6)).astype(dtype) * 5
    plain, _ = activations.softmax_forward(x)
    scratch = x.copy()
    fast, _ = activations.softmax_forward(scratch, overwrite_input=True)
    assert fast is scratch and np.array_equal(fast, plain)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    assert np.array_equal(plain, e / e.sum(axis=-1, keepdims=True))


def test_softmax_backward_is_the_plain_expression(dtype):
    rng = np.random.default_rng(2)
    y, _ = activations.softmax_forward(rng.standard_normal((2, 3, 5, 5)).astype(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    plain = y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    assert np.array_equal(activations.softmax_backward(y, dy), plain)


def test_gelu_backward_is_the_plain_expression(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    _, cache = activations.gelu_forward(x)
    phi = np.exp(x * x * -0.5) * INV_SQRT_2PI
    assert np.array_equal(activations.gelu_backward(cache, dy), (phi * x + cache[1]) * dy)


def test_layernorm_is_the_plain_expression(dtype):
    rng = np.random.default_rng(4)
    C = 8
    p = {"weight": rng.standard_normal(C).astype(dtype), "bias": rng.standard_normal(C).astype(dtype)}
    x = rng.standard_normal((3, 5, C)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    y, cache = layernorm.forward(p, x, 1e-12)
    centred = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / ((centred * centred).mean(axis=-1, keepdims=True) + 1e-12) ** 0.5
    xhat = centred * rstd
    assert np.array_equal(y, xhat * p["weight"] + p["bias"])
    dx, records = layernorm.backward(p, cache, dy)
    dxhat = dy * p["weight"]
    plain_dx = rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                       - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    assert np.array_equal(dx, plain_dx)
    assert np.array_equal(records["weight"].grads, (dy * xhat).sum(axis=1))
    assert np.array_equal(records["bias"].grads, dy.sum(axis=1))


def test_dropout_mask_in_float64_is_the_plain_draw():
    x = np.random.default_rng(5).standard_normal((4, 50))
    y, mask = dropout.forward(x, 0.1, np.random.default_rng(9), training=True)
    plain_mask = (np.random.default_rng(9).random(x.shape) >= 0.1).astype(np.float64) / 0.9
    assert np.array_equal(mask, plain_mask) and np.array_equal(y, x * plain_mask)


def test_dropout_in_float32_draws_in_float32_and_keeps_about_1_minus_p():
    x = np.ones((200, 500), dtype=np.float32)
    y, mask = dropout.forward(x, 0.1, np.random.default_rng(0), training=True)
    assert mask.dtype == np.float32 and y.dtype == np.float32
    assert set(np.unique(mask)) <= {np.float32(0), np.float32(1) / np.float32(0.9)}
    assert abs((mask > 0).mean() - 0.9) < 0.005


def _plain_attention(p, x, bias, H):
    """The textbook form: scores = q kᵀ / √D + bias; returns context and (dx as a function of dctx)."""
    heads = {name: attention.split_heads(x @ p[name]["weight"].T + p[name]["bias"], H) for name in attention.PROJECTIONS}
    q, k, v = heads["query"], heads["key"], heads["value"]
    D = q.shape[-1]
    scores = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(D) + bias
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = e / e.sum(axis=-1, keepdims=True)
    context = attention.merge_heads(probs @ v)

    def backward(dcontext):
        dctx = attention.split_heads(dcontext, H)
        dprobs = dctx @ v.transpose(0, 1, 3, 2)
        dv = probs.transpose(0, 1, 3, 2) @ dctx
        dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True)) / math.sqrt(D)
        dq, dk = dscores @ k, dscores.transpose(0, 1, 3, 2) @ q
        grads = {"query": dq, "key": dk, "value": dv}
        return sum(attention.merge_heads(grads[n]) @ p[n]["weight"] for n in attention.PROJECTIONS)

    return context, backward


def test_attention_with_the_scale_on_q_equals_the_textbook_form():
    rng = np.random.default_rng(6)
    B, T, C, H = 3, 7, 12, 3
    p = {name: {"weight": rng.standard_normal((C, C)) * 0.3, "bias": rng.standard_normal(C) * 0.1}
         for name in attention.PROJECTIONS}
    x = rng.standard_normal((B, T, C))
    mask = np.ones((B, T), dtype=np.int64)
    mask[1, 4:] = 0
    bias = attention.mask_bias(mask, np.float64)
    context, cache = attention.forward(p, x, bias, H)
    plain_context, plain_backward = _plain_attention(p, x, bias, H)
    np.testing.assert_allclose(context, plain_context, rtol=1e-10, atol=1e-12)
    dcontext = rng.standard_normal(context.shape)
    dx, _ = attention.backward(p, cache, dcontext)
    np.testing.assert_allclose(dx, plain_backward(dcontext), rtol=1e-10, atol=1e-12)


def _plain_adam_w(p, g, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.01):
    p = p * (1.0 - lr * wd)
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * (g * g)
    denom = np.sqrt(v) / math.sqrt(1.0 - b2**t) + eps
    return p - (lr / (1.0 - b1**t)) * (m / denom), m, v


def test_adamw_in_place_is_the_plain_update(dtype):
    rng = np.random.default_rng(7)
    p = rng.standard_normal((5, 4)).astype(dtype)
    params = {"w": p.copy()}
    opt = AdamW(1e-2)
    m = v = np.zeros_like(p)
    for t in range(1, 5):
        g = rng.standard_normal(p.shape).astype(dtype)
        lr = 1e-2 / t
        opt.step(params, {"w": g}, lr=lr)
        p, m, v = _plain_adam_w(p, g, m, v, t, lr)
        p, m, v = (a.astype(dtype) for a in (p, m, v))
        assert np.array_equal(params["w"], p)
        assert np.array_equal(opt.state["w"]["exp_avg"], m) and np.array_equal(opt.state["w"]["exp_avg_sq"], v)


def test_add_noise_in_place_and_without_kept_noise_releases_the_same_values(dtype):
    rng = np.random.default_rng(8)
    sums = {"a": rng.standard_normal((3, 4)).astype(dtype), "b": rng.standard_normal(5).astype(dtype)}
    kw = dict(noise_multiplier=1.3, max_grad_norm=0.5, expected_batch_size=7.0)
    plain, noise = add_noise({k: v.copy() for k, v in sums.items()}, rng=np.random.default_rng(1), **kw)
    for name, s in sums.items():
        assert np.array_equal(plain[name], (s + noise[name]) / s.dtype.type(7.0))
    overwritten = {k: v.copy() for k, v in sums.items()}
    fast, no_noise = add_noise(overwritten, rng=np.random.default_rng(1), keep_noise=False, in_place=True, **kw)
    assert no_noise is None
    for name in sums:
        assert fast[name] is overwritten[name] and np.array_equal(fast[name], plain[name])
