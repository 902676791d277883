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

# Φ(x) ≈ ½ + x P(u)/Q(u), u = (min(|x|, X)/X)², X = CDF_CLAMP: coefficients derived (and their error
# measured) by scripts/numerics/fit_normal_cdf.py; |error| ≤ 9.9e-9 in float64 over the whole real line.
CDF_CLAMP = 5.625  # 45/8, exact in float32; 1 − Φ(X) = 9.3e-9: below half of float32's spacing under 1
CDF_P = (0.39894221790742146, 1.0920146857517572, 4.720612098595074, 5.549166883322294, 6.374002465445819,
         0.6976824768296946)
CDF_Q = (1.0, 8.0106804101052, 29.05028272768428, 60.836345465643355, 75.66745832310414, 37.299967139760895)
CDF_CHUNK = 1 << 15  # elements per pass of the rational form: four float64 scratch arrays of 256 KiB stay in cache


def normal_cdf(x, out=None):
    """Φ(x) = ½ (1 + erf(x / √2)), elementwise, in x's dtype (``out``: as a ufunc's).

    Plain form (float64, and any CuPy array): ``(erf(x · 1/√2) + 1) · ½``, SciPy's (or CuPy's) erf.

    Fast form (float32 NumPy arrays, the training dtype): the rational approximation above, evaluated in
    float64 over chunks of CDF_CHUNK elements and rounded once to float32. SciPy's erf costs ≈ 18 ns an
    element (a double-precision routine with branches); the rational form ≈ 5 ns (docs/performance.md). Its
    error, ≤ 9.9e-9 before rounding, plus the final rounding (≤ 3.0e-8 near 1) stays below the plain float32
    form's own 6.1e-8 (erf rounded to float32, then 1 + erf rounded again); tests/test_numerics.py checks
    both bounds on float32 inputs. Like the plain form it gives exactly 0 for x ≤ −X and 1 for x ≥ X (±inf
    included); NaN stays NaN.
    """
    xp = array_module(x)
    x = xp.asarray(x)
    if out is None:
        out = xp.empty(x.shape, dtype=x.dtype)  # C order whatever x's layout
    if xp.__name__ != "numpy" or x.dtype != xp.float32:
        return normal_cdf_plain(x, out=out)
    if not out.flags.c_contiguous:  # the chunks write through a flat view of out
        out[...] = normal_cdf(x)
        return out
    xf, of = xp.ascontiguousarray(x).reshape(-1), out.reshape(-1)  # flat views
    n = min(CDF_CHUNK, xf.size)
    xc, u, p, q = (xp.empty(n, dtype=xp.float64) for _ in range(4))  # float64 scratch, reused per chunk
    keep = xp.empty(n, dtype=bool)
    for start in range(0, xf.size, CDF_CHUNK):
        m = min(CDF_CHUNK, xf.size - start)
        xc_, u_, p_, q_, keep_ = xc[:m], u[:m], p[:m], q[:m], keep[:m]
        xp.clip(xf[start:start + m], -CDF_CLAMP, CDF_CLAMP, out=xc_)  # x, clamped to [−X, X], in float64
        xp.multiply(xc_, xc_, out=u_)
        u_ *= 1.0 / (CDF_CLAMP * CDF_CLAMP)  # u = (x/X)² in [0, 1]
        _horner(CDF_P, u_, p_)  # P(u)
        _horner(CDF_Q, u_, q_)  # Q(u) ≥ 1
        p_ /= q_
        p_ *= xc_
        p_ += 0.5  # Φ = ½ + x P/Q
        xp.greater(xc_, -CDF_CLAMP, out=keep_)
        p_ *= keep_  # exactly 0 for x ≤ −X (so x Φ(x) stays 0 for any large negative x); NaN stays NaN
        of[start:start + m] = p_  # one rounding to float32
    return out


def normal_cdf_plain(x, out=None):
    """Φ(x) = (erf(x · 1/√2) + 1) · ½ with SciPy's (CuPy's) erf, built in ``out``: normal_cdf's plain form."""
    xp = array_module(x)
    out = xp.empty(x.shape, dtype=x.dtype) if out is None else out
    xp.multiply(x, INV_SQRT2, out=out)
    erf(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def _horner(coefficients, u, out):
    """out = Σ_k c_k u^k by Horner's rule, ((c_n u + c_{n−1}) u + …) u + c_0, in place."""
    xp = array_module(u)
    xp.multiply(u, coefficients[-1], out=out)
    for c in coefficients[-2:0:-1]:
        out += c
        out *= u
    out += coefficients[0]
