"""scripts/bench/bench_denoise.py: shapes, planted SNR, DP-step input, JSON output (tiny shapes; no timing claims)."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from minidp.denoise.rmt import bulk_edge
from scripts.bench import bench_denoise as bench


def test_roberta_shapes():
    shapes = bench.model_shapes(*bench.MODELS["roberta-base"])
    assert len(shapes) == 72
    assert shapes["roberta.encoder.layer.0.attention.self.query.weight"] == (768, 768)
    assert shapes["roberta.encoder.layer.11.intermediate.dense.weight"] == (3072, 768)
    assert shapes["roberta.encoder.layer.11.output.dense.weight"] == (768, 3072)


def test_planted_signal_lands_where_asked():
    m, n, s = 120, 80, 1.0
    X = bench.planted_signal(m, n, s, np.random.default_rng(0))
    lam = np.linalg.svd(X + s * np.random.default_rng(1).standard_normal((m, n)), compute_uv=False)
    ratios = lam[:3] / bulk_edge(m, n, s)
    assert abs(ratios[0] - 3.0) < 0.15 and abs(ratios[1] - 1.6) < 0.15 and ratios[2] < 1.05


def test_dp_step_inputs(tmp_path):
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"dp_s": 12.5, "nondp_s": 3.0}))
    per_model = tmp_path / "per_model.json"
    per_model.write_text(json.dumps({"dp_s": 9.0, "roberta-base": {"dp_s": 20.0}}))
    ns = lambda **kw: argparse.Namespace(**{"dp_step_s": None, "dp_step_json": None, **kw})  # noqa: E731
    assert bench.read_dp_step(ns()) is None
    assert bench.read_dp_step(ns(dp_step_s=3.0)) == 3.0
    assert bench.read_dp_step(ns(dp_step_json=str(flat))) == 12.5
    table = bench.read_dp_step(ns(dp_step_json=str(per_model)))
    assert bench.dp_step_for(table, "roberta-base") == 20.0 and bench.dp_step_for(table, "minilm") == 9.0


def test_quick_run_writes_json(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "QUICK_MODELS", {"tiny": (1, 32, 64)})
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--json", str(out), "--dp-step-s", "2.0"]) == 0
    data = json.loads(out.read_text())["tiny"]
    assert {"shapes", "exact_s", "fast_s", "dp_step_s", "fast_overhead"} <= set(data)
    assert data["dp_step_s"] == 2.0 and data["fast_overhead"] == pytest.approx(data["fast_s"] / 2.0)
    for case in data["cases"].values():
        assert case["kept_exact"] == case["kept_fast"]
        assert case["max_rel_diff_fast_vs_exact"] <= 1e-3
