"""Classification metrics on host arrays: accuracy, binary F1, and the per-task set GLUE reports.

GLUE reports accuracy for SST-2, QNLI and MNLI, and accuracy plus F1 (positive class = duplicate) for QQP.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import beta

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


def binomial_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson (exact) interval for a proportion: the Beta quantiles
    (B(α/2; k, n−k+1), B(1−α/2; k+1, n−k)), with 0 / 1 at the ends. (nan, nan) for no trials."""
    k, n = int(successes), int(trials)
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise DataError(f"successes={k} must lie in [0, {n}]")
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high
