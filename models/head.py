"""Stage 3 of the classifier (models/roberta.py): the head, last hidden states -> logits, and back.

With h (B, T, C) the top block's output and m (B, T) the attention mask:

    z      = pool(h, m)                            (B, C)  minidp.nn.pooling: "cls" z_i = h_i0 (<s> / [CLS]);
                                                            "mean" z_i = Σ_t m_it h_it / max(1, Σ_t m_it)
    RoBERTa (RobertaForSequenceClassification):
    logits = dropout(tanh(dropout(z) Wdᵀ + bd)) Woᵀ + bo    (B, K)  classifier.dense, classifier.out_proj
    BERT (BertForSequenceClassification):
    logits = dropout(tanh(z Wdᵀ + bd)) Woᵀ + bo             (B, K)  bert.pooler.dense, classifier

(``EncoderConfig.head_names`` gives the two modules' names.) Pooling changes only what feeds the head:
its layers and names stay. Backward walks the same lines in reverse; it stops after the output layer or
the dense layer when nothing below trains, so a head-only model never touches the encoder's caches.

The functions take the ``SequenceClassifier`` whose parameters, dropout and trainable set they use.
Shapes: B batch, T tokens, C hidden, K labels.
"""
from __future__ import annotations

from dataclasses import dataclass

from minidp.nn import activations, dropout, linear
from minidp.nn import pooling as pooling_layer


@dataclass
class HeadCache:
    pooling: object  # PoolingCache: the (B, T, C) -> (B, C) selection (position 0, or the real tokens' mean)
    in_dropout: object  # (B, C) mask or None (RoBERTa only)
    dense: object  # LinearCache (B, C)
    tanh: object  # (B, C) tanh output
    out_dropout: object  # (B, C) mask or None
    out: object  # LinearCache (B, C)


def forward(model, hidden, mask):
    """hidden (B, T, C), mask (B, T) -> logits (B, K) and the ``HeadCache`` backward reads."""
    cfg = model.config
    dense, out = cfg.head_names()
    z, pool_cache = pooling_layer.forward(hidden, mask, model.pooling)  # (B, C): <s> / [CLS], or the mean
    in_drop = None
    if cfg.model_type == "roberta":
        z, in_drop = model.apply_dropout(z, cfg.head_dropout)  # (B, C)
    z, dense_cache = linear.forward(model.module_params(dense), z)  # (B, C)
    z, tanh_cache = activations.tanh_forward(z)  # (B, C)
    z, out_drop = model.apply_dropout(z, cfg.head_dropout)  # (B, C)
    logits, out_cache = linear.forward(model.module_params(out), z)  # (B, K)
    return logits, HeadCache(pooling=pool_cache, in_dropout=in_drop, dense=dense_cache, tanh=tanh_cache,
                             out_dropout=out_drop, out=out_cache)


def backward(model, cache: HeadCache, dlogits, records: dict, need_dx: bool):
    """dlogits (B, K) -> dh (B, T, C) at the top block's output (None when ``need_dx`` is False).

    The records of the head's trainable parameters go into ``records``."""
    dense, out = model.config.head_names()
    # logits = z Woutᵀ + b
    dz = model.layer_backward(linear.backward, out, cache.out, dlogits, records)  # (B, C)
    if not need_dx and not model.trains(dense + ".weight") and not model.trains(dense + ".bias"):
        return None
    dz = dropout.backward(cache.out_dropout, dz)  # (B, C)
    dz = activations.tanh_backward(cache.tanh, dz)  # (B, C)
    dcls = model.layer_backward(linear.backward, dense, cache.dense, dz, records)  # (B, C)
    if not need_dx:
        return None
    dpooled = dropout.backward(cache.in_dropout, dcls)  # (B, C)
    return pooling_layer.backward(cache.pooling, dpooled)  # (B, T, C): position 0, or every real token
