"""Stage 1 of the classifier (models/roberta.py): token ids -> the first hidden states, and back.

Forward, with ids, types (B, T) int64 and the tables word (V, C), position (P, C), token_type (S, C)
(S = type_vocab_size: 2 in BERT, 1 in RoBERTa):

    e  = word[ids] + position[pos] + token_type[types]      (B, T, C)   embeddings.{word, position, token_type}_embeddings
    x0 = dropout(LayerNorm(e))                               (B, T, C)   embeddings.LayerNorm

Position ids (``position_ids``): RoBERTa counts real tokens from padding_idx + 1 and gives padding the id
padding_idx (transformers' ``create_position_ids_from_input_ids``); BERT uses 0..T-1.

Backward: de = LayerNorm backward of dropout backward of dx0; each table receives de at the rows it read
(per-example records: ``minidp.nn.embedding``). A table built with padding_idx (word: both families;
position: RoBERTa) gets no gradient at that row, as ``torch.nn.Embedding(padding_idx=...)``: de is zeroed
at the padding tokens before it reaches the table.

The functions take the ``SequenceClassifier`` whose parameters, dropout and trainable set they use.
Shapes: B batch, T tokens, C hidden, V vocabulary, P max positions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minidp.backend import array_module
from minidp.nn import dropout, embedding, layernorm


@dataclass
class EmbeddingsCache:
    word: object  # embedding.EmbeddingCache, ids (B, T)
    position: object  # embedding.EmbeddingCache, position ids (B, T)
    token_type: object  # embedding.EmbeddingCache, token-type ids (B, T)
    layernorm: object  # LayerNormCache
    dropout: object  # scaled mask (B, T, C) or None


def position_ids(config, ids):
    """(B, T) position ids. RoBERTa: pad + cumsum(ids != pad) at real tokens, pad at padding; BERT 0..T-1."""
    xp = array_module(ids)
    B, T = ids.shape
    if config.model_type == "roberta":
        pad = config.pad_token_id
        real = (ids != pad).astype(np.int64)  # (B, T)
        return xp.cumsum(real, axis=1) * real + pad  # (B, T)
    return xp.broadcast_to(xp.arange(T, dtype=np.int64), (B, T))  # (B, T)


def forward(model, ids, types):
    """ids, types (B, T) -> x0 (B, T, C) and the ``EmbeddingsCache`` backward reads."""
    cfg, P = model.config, model.params
    pre = f"{cfg.prefix}embeddings."
    word, word_cache = embedding.forward({"weight": P[f"{pre}word_embeddings.weight"]}, ids)  # (B, T, C)
    pos, pos_cache = embedding.forward({"weight": P[f"{pre}position_embeddings.weight"]},
                                       position_ids(cfg, ids))  # (B, T, C)
    typ, typ_cache = embedding.forward({"weight": P[f"{pre}token_type_embeddings.weight"]}, types)  # (B, T, C)
    x = word + pos  # (B, T, C)
    x += typ
    x, ln_cache = layernorm.forward(model.module_params(f"{pre}LayerNorm"), x, cfg.layer_norm_eps)  # (B, T, C)
    x, drop_cache = model.apply_dropout(x, cfg.hidden_dropout_prob)  # (B, T, C)
    return x, EmbeddingsCache(word=word_cache, position=pos_cache, token_type=typ_cache,
                              layernorm=ln_cache, dropout=drop_cache)


def backward(model, c: EmbeddingsCache, dx, records: dict) -> None:
    """dx0 (B, T, C) -> the records of the trainable embedding parameters, added to ``records``."""
    cfg = model.config
    pre = f"{cfg.prefix}embeddings."
    dx = dropout.backward(c.dropout, dx)  # (B, T, C)
    dsum = model.layer_backward(layernorm.backward, f"{pre}LayerNorm", c.layernorm, dx, records)  # (B, T, C)
    # e = word[ids] + position[pos] + type[types]: each table receives dsum at the rows it read.
    # Tables built with padding_idx (word: both families; position: RoBERTa) get no gradient at that
    # row, as torch.nn.Embedding(padding_idx=...) — the mask zeroes those tokens' contributions.
    pad = cfg.pad_token_id
    tables = [("word_embeddings", c.word, True),
              ("position_embeddings", c.position, cfg.model_type == "roberta"),
              ("token_type_embeddings", c.token_type, False)]
    for table, emb_cache, has_padding_idx in tables:
        name = f"{pre}{table}.weight"
        if not model.trains(name):
            continue
        g = dsum
        if has_padding_idx:  # (multiplied even when nothing is padding: asking would cost a host copy)
            keep = emb_cache.ids != pad  # (B, T)
            g = dsum * keep[:, :, None].astype(dsum.dtype)  # (B, T, C)
        _, recs = embedding.backward({"weight": model.params[name]}, emb_cache, g)
        model.keep_records(f"{pre}{table}", recs, records)
