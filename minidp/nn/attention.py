"""Multi-head self-attention with a padding mask (the `attention.self` block of BERT/RoBERTa).

    q, k, v = x Wqᵀ + bq, x Wkᵀ + bk, x Wvᵀ + bv                  (B, T, C) each, split into H heads of D = C/H
    scores  = (q / √D) kᵀ + mask_bias                            (B, H, T, T)
    probs   = dropout(softmax(scores))                           (B, H, T, T)
    context = probs v, heads merged back                         (B, T, C)

The 1/√D scale is applied to q (B, H, T, D) rather than to the scores (B, H, T, T): the same product,
T/D times fewer elements scaled; backward scales dq likewise (dq = (dscores k) / √D, dk = dscoresᵀ (q / √D)).
The scores, then the softmax, are built in one array (in place), and so is the softmax backward.

mask_bias is 0 where the key is a real token and the dtype's most negative finite number where it is
padding (as transformers' eager attention), so padded keys get probability exactly 0. A row whose keys
are all padding gets uniform attention (never NaN). The output projection and LayerNorm belong to the
encoder block (models/block.py), not here.

Parameters: p = {"query": {"weight", "bias"}, "key": {...}, "value": {...}}, HF layout (C, C). A projection
named in ``lora`` also carries "lora_A.weight" / "lora_B.weight" and runs as a LoRA layer (minidp.nn.lora).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from minidp.backend import array_module
from minidp.nn import activations, dropout, lora as lora_layer
from minidp.per_example import SharedInput

PROJECTIONS = ("query", "key", "value")


def mask_bias(attention_mask, dtype):
    """(B, T) 1 = token / 0 = padding -> (B, 1, 1, T) additive bias: 0 or the most negative finite number."""
    xp = array_module(attention_mask)
    most_negative = np.finfo(np.dtype(dtype)).min
    keep = attention_mask.astype(dtype)[:, None, None, :]  # (B, 1, 1, T)
    return (1.0 - keep) * xp.asarray(most_negative, dtype=dtype)


@dataclass
class AttentionCache:
    proj: dict  # {"query"|"key"|"value": LinearCache}
    q: object  # (B, H, T, D) the queries scaled by 1/√D
    k: object  # (B, H, T, D)
    v: object  # (B, H, T, D)
    probs: object  # (B, H, T, T) softmax output (before dropout)
    probs_dropped: object  # (B, H, T, T) after dropout (what multiplied v)
    dropout: object  # dropout cache (scaled mask or None)


def split_heads(x, num_heads: int):
    B, T, C = x.shape
    return x.reshape(B, T, num_heads, C // num_heads).transpose(0, 2, 1, 3)  # (B, H, T, D)


def merge_heads(x):
    B, H, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * D)  # (B, T, C)


def forward(p, x, attention_bias, num_heads: int, *, dropout_p: float = 0.0, rng=None, training=False,
            lora: dict | None = None):
    """x (B, T, C), attention_bias (B, 1, 1, T) from ``mask_bias`` -> context (B, T, C), cache.

    ``lora``: {projection name: LoraSettings} for the projections with a LoRA branch (default none)."""
    shared_x = SharedInput(x)  # q, k and v read the same x: one Gram matrix for all three ghost norms
    heads, proj_caches = {}, {}
    for name in PROJECTIONS:
        out, proj_caches[name] = lora_layer.forward_any(p[name], x, (lora or {}).get(name), rng=rng,
                                                        training=training, shared_input=shared_x)  # (B, T, C)
        heads[name] = split_heads(out, num_heads)  # (B, H, T, D)
    k, v = heads["key"], heads["value"]
    D = k.shape[-1]
    q = heads["query"] * (1.0 / math.sqrt(D))  # (B, H, T, D): q / √D
    scores = q @ k.transpose(0, 1, 3, 2)  # (B, H, T, T)
    scores += attention_bias  # in place: + mask bias (B, 1, 1, T)
    probs, _ = activations.softmax_forward(scores, overwrite_input=True)  # (B, H, T, T), over scores' array
    probs_dropped, drop_cache = dropout.forward(probs, dropout_p, rng, training)  # (B, H, T, T)
    context = merge_heads(probs_dropped @ v)  # (B, H, T, D) -> (B, T, C)
    cache = AttentionCache(proj=proj_caches, q=q, k=k, v=v, probs=probs,
                           probs_dropped=probs_dropped, dropout=drop_cache)
    return context, cache


def backward(p, cache: AttentionCache, dcontext):
    """dcontext (B, T, C) -> dx (B, T, C), records {"query.weight", "query.bias", ...}."""
    num_heads = cache.q.shape[1]
    D = cache.q.shape[-1]
    dctx = split_heads(dcontext, num_heads)  # (B, H, T, D)
    # context = probs_dropped @ v
    dprobs_dropped = dctx @ cache.v.transpose(0, 1, 3, 2)  # (B, H, T, T)
    dv = cache.probs_dropped.transpose(0, 1, 3, 2) @ dctx  # (B, H, T, D)
    dprobs = dropout.backward(cache.dropout, dprobs_dropped)  # (B, H, T, T)
    dscores = activations.softmax_backward(cache.probs, dprobs)  # (B, H, T, T)
    # scores = (q / √D) kᵀ + bias   (the bias is a constant; cache.q holds q / √D)
    dq = dscores @ cache.k  # (B, H, T, D)
    dq *= 1.0 / math.sqrt(D)
    dk = dscores.transpose(0, 1, 3, 2) @ cache.q  # (B, H, T, D)
    dheads = {"query": dq, "key": dk, "value": dv}
    dx, records = None, {}
    for name in PROJECTIONS:
        dx_part, proj_records = lora_layer.backward_any(p[name], cache.proj[name], merge_heads(dheads[name]))
        dx = dx_part if dx is None else dx + dx_part  # (B, T, C): x feeds all three projections
        for param, record in proj_records.items():
            records[f"{name}.{param}"] = record
    return dx, records
