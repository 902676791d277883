"""Finite-difference gradient checks for forward/backward pairs (float64).

For a layer y = f(p, x) we take the scalar L = Σ y · R with a fixed random R, so backward(dy=R) must give
dL/dx and dL/dp. Central differences: (L(θ+h) − L(θ−h)) / 2h, error O(h²) + roundoff O(ε/h).
Per-example records are checked too: example i's gradient is dL_i/dp with L_i = Σ y_i · R_i.
"""
from __future__ import annotations

import numpy as np

H = 1e-6


def numerical_grad(fn, array):
    """d fn() / d array by central differences, perturbing ``array`` in place (restored afterwards)."""
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + H
        up = fn()
        flat[k] = old - H
        down = fn()
        flat[k] = old
        gflat[k] = (up - down) / (2 * H)
    return grad


ZERO_SCALE = 1e-7  # below this both sides are "zero" (e.g. the key bias, whose gradient is exactly 0)


def rel_err(a, b):
    """max|a − b| / max(|a|, |b|); the absolute difference when both are (structurally) zero."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(np.abs(a - b).max(initial=0.0))
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    return diff / scale if scale > ZERO_SCALE else diff


def check_records(records, params, loss_of_example, batch_size, tol=1e-6, examples=None):
    """Every record against finite differences: summed, per example, and the norms.

    ``loss_of_example(i)`` -> L_i; ``params`` {name: array} (the arrays the records refer to).
    Returns {name: max relative error} for printing.
    """
    errors = {}
    for name, record in records.items():
        per_example = np.asarray(record.per_example())
        for i in range(batch_size) if examples is None else examples:
            numeric_i = numerical_grad(lambda i=i: loss_of_example(i), params[name])
            err = rel_err(per_example[i], numeric_i)
            assert err <= tol, f"{name} example {i}: max rel err {err:.2e}"
            errors[name] = max(errors.get(name, 0.0), err)
        summed = record.weighted_sum(None)
        assert rel_err(summed, per_example.sum(0)) <= 1e-12, name
        c = np.linspace(0.3, 1.7, batch_size)
        assert rel_err(record.weighted_sum(c), np.tensordot(c, per_example, axes=(0, 0))) <= 1e-12, name
        norms = (per_example.reshape(batch_size, -1) ** 2).sum(1)
        assert rel_err(record.norm_sq(), norms) <= 1e-12, name
    return errors
