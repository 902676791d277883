"""A tiny `minidp federated` run on both devices (a GPU, else the CuPy stand-in): every array path of the
simulator — local steps, encoding, clipping, noise, RMT, decoding — runs through minidp.backend."""
from __future__ import annotations

import json

import pytest

from minidp.run.cli import main
from tests.fixtures import write_tiny_bert, write_tiny_tsv


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("device_federated")
    return write_tiny_bert(folder / "model", hidden=8, layers=2, intermediate=16), write_tiny_tsv(folder / "t.tsv", 80)


@pytest.mark.parametrize("encoder", ["none", "dr"])
def test_federated_on_the_device(device, assets, tmp_path, encoder):
    model, data = assets
    out = tmp_path / "run"
    argv = ["federated", "--model", str(model), "--task", "csv", "--train-file", str(data), "--text-column",
            "sentence", "--label-column", "label", "--max-length", "12", "--clients", "4", "--rounds", "2",
            "--client-rate", "0.75", "--local-steps", "2", "--local-batch-size", "6", "--lora-rank", "2",
            "--latent", "3", "--ae-steps", "10", "--synthetic", "32", "--public-clients", "2", "--encoder", encoder,
            "--denoise", "--noise-multiplier", "1.0", "--seed", "1", "--no-progress", "--no-save-model",
            "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert config["model"]["device"] == device
    print(device, encoder, summary["final_eval"], summary["privacy"]["epsilon_rdp"])
    assert 0.0 <= summary["final_eval"]["accuracy"] <= 1.0
