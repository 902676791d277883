"""A short `minidp train` and its `--resume` on both devices (a GPU, else the CuPy stand-in).

The device comes from MINIDP_DEVICE (set by the ``device`` fixture): no --device flag, so this also checks
that the CLI follows it. A run interrupted after step 3 and resumed ends bit for bit like the
uninterrupted run on the same device — on cuda through the re-keyed device streams (minidp/backend.py).
"""
from __future__ import annotations

import json

import pytest

from minidp.run.checkpoint import CHECKPOINT
from minidp.run.cli import main
from minidp.step import DPStep
from tests.fixtures import write_tiny_bert, write_tiny_tsv

STEPS = 6


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("device_train")
    return write_tiny_bert(folder / "model", hidden=8, layers=1, intermediate=16), write_tiny_tsv(folder / "t.tsv", 48)


def args(assets, out):
    model, data = assets
    return ["train", "--model", str(model), "--task", "csv", "--train-file", str(data), "--text-column", "sentence",
            "--label-column", "label", "--noise-multiplier", "1.0", "--steps", str(STEPS), "--batch-size", "12",
            "--max-physical-batch", "8", "--max-length", "12", "--lr", "0.01", "--checkpoint-every", "2",
            "--eval-every", "0", "--seed", "3", "--no-progress", "--no-save-model", "--denoise", "rmt",
            "--out", str(out)]


def finished(run_dir) -> tuple:
    state = json.loads((run_dir / CHECKPOINT / "state.json").read_text())
    return ((run_dir / CHECKPOINT / "params.safetensors").read_bytes(),
            (run_dir / CHECKPOINT / "optimizer.safetensors").read_bytes(), state["streams"]["device"],
            (run_dir / "metrics.jsonl").read_text())


class Crash(Exception):
    pass


def test_train_and_resume_on_the_device(device, assets, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    assert main(args(assets, reference)) == 0
    expected = finished(reference)
    assert expected[2] == device  # the run really ran on the fixture's device

    out = tmp_path / "interrupted"
    original = DPStep.__call__

    def crashing(self, lr=None):
        if self.steps_done == 3:  # after the checkpoint of step 2: step 3 is replayed on resume
            raise Crash
        return original(self, lr)

    monkeypatch.setattr(DPStep, "__call__", crashing)
    with pytest.raises(Crash):
        main(args(assets, out))
    monkeypatch.setattr(DPStep, "__call__", original)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert finished(out) == expected
