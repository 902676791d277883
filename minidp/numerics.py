"""Numerically delicate helpers, each with the identity it relies on. Array-module agnostic (NumPy/CuPy)."""
from __future__ import annotations

import math

from scipy.special import erf as scipy_erf

from minidp.backend import array_module
from minidp.threads import run_blocks


def softmax(x, axis: int = -1, *, overwrite_input: bool = False):
    """softmax(x)_j = exp(x_j − m) / Σ_k exp(x_k − m), m = max_k x_k (shifting by m changes nothing and
    keeps every exponent ≤ 0, so nothing overflows).

    ``overwrite_input=True`` builds the result in ``x``'s own array (the caller's temporary, e.g. attention
    scores): the same arithmetic, one array of x's size fewer. Over the last axis of a large contiguous NumPy
    array the rows run in blocks over the elementwise thread pool (minidp.threads; each row's arithmetic is
    unchanged, so the result is bit-identical)."""
    xp = array_module(x)
    if overwrite_input:
        e = x
    else:
        e = xp.empty_like(x)  # one new array, then updated in place: e / Σe without two more temporaries
    if axis in (-1, x.ndim - 1) and x.ndim >= 1 and x.flags.c_contiguous and e.flags.c_contiguous:
        width = x.shape[-1] if x.ndim else 1
        x2, e2 = x.reshape(-1, width), e.reshape(-1, width)  # (rows, width) views

        def block(s):
            _softmax_rows(xp, x2[s], e2[s], axis=-1)

        run_blocks(block, x2.shape[0], elements=x2.size, on_numpy=xp.__name__ == "numpy")
        return e
    _softmax_rows(xp, x, e, axis=axis)
    return e


def _softmax_rows(xp, x, e, axis):
    """e = softmax(x) along ``axis``, written into ``e`` (which may be ``x`` itself)."""
    m = x.max(axis=axis, keepdims=True)
    xp.subtract(x, m, out=e)
    xp.exp(e, out=e)  # e = exp(x − m)
    e /= e.sum(axis=axis, keepdims=True)


def logsumexp(x, axis: int = -1, keepdims: bool = False):
    """log Σ_k exp(x_k) = m + log Σ_k exp(x_k − m), m = max_k x_k; −inf where every x_k = −inf (an empty sum).

    The one log-sum-exp of the package: the loss (log_softmax) and both accountants (privacy/rdp.py,
    privacy/pld.py, on host float64 log-terms) call it."""
    xp = array_module(x)
    m = x.max(axis=axis, keepdims=True)
    m = xp.where(m == -xp.inf, 0, m)  # all −inf: shift by 0, not by −inf (−inf − (−inf) would be nan)
    s = xp.exp(x - m).sum(axis=axis, keepdims=True)  # ≥ 1 unless every term is −inf
    out = xp.where(s > 0, m + xp.log(xp.where(s > 0, s, 1)), -xp.inf)
    return out if keepdims else out.squeeze(axis)


def log_softmax(x, axis: int = -1):
    """log softmax(x)_j = x_j − logsumexp(x)."""
    return x - logsumexp(x, axis=axis, keepdims=True)


def erf(x, out=None):
    """The error function, elementwise: SciPy's on NumPy arrays, CuPy's on GPU arrays (``out``: as a ufunc's)."""
    xp = array_module(x)
    if xp.__name__ == "numpy":
        return scipy_erf(x, out=out)
    from cupyx.scipy.special import erf as cupy_erf  # noqa: PLC0415  (optional dependency: CuPy)

    return cupy_erf(x, out=out)


INV_SQRT2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
