"""scripts/bench/bench_lora_step.py on a tiny random BERT: every arm runs, and the trainable counts are right.

No timing claims are tested (speed goes in scripts/bench_*).
"""
from __future__ import annotations

import json

import numpy as np

from models.config import EncoderConfig, param_shapes
from scripts.bench import bench_lora_step as bench
from tests.fixtures import write_tiny_bert


def test_every_arm_runs_and_counts_its_trainable_parameters(tmp_path):
    model_dir = write_tiny_bert(tmp_path / "model")  # hidden 16, 2 layers
    out = tmp_path / "bench.json"
    assert bench.main(["--model", str(model_dir), "--batch", "4", "--tokens", "8", "--ranks", "2",
                       "--repeats", "1", "--json", str(out)]) == 0
    arms = json.loads(out.read_text())["arms"]
    assert set(arms) == {"full", "full+rmt", "lora-r2"}
    config = EncoderConfig.from_hf_dict(json.loads((model_dir / "config.json").read_text()))
    total = sum(int(np.prod(s)) for s in param_shapes(config).values())
    C = config.hidden_size
    head = 2 * C + 2  # the classifier (PEFT's SEQ_CLS set; the pooler stays frozen)
    assert arms["full"]["trainable_params"] == arms["full+rmt"]["trainable_params"] == total
    assert arms["lora-r2"]["trainable_params"] == 2 * 2 * (2 * C + C * 2) + head  # layers x {query, value}
    assert bench.main(["--model", str(model_dir), "--batch", "4", "--tokens", "8", "--ranks", "2",
                       "--modules-to-save", "pooler", "--repeats", "1", "--json", str(out)]) == 0
    with_pooler = json.loads(out.read_text())["arms"]["lora-r2"]["trainable_params"]
    assert with_pooler == 2 * 2 * (2 * C + C * 2) + head + C * C + C  # + bert.pooler.dense
    assert all(arm["median_s"] > 0 for arm in arms.values())
