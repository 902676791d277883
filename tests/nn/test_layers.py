"""Every layer's backward against float64 finite differences (hypothesis draws the shapes and masks).

Each test prints the max relative error per tensor; the bar is 1e-6 (the gradient-check bar). Every finite difference goes
through tests/nn/gradcheck.py (4th-order stencil, steps scaled to each input, its own error bar).
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf

from minidp.nn import activations, attention, dropout, embedding, layernorm, linear, loss
from minidp.per_example import LinearRecord
from tests.nn.gradcheck import check_grad, check_records, rel_err

SETTINGS = settings(max_examples=15, deadline=None)
dims = st.integers(1, 5)


def _rng(seed):
    return np.random.default_rng(seed)


@SETTINGS
@given(B=dims, T=dims, d_in=dims, d_out=dims, seed=st.integers(0, 2**16), two_d=st.booleans(),
       method=st.sampled_from(["ghost", "materialize", "auto"]))
def test_linear(B, T, d_in, d_out, seed, two_d, method):
    rng = _rng(seed)
    p = {"weight": rng.normal(size=(d_out, d_in)), "bias": rng.normal(size=d_out)}
    shape = (B, d_in) if two_d else (B, T, d_in)
    x = rng.normal(size=shape)
    R = rng.normal(size=shape[:-1] + (d_out,))
    y, cache = linear.forward(p, x)
    assert np.allclose(y, x @ p["weight"].T + p["bias"], rtol=0, atol=1e-12)  # forward vs the plain formula
    dx, records = linear.backward(p, cache, R)
    records["weight"].method = method
    check_grad(lambda: linear.forward(p, x)[0] * R, x, dx)
    errors = check_records(records, p, lambda i: linear.forward(p, x)[0][i] * R[i], B)
    print(errors)


@SETTINGS
@given(B=dims, T=dims, d_in=dims, d_out=dims, seed=st.integers(0, 2**16))
def test_linear_ghost_equals_materialized(B, T, d_in, d_out, seed):
    rng = _rng(seed)
    a, g = rng.normal(size=(B, T, d_in)), rng.normal(size=(B, T, d_out))
    ghost = LinearRecord(a, g, method="ghost").norm_sq()
    materialized = LinearRecord(a, g, method="materialize").norm_sq()
    assert rel_err(ghost, materialized) <= 1e-12


def test_linear_cost_rule():
    """Ghost norm exactly when 2T² < d_in·d_out (docs/design.md §2)."""
    g = np.zeros((1, 16, 24))
    assert LinearRecord(np.zeros((1, 16, 24)), g).chosen_method() == "ghost"  # 512 < 576
    assert LinearRecord(np.zeros((1, 16, 8)), g[:, :, :8]).chosen_method() == "materialize"  # 512 ≥ 64


@SETTINGS
@given(B=dims, T=dims, V=st.integers(1, 6), C=dims, seed=st.integers(0, 2**16))
def test_embedding(B, T, V, C, seed):
    rng = _rng(seed)
    p = {"weight": rng.normal(size=(V, C))}
    ids = rng.integers(0, V, size=(B, T))  # small V: repeated ids in one example are likely
    R = rng.normal(size=(B, T, C))
    y, cache = embedding.forward(p, ids)
    assert np.array_equal(y, p["weight"][ids])
    dx, records = embedding.backward(p, cache, R)
    assert dx is None
    print(check_records(records, p, lambda i: embedding.forward(p, ids)[0][i] * R[i], B))


@SETTINGS
# C ≥ 3: with C = 2 the normalised output is ±1 whatever x is, so dL/dx ≈ 0 and a relative check is meaningless.
@given(B=dims, T=dims, C=st.integers(3, 6), seed=st.integers(0, 2**16), eps=st.sampled_from([1e-5, 1e-12]))
def test_layernorm(B, T, C, seed, eps):
    rng = _rng(seed)
    p = {"weight": rng.normal(size=C), "bias": rng.normal(size=C)}
    x = rng.normal(size=(B, T, C)) * 3 + 1
    R = rng.normal(size=(B, T, C))
    y, cache = layernorm.forward(p, x, eps)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    assert rel_err(y, (x - mu) / np.sqrt(var + eps) * p["weight"] + p["bias"]) <= 1e-12
    dx, records = layernorm.backward(p, cache, R)
    check_grad(lambda: layernorm.forward(p, x, eps)[0] * R, x, dx)
    print(check_records(records, p, lambda i: layernorm.forward(p, x, eps)[0][i] * R[i], B))


@SETTINGS
@given(shape=st.lists(dims, min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_elementwise_activations(shape, seed):
    rng = _rng(seed)
    x = rng.normal(size=shape) * 2
    R = rng.normal(size=shape)
    y, cache = activations.gelu_forward(x)
    assert rel_err(y, 0.5 * x * (1 + erf(x / math.sqrt(2)))) <= 1e-12
    check_grad(lambda: activations.gelu_forward(x)[0] * R, x, activations.gelu_backward(cache, R),
               name="gelu")
    y, cache = activations.tanh_forward(x)
    assert rel_err(y, np.tanh(x)) <= 1e-12
    check_grad(lambda: activations.tanh_forward(x)[0] * R, x, activations.tanh_backward(cache, R),
               name="tanh")
    y, cache = activations.softmax_forward(x)
    e = np.exp(x - x.max(-1, keepdims=True))
    assert rel_err(y, e / e.sum(-1, keepdims=True)) <= 1e-12
    check_grad(lambda: activations.softmax_forward(x)[0] * R, x, activations.softmax_backward(cache, R),
               name="softmax")


def test_softmax_is_stable_for_huge_inputs():
    x = np.array([[1e4, 1e4, -1e4], [-1000.0, -1001.0, -1002.0]])  # naive exp overflows or underflows to 0/0
    y, _ = activations.softmax_forward(x)
    assert np.all(np.isfinite(y)) and np.allclose(y.sum(-1), 1.0)


def _attention_params(rng, C):
    return {name: {"weight": rng.normal(size=(C, C)) / math.sqrt(C), "bias": rng.normal(size=C) * 0.1}
            for name in attention.PROJECTIONS}


def _attention_reference(p, x, mask, H):
    """The plain formula, head by head and example by example."""
    B, T, C = x.shape
    D = C // H
    out = np.zeros_like(x)
    for b in range(B):
        q, k, v = (x[b] @ p[n]["weight"].T + p[n]["bias"] for n in attention.PROJECTIONS)
        for h in range(H):
            s = slice(h * D, (h + 1) * D)
            scores = q[:, s] @ k[:, s].T / math.sqrt(D)
            scores = scores + np.where(mask[b] > 0, 0.0, np.finfo(np.float64).min)[None, :]
            w = np.exp(scores - scores.max(-1, keepdims=True))
            w /= w.sum(-1, keepdims=True)
            out[b, :, s] = w @ v[:, s]
    return out


@SETTINGS
@given(B=st.integers(1, 3), T=st.integers(1, 4), H=st.integers(1, 3), D=st.integers(1, 3),
       seed=st.integers(0, 2**16), mask_kind=st.sampled_from(["none", "random", "fully_padded_row"]))
def test_attention(B, T, H, D, seed, mask_kind):
    rng = _rng(seed)
    C = H * D
    p = _attention_params(rng, C)
    x = rng.normal(size=(B, T, C))
    mask = np.ones((B, T), dtype=np.int64)
    if mask_kind == "random":
        mask = (rng.random((B, T)) < 0.7).astype(np.int64)
        mask[:, 0] = 1
    elif mask_kind == "fully_padded_row":
        mask[0, :] = 0  # an example with no real token: uniform attention, never NaN
    bias = attention.mask_bias(mask, np.float64)
    R = rng.normal(size=(B, T, C))

    def run():
        return attention.forward(p, x, bias, H)[0]

    y, cache = attention.forward(p, x, bias, H)
    assert np.all(np.isfinite(y))
    assert rel_err(y, _attention_reference(p, x, mask, H)) <= 1e-10
    # A fully padded example attends uniformly: its scores q·k + min round to min exactly, so the float
    # function no longer depends on q, k there, while the analytic gradient (as torch autograd's) treats the
    # bias as an exact constant. Finite differences are meaningful only for examples with a real token.
    real = [i for i in range(B) if mask[i].any()]
    assert np.allclose(cache.probs[[i for i in range(B) if i not in real]], 1.0 / T)
    dx, records = attention.backward(p, cache, R)
    check_grad(lambda: run() * R, x, dx, rows=real)
    flat = {f"{n}.{k}": p[n][k] for n in attention.PROJECTIONS for k in ("weight", "bias")}
    print(check_records(records, flat, lambda i: run()[i] * R[i], B, examples=real))


def test_attention_padded_keys_get_zero_probability():
    rng = _rng(0)
    p = _attention_params(rng, 4)
    mask = np.array([[1, 1, 0, 0]])
    _, cache = attention.forward(p, rng.normal(size=(1, 4, 4)), attention.mask_bias(mask, np.float64), 2)
    assert np.all(cache.probs[..., 2:] == 0.0)


@SETTINGS
@given(B=dims, K=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_cross_entropy(B, K, seed):
    rng = _rng(seed)
    z = rng.normal(size=(B, K)) * 3
    labels = rng.integers(0, K, size=B)
    losses, cache = loss.forward(z, labels)
    ref = np.log(np.exp(z).sum(1)) - z[np.arange(B), labels]
    assert rel_err(losses, ref) <= 1e-12
    w = rng.random(B)  # arbitrary per-example weights on the losses
    dz = loss.backward(cache, w)
    check_grad(lambda: loss.forward(z, labels)[0] * w, z, dz, name="logits")
    mean, mcache = loss.mean_forward(z, labels)
    assert abs(mean - ref.mean()) <= 1e-12
    dz_mean = loss.backward(mcache, loss.mean_dloss(mcache))
    check_grad(lambda: loss.mean_forward(z, labels)[0], z, dz_mean, name="logits (mean)")


def test_dropout_statistics_and_backward():
    rng = np.random.default_rng(0)
    x = np.ones((200, 500))
    y, cache = dropout.forward(x, 0.1, rng, training=True)
    kept = y != 0
    assert abs(kept.mean() - 0.9) < 0.005
    assert np.allclose(y[kept], 1 / 0.9)
    R = np.random.default_rng(1).normal(size=x.shape)
    assert np.array_equal(dropout.backward(cache, R), R * cache)  # the same mask scales the gradient
    y_eval, cache_eval = dropout.forward(x, 0.1, rng, training=False)
    assert y_eval is x and dropout.backward(cache_eval, R) is R
