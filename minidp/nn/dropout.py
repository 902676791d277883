"""Inverted dropout: y = x · m / (1 − p), m ~ Bernoulli(1 − p) elementwise; identity when not training."""
from __future__ import annotations


def forward(x, p: float, rng=None, training: bool = False):
    if not training or p == 0.0:
        return x, None  # cache None: nothing was dropped
    if rng is None:
        raise ValueError("dropout in training mode needs a random generator (the 'dropout' stream)")
    keep = (rng.random(x.shape) >= p).astype(x.dtype)  # same shape as x
    scaled_mask = keep / (1.0 - p)
    return x * scaled_mask, scaled_mask


def backward(cache, dy):
    scaled_mask = cache
    return dy if scaled_mask is None else dy * scaled_mask
