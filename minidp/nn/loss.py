"""Cross-entropy over classes: loss_i = logsumexp(z_i) − z_i[y_i]  (z (B, K) logits, y (B,) labels).

``forward`` returns the per-example losses (B,); the mean over the batch is the caller's choice:
backward takes dloss (B,) — ones for Σ_i loss_i (per-example DP gradients), 1/B for the mean.
"""
from __future__ import annotations

from dataclasses import dataclass

from minidp.backend import array_module
from minidp.numerics import log_softmax


@dataclass
class CrossEntropyCache:
    probs: object  # (B, K) softmax(z)
    labels: object  # (B,) int


def forward(logits, labels):
    xp = array_module(logits)
    logp = log_softmax(logits, axis=-1)  # (B, K)
    B = logits.shape[0]
    losses = -logp[xp.arange(B), labels]  # (B,)
    return losses, CrossEntropyCache(probs=xp.exp(logp), labels=labels)


def backward(cache: CrossEntropyCache, dloss):
    """dz_i = (softmax(z_i) − onehot(y_i)) · dloss_i."""
    xp = array_module(cache.probs)
    B = cache.probs.shape[0]
    dlogits = cache.probs.copy()  # (B, K)
    dlogits[xp.arange(B), cache.labels] -= 1.0
    return dlogits * dloss[:, None]


def mean_forward(logits, labels):
    """The mean cross-entropy (a scalar) and the cache; backward with ``mean_dloss(B)``."""
    losses, cache = forward(logits, labels)
    return losses.mean(), cache


def mean_dloss(cache: CrossEntropyCache):
    """dloss_i = 1/B for the mean reduction."""
    xp = array_module(cache.probs)
    B = cache.probs.shape[0]
    return xp.full((B,), 1.0 / B, dtype=cache.probs.dtype)
