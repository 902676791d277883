"""The one in-memory dataset type every loader returns, and a deterministic train/eval split.

A dataset is a list of texts (and, for sentence-pair tasks, a second list), an int64 label vector and the
label names. Loaders never drop a row silently: anything they leave out (e.g. the neutral tweets of a
binary sentiment task) is counted in ``notes``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minidp.errors import ConfigError, DataError


@dataclass
class TextDataset:
    """N labelled texts (or text pairs).

    texts:        N strings (the first sentence of a pair task)
    labels:       (N,) int64, each in [0, len(label_names))
    label_names:  the class names, indexed by label
    text_pairs:   N second sentences for pair tasks (QNLI, QQP, MNLI), else None
    source:       the file path(s) the data came from, for messages and run records
    notes:        what the loader did that a user should know (rows dropped by design, bytes repaired, ...)
    """

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    text_pairs: list[str] | None = None
    source: str = ""
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        self.texts = list(self.texts)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)  # (N,)
        self.label_names = list(self.label_names)
        n = len(self.texts)
        if self.labels.shape[0] != n:
            raise DataError(f"{self.source or 'dataset'}: {n} texts but {self.labels.shape[0]} labels")
        if self.text_pairs is not None:
            self.text_pairs = list(self.text_pairs)
            if len(self.text_pairs) != n:
                raise DataError(f"{self.source or 'dataset'}: {n} texts but {len(self.text_pairs)} text pairs")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.label_names)):
            raise DataError(
                f"{self.source or 'dataset'}: labels must lie in [0, {len(self.label_names)}) "
                f"for label_names={self.label_names}"
            )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def class_counts(self) -> dict[str, int]:
        """{label name: number of examples}."""
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.label_names, counts)}

    def subset(self, indices) -> "TextDataset":
        """The examples at ``indices`` (any integer sequence, order kept, repeats allowed)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)  # (M,)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset indices out of range for a dataset of {len(self)} examples")
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx],
            label_names=self.label_names,
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in idx],
            source=self.source,
            notes=dict(self.notes),
        )


def split_dataset(ds: TextDataset, *, eval_fraction: float = 0.1, seed: int = 0, stratify: bool = True):
    """Split ``ds`` into (train, eval), deterministically from ``seed``.

    With ``stratify`` each class contributes round(eval_fraction * n_class) examples to eval (at least
    one when the class has two or more), so small eval sets keep the class balance. Both parts keep the
    original file order, which makes the split easy to inspect and independent of later shuffling.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ConfigError(f"eval_fraction={eval_fraction} must lie strictly between 0 and 1")
    n = len(ds)
    if n < 2:
        raise DataError(f"{ds.source or 'dataset'}: cannot split {n} example(s) into train and eval")
    rng = np.random.default_rng(seed)
    is_eval = np.zeros(n, dtype=bool)  # (N,)
    if stratify:
        for k in range(ds.num_classes):
            members = np.flatnonzero(ds.labels == k)  # (n_k,)
            n_eval = int(round(eval_fraction * members.size))
            if members.size >= 2:
                n_eval = min(max(n_eval, 1), members.size - 1)
            is_eval[rng.permutation(members)[:n_eval]] = True
    else:
        n_eval = min(max(int(round(eval_fraction * n)), 1), n - 1)
        is_eval[rng.permutation(n)[:n_eval]] = True
    if is_eval.all() or not is_eval.any():
        raise DataError(
            f"{ds.source or 'dataset'}: eval_fraction={eval_fraction} of {n} examples leaves an empty "
            "train or eval part (too few examples per class to stratify?)"
        )
    return ds.subset(np.flatnonzero(~is_eval)), ds.subset(np.flatnonzero(is_eval))


# ---------------------------------------------------------------------------------------------------
# Reading text files: one decoding policy, stated and counted.
# ---------------------------------------------------------------------------------------------------
DECODE_POLICIES = ("strict", "replace")
_SURROGATE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes 0x80-0xff that are not UTF-8


def read_text(path, *, errors: str = "strict") -> tuple[str, int]:
    """The contents of ``path`` decoded as UTF-8, and the number of lines holding undecodable bytes.

    errors="strict":  any byte sequence that is not UTF-8 is a DataError naming the file and line.
    errors="replace": each undecodable byte is kept as a lone surrogate (Python's "surrogateescape"),
                      so callers can find the rows it hit; ``repair_text`` then turns it into U+FFFD,
                      exactly what ``bytes.decode("utf-8", errors="replace")`` gives for that field.
    """
    if errors not in DECODE_POLICIES:
        raise ConfigError(f"errors={errors!r} is not one of {DECODE_POLICIES}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError as err:
        if errors == "strict":
            line = raw.count(b"\n", 0, err.start) + 1
            raise DataError(
                f"{path}, line {line}: not valid UTF-8 (byte {raw[err.start]:#04x} at offset {err.start})"
            ) from None
    text = raw.decode("utf-8", errors="surrogateescape")
    bad_lines = sum(1 for line in raw.split(b"\n") if not _is_utf8(line))
    return text, bad_lines


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def needs_repair(field_text: str) -> bool:
    """True if ``field_text`` holds bytes that were not UTF-8 (lone surrogates from surrogateescape)."""
    return _SURROGATE.search(field_text) is not None


def repair_text(field_text: str) -> str:
    """Replace the undecodable bytes kept by ``read_text(errors="replace")`` with U+FFFD."""
    if not needs_repair(field_text):
        return field_text
    return field_text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def column_index(header: list[str], name: str, path) -> int:
    """The position of column ``name`` in ``header``, or a DataError naming column, file and header."""
    if name not in header:
        raise DataError(f"{path}: no column {name!r}; the header has {header}")
    return header.index(name)
