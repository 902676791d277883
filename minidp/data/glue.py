"""GLUE tasks from their official TSV files: SST-2, QNLI, QQP, MNLI.

Layouts (header row first; columns are found by header name, never by position):

    SST-2  sentence<TAB>label                                   label 0 / 1
    QNLI   index<TAB>question<TAB>sentence<TAB>label            entailment / not_entailment
    QQP    id<TAB>qid1<TAB>qid2<TAB>question1<TAB>question2<TAB>is_duplicate     0 / 1
    MNLI   index ... sentence1 ... sentence2 ... gold_label      entailment / neutral / contradiction

The files are read with a plain tab split, not a CSV parser: GLUE text contains unbalanced quotes
(`" ...`) that a quoting parser would merge across lines. Every row must have as many fields as the
header, and every label must be known; anything else is a DataError naming file and line, so no row is
ever dropped silently. Label ids follow the GLUE / Hugging Face convention (e.g. QNLI entailment = 0).
Text is kept byte-for-byte as in the file (SST-2 keeps its tokenised spacing and trailing space).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minidp.data.dataset import TextDataset, column_index, needs_repair, read_text, repair_text
from minidp.errors import ConfigError, DataError


@dataclass(frozen=True)
class GlueTask:
    """Where a GLUE task keeps its data and how to read it."""

    folder: str                     # the task's folder in the GLUE layout, e.g. "SST-2"
    text_column: str                # header name of the (first) sentence
    pair_column: str | None         # header name of the second sentence, None for single-sentence tasks
    label_column: str               # header name of the label
    label_values: tuple[str, ...]   # label strings as written in the file, in label-id order
    label_names: tuple[str, ...]    # readable class names, in label-id order
    dev_file: str = "dev.tsv"       # the file for split="dev"


GLUE_TASKS: dict[str, GlueTask] = {
    "sst2": GlueTask("SST-2", "sentence", None, "label", ("0", "1"), ("negative", "positive")),
    "qnli": GlueTask(
        "QNLI", "question", "sentence", "label",
        ("entailment", "not_entailment"), ("entailment", "not_entailment"),
    ),
    "qqp": GlueTask(
        "QQP", "question1", "question2", "is_duplicate", ("0", "1"), ("not_duplicate", "duplicate"),
    ),
    "mnli": GlueTask(
        "MNLI", "sentence1", "sentence2", "gold_label",
        ("entailment", "neutral", "contradiction"), ("entailment", "neutral", "contradiction"),
        dev_file="dev_matched.tsv",
    ),
}

SPLIT_FILES = {"train": "train.tsv", "test": "test.tsv"}  # "dev" comes from GlueTask.dev_file


def read_tsv(path, *, errors: str = "strict") -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, fields), ...]) of a tab-separated file, by a plain tab split.

    Lines end in "\\n" or "\\r\\n"; a final newline is optional. A row whose field count differs from
    the header's is a DataError naming file and line (1-based, the header is line 1). ``errors``:
    "strict" (bytes that are not UTF-8 are a DataError) or "replace" (they become U+FFFD, see read_text).
    """
    text, _ = read_text(path, errors=errors)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last row
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not lines:
        raise DataError(f"{path}: empty file (expected a header row)")
    header = lines[0].split("\t")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(
                f"{path}, line {lineno}: {len(fields)} tab-separated fields, but the header has "
                f"{len(header)} ({header})"
            )
        rows.append((lineno, fields))
    if not rows:
        raise DataError(f"{path}: no examples (only a header row)")
    return header, rows




def glue_file(task: str, data_dir, split: str = "train") -> Path:
    """The TSV file of ``task`` / ``split`` under ``data_dir``.

    ``data_dir`` may be the GLUE root (holding "SST-2/", "QNLI/", ...) or the task's own folder.
    """
    spec = _task(task)
    if split == "dev":
        name = spec.dev_file
    elif split == "dev_mismatched" and task == "mnli":
        name = "dev_mismatched.tsv"
    elif split in SPLIT_FILES:
        name = SPLIT_FILES[split]
    else:
        raise ConfigError(f"split={split!r} for {task}: use 'train', 'dev' or 'test'")
    data_dir = Path(data_dir)
    candidates = [data_dir / spec.folder / name, data_dir / name]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"{task} {split}: no file {candidates[0]} (nor {candidates[1]})")


def load_glue(task: str, data_dir, split: str = "train", *, errors: str = "strict") -> TextDataset:
    """The labelled examples of GLUE ``task`` ("sst2", "qnli", "qqp", "mnli") and ``split``.

    split: "train", "dev" (MNLI: dev_matched.tsv; "dev_mismatched" also works) or "test" (GLUE test
    files carry no labels, so asking for them is a DataError that says so).
    """
    path = glue_file(task, data_dir, split)
    return load_glue_file(task, path, split=split, errors=errors)


def load_glue_file(task: str, path, *, split: str = "", errors: str = "strict") -> TextDataset:
    """The labelled examples of one TSV file at ``path`` in the layout of GLUE ``task``.

    Use this for files outside the GLUE folder layout (e.g. your own train/dev TSVs for "sst2").
    """
    spec = _task(task)
    header, rows = read_tsv(path, errors=errors)
    if spec.label_column not in header and (split == "test" or Path(path).name == "test.tsv"):
        raise DataError(
            f"{path}: GLUE test files are unlabeled (header {header}); train on 'train' and "
            "evaluate on 'dev' (or split a labelled file with split_dataset)"
        )
    i_text = column_index(header, spec.text_column, path)
    i_pair = None if spec.pair_column is None else column_index(header, spec.pair_column, path)
    i_label = column_index(header, spec.label_column, path)

    label_of = {value: k for k, value in enumerate(spec.label_values)}
    repaired = sum(1 for _, fields in rows if any(needs_repair(f) for f in fields))
    texts, pairs, labels = [], [], []
    for lineno, fields in rows:
        value = fields[i_label].strip()
        if value not in label_of:
            raise DataError(
                f"{path}, line {lineno}: label {fields[i_label]!r} in column {spec.label_column!r} "
                f"is not one of {list(spec.label_values)}"
            )
        texts.append(repair_text(fields[i_text]))
        if i_pair is not None:
            pairs.append(repair_text(fields[i_pair]))
        labels.append(label_of[value])
    return TextDataset(
        texts=texts,
        labels=np.asarray(labels, dtype=np.int64),  # (N,)
        label_names=list(spec.label_names),
        text_pairs=pairs if i_pair is not None else None,
        source=str(path),
        notes={"rows_with_invalid_utf8": repaired} if repaired else {},
    )


def _task(task: str) -> GlueTask:
    if task not in GLUE_TASKS:
        raise ConfigError(f"GLUE task {task!r} is not one of {sorted(GLUE_TASKS)}")
    return GLUE_TASKS[task]
