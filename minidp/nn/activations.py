"""Elementwise activations and softmax, each a forward/backward pair.

gelu: the exact-erf GELU of Hugging Face's "gelu": y = x Φ(x) = ½ x (1 + erf(x / √2)).
tanh: y = tanh(x).
softmax over the last axis (stable: see minidp.numerics.softmax).
"""
from __future__ import annotations

from minidp.backend import array_module
from minidp.numerics import INV_SQRT_2PI, normal_cdf
from minidp.numerics import softmax as _stable_softmax
from minidp.threads import run_blocks


def gelu_forward(x):
    """y = x Φ(x), Φ(x) = ½(1 + erf(x/√2)) from minidp.numerics.normal_cdf (in float32 on the CPU its fast
    rational form); cache (x, Φ(x)). Large NumPy arrays run in blocks over the elementwise thread pool
    (minidp.threads: the same arithmetic per element, bit-identical)."""
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    cdf, y = xp.empty_like(x), xp.empty_like(x)  # same shape as x
    xf, cf, yf = x.reshape(-1), cdf.reshape(-1), y.reshape(-1)  # flat views

    def block(s):
        c = normal_cdf(xf[s], out=cf[s])  # Φ(x), built in its own block
        xp.multiply(xf[s], c, out=yf[s])

    run_blocks(block, x.size, on_numpy=xp.__name__ == "numpy")
    return y, (x, cdf)  # cache: the input and Φ(x)


def gelu_backward(cache, dy):
    """d/dx [x Φ(x)] = Φ(x) + x φ(x), φ(x) = exp(−x²/2) / √(2π); in blocks like gelu_forward."""
    x, cdf = cache
    xp = array_module(x)
    dy = xp.ascontiguousarray(dy)
    g = xp.empty_like(x)  # one array, updated in place: g = dy · (Φ(x) + x φ(x))
    xf, cf, df, gf = x.reshape(-1), cdf.reshape(-1), dy.reshape(-1), g.reshape(-1)

    def block(s):
        b = gf[s]
        xp.multiply(xf[s], xf[s], out=b)
        b *= -0.5
        xp.exp(b, out=b)
        b *= INV_SQRT_2PI  # φ(x)
        b *= xf[s]
        b += cf[s]
        b *= df[s]

    run_blocks(block, x.size, on_numpy=xp.__name__ == "numpy")
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
    """dx_j = y_j (dy_j − Σ_k dy_k y_k)   (the Jacobian diag(y) − y yᵀ applied to dy); rows in blocks over
    the elementwise thread pool for large NumPy arrays (minidp.threads: bit-identical)."""
    y = cache
    xp = array_module(dy)
    dy = xp.ascontiguousarray(dy)
    g = xp.empty_like(dy)  # one array, reused for the result: the same arithmetic as y · (dy − Σ_k dy_k y_k)
    width = dy.shape[-1]
    y2, dy2, g2 = xp.ascontiguousarray(y).reshape(-1, width), dy.reshape(-1, width), g.reshape(-1, width)

    def block(s):
        b = g2[s]
        xp.multiply(dy2[s], y2[s], out=b)
        total = b.sum(axis=-1, keepdims=True)  # (rows, 1)
        xp.subtract(dy2[s], total, out=b)
        b *= y2[s]

    run_blocks(block, g2.shape[0], elements=g2.size, on_numpy=xp.__name__ == "numpy")
    return g
