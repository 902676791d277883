"""Embedding lookup: y = E[ids], E (V, C), ids (B, T) int -> y (B, T, C)."""
from __future__ import annotations

from dataclasses import dataclass

from minidp.per_example import EmbeddingRecord


@dataclass
class EmbeddingCache:
    ids: object  # (B, T) int: the rows read
    num_embeddings: int  # V


def forward(p, ids):
    weight = p["weight"]  # (V, C)
    y = weight[ids]  # (B, T, C)
    return y, EmbeddingCache(ids=ids, num_embeddings=weight.shape[0])


def backward(p, cache: EmbeddingCache, dy):
    """No input gradient (ids are integers); the table's per-example record ∇_i E = Σ_t e_{id_it} dy_itᵀ."""
    return None, {"weight": EmbeddingRecord(cache.ids, dy, cache.num_embeddings)}
