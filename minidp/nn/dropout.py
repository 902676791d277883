"""Inverted dropout: y = x · m / (1 − p), m ~ Bernoulli(1 − p) elementwise; identity when not training."""
from __future__ import annotations

from minidp.backend import array_module


def forward(x, p: float, rng=None, training: bool = False):
    if not training or p == 0.0:
        return x, None  # cache None: nothing was dropped
    if rng is None:
        raise ValueError("dropout in training mode needs a random generator (the 'dropout' stream)")
    xp = array_module(x)
    # u ~ U[0, 1) drawn in x's dtype; the mask m = [u >= p] / (1 − p) is then written over u's array
    scaled_mask = rng.random(x.shape, dtype=x.dtype)  # same shape as x
    keep = scaled_mask >= p  # bool
    xp.divide(keep, 1.0 - p, out=scaled_mask)
    return x * scaled_mask, scaled_mask


def backward(cache, dy):
    scaled_mask = cache
    return dy if scaled_mask is None else dy * scaled_mask
