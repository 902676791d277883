"""`minidp demo` (privacy as shipped): its two runs draw independent noise, and it says what releasing both costs."""
from __future__ import annotations

import json

import pytest

import minidp.run.commands.demo as demo
from minidp.run.cli import main
from minidp.data.dataset import TextDataset
from minidp.run.metrics import binomial_interval
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


def test_demo_writes_the_spectrum_figure_and_prints_its_path(tiny_demo, capsys):
    out = tiny_demo / "out_fig"
    argv = ["demo", "--batch-size", "16", "--max-length", "16", "--no-progress", "--out", str(out), "--json",
            "--seed", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed.strip().splitlines()[-1])
    figure = out / "spectrum.png"
    assert report["spectrum_figure"] == str(figure)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bert.pooler.dense.weight" in printed and str(figure) in printed


def test_spectrum_watcher_keeps_one_step_where_the_denoiser_acts_and_one_where_it_does_not():
    import numpy as np

    from minidp.step import StepRecord

    def record(step, kept):
        stats = {"w": {"shape": [6, 4], "kept": kept, "top_over_edge": 1.5 if kept else 0.9}}
        empty = np.zeros(0)
        return StepRecord(step=step, sampled_indices=empty, per_example_norms=empty, clip_factors=empty,
                          losses=empty, expected_batch_size=8.0, noise_std=0.1, lr=0.1, epsilon=1.0, order=8.0,
                          released={"w": np.full((6, 4), float(step))}, denoise_stats=stats)

    watcher = demo.SpectrumWatcher("w", kappa=1.02)
    for step, kept in ((1, 2), (2, 1), (3, 0), (4, 0)):
        watcher(record(step, kept))
    assert watcher.panels["acts"]["values"][0, 0] == 1.0 and "step 1" in watcher.panels["acts"]["title"]
    assert watcher.panels["idle"]["values"][0, 0] == 3.0 and "kept 0" in watcher.panels["idle"]["title"]
