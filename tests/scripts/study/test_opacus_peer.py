"""scripts/study/opacus_peer.py (the study's peer arm) on the tiny random BERT: it trains with Opacus and writes a
run directory in minidp's layout, with minidp's privacy plan and the same trainable parameters."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fixtures import write_tiny_bert, write_tiny_tsv
from tests.helpers import require_module

ROOT = Path(__file__).resolve().parents[3]


def test_peer_run_directory(tmp_path):
    for name in ("torch", "transformers", "opacus"):
        require_module(name)
    model = write_tiny_bert(tmp_path / "model")
    train = write_tiny_tsv(tmp_path / "train.tsv", 64, seed=1)
    dev = write_tiny_tsv(tmp_path / "dev.tsv", 24, seed=2)
    common = ["--model", str(model), "--task", "sst2", "--train-file", str(train), "--eval-file", str(dev),
              "--max-length", "16", "--batch-size", "8", "--max-physical-batch", "3", "--steps", "3",
              "--epsilon", "3", "--clip", "1.0", "--eval-every", "1", "--trainable", "no-embeddings", "--seed", "0"]
    out = tmp_path / "peer"
    proc = subprocess.run([sys.executable, "-m", "scripts.study.opacus_peer", *common, "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT),
                                                                         "OMP_NUM_THREADS": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runner"] == "opacus" and summary["steps"] == 3 and summary["epsilon"] <= 3.0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval" in r and not r.get("final")] == [1, 2]
    assert rows[-1]["final"] and 0 <= rows[-1]["eval"]["accuracy"] <= 1
    # the privacy plan is minidp's: run minidp on the same flags and compare σ
    ref = tmp_path / "minidp"
    proc = subprocess.run([sys.executable, "-m", "minidp.cli", "train", *common, "--out", str(ref), "--no-progress",
                           "--no-save-model"], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    mine = json.loads((ref / "summary.json").read_text())
    assert summary["noise_multiplier"] == mine["noise_multiplier"] and summary["delta"] == mine["delta"]
