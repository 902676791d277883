"""Pooling the encoder's tokens into one vector per example: h (B, T, C) -> z (B, C).

    cls:   z_i = h_i0                                        position 0 (<s> / [CLS])
    mean:  z_i = Σ_t m_it h_it / n_i,  n_i = max(1, Σ_t m_it)   the mean over real tokens (m the (B, T) mask)

Backward: cls puts dz_i at position 0 and 0 elsewhere; mean gives every token dh_it = (m_it / n_i) dz_i,
so dz_i / n_i at each real token and exactly 0 at padding. No parameters, so no records.
"""
from __future__ import annotations

from dataclasses import dataclass

from minidp.backend import array_module

POOLING_CHOICES = ("cls", "mean")


@dataclass
class PoolingCache:
    mode: str  # "cls" | "mean"
    shape: tuple  # (B, T, C) of the pooled hidden states
    weights: object = None  # mean: (B, T) m_it / n_i; cls: None


def cls_forward(h):
    """z = h[:, 0] (B, C), and its cache."""
    xp = array_module(h)
    z = xp.ascontiguousarray(h[:, 0, :])  # (B, C)
    return z, PoolingCache(mode="cls", shape=tuple(h.shape))


def cls_backward(cache: PoolingCache, dz):
    """dh (B, T, C): dz at position 0, 0 elsewhere."""
    xp = array_module(dz)
    dh = xp.zeros(cache.shape, dtype=dz.dtype)  # (B, T, C)
    dh[:, 0, :] = dz  # only position 0 was read
    return dh


def mean_forward(h, mask):
    """z_i = Σ_t m_it h_it / max(1, Σ_t m_it) (B, C) for h (B, T, C), mask (B, T) 1 = token / 0 = padding."""
    m = mask.astype(h.dtype)  # (B, T)
    n = m.sum(axis=1, keepdims=True)  # (B, 1) real tokens
    n = n.clip(1.0, None)  # an all-padding row pools to 0, not 0/0
    z = (m[:, None, :] @ h)[:, 0, :] / n  # (B, 1, T) @ (B, T, C) -> (B, C)
    return z, PoolingCache(mode="mean", shape=tuple(h.shape), weights=m / n)


def mean_backward(cache: PoolingCache, dz):
    """dh_it = (m_it / n_i) dz_i (B, T, C): dz_i / n_i at real tokens, exactly 0 at padding."""
    return cache.weights[:, :, None] * dz[:, None, :]  # (B, T, 1) * (B, 1, C) -> (B, T, C)


def forward(h, mask, mode: str = "cls"):
    """``mode`` "cls" | "mean" -> (z (B, C), PoolingCache)."""
    if mode == "cls":
        return cls_forward(h)
    if mode == "mean":
        return mean_forward(h, mask)
    raise ValueError(f"pooling {mode!r}: use one of {POOLING_CHOICES}")


def backward(cache: PoolingCache, dz):
    """dz (B, C) -> dh (B, T, C), by the cache's mode."""
    return cls_backward(cache, dz) if cache.mode == "cls" else mean_backward(cache, dz)
