"""LoRA linear layer (Hu et al. 2021): a frozen linear layer plus a trainable low-rank update.

    u = drop(x) Aᵀ                           (B, T, r)      dropout on the LoRA branch only (PEFT's lora_dropout)
    y = x Wᵀ + b + s · u Bᵀ                  (B, T, d_out)  s = α / r (PEFT's ``scaling``)

W (d_out, d_in) and b (d_out,) are the base layer in HF layout (frozen in LoRA training), A (r, d_in) and
B (d_out, r) the factors. Hu et al. initialise B = 0, so a fresh layer computes exactly the base layer.
2-D inputs (B, d_in) are accepted as for ``linear`` (T = 1).

Backward, with g = dy (B, T, d_out):
    ∇_i B = Σ_t g_itᵀ (s·u_it)              (d_out, r)   a linear-layer gradient: input s·u, output gradient g
    du    = s · g B                          (B, T, r)
    ∇_i A = Σ_t du_itᵀ drop(x)_it            (r, d_in)    a linear-layer gradient: input drop(x), output grad du
    dx    = g W + drop_backward(du A)        (B, T, d_in)
Both factors are therefore ``LinearRecord``s, which choose ghost norm or materialisation by the same cost
rule as every linear layer (for A: 2T² < r·d_in; for B: 2T² < d_out·r), so clipping stays one pass. The
base layer's records (``weight``, ``bias``) are returned too; the model keeps only the trainable ones.

Parameters: p = {"weight", "bias", "lora_A.weight", "lora_B.weight"}; the record names are the same keys.
"""
from __future__ import annotations

from dataclasses import dataclass

from minidp.nn import dropout, linear
from minidp.per_example import LinearRecord, SharedInput

LORA_A, LORA_B = "lora_A.weight", "lora_B.weight"  # parameter and record names of the factors


@dataclass(frozen=True)
class LoraSettings:
    """The hyperparameters of one LoRA layer (the factors themselves live in the parameter dict)."""

    scaling: float  # s = α / r
    dropout: float = 0.0  # dropout probability on the LoRA branch's input


@dataclass
class LoraCache:
    base: linear.LinearCache  # the base layer's input x
    x_lora: SharedInput  # drop(x) (B, T, d_in): the input of A (x's own SharedInput when nothing was dropped)
    u: object  # (B, T, r) drop(x) Aᵀ
    dropout: object  # dropout cache on the LoRA branch (scaled mask or None)
    scaling: float  # s = α / r


def forward(p, x, *, scaling: float, dropout_p: float = 0.0, rng=None, training: bool = False,
            shared_input: SharedInput | None = None):
    """y = x Wᵀ + b + s · (drop(x) Aᵀ) Bᵀ; x (B, T, d_in) -> y (B, T, d_out), cache.

    ``shared_input`` as in ``linear.forward``; dropout applies in training mode only, drawing from ``rng``."""
    y, base_cache = linear.forward(p, x, shared_input=shared_input)  # (B, T, d_out)
    x_drop, drop_cache = dropout.forward(x, dropout_p, rng, training)  # (B, T, d_in)
    x_lora = base_cache.x if drop_cache is None else SharedInput(x_drop)  # same x: share its Gram matrix
    u = linear._matmul_tokens(x_drop, p[LORA_A].T)  # (B, T, d_in) @ (d_in, r) -> (B, T, r)
    y = y + scaling * linear._matmul_tokens(u, p[LORA_B].T)  # (B, T, r) @ (r, d_out) -> (B, T, d_out)
    return y, LoraCache(base=base_cache, x_lora=x_lora, u=u, dropout=drop_cache, scaling=float(scaling))


def backward(p, cache: LoraCache, dy):
    """dy (B, T, d_out) -> dx (B, T, d_in), records {"weight", "bias", "lora_A.weight", "lora_B.weight"}."""
    s = cache.scaling
    dx, records = linear.backward(p, cache.base, dy)  # dx = dy W (B, T, d_in); base records (frozen in LoRA)
    records[LORA_B] = LinearRecord(SharedInput(s * cache.u), dy)  # ∇_i B = Σ_t dy_itᵀ (s·u_it)  (d_out, r)
    du = s * linear._matmul_tokens(dy, p[LORA_B])  # (B, T, d_out) @ (d_out, r) -> (B, T, r)
    records[LORA_A] = LinearRecord(cache.x_lora, du)  # ∇_i A = Σ_t du_itᵀ drop(x)_it  (r, d_in)
    dx_lora = linear._matmul_tokens(du, p[LORA_A])  # (B, T, r) @ (r, d_in) -> (B, T, d_in)
    dx = dx + dropout.backward(cache.dropout, dx_lora)  # (B, T, d_in)
    return dx, records


def forward_any(p, x, settings: LoraSettings | None, *, rng=None, training: bool = False,
                shared_input: SharedInput | None = None):
    """A linear layer with or without a LoRA branch: ``linear.forward`` when ``settings`` is None."""
    if settings is None:
        return linear.forward(p, x, shared_input=shared_input)
    return forward(p, x, scaling=settings.scaling, dropout_p=settings.dropout, rng=rng, training=training,
                   shared_input=shared_input)


def backward_any(p, cache, dy):
    """The backward matching ``forward_any`` (told apart by the cache's type)."""
    if isinstance(cache, LoraCache):
        return backward(p, cache, dy)
    return linear.backward(p, cache, dy)


def merged_weight(p, scaling: float):
    """W + s · B A (d_out, d_in): the plain linear layer computing the same y (no dropout)."""
    return p["weight"] + scaling * (p[LORA_B] @ p[LORA_A])  # (d_out, r) @ (r, d_in) -> (d_out, d_in)
