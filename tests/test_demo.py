"""`minidp demo` (issue 14): its two runs draw independent noise, and it says what releasing both costs."""
from __future__ import annotations

import json

import pytest

import minidp.commands.demo as demo
from minidp.cli import main
from minidp.data.dataset import TextDataset
from minidp.metrics import binomial_interval
from tests.fixtures import tiny_sentences, write_tiny_bert


@pytest.fixture()
def tiny_demo(tmp_path, monkeypatch):
    model = write_tiny_bert(tmp_path / "model", init_std=0.2)

    def datasets(train_size, eval_size, seed=0):
        parts = []
        for n, s in ((120, 0), (40, 1)):
            texts, labels = tiny_sentences(n, s)
            parts.append(TextDataset(texts=texts, labels=labels, label_names=["negative", "positive"]))
        return tuple(parts)

    monkeypatch.setattr(demo, "minilm_dir", lambda: model)
    monkeypatch.setattr(demo, "demo_datasets", datasets)
    return tmp_path


@pytest.mark.parametrize("seed", [None, 3])
def test_demo_runs_draw_independent_noise(tiny_demo, capsys, seed):
    out = tiny_demo / f"out{seed}"
    argv = ["demo", "--batch-size", "16", "--max-length", "16", "--no-progress", "--out", str(out), "--json"]
    assert main(argv + ([] if seed is None else ["--seed", str(seed)])) == 0
    printed = capsys.readouterr().out
    streams = {arm: json.loads((out / arm / "checkpoint.prev" / "state.json").read_text())["streams"]
               for arm in ("baseline", "rmt")}
    assert streams["baseline"]["noise"] != streams["rmt"]["noise"]
    assert streams["baseline"]["sampling"] != streams["rmt"]["sampling"]
    report = json.loads(printed.strip().splitlines()[-1])
    assert report["both_released"]["epsilon"] == pytest.approx(2 * report["baseline"]["epsilon"])
    assert "by composition" in printed and "95% CI" in printed
    low, high = report["baseline"]["accuracy_95ci"]
    assert low <= report["baseline"]["accuracy"] <= high


def test_binomial_interval_matches_known_values():
    low, high = binomial_interval(759, 1000)  # the Clopper–Pearson interval
    assert low == pytest.approx(0.7312, abs=1e-3) and high == pytest.approx(0.7852, abs=1e-3)
    assert binomial_interval(0, 10)[0] == 0.0 and binomial_interval(10, 10)[1] == 1.0
