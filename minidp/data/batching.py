"""A dataset tokenised once, served as padded batches (padded to the longest example in each batch).

    data = TokenizedDataset(dataset, tokenizer, max_length=128)
    batch = data.batch(indices)   # {"input_ids" (B, T), "attention_mask" (B, T), ["token_type_ids"], "labels" (B,)}

Sorting a logical batch's indices by length before splitting it into virtual batches (``by_length``)
cuts padding; it changes nothing about privacy (the same examples are summed).
"""
from __future__ import annotations

import numpy as np

ENCODE_CHUNK = 2048  # examples per tokenizer call (bounds the temporary padded array)


class TokenizedDataset:
    """``dataset`` (a TextDataset) encoded by ``tokenizer`` with truncation to ``max_length``.

    ids        (N, T_max) int32, padded with the tokenizer's pad id; T_max ≤ max_length
    type_ids   (N, T_max) int8 or None (tokenizers without token type ids)
    lengths    (N,) real tokens per example
    labels     (N,) int64
    """

    def __init__(self, dataset, tokenizer, max_length: int = 128):
        self.dataset = dataset
        self.max_length = int(max_length)
        self.pad_token_id = tokenizer.pad_token_id
        N = len(dataset)
        pieces, type_pieces, lengths = [], [], []
        for start in range(0, N, ENCODE_CHUNK):
            stop = min(N, start + ENCODE_CHUNK)
            pairs = None if dataset.text_pairs is None else dataset.text_pairs[start:stop]
            enc = tokenizer(dataset.texts[start:stop], pairs, max_length=self.max_length)
            pieces.append(enc["input_ids"])
            type_pieces.append(enc.get("token_type_ids"))
            lengths.append(enc["attention_mask"].sum(axis=1))
        T_max = max((p.shape[1] for p in pieces), default=1)
        self.ids = np.full((N, T_max), self.pad_token_id, dtype=np.int32)  # (N, T_max)
        has_types = N > 0 and type_pieces[0] is not None
        self.type_ids = np.zeros((N, T_max), dtype=np.int8) if has_types else None  # (N, T_max)
        row = 0
        for ids, types in zip(pieces, type_pieces):
            n, T = ids.shape
            self.ids[row:row + n, :T] = ids
            if has_types:
                self.type_ids[row:row + n, :T] = types
            row += n
        self.lengths = np.concatenate(lengths).astype(np.int64) if lengths else np.zeros(0, np.int64)  # (N,)
        self.labels = np.asarray(dataset.labels, dtype=np.int64)  # (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def by_length(self, indices) -> np.ndarray:
        """``indices`` reordered by token count (stable), so virtual batches carry little padding."""
        indices = np.asarray(indices, dtype=np.int64)
        return indices[np.argsort(self.lengths[indices], kind="stable")]

    def batch(self, indices) -> dict:
        """The examples at ``indices``, padded to the longest of them: arrays on the host (numpy)."""
        indices = np.asarray(indices, dtype=np.int64)
        T = int(self.lengths[indices].max()) if indices.size else 1
        positions = np.arange(T)[None, :]  # (1, T)
        batch = {
            "input_ids": self.ids[indices, :T].astype(np.int64),  # (B, T)
            "attention_mask": (positions < self.lengths[indices][:, None]).astype(np.int64),  # (B, T)
            "labels": self.labels[indices],  # (B,)
        }
        if self.type_ids is not None:
            batch["token_type_ids"] = self.type_ids[indices, :T].astype(np.int64)  # (B, T)
        return batch
