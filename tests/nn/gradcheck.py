"""Finite-difference gradient checks for forward/backward pairs (float64): the one helper every test uses.

For a layer y = f(p, x) we take the scalar L = Σ y · R with a fixed random R, so backward(dy=R) must give
dL/dx and dL/dp. Per-example records are checked too: example i's gradient is dL_i/dp with L_i = Σ y_i · R_i.

The numerical derivative. Entry x_k is stepped by h_k = STEP · max(|x_k|, rms(x)) (a step in the input's own
units) and differentiated by the 4th-order central stencil

    g(h) = (f(x − 2h) − 8 f(x − h) + 8 f(x + h) − f(x + 2h)) / 12h      error ≈ h⁴ f⁽⁵⁾/30 + 1.5 δf / h

(δf: the roundoff of one evaluation of f). STEP = 1e-3 sits near the optimum ε_mach^(1/5) ≈ 7e-4 of that
trade-off, where both terms are ~1e-12 of the gradient's scale, so a 1e-6 bar has six digits of margin.
(A complex step would remove the roundoff term, but the layers use max, comparisons and erf: not analytic.)

The check's own error bar, per entry: noise_k = |g(2h) − g(h)| + ε_mach · F / h_k. The first term is
measured: g(2h) reuses f(x ± 2h), its truncation error is 16× that of g(h), and its roundoff is largely
independent, so the difference bounds both. The second is the roundoff floor of one evaluation, F the
largest magnitude f is computed from (Σ|terms| when ``fn`` returns the terms of L, and the largest |x|). It
keeps the bar from collapsing where the measured difference is 0 by chance, e.g. a gradient that is exactly
0 (the key bias).

The comparison:  err = max_k (|a_k − n_k| − SLACK · noise_k)⁺ / max(max|a|, max|n|)  ≤  tol.
Differences the finite differences cannot resolve are not counted; everything else is relative to the
whole tensor's gradient scale, never to one entry's (which may be ~0). A dropped term in a backward changes
the gradient by O(its scale): at least 0.14 of it in tests/nn/test_gradcheck.py, 10⁵× the bar.
"""
from __future__ import annotations

import numpy as np

STEP = 1e-3  # relative finite-difference step (see module docstring)
SLACK = 10.0  # how many error bars of the numerical derivative a difference must exceed to count
TOL = 1e-6  # the gradient-check bar, for every layer
EPS = np.finfo(np.float64).eps


def _evaluate(fn) -> tuple[float, float]:
    """(L, F): L = fn() summed, F = Σ|terms| (the magnitude its roundoff scales with)."""
    out = fn()
    if np.ndim(out) == 0:
        value = float(out)
        return value, abs(value)
    out = np.asarray(out, dtype=np.float64)
    return float(out.sum()), float(np.abs(out).sum())


def numerical_grad(fn, array, *, with_noise: bool = False):
    """d fn() / d array by the 4th-order stencil, perturbing ``array`` in place (restored afterwards).

    ``fn()`` returns L, or an array of terms whose sum is L (this tightens the roundoff floor).
    With ``with_noise``: (gradient, noise) with noise the per-entry error bar of the module docstring.
    """
    grad, noise = np.zeros_like(array, dtype=np.float64), np.zeros_like(array, dtype=np.float64)
    flat, gflat, nflat = array.reshape(-1), grad.reshape(-1), noise.reshape(-1)
    assert np.shares_memory(flat, array), "numerical_grad perturbs in place: pass a contiguous array"
    rms = float(np.sqrt(np.mean(np.square(flat)))) if flat.size else 0.0
    x_max = float(np.abs(flat).max(initial=0.0))
    for k in range(flat.size):
        old = flat[k]
        h = STEP * (max(abs(float(old)), rms) or 1.0)  # (h_k; 1 when the whole array is 0)
        f, magnitude = {}, x_max
        for j in (-4, -2, -1, 1, 2, 4):  # offsets in units of h
            flat[k] = old + j * h
            f[j], F_j = _evaluate(fn)
            magnitude = max(magnitude, F_j)
        flat[k] = old
        g_h = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * h)
        g_2h = (f[-4] - 8 * f[-2] + 8 * f[2] - f[4]) / (24 * h)
        gflat[k] = g_h
        nflat[k] = abs(g_2h - g_h) + EPS * magnitude / h
    return (grad, noise) if with_noise else grad


def grad_error(analytic, numeric, noise=0.0) -> float:
    """max_k (|a_k − n_k| − SLACK·noise_k)⁺ / max(max|a|, max|n|): the relative error the step can resolve.

    0 when every difference is within the numerical derivative's error bar (both exactly 0 included).
    """
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    assert a.shape == n.shape, (a.shape, n.shape)
    unresolved = np.maximum(np.abs(a - n) - SLACK * np.asarray(noise, dtype=np.float64), 0.0)
    excess = float(unresolved.max(initial=0.0))
    if excess == 0.0:
        return 0.0
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(n).max(initial=0.0)))
    return excess / scale if scale > 0 else float("inf")


def check_grad(fn, array, analytic, *, tol: float = TOL, name: str = "x", rows=None) -> float:
    """Assert backward's ``analytic`` dL/d``array`` matches finite differences of ``fn``; return the error.

    ``rows``: compare only these indices of the first axis (e.g. the examples that have a real token).
    """
    numeric, noise = numerical_grad(fn, array, with_noise=True)
    analytic = np.asarray(analytic)
    if rows is not None:
        analytic, numeric, noise = analytic[rows], numeric[rows], noise[rows]
    err = grad_error(analytic, numeric, noise)
    diff, scale = float(np.abs(analytic - numeric).max(initial=0.0)), float(np.abs(numeric).max(initial=0.0))
    print(f"{name}: max rel err {err:.2e} beyond the error bar (max |a - n| {diff:.1e}, |n| up to {scale:.1e}, "
          f"error bar up to {float(np.max(noise, initial=0.0)):.1e})")
    assert err <= tol, f"{name}: max rel err {err:.2e} > {tol:.0e}"
    return err


ZERO_SCALE = 1e-7  # rel_err: below this both sides are "zero"


def rel_err(a, b):
    """max|a − b| / max(|a|, |b|); the absolute difference when both are (structurally) zero.

    For comparisons of two exact computations (forward vs the plain formula, host vs device), not for
    finite differences: those go through ``check_grad`` / ``check_records``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(np.abs(a - b).max(initial=0.0))
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    return diff / scale if scale > ZERO_SCALE else diff


def check_records(records, params, loss_of_example, batch_size, tol=TOL, examples=None):
    """Every record against finite differences: summed, per example, and the norms.

    ``loss_of_example(i)`` -> L_i (or the array of its terms); ``params`` {name: array} (the arrays the
    records refer to). Returns {name: max relative error} for printing.
    """
    errors = {}
    for name, record in records.items():
        per_example = np.asarray(record.per_example())
        for i in range(batch_size) if examples is None else examples:
            numeric_i, noise_i = numerical_grad(lambda i=i: loss_of_example(i), params[name], with_noise=True)
            err = grad_error(per_example[i], numeric_i, noise_i)
            assert err <= tol, f"{name} example {i}: max rel err {err:.2e}"
            errors[name] = max(errors.get(name, 0.0), err)
        summed = record.weighted_sum(None)
        assert rel_err(summed, per_example.sum(0)) <= 1e-12, name
        c = np.linspace(0.3, 1.7, batch_size)
        assert rel_err(record.weighted_sum(c), np.tensordot(c, per_example, axes=(0, 0))) <= 1e-12, name
        norms = (per_example.reshape(batch_size, -1) ** 2).sum(1)
        assert rel_err(record.norm_sq(), norms) <= 1e-12, name
    return errors
