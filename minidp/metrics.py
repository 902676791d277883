"""Classification metrics on host arrays: accuracy, binary F1, and the per-task set GLUE reports.

GLUE reports accuracy for SST-2, QNLI and MNLI, and accuracy plus F1 (positive class = duplicate) for QQP.
"""
from __future__ import annotations

import numpy as np

from minidp.backend import to_host
from minidp.errors import DataError

F1_TASKS = ("qqp",)  # tasks whose official metrics include binary F1 of class 1


def _pair(pred, labels) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(to_host(pred)).reshape(-1)  # (N,)
    labels = np.asarray(to_host(labels)).reshape(-1)  # (N,)
    if pred.shape != labels.shape:
        raise DataError(f"{pred.shape[0]} predictions but {labels.shape[0]} labels")
    return pred, labels


def accuracy(pred, labels) -> float:
    """Fraction of predictions equal to the labels (nan for no examples)."""
    pred, labels = _pair(pred, labels)
    if pred.size == 0:
        return float("nan")
    return float(np.mean(pred == labels))


def f1_binary(pred, labels, positive=1) -> float:
    """F1 of class ``positive``: 2·TP / (2·TP + FP + FN); 0.0 when that class never occurs in either."""
    pred, labels = _pair(pred, labels)
    tp = int(np.sum((pred == positive) & (labels == positive)))
    fp = int(np.sum((pred == positive) & (labels != positive)))
    fn = int(np.sum((pred != positive) & (labels == positive)))
    denom = 2 * tp + fp + fn
    return 2.0 * tp / denom if denom else 0.0


def classification_metrics(pred, labels, task: str = "") -> dict[str, float]:
    """{"accuracy": ...}, plus "f1" for QQP."""
    out = {"accuracy": accuracy(pred, labels)}
    if task.lower() in F1_TASKS:
        out["f1"] = f1_binary(pred, labels, positive=1)
    return out
