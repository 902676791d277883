"""Accuracy and binary F1 against hand counts (and scikit-learn's definitions where it is installed)."""
import numpy as np
import pytest

from minidp.errors import DataError
from minidp.run.metrics import accuracy, classification_metrics, f1_binary


def test_hand_counted_example():
    pred = np.array([1, 1, 0, 0, 1, 0])
    labels = np.array([1, 0, 0, 1, 1, 0])
    # tp = 2 (idx 0, 4), fp = 1 (idx 1), fn = 1 (idx 3), correct = 4
    assert accuracy(pred, labels) == pytest.approx(4 / 6)
    assert f1_binary(pred, labels) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # class 0: tp = 2 (idx 2, 5), fp = 1 (idx 3), fn = 1 (idx 1)
    assert f1_binary(pred, labels, positive=0) == pytest.approx(4 / 6)


def test_task_metrics():
    pred, labels = np.array([1, 0, 1]), np.array([1, 1, 1])
    assert classification_metrics(pred, labels, "sst2") == {"accuracy": pytest.approx(2 / 3)}
    out = classification_metrics(pred, labels, "qqp")
    assert set(out) == {"accuracy", "f1"} and out["f1"] == pytest.approx(0.8)


def test_edge_cases():
    assert f1_binary(np.zeros(4), np.zeros(4)) == 0.0  # no positives anywhere
    assert np.isnan(accuracy(np.array([]), np.array([])))
    with pytest.raises(DataError):
        accuracy(np.zeros(3), np.zeros(4))


def test_random_against_direct_definitions():
    rng = np.random.default_rng(0)
    pred, labels = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    precision = np.sum((pred == 1) & (labels == 1)) / np.sum(pred == 1)
    recall = np.sum((pred == 1) & (labels == 1)) / np.sum(labels == 1)
    assert f1_binary(pred, labels) == pytest.approx(2 * precision * recall / (precision + recall), rel=1e-12)
    assert accuracy(pred, labels) == pytest.approx(np.mean(pred == labels))
