"""What the classifier (models/roberta.py) accepts: token ids, masks, token types and labels, checked.

Every input is converted and validated on the HOST, before the upload: on a GPU, checking device arrays
would cost a device -> host copy per check. Each check fails with a ``DataError`` naming the input.

    prepare_inputs(config, device, input_ids, mask, types) -> ids, mask, types   int64 (B, T), on the device
    prepare_labels(labels, B, num_labels, device)          -> y                  int64 (B,), on the device
"""
from __future__ import annotations

import numpy as np

from minidp.backend import to_device, to_host
from minidp.errors import DataError


def token_array(x, what: str, shape=None):
    """Token-like input as an int64 (B, T) HOST array, checked there: integer ids (integral floats pass),
    two dimensions, and ``shape`` when given."""
    arr = to_host(x)  # host input (what the data pipeline gives): no copy; a device input: one copy
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and arr.size and bool((arr == np.round(arr)).all()):
            pass  # integral floats (e.g. from a float mask) are accepted
        elif arr.size:
            raise DataError(f"{what}: expected integer ids, found dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if shape is None and arr.ndim != 2:
        raise DataError(f"{what}: expected shape (batch, tokens), found {tuple(arr.shape)}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise DataError(f"{what}: shape {tuple(arr.shape)} does not match input_ids {tuple(shape)}")
    return arr


def prepare_inputs(config, device, input_ids, attention_mask=None, token_type_ids=None):
    """-> ids, mask, token types, all int64 (B, T) on ``device``: ids within the vocabulary and T within the
    position table; mask all ones and token types all zeros when not given."""
    ids = token_array(input_ids, "input_ids")
    B, T = ids.shape
    if B == 0 or T == 0:
        raise DataError(f"input_ids: empty batch of shape {(B, T)}")
    if T > config.max_tokens:
        raise DataError(f"input_ids: sequence length T={T} exceeds the position table limit "
                        f"{config.max_tokens} (max_position_embeddings={config.max_position_embeddings})")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= config.vocab_size:
        bad = high if high >= config.vocab_size else low
        raise DataError(f"input_ids: token id {bad} is outside the vocabulary (max id {high}, "
                        f"vocab_size={config.vocab_size}); does the tokenizer match the model?")
    if attention_mask is None:
        mask = np.ones((B, T), dtype=np.int64)
    else:
        mask = token_array(attention_mask, "attention_mask", shape=(B, T))
    if token_type_ids is None:
        types = np.zeros((B, T), dtype=np.int64)
    else:
        types = token_array(token_type_ids, "token_type_ids", shape=(B, T))
        if int(types.min()) < 0 or int(types.max()) >= config.type_vocab_size:
            raise DataError(f"token_type_ids: id {int(types.max())} is outside "
                            f"[0, type_vocab_size={config.type_vocab_size})")
    return tuple(to_device(arr, device) for arr in (ids, mask, types))  # checked: now upload


def prepare_labels(labels, B: int, num_labels: int, device):
    """Labels (B,) int64 on ``device``, each in [0, num_labels), checked on the host before the upload."""
    y = to_host(labels).astype(np.int64, copy=False).reshape(-1)
    if y.shape[0] != B:
        raise DataError(f"labels: {y.shape[0]} labels for a batch of {B}")
    if int(y.min()) < 0 or int(y.max()) >= num_labels:
        raise DataError(f"labels: values must be in [0, num_labels={num_labels}), "
                        f"found {int(y.min())}..{int(y.max())}")
    return to_device(y, device)
