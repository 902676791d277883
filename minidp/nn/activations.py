"""Elementwise activations and softmax, each a forward/backward pair.

gelu: the exact-erf GELU of Hugging Face's "gelu": y = x Φ(x) = ½ x (1 + erf(x / √2)).
tanh: y = tanh(x).
softmax over the last axis (stable: see minidp.numerics.softmax).
"""
from __future__ import annotations

from minidp.backend import array_module
from minidp.numerics import INV_SQRT2, INV_SQRT_2PI, erf
from minidp.numerics import softmax as _stable_softmax


def gelu_forward(x):
    cdf = x * INV_SQRT2  # Φ(x) = ½(1 + erf(x/√2)), built in place in one array (same shape as x)
    erf(cdf, out=cdf)
    cdf += 1.0
    cdf *= 0.5
    return x * cdf, (x, cdf)  # cache: the input and Φ(x)


def gelu_backward(cache, dy):
    """d/dx [x Φ(x)] = Φ(x) + x φ(x), φ(x) = exp(−x²/2) / √(2π)."""
    x, cdf = cache
    xp = array_module(x)
    g = x * x  # one temporary, updated in place: g = dy · (Φ(x) + x φ(x))
    g *= -0.5
    xp.exp(g, out=g)
    g *= INV_SQRT_2PI  # φ(x)
    g *= x
    g += cdf
    g *= dy
    return g


def tanh_forward(x):
    xp = array_module(x)
    y = xp.tanh(x)
    return y, y  # cache: the output


def tanh_backward(cache, dy):
    """d/dx tanh(x) = 1 − tanh(x)²."""
    y = cache
    return dy * (1.0 - y * y)


def softmax_forward(x, overwrite_input: bool = False):
    """``overwrite_input=True``: the result replaces x's values (x is the caller's temporary)."""
    y = _stable_softmax(x, axis=-1, overwrite_input=overwrite_input)
    return y, y  # cache: the output


def softmax_backward(cache, dy):
    """dx_j = y_j (dy_j − Σ_k dy_k y_k)   (the Jacobian diag(y) − y yᵀ applied to dy)."""
    y = cache
    g = dy * y  # one temporary, reused for the result: the same arithmetic as y · (dy − Σ_k dy_k y_k)
    total = g.sum(axis=-1, keepdims=True)  # (..., 1)
    array_module(dy).subtract(dy, total, out=g)
    g *= y
    return g
