"""Privacy as shipped: unpredictable noise by default, honest statements and output labels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from minidp.backend import RandomStreams
from minidp.run.cli import main
from minidp.run.config import DenoiseConfig
from minidp.data import load_tokenizer
from minidp.data.batching import TokenizedDataset
from minidp.data.dataset import TextDataset
from minidp.denoise import denoise_gradients
from minidp.optim import make_optimizer
from minidp.privacy import RDPAccountant
from minidp.run.rundir import OUTPUT_PRIVACY
from minidp.step import DenoiseSettings, DPStep
from models import load_pretrained
from tests.fixtures import tiny_sentences, write_tiny_bert, write_tiny_tsv

NON_PRIVATE_FIELDS = ("loss", "batch_size", "clipped_fraction", "seconds", "dropped_nonfinite",
                      "diagnostics_non_private")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("defaults")
    return write_tiny_bert(folder / "model", init_std=0.2), write_tiny_tsv(folder / "train.tsv", 120)


def _step(model_dir, seed, dtype="float64"):  # on the host: these checks read arrays with NumPy (device runs:
    model = load_pretrained(model_dir, dtype=dtype, device="cpu", verbose=False)  # test_step_device.py)
    texts, labels = tiny_sentences(40, 0)
    data = TokenizedDataset(TextDataset(texts=texts, labels=labels, label_names=["n", "p"]),
                            load_tokenizer(model_dir), max_length=16)
    return DPStep(model, data, noise_multiplier=1.0, max_grad_norm=0.5, sample_rate=0.3,
                  optimizer=make_optimizer("sgd", 0.1), streams=RandomStreams(seed, device="cpu"),
                  accountant=RDPAccountant(), delta=1e-5, max_physical_batch=8)


def _noise(record):
    return np.concatenate([v.ravel() for _, v in sorted(record.noise.items())])


def test_noise_is_unpredictable_without_a_seed_and_reproducible_with_one(assets):
    model_dir, _ = assets
    a, b = _step(model_dir, None)(), _step(model_dir, None)()
    assert not np.array_equal(_noise(a), _noise(b))
    c, d = _step(model_dir, 3)(), _step(model_dir, 3)()
    assert np.array_equal(_noise(c), _noise(d)) and np.array_equal(c.sampled_indices, d.sampled_indices)


def test_noise_is_drawn_in_float64_then_cast(assets):
    model_dir, _ = assets
    step = _step(model_dir, 5, dtype="float32")  # a float32 model (its mask bias float32 too)
    assert all(v.dtype == np.float32 for v in step.model.params.values())
    record = step()
    assert all(v.dtype == np.float32 for v in record.noise.values())
    rng = RandomStreams(5, device="cpu").noise  # the same stream, drawn by hand in float64
    first = sorted(record.noise)[0]
    expected = (rng.standard_normal(record.noise[first].shape) * 0.5).astype(np.float32)
    assert np.array_equal(record.noise[first], expected)


def test_a_nan_example_leaves_the_release_finite(assets, monkeypatch):
    model_dir, _ = assets
    step = _step(model_dir, 1)
    original = step.model.per_example_records

    def poisoned(*args, **kw):
        losses, records = original(*args, **kw)
        record = records["classifier.bias"]
        record.grads = record.grads.copy()
        record.grads[0, 0] = np.nan  # the first example of every virtual batch
        return losses, records

    monkeypatch.setattr(step.model, "per_example_records", poisoned)
    record = step()
    assert record.dropped_nonfinite >= 1
    first_in_batch = np.arange(0, record.batch_size, 8)
    assert np.all(record.clip_factors[first_in_batch] == 0)
    assert all(np.all(np.isfinite(v)) for v in record.released.values())


def test_statement_outputs_and_labels(assets, tmp_path, capsys):
    model_dir, data = assets
    base = ["train", "--model", str(model_dir), "--task", "csv", "--train-file", str(data), "--text-column",
            "sentence", "--label-column", "label", "--steps", "3", "--batch-size", "16", "--max-length", "16",
            "--no-progress", "--denoise", "rmt", "--diagnostics", "--eval-every", "2"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "add/remove" in printed and "N·δ" in printed and "WARNING" not in printed
    assert main(base + ["--out", str(tmp_path / "b"), "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    assert "add/remove" in printed and "NOT private against anyone who knows" in printed
    for run, seeded in (("a", False), ("b", True)):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for row in rows:
            assert not set(row) & set(NON_PRIVATE_FIELDS), row
        nonprivate = [json.loads(line) for line in (tmp_path / run / "metrics_nonprivate.jsonl").read_text()
                      .splitlines()]
        assert {"loss", "batch_size", "diagnostics_non_private"} <= set(nonprivate[0])
        summary = json.loads((tmp_path / run / "summary.json").read_text())
        assert summary["noise_reproducible_from_seed"] is seeded
        assert summary["output_privacy"] == json.loads(json.dumps(OUTPUT_PRIVACY))
        labelled = json.dumps(summary["output_privacy"])
        for field in NON_PRIVATE_FIELDS + ("eval",):
            assert field in labelled


def test_denoiser_defaults_kappa_and_small_matrices():
    assert DenoiseConfig().kappa == 1.02 and DenoiseSettings().kappa == 1.02
    rng = np.random.default_rng(0)
    grads = {"classifier.weight": rng.normal(size=(2, 384)), "pooler.dense.weight": rng.normal(size=(384, 384))}
    _, stats = denoise_gradients(grads, 1.0)
    assert set(stats) == set(grads)  # the default keeps every 2-D linear weight, the 2×384 head included
    _, stats = denoise_gradients(grads, 1.0, min_dim=3)
    assert set(stats) == {"pooler.dense.weight"}
