"""Numerically delicate helpers, each with the identity it relies on. Array-module agnostic (NumPy/CuPy)."""
from __future__ import annotations

import math

from scipy.special import erf as scipy_erf

from minidp.backend import array_module


def softmax(x, axis: int = -1, *, overwrite_input: bool = False):
    """softmax(x)_j = exp(x_j − m) / Σ_k exp(x_k − m), m = max_k x_k (shifting by m changes nothing and
    keeps every exponent ≤ 0, so nothing overflows).

    ``overwrite_input=True`` builds the result in ``x``'s own array (the caller's temporary, e.g. attention
    scores): the same arithmetic, one array of x's size fewer."""
    xp = array_module(x)
    if overwrite_input:
        e = x
        e -= x.max(axis=axis, keepdims=True)
    else:
        e = x - x.max(axis=axis, keepdims=True)  # one new array, then updated in place: the same arithmetic as
    xp.exp(e, out=e)  # e = exp(x − m); e / Σe, without two more temporaries of the input's size
    e /= e.sum(axis=axis, keepdims=True)
    return e


def logsumexp(x, axis: int = -1, keepdims: bool = False):
    """log Σ_k exp(x_k) = m + log Σ_k exp(x_k − m), m = max_k x_k."""
    xp = array_module(x)
    m = x.max(axis=axis, keepdims=True)
    out = m + xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True))
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
