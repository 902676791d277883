"""Hypothesis properties of the clipped sum: one example's influence is bounded by the clipping norm C.

With c_i = min(1, C/(‖∇_i‖ + 1e-6)) every clipped term has norm < C, so replacing one example moves
Σ_i c_i ∇_i by at most 2C and removing one moves it by at most C (the sensitivity the Gaussian mechanism
is calibrated to). Checked on a tiny random model with random inputs, lengths and labels.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minidp.backend import to_host
from minidp.privacy.clipping import clipped_grad_sum
from models.config import EncoderConfig, init_params
from models.roberta import SequenceClassifier

CONFIG = EncoderConfig(model_type="roberta", vocab_size=50, hidden_size=16, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=24, max_position_embeddings=20,
                       type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, num_labels=2)
MODEL = SequenceClassifier(CONFIG, init_params(CONFIG, np.random.default_rng(0), std=0.3), dtype="float64")


def _batch(seed: int, B: int, T: int):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, CONFIG.vocab_size, size=(B, T))
    lengths = rng.integers(1, T + 1, size=B)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, CONFIG.pad_token_id)
    return ids, mask, rng.integers(0, 2, size=B)


def _flat(grads: dict) -> np.ndarray:
    return np.concatenate([to_host(grads[n]).ravel() for n in sorted(grads)])


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31), B=st.integers(2, 5), C=st.floats(1e-3, 10.0), which=st.integers(0, 4))
def test_replace_one_moves_clipped_sum_by_at_most_2C_remove_by_at_most_C(seed, B, C, which):
    T = 6
    ids, mask, labels = _batch(seed, B, T)
    i = which % B
    new_ids, new_mask, new_labels = _batch(seed + 1, 1, T)
    ids2, mask2, labels2 = ids.copy(), mask.copy(), labels.copy()
    ids2[i], mask2[i], labels2[i] = new_ids[0], new_mask[0], new_labels[0]
    full, norms = clipped_grad_sum(MODEL, ids, mask, labels, max_grad_norm=C)
    replaced, _ = clipped_grad_sum(MODEL, ids2, mask2, labels2, max_grad_norm=C)
    keep = np.arange(B) != i
    removed, _ = clipped_grad_sum(MODEL, ids[keep], mask[keep], labels[keep], max_grad_norm=C)
    d_replace = np.linalg.norm(_flat(full) - _flat(replaced))
    d_remove = np.linalg.norm(_flat(full) - _flat(removed))
    assert d_replace <= 2 * C * (1 + 1e-9), (d_replace, C)
    assert d_remove <= C * (1 + 1e-9), (d_remove, C)
    # the removed example's contribution is exactly its clipped gradient
    expected = min(1.0, C / (norms[i] + 1e-6)) * norms[i]
    assert abs(d_remove - expected) <= 1e-9 * max(expected, 1e-12) + 1e-12
