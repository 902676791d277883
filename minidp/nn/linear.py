"""Linear layer in Hugging Face layout: y = x Wᵀ + b, W (d_out, d_in), b (d_out,).

Shapes: x (B, T, d_in) or (B, d_in) -> y (B, T, d_out) or (B, d_out).
"""
from __future__ import annotations

from dataclasses import dataclass

from minidp.per_example import DenseRecord, LinearRecord, SharedInput


@dataclass
class LinearCache:
    x: SharedInput  # the input (B, T, d_in), wrapped so layers reading the same x share its Gram matrix


def _matmul_tokens(x, w):
    """(..., d) @ (d, e) -> (..., e) as ONE 2-D matrix product over all tokens.

    Same result as ``x @ w``; NumPy runs a 3-D @ 2-D product as a loop of small products, several
    times slower than one large GEMM, so the token axes are flattened first.
    """
    lead = x.shape[:-1]
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(lead + (w.shape[-1],))


def forward(p, x, shared_input: SharedInput | None = None):
    """y = x Wᵀ + b. ``shared_input`` (optional) wraps ``x`` when several layers read it (Q, K, V)."""
    y = _matmul_tokens(x, p["weight"].T)  # (B, T, d_in) @ (d_in, d_out) -> (B, T, d_out)
    if "bias" in p:
        y += p["bias"]  # (B, T, d_out), in place (y is this layer's own new array)
    x_record = shared_input if shared_input is not None else SharedInput(x)
    return y, LinearCache(x=x_record)


def backward(p, cache: LinearCache, dy):
    """dx = dy W; per-example records ∇_i W = dy_iᵀ x_i and ∇_i b = Σ_t dy_it."""
    dx = _matmul_tokens(dy, p["weight"])  # (B, T, d_out) @ (d_out, d_in) -> (B, T, d_in)
    records = {"weight": LinearRecord(cache.x, dy)}
    if "bias" in p:
        db = dy if dy.ndim == 2 else dy.sum(axis=1)  # (B, d_out): per-example bias gradients
        records["bias"] = DenseRecord(db)
    return dx, records
