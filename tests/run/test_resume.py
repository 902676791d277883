"""Runs that survive: atomic checkpoints, bit-exact resume, SIGKILL/SIGTERM, no silent overwrite.

A tiny random BERT trains for 12 steps with a checkpoint every 3; every interrupted run, once resumed, must
end with the uninterrupted run's parameters, optimizer state, ε and metrics rows, bit for bit.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from minidp.run.checkpoint import CHECKPOINT, PREVIOUS, load_checkpoint
from minidp.run.cli import main
from minidp.step import DPStep
from tests.fixtures import write_tiny_bert, write_tiny_tsv

ROOT = Path(__file__).resolve().parents[2]
STEPS, EVERY = 12, 3


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    model = write_tiny_bert(folder / "model", init_std=0.2)
    data = write_tiny_tsv(folder / "train.tsv", 160)
    return model, data


def train_args(assets, out, *extra):
    model, data = assets
    return ["train", "--model", str(model), "--task", "csv", "--train-file", str(data), "--text-column", "sentence",
            "--label-column", "label", "--epsilon", "6", "--steps", str(STEPS), "--batch-size", "24",
            "--max-physical-batch", "8", "--max-length", "16", "--optimizer", "adamw", "--lr", "0.01",
            "--eval-every", "4", "--checkpoint-every", str(EVERY), "--seed", "7", "--no-progress", "--out", str(out),
            "--no-save-model", *extra]


def final_state(run_dir):
    """(params bytes, optimizer bytes, ε, metrics rows) of a finished run."""
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT
    state = json.loads((ckpt / "state.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = (run_dir / "metrics.jsonl").read_text()
    return ((ckpt / "params.safetensors").read_bytes(), (ckpt / "optimizer.safetensors").read_bytes(),
            state["step"], summary["epsilon"], rows)


@pytest.fixture(scope="module")
def reference(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(train_args(assets, out)) == 0
    return final_state(out)


def assert_same_as_reference(run_dir, reference):
    params, opt, step, eps, rows = final_state(run_dir)
    assert step == STEPS
    assert params == reference[0], "parameters differ from the uninterrupted run"
    assert opt == reference[1], "optimizer state differs from the uninterrupted run"
    assert eps == reference[3]
    assert rows == reference[4], "metrics.jsonl differs from the uninterrupted run"


class Crash(Exception):
    pass


def crash_run(monkeypatch, argv, crash_after: int) -> None:
    """Run `minidp train` and crash (an exception, no checkpoint) just before step ``crash_after + 1``."""
    original = DPStep.__call__

    def crashing(self, lr=None):
        if self.steps_done == crash_after:
            raise Crash
        return original(self, lr)

    monkeypatch.setattr(DPStep, "__call__", crashing)
    with pytest.raises(Crash):
        main(argv)
    monkeypatch.setattr(DPStep, "__call__", original)


@pytest.mark.parametrize("crash_after", [2, 4, 7, 11])
def test_resume_equals_uninterrupted(assets, reference, tmp_path, monkeypatch, crash_after):
    """A crash after step k (no checkpoint at the crash) loses the steps since the last checkpoint; the
    resumed run drops their logged rows, replays them and ends bit for bit like the uninterrupted run."""
    out = tmp_path / "run"
    crash_run(monkeypatch, train_args(assets, out), crash_after)
    logged = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in logged) == crash_after  # rows after the checkpoint were logged...
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    steps = [json.loads(r)["step"] for r in (out / "metrics.jsonl").read_text().splitlines()
             if "epsilon" in json.loads(r)]
    assert steps == list(range(1, STEPS + 1))  # ...and were dropped, never duplicated
    assert_same_as_reference(out, reference)


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    import minidp.run.checkpoint as ck
    from minidp.step import DPStep
    from minidp.run.cli import main
    where, at = {where!r}, {at}
    calls = {{"n": 0}}
    def die():
        os.kill(os.getpid(), signal.SIG{sig})
    if where == "step":
        original = DPStep.__call__
        def step(self, lr=None):
            if self.steps_done == at:
                die()
            return original(self, lr)
        DPStep.__call__ = step
    elif where == "write":
        original_write = ck._write_bytes
        def write(path, data):
            calls["n"] += 1
            if calls["n"] == at:
                with open(path, "wb") as f:
                    f.write(data[: len(data) // 2])   # half a file, then death
                die()
            original_write(path, data)
        ck._write_bytes = write
    elif where == "rename":
        original_replace = ck.os.replace
        class FakeOs:
            def __getattr__(self, name):
                return getattr(os, name)
            def replace(self, a, b):
                calls["n"] += 1
                if calls["n"] == at:
                    die()
                original_replace(a, b)
        ck.os = FakeOs()
    sys.exit(main({args!r}))
""")


def run_killed(assets, out, where, at, sig="KILL"):
    script = KILLER.format(root=str(ROOT), where=where, at=at, sig=sig, args=train_args(assets, out))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(  # (keeps a stand-in session's hook)
                              [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])})


def test_sigkill_at_random_moments_always_resumes(assets, reference, tmp_path):
    """≥5 SIGKILLs at random points: mid-loop, mid-file of a checkpoint, between the checkpoint renames."""
    rng = np.random.default_rng(12)
    trials = [("step", int(rng.integers(EVERY + 1, STEPS))), ("step", int(rng.integers(EVERY + 1, STEPS))),
              ("write", int(rng.integers(4, 10))), ("write", int(rng.integers(4, 10))),
              ("rename", int(rng.integers(2, 6))), ("rename", int(rng.integers(2, 6)))]
    for k, (where, at) in enumerate(trials):
        out = tmp_path / f"run{k}"
        done = run_killed(assets, out, where, at)
        assert done.returncode == -signal.SIGKILL, (where, at, done.stderr[-2000:])
        assert main(["train", "--resume", str(out), "--no-progress"]) == 0, (where, at)
        assert_same_as_reference(out, reference)


def test_sigterm_writes_a_checkpoint_and_exits_143(assets, tmp_path):
    out = tmp_path / "run"
    done = run_killed(assets, out, "step", 5, sig="TERM")
    assert done.returncode == 143, done.stderr[-2000:]
    assert f"--resume {out}" in done.stderr
    assert json.loads((out / CHECKPOINT / "state.json").read_text())["step"] == 6  # the step in flight finished
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_damaged_checkpoint_falls_back_to_the_previous(assets, reference, tmp_path, monkeypatch, capsys, damage):
    out = tmp_path / "run"
    crash_run(monkeypatch, train_args(assets, out), 7)
    params = out / CHECKPOINT / "params.safetensors"
    data = bytearray(params.read_bytes())
    if damage == "corrupt":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    params.write_bytes(bytes(data))
    state = load_checkpoint(out, report=print)
    assert state["step"] == 3 and state["path"].endswith(PREVIOUS)
    assert "checksum mismatch" in capsys.readouterr().out
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert_same_as_reference(out, reference)


def _tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_out_on_an_existing_run_is_refused_and_untouched(assets, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(assets, out)) == 0
    before = _tree_digest(out)
    capsys.readouterr()
    assert main(train_args(assets, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "--overwrite" in err[0]
    assert _tree_digest(out) == before
    assert main(["train", "--resume", str(out)]) == 2  # finished: nothing to resume
    assert "already finished" in capsys.readouterr().err
    assert _tree_digest(out) == before
    assert main(train_args(assets, out, "--overwrite")) == 0  # asked for: replaced


def test_resume_refuses_contradicting_flags_and_allows_harmless_ones(assets, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    crash_run(monkeypatch, train_args(assets, out), 4)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--lr", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.lr" in err[0] and "contradicts" in err[0]
    assert main(["train", "--resume", str(out), "--seed", "8"]) == 2
    assert "run.seed" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--no-progress", "--eval-every", "6", "--lr", "0.01"]) == 0


def test_resume_without_a_checkpoint_is_refused(assets, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint" in err[0]


def test_pld_accountant_runs_and_resumes_bit_for_bit(assets, tmp_path, monkeypatch):
    """`--accountant pld`: a tighter σ for the same ε, and its ledger survives a crash like RDP's."""
    ref = tmp_path / "ref"
    assert main(train_args(assets, ref, "--accountant", "pld")) == 0
    summary = json.loads((ref / "summary.json").read_text())
    assert summary["accountant_name"] == "pld" and summary["epsilon"] <= 6.0
    rdp_sigma = json.loads((ref / "config.json").read_text())["privacy_plan"]["noise_multiplier"]
    assert rdp_sigma > 0
    out = tmp_path / "run"
    crash_run(monkeypatch, train_args(assets, out, "--accountant", "pld"), 5)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert final_state(out) == final_state(ref)


def test_pooling_survives_resume_and_a_change_is_refused(assets, reference, tmp_path, monkeypatch, capsys):
    """--pooling mean: a crashed run resumes bit for bit with mean pooling (the saved config.json holds it);
    --resume --pooling cls contradicts it. A run saved before --pooling existed read position 0 ("cls")."""
    ref = tmp_path / "ref"
    assert main(train_args(assets, ref, "--pooling", "mean")) == 0
    assert json.loads((ref / "config.json").read_text())["model"]["pooling"] == "mean"
    out = tmp_path / "run"
    crash_run(monkeypatch, train_args(assets, out, "--pooling", "mean"), 5)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--pooling", "cls"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.pooling" in err[0] and "contradicts" in err[0]
    assert main(["train", "--resume", str(out), "--no-progress", "--pooling", "mean"]) == 0
    assert final_state(out) == final_state(ref)
    assert final_state(ref)[0] != reference[0]  # mean pooling trained other parameters than the cls run
    st_model = tmp_path / "st_model"  # a checkpoint whose own default is mean (sentence-transformers' 1_Pooling)
    shutil.copytree(assets[0], st_model)
    raw = json.loads((st_model / "config.json").read_text())
    raw.pop("minidp_pooling")
    (st_model / "config.json").write_text(json.dumps(raw))
    (st_model / "1_Pooling").mkdir()
    (st_model / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    old = tmp_path / "old"
    crash_run(monkeypatch, train_args((st_model, assets[1]), old, "--pooling", "cls"), 4)
    saved = json.loads((old / "config.json").read_text())
    del saved["model"]["pooling"]  # as written before mean pooling existed
    (old / "config.json").write_text(json.dumps(saved))
    assert main(["train", "--resume", str(old), "--pooling", "mean"]) == 2
    assert "model.pooling" in capsys.readouterr().err
    assert main(["train", "--resume", str(old), "--no-progress"]) == 0
    assert_same_as_reference(old, reference)  # resumed with cls, as it started
