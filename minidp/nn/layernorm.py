"""LayerNorm over the last axis: y = (x − μ) / √(σ² + eps) · w + b, w, b (C,).

Shapes: x (B, T, C) -> y (B, T, C). eps comes from the model config (RoBERTa 1e-5, BERT 1e-12).
"""
from __future__ import annotations

from dataclasses import dataclass

from minidp.backend import array_module
from minidp.per_example import DenseRecord


@dataclass
class LayerNormCache:
    xhat: object  # (B, T, C) the normalised input (x − μ) · rstd
    rstd: object  # (B, T, 1) 1 / √(σ² + eps)


def forward(p, x, eps: float):
    xp_mean = x.mean(axis=-1, keepdims=True)  # (B, T, 1)
    centred = x - xp_mean  # (B, T, C)
    var = (centred * centred).mean(axis=-1, keepdims=True)  # (B, T, 1) biased variance, as torch
    rstd = 1.0 / (var + eps) ** 0.5  # (B, T, 1)
    xhat = centred
    xhat *= rstd  # (B, T, C), in place over ``centred``
    y = xhat * p["weight"]
    y += p["bias"]  # (B, T, C)
    return y, LayerNormCache(xhat=xhat, rstd=rstd)


def backward(p, cache: LayerNormCache, dy):
    """dx = rstd · (dxhat − mean(dxhat) − xhat · mean(dxhat · xhat)), dxhat = dy · w (derivation: docs/layers.md)."""
    xhat, rstd = cache.xhat, cache.rstd
    token_axes = tuple(range(1, dy.ndim - 1))  # sum over T (none for (B, C) inputs)
    scratch = dy * xhat  # (B, T, C), reused below
    records = {
        "weight": DenseRecord(scratch.sum(axis=token_axes)),  # (B, C)
        "bias": DenseRecord(dy.sum(axis=token_axes)),  # (B, C)
    }
    # dx = ((dxhat − mean(dxhat)) − xhat · mean(dxhat · xhat)) · rstd, built in place in dxhat's array
    xp = array_module(dy)
    dxhat = dy * p["weight"]  # (B, T, C)
    mean_dxhat = dxhat.mean(axis=-1, keepdims=True)  # (B, T, 1)
    xp.multiply(dxhat, xhat, out=scratch)
    mean_dxhat_xhat = scratch.mean(axis=-1, keepdims=True)  # (B, T, 1)
    dxhat -= mean_dxhat
    xp.multiply(xhat, mean_dxhat_xhat, out=scratch)
    dxhat -= scratch
    dxhat *= rstd
    return dxhat, records
