"""scripts/regime_map.py on the tiny random BERT: it runs, the JSON has every cell, and the map is consistent.

Seconds: 2 trajectory points × 2 batch sizes × 2 ε on a 2-layer, 16-wide model.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from scripts.study import regime_map
from tests.fixtures import write_tiny_bert, write_tiny_tsv


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("regime")
    model = write_tiny_bert(tmp / "model")
    train = write_tiny_tsv(tmp / "train.tsv", 120)
    out = tmp / "reports"
    code = regime_map.main(["--model", str(model), "--task", "sst2", "--train-file", str(train), "--epsilons", "3",
                            "8", "--batch-sizes", "8", "16", "--points", "0", "2", "--trajectory-batch", "8",
                            "--trajectory-steps", "4", "--max-length", "16", "--out", str(out), "--clip", "1.0"])
    assert code == 0
    return json.loads((out / "regime_map.json").read_text()), out


def test_outputs_written(result):
    data, out = result
    for name in ("regime_map.md", "regime_map.png", "regime_map.json"):
        assert (out / name).stat().st_size > 0
    assert "python scripts/regime_map.py" in data["command"]
    assert "Command:" in (out / "regime_map.md").read_text()


def test_every_cell_and_matrix(result):
    data, _ = result
    assert len(data["cells"]) == 2 * 2 * 2  # points × batch sizes × ε
    assert data["trajectory"]["rows"][-1]["step"] == 2
    for cell in data["cells"]:
        assert set(cell["per_matrix"]) == set(data["matrices"])
        assert set(cell["alignment_non_private"]) == {"noisy", "estimate", "none"}
        for rec in cell["per_matrix"].values():
            kept = [rec["kept"][f"{k:g}"] for k in data["kappas"]]
            assert kept == sorted(kept, reverse=True)  # a higher κ never keeps more
            assert rec["top_over_edge"] > 0
        assert cell["max_top_over_edge"] == max(r["top_over_edge"] for r in cell["per_matrix"].values())
    assert set(data["timing"]) == {"8", "16"}


def test_larger_epsilon_means_less_noise(result):
    """At the same batch and noise draw, ε = 8 has the smaller σ, so every top/edge ratio is at least as high
    wherever the signal dominates; σ itself must be strictly smaller."""
    data, _ = result
    for b in (8, 16):
        assert data["sigma"][f"eps8_B{b}"]["sigma"] < data["sigma"][f"eps3_B{b}"]["sigma"]


def test_probe_detects_a_planted_spike():
    """A rank-one clipped sum far above the BBP threshold is kept; pure noise (zero sum) is not, mostly."""
    rng = np.random.default_rng(0)
    m, n, batch, sigma, clip = 60, 80, 100, 1.0, 1.0
    s = sigma * clip / batch
    u, v = rng.standard_normal(m), rng.standard_normal(n)
    spike = 5 * s * (m * n) ** 0.25 * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v)) * batch
    z = {"w.weight": rng.standard_normal((m, n))}
    cell = regime_map.probe({"w.weight": spike}, batch, z, sigma, clip, ["w.weight"])
    rec = cell["per_matrix"]["w.weight"]
    assert rec["kept"]["1.02"] == 1 and rec["top_over_edge"] > 1.5 and rec["clean_top_over_bbp"] == pytest.approx(5)
    assert cell["alignment_non_private"]["noisy"]["gain"] > 0.1
    quiet = regime_map.probe({"w.weight": np.zeros((m, n))}, batch, z, sigma, clip, ["w.weight"])
    assert quiet["per_matrix"]["w.weight"]["kept"]["1.1"] == 0


def test_replot_from_json(result, tmp_path):
    data, out = result
    assert data["cpu_seconds"] > 0
    code = regime_map.main(["--replot", str(out / "regime_map.json"), "--out", str(tmp_path), "--no-plots"])
    assert code == 0
    assert (tmp_path / "regime_map.md").read_text() == (out / "regime_map.md").read_text()
