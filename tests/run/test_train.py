"""End-to-end DP training on a tiny random BERT and tiny synthetic data (fast; runs in CI).

What must hold: training reduces the loss; the noise statistics are right; ε in summary.json
equals the accountant's; the step API's intermediates add up (released = (clipped sum + noise) / qN).
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from minidp.backend import RandomStreams
from minidp.run.config import DataConfig, ModelConfig, OptimConfig, PrivacyConfig, RunConfig, TrainConfig
from minidp.data import load_tokenizer
from minidp.data.batching import TokenizedDataset
from minidp.data.dataset import TextDataset
from minidp.errors import ConfigError
from minidp.optim import make_optimizer
from minidp.privacy import RDPAccountant
from minidp.step import DenoiseSettings, DPStep
from minidp.run.train import train
from models import load_pretrained
from tests.fixtures import tiny_sentences, write_tiny_bert, write_tiny_tsv


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    # init std 0.2 (not BERT's 0.02): a random tiny encoder then carries enough of the cue words for a
    # noisy DP run of 40 steps to learn the task (at 0.02 the per-coordinate gradients drown in the noise)
    return write_tiny_bert(tmp_path_factory.mktemp("tiny") / "model", init_std=0.2)


def _dataset(n, seed=0):
    texts, labels = tiny_sentences(n, seed)
    return TextDataset(texts=texts, labels=labels, label_names=["negative", "positive"], source="synthetic")


def _step(model_dir, *, n=64, sigma=1.0, q=0.25, C=0.5, seed=0, denoise=None, dtype="float64"):
    # on the host: these checks read the arrays with NumPy (the device runs: tests/test_step_device.py)
    model = load_pretrained(model_dir, dtype=dtype, device="cpu", verbose=False)
    data = TokenizedDataset(_dataset(n), load_tokenizer(model_dir), max_length=16)
    step = DPStep(model, data, noise_multiplier=sigma, max_grad_norm=C, sample_rate=q,
                  optimizer=make_optimizer("sgd", 0.1), streams=RandomStreams(seed, device="cpu"),
                  accountant=RDPAccountant(),
                  delta=1e-5, max_physical_batch=7, denoise=denoise)
    return step, model, data


def test_step_intermediates_add_up(tiny_model_dir):
    step, model, data = _step(tiny_model_dir)
    before = {k: v.copy() for k, v in model.params.items()}
    record = step(lr=0.1)
    qN = 0.25 * 64
    assert record.expected_batch_size == qN
    assert record.batch_size == record.per_example_norms.size == record.clip_factors.size
    # the clip factors are min(1, C / (‖∇_i‖ + 1e-6)) of the recorded norms
    expected_c = np.minimum(1.0, 0.5 / (record.per_example_norms + 1e-6))
    assert np.max(np.abs(record.clip_factors - expected_c)) <= 1e-15
    worst = 0.0
    for name in model.trainable:
        released = (record.clipped_sum[name] + record.noise[name]) / qN
        worst = max(worst, float(np.max(np.abs(released - record.released[name]))))
        # SGD without momentum: θ ← θ − lr · released
        assert np.allclose(model.params[name], before[name] - 0.1 * record.released[name], rtol=0, atol=1e-15)
    print("max |released − (sum + noise)/qN| =", worst)
    assert worst <= 1e-15
    # the clipped sum equals Σ_i c_i ∇_i from the reference per-example path
    batch = data.batch(record.sampled_indices)
    model.params.update(before)  # the gradients were taken at the parameters before the update
    model.train()  # (dropout is 0 in the fixture; train/eval give the same function)
    per_example = model.per_example_grads(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                          token_type_ids=batch.get("token_type_ids"))
    # the processing order is the sorted-by-length order; the records keep that order
    norms = np.sqrt(sum((per_example[n].reshape(len(batch["labels"]), -1) ** 2).sum(1) for n in per_example))
    assert np.max(np.abs(norms - record.per_example_norms)) / norms.max() <= 1e-10
    for name, g in per_example.items():
        ref = np.tensordot(record.clip_factors, g, axes=(0, 0))
        assert np.max(np.abs(ref - record.clipped_sum[name])) <= 1e-10 * max(1.0, np.abs(ref).max())
    assert record.epsilon == pytest.approx(step.accountant.get_epsilon(1e-5))


def test_noise_statistics(tiny_model_dir):
    """The noise added to the clipped sum is N(0, (σC)²) per entry."""
    step, model, _ = _step(tiny_model_dir, sigma=2.0, C=0.5)
    noise = np.concatenate([v.ravel() for v in step().noise.values()])
    n = noise.size
    std = noise.std()
    print(f"{n} draws: mean {noise.mean():.4f}, std {std:.4f} (expected 1.0)")
    assert n > 5000
    assert abs(noise.mean()) < 5 * 1.0 / np.sqrt(n)
    assert abs(std - 1.0) < 5 * 1.0 / np.sqrt(2 * n)


def test_empty_batch_is_a_noisy_accounted_step(tiny_model_dir):
    step, model, _ = _step(tiny_model_dir, q=1e-9, sigma=1.0)
    record = step()
    assert record.batch_size == 0
    assert all(np.all(v == 0) for v in record.clipped_sum.values())
    assert any(np.any(v != 0) for v in record.noise.values())
    assert step.accountant.total_steps == 1


def test_denoised_step_reads_only_the_release(tiny_model_dir):
    step, model, _ = _step(tiny_model_dir, denoise=DenoiseSettings(method="exact"))
    record = step()
    assert record.denoise_stats  # a stats entry per 2-D weight matrix
    for name, s in record.denoise_stats.items():
        assert "kept" in s
        assert record.denoised[name].shape == record.released[name].shape
    biases = [n for n in model.trainable if n.endswith("bias")]
    for name in biases:  # biases pass through untouched
        assert np.array_equal(record.denoised[name], record.released[name])


def _config(model_dir, train_file, out, **over):
    run = dict(steps=40, batch_size=128, max_physical_batch=32, seed=0, out=str(out), progress=False)
    run.update(over.pop("run", {}))
    privacy = dict(epsilon=None, noise_multiplier=0.3, max_grad_norm=1.0)
    privacy.update(over.pop("privacy", {}))
    return TrainConfig(
        model=ModelConfig(path=str(model_dir), max_length=16),
        data=DataConfig(task="csv", train_file=str(train_file), text_column="sentence", label_column="label"),
        privacy=PrivacyConfig(**privacy), optim=OptimConfig(optimizer="adam", lr=1e-2),
        run=RunConfig(**run), **over)


def test_training_reduces_loss_and_writes_the_run(tiny_model_dir, tmp_path):
    tsv = write_tiny_tsv(tmp_path / "train.tsv", 400)
    summary = train(_config(tiny_model_dir, tsv, tmp_path / "run", run={"eval_every": 20}), log=lambda *a: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    nonprivate = [json.loads(line) for line in (tmp_path / "run" / "metrics_nonprivate.jsonl").read_text().splitlines()]
    steps = [r for r in nonprivate if "loss" in r]
    first, last = np.mean([r["loss"] for r in steps[:5]]), np.mean([r["loss"] for r in steps[-5:]])
    print(f"loss {first:.4f} -> {last:.4f}; eval {summary['final_eval']}")
    assert last < first - 0.1
    assert summary["final_eval"]["accuracy"] >= 0.8
    for name in ("config.json", "metrics.jsonl", "summary.json", "model/config.json", "model/model.safetensors"):
        assert (tmp_path / "run" / name).exists(), name
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    # ε in summary.json equals a fresh accountant's for (σ, q, steps)
    acc = RDPAccountant()
    acc.step(noise_multiplier=saved["noise_multiplier"], sample_rate=saved["sample_rate"], steps=saved["steps"])
    assert saved["epsilon"] == pytest.approx(acc.get_epsilon(saved["delta"]), rel=1e-12)
    assert saved["steps"] == 40 and saved["sample_rate"] == pytest.approx(128 / 360)
    assert all("epsilon" in r for r in rows if not r.get("final"))
    # the saved model reloads and predicts as the summary says
    reloaded = load_pretrained(tmp_path / "run" / "model", verbose=False)
    assert reloaded.num_labels == 2


def test_target_epsilon_is_never_exceeded(tiny_model_dir, tmp_path):
    tsv = write_tiny_tsv(tmp_path / "train.tsv", 200)
    summary = train(_config(tiny_model_dir, tsv, tmp_path / "run", privacy={"epsilon": 2.0, "noise_multiplier": None},
                            run={"steps": 10, "save_model": False}), log=lambda *a: None)
    assert summary["epsilon"] <= 2.0
    assert summary["epsilon"] >= 0.99 * 2.0  # calibrated to the target
    # σ given directly with a smaller ε cap: the run stops before overspending
    capped = train(_config(tiny_model_dir, tsv, tmp_path / "run2", privacy={"epsilon": 0.5, "noise_multiplier": 1.0},
                           run={"steps": 200, "save_model": False}), log=lambda *a: None)
    assert capped["stopped_early"] and capped["steps"] < 200
    assert capped["epsilon"] <= 0.5


def test_cli_train_end_to_end(tiny_model_dir, tmp_path, capsys):
    from minidp.run.cli import main

    tsv = write_tiny_tsv(tmp_path / "train.tsv", 200)
    out = tmp_path / "cli_run"
    code = main(["train", "--model", str(tiny_model_dir), "--task", "csv", "--train-file", str(tsv),
                 "--text-column", "sentence", "--label-column", "label", "--epsilon", "4", "--steps", "5",
                 "--batch-size", "32", "--max-length", "16", "--out", str(out), "--no-progress", "--json",
                 "--denoise", "rmt", "--diagnostics", "--plot"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "privacy:" in printed and "spent:" in printed
    summary = json.loads(printed.strip().splitlines()[-1])
    assert summary["epsilon"] <= 4.0 and summary["steps"] == 5
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    nonprivate = [json.loads(line) for line in (out / "metrics_nonprivate.jsonl").read_text().splitlines()]
    assert "denoise_kept" in rows[0] and "diagnostics_non_private" in nonprivate[0]
    assert (out / "plots.png").stat().st_size > 1000


def test_cli_missing_model_is_one_line(tmp_path, capsys):
    from minidp.run.cli import main

    code = main(["train", "--model", str(tmp_path / "nope"), "--task", "sst2", "--data", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope" in err[0]


def test_cli_missing_data_is_one_line(tiny_model_dir, tmp_path, capsys):
    from minidp.run.cli import main

    code = main(["train", "--model", str(tiny_model_dir), "--task", "sst2", "--data", str(tmp_path / "glue"),
                 "--max-length", "16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "SST-2" in err[0]


def _pooling_args(model_dir, tsv, out, *extra):
    return ["train", "--model", str(model_dir), "--task", "csv", "--train-file", str(tsv), "--text-column",
            "sentence", "--label-column", "label", "--noise-multiplier", "0.5", "--epsilon", "50", "--steps", "2",
            "--batch-size", "16", "--max-length", "16", "--seed", "0", "--no-progress", "--out", str(out), *extra]


def test_cli_pooling_is_recorded_and_exported(tiny_model_dir, tmp_path, capsys):
    """--pooling mean: RUN_DIR/config.json records it, the exported model/config.json says minidp_pooling=mean,
    and load_pretrained reads it back. Without the flag the checkpoint's pooling is used and recorded."""
    import shutil

    from minidp.run.cli import main

    tsv = write_tiny_tsv(tmp_path / "train.tsv", 80)
    assert main(_pooling_args(tiny_model_dir, tsv, tmp_path / "mean", "--pooling", "mean")) == 0
    assert json.loads((tmp_path / "mean" / "config.json").read_text())["model"]["pooling"] == "mean"
    assert json.loads((tmp_path / "mean" / "model" / "config.json").read_text())["minidp_pooling"] == "mean"
    assert load_pretrained(tmp_path / "mean" / "model", verbose=False).pooling == "mean"
    # no flag, a sentence-transformers checkpoint (1_Pooling: mean tokens, no minidp_pooling): "mean", recorded
    st = tmp_path / "st_model"
    shutil.copytree(tiny_model_dir, st)
    raw = json.loads((st / "config.json").read_text())
    raw.pop("minidp_pooling")
    (st / "config.json").write_text(json.dumps(raw))
    (st / "1_Pooling").mkdir()
    (st / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert main(_pooling_args(st, tsv, tmp_path / "default")) == 0
    assert json.loads((tmp_path / "default" / "config.json").read_text())["model"]["pooling"] == "mean"
    assert main(_pooling_args(tiny_model_dir, tsv, tmp_path / "cls")) == 0  # minidp's own checkpoint: "cls"
    assert json.loads((tmp_path / "cls" / "config.json").read_text())["model"]["pooling"] == "cls"
    capsys.readouterr()


def test_cli_bad_pooling_exits_2(tiny_model_dir, tmp_path, capsys):
    from minidp.run.cli import main

    tsv = write_tiny_tsv(tmp_path / "train.tsv", 40)
    with pytest.raises(SystemExit) as stop:
        main(_pooling_args(tiny_model_dir, tsv, tmp_path / "run", "--pooling", "max"))
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "--pooling" in err[0] and "max" in err[0]
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"model.pooling \(--pooling\)"):
        TrainConfig(model=ModelConfig(path=str(tiny_model_dir), pooling="max")).validate()


# ----------------------------------------------------------------------------- the non-private reference arm


def test_non_private_step_is_the_plain_sum_over_qN(tiny_model_dir):
    """non_private=True: released = Σ_i ∇_i / (qN) (no clipping, no noise), nothing accounted, ε = ∞."""
    model = load_pretrained(tiny_model_dir, dtype="float64", device="cpu", verbose=False)
    data = TokenizedDataset(_dataset(64), load_tokenizer(tiny_model_dir), max_length=16)
    step = DPStep(model, data, noise_multiplier=0.0, max_grad_norm=1e-3, sample_rate=0.25,
                  optimizer=make_optimizer("sgd", 0.1), streams=RandomStreams(0, device="cpu"),
                  accountant=RDPAccountant(), delta=1e-5, max_physical_batch=7, non_private=True)
    before = {k: v.copy() for k, v in model.params.items()}
    record = step(lr=0.1)
    assert record.batch_size > 0 and np.all(record.clip_factors == 1.0)
    assert np.all(np.isnan(record.per_example_norms))  # not computed: nothing reads them
    assert record.epsilon == float("inf") and step.accountant.total_steps == 0
    assert all(np.all(z == 0) for z in record.noise.values())
    batch = data.batch(record.sampled_indices)
    model.params.update(before)
    mean_loss, grads = model.loss_and_grads(batch["input_ids"], batch["attention_mask"], batch["labels"])
    n, qN = record.batch_size, 0.25 * 64
    for name, g in grads.items():  # the plain mean gradient × n / qN, though C = 1e-3 would clip every example
        ref = g * n / qN
        assert np.max(np.abs(record.released[name] - ref)) <= 1e-10 * max(1.0, np.abs(ref).max())
    with pytest.raises(ConfigError, match="noise_multiplier=0"):
        DPStep(model, data, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.25,
               optimizer=make_optimizer("sgd", 0.1), streams=RandomStreams(0, device="cpu"),
               accountant=RDPAccountant(), delta=1e-5, non_private=True)


def test_cli_non_private_run_is_labelled_not_private(tiny_model_dir, tmp_path, capsys):
    from minidp.run.cli import main

    tsv = write_tiny_tsv(tmp_path / "train.tsv", 80)
    args = ["train", "--model", str(tiny_model_dir), "--task", "csv", "--train-file", str(tsv), "--text-column",
            "sentence", "--label-column", "label", "--steps", "3", "--batch-size", "16", "--max-length", "16",
            "--seed", "0", "--no-progress", "--json"]
    assert main(args + ["--non-private", "--out", str(tmp_path / "np")]) == 0
    printed = capsys.readouterr().out
    assert "NOT PRIVATE" in printed and "spent:" not in printed
    summary = json.loads(printed.strip().splitlines()[-1])
    assert summary["private"] is False and summary["epsilon"] is None and summary["steps"] == 3
    assert summary["noise_multiplier"] == 0.0 and "NOT covered" in next(iter(summary["output_privacy"]))
    text = (tmp_path / "np" / "metrics.jsonl").read_text()
    step_rows = [row for row in map(json.loads, text.splitlines()) if "params_fingerprint" in row]
    assert "Infinity" not in text and len(step_rows) == 3
    assert all("epsilon" in row and row["epsilon"] is None for row in step_rows)
    config = json.loads((tmp_path / "np" / "config.json").read_text())
    assert config["privacy"]["non_private"] is True and config["privacy_plan"]["private"] is False
    assert config["privacy_plan"]["order"] is None  # no RDP order: null, never NaN (the non-finite-run fix)
    assert_strict_json_files(tmp_path / "np")
    # resumable like any run: drop the finished marker, resume from the last checkpoint, same parameters
    finished = json.loads((tmp_path / "np" / "summary.json").read_text())
    (tmp_path / "np" / "summary.json").unlink()
    assert main(["train", "--resume", str(tmp_path / "np"), "--no-progress", "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["private"] is False and resumed["final_eval"] == finished["final_eval"]
    # bad combinations: one line naming the flag, exit 2, no run directory
    for extra in (["--epsilon", "3"], ["--noise-multiplier", "1.0"], ["--denoise", "rmt"]):
        out = tmp_path / f"bad{len(extra[0])}"
        assert main(args + ["--non-private", *extra, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--non-private" in err[0], err
        assert not out.exists()


def _refuse_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def assert_strict_json_files(run_dir) -> list:
    """Every JSON file a run wrote (config, metrics rows, summary or FAILED, checkpoint state) parses with a
    strict parser: NaN / Infinity refused. Returns the names checked."""
    checked = []
    for path in sorted(run_dir.rglob("*")):
        if path.suffix == ".json" or path.name == "FAILED":
            json.loads(path.read_text(), parse_constant=_refuse_constant)
        elif path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                json.loads(line, parse_constant=_refuse_constant)
        else:
            continue
        checked.append(path.relative_to(run_dir).as_posix())
    assert "config.json" in checked and "metrics.jsonl" in checked and "checkpoint/state.json" in checked, checked
    return checked


def test_diverging_run_stops_marks_failed_and_states_what_it_spent(tiny_model_dir, tmp_path, capsys):
    """lr = 1e30 (the non-finite-run fix): the loss goes NaN at step 2. The run stops there with one line, exit 3, marks
    RUN_DIR/FAILED (the name scripts/reproduce.py reads), evaluates and saves no model, and says what ε the
    steps it released spent; every JSON it wrote is strict."""
    from minidp.run.cli import main

    tsv = write_tiny_tsv(tmp_path / "train.tsv", 200)
    out = tmp_path / "diverged"
    code = main(["train", "--model", str(tiny_model_dir), "--task", "csv", "--train-file", str(tsv),
                 "--text-column", "sentence", "--label-column", "label", "--epsilon", "3", "--lr", "1e30",
                 "--steps", "6", "--batch-size", "32", "--max-length", "16", "--seed", "0", "--out", str(out),
                 "--no-progress"])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    print(captured.out, err)
    assert code == 3
    assert len(err) == 1 and "stopped at step" in err[0], err
    assert "the training loss is nan" in err[0] or "the parameters are not finite" in err[0], err
    assert "FAILED" in err[0] and "ε =" in err[0]
    assert "final eval" not in captured.out and "spent: ε =" in captured.out
    assert (out / "FAILED").exists() and not (out / "model").exists() and not (out / "summary.json").exists()
    failed = json.loads((out / "FAILED").read_text())
    stopped = failed["steps"]
    assert 1 <= stopped < 6 and failed["planned_steps"] == 6 and f"step {stopped} of 6" in failed["failed"]
    assert failed["final_eval"] is None
    # the ε of the steps released so far: the accountant's for `stopped` steps, and in the statement
    acc = RDPAccountant()
    acc.step(noise_multiplier=failed["noise_multiplier"], sample_rate=failed["sample_rate"], steps=stopped)
    assert failed["epsilon"] == pytest.approx(acc.get_epsilon(failed["delta"]), rel=1e-12)
    assert 0 < failed["epsilon"] < 3 and f"ε = {failed['epsilon']:.4f}" in captured.out
    assert f"after {stopped} steps" in captured.out
    rows = [json.loads(line) for line in (out / "metrics_nonprivate.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, stopped + 1))
    assert rows[-1]["loss"] is None  # null, never NaN
    assert not any(row.get("final") for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()))
    assert "FAILED" in assert_strict_json_files(out)
    # a failed run is not resumed into NaN, nor silently reused
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    assert "FAILED" in capsys.readouterr().err


def test_nonfinite_run_through_the_api_and_each_check(tiny_model_dir, tmp_path):
    """Through the API (SGD, lr = 1e38): RunFailed carries the summary; without --out nothing is written.
    Then each check of nonfinite_reason on its own: loss, released gradient, parameters."""
    from minidp.errors import RunFailed
    from minidp.run.train import nonfinite_reason

    tsv = write_tiny_tsv(tmp_path / "train.tsv", 200)
    config = _config(tiny_model_dir, tsv, tmp_path / "run", privacy={"epsilon": 3.0, "noise_multiplier": None},
                     run={"steps": 4, "out": None})
    config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, optimizer="sgd", lr=1e38))
    with pytest.raises(RunFailed) as failure:
        train(config, log=lambda *a: None)
    assert failure.value.exit_code == 3 and "no run directory" in str(failure.value)
    assert failure.value.summary["final_eval"] is None and failure.value.summary["epsilon"] > 0
    assert not (tmp_path / "run").exists()

    class Record:  # the three checks, one at a time
        batch_size, mean_loss, released = 2, 0.5, None

    assert nonfinite_reason(Record, params_finite=True) is None
    assert "parameters" in nonfinite_reason(Record, params_finite=False)
    Record.released = {"w": np.array([1.0, np.inf])}
    assert "released gradient" in nonfinite_reason(Record, params_finite=True)
    Record.released, Record.mean_loss = None, float("nan")
    assert "loss is nan" in nonfinite_reason(Record, params_finite=True)
    Record.batch_size = 0  # an empty batch has no loss (nan): not a failure
    assert nonfinite_reason(Record, params_finite=True) is None
