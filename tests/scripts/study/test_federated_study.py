"""scripts/study/federated_study.py: the federated comparison in time windows, driven by a fake clock and a fake
runner (never a run past the deadline, a fresh window starts with the next unrecorded run, only records and the
report are committed, the search chooses the server learning rate before any main run), plus one real smoke run
of the tiny BERT."""
from __future__ import annotations

import argparse
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from scripts.study import federated_report, federated_study as study
from tests.scripts.study.test_study_window import FakeClock, FakeGit  # the window tests' fakes


class FakeChild:
    """Ends ``seconds`` after it starts, writing a run's files; validation accuracy peaks at server lr 3."""

    def __init__(self, clock, run, out, seconds):
        self.clock, self.run, self.out, self.end = clock, run, out, clock.now() + seconds
        self.rc, self.cpu_seconds = None, None

    def poll(self):
        if self.rc is None and self.clock.now() >= self.end:
            self.rc, self.cpu_seconds = 0, 1.0
            lr = float(self.run.flags[self.run.flags.index("--server-lr") + 1])
            acc = {1.0: 0.6, 3.0: 0.7, 10.0: 0.65}.get(lr, 0.5) + 0.01 * self.run.seed
            private = "--non-private" not in self.run.flags
            (self.out / "config.json").write_text("{}")
            (self.out / "metrics.jsonl").write_text(json.dumps({"round": 2, "eval": {"accuracy": acc}}) + "\n")
            (self.out / "metrics_nonprivate.jsonl").write_text(json.dumps(
                {"round": 2, "reconstruction_error_non_private": 0.5, "seconds": 3.0}) + "\n")
            (self.out / "summary.json").write_text(json.dumps({
                "final_eval": {"accuracy": acc}, "bytes_per_client": 100, "compression_ratio": 2.0,
                "privacy": {"epsilon_rdp": 7.99 if private else None,
                            "epsilon_gdp_approx": 5.0 if private else None,
                            "noise_multiplier": 0.7 if private else 0.0}}))
        return self.rc

    def stopped(self):
        return False

    def terminate(self):
        if self.rc is None:
            self.rc = -signal.SIGTERM


def args_for(tmp: Path, runs: str, *, minutes=None, jobs=1, commit=False):
    return argparse.Namespace(records=str(tmp / "records"), runs=str(tmp / runs), reports=str(tmp / "reports"),
                              jobs=jobs, minutes=minutes, grace=10.0, commit=commit, python="python")


def run_window(tmp: Path, runs: str, *, seconds=600.0, plan=None, **kw):
    clock, git, started = FakeClock(), FakeGit(), []

    def launch(run, cmd, out):
        started.append(run.name)
        assert cmd[2:4] == ["minidp.cli", "federated"] and "--seed" in cmd and str(out) in cmd
        return FakeChild(clock, run, out, seconds)

    plan = plan or study.load_plan()
    recorded = study.window(plan, args_for(tmp, runs, **kw), ["--model", "M"], plan["setting"], clock=clock,
                            launch=launch, git=git, report=lambda: federated_report.write(
                                plan, tmp / "records", tmp / "reports"), log=lambda *a: None)
    return started, recorded, git, clock


def test_the_plan_is_the_issues():
    plan = study.load_plan()
    assert set(plan["arms"]) == {"dp_fedavg", "fedcg", "dr_encoder", "dr_encoder_rmt", "dp_fedavg_rmt",
                                 "nonprivate_fedavg", "clipped_fedavg"}
    assert len(plan["seeds"]) >= 3
    assert "--epsilon" not in study.arm_flags(plan, "nonprivate_fedavg", plan["setting"])
    clipped = study.arm_flags(plan, "clipped_fedavg", plan["setting"])
    assert "--epsilon" not in clipped and {"--non-private", "--clip-non-private"} <= set(clipped)
    # the clipped diagnostic takes the private arms' server lr: it differs from DP-FedAvg only in the noise
    assert next(s for s in plan["searches"] if "dp_fedavg" in s["for"])["for"].count("clipped_fedavg") == 1
    assert "--epsilon" in study.arm_flags(plan, "dr_encoder_rmt", plan["setting"])
    for search in plan["searches"]:
        assert "--validation-fraction" in search["flags"]  # a search never reads the reported set
    served = [arm for search in plan["searches"] for arm in search["for"]]
    assert sorted(served) == sorted(plan["arms"])  # every arm's server lr comes from exactly one search


def test_an_unlimited_window_searches_first_then_runs_every_arm_seed_major(tmp_path):
    started, recorded, _, _ = run_window(tmp_path, "runs")
    plan = study.load_plan()
    assert recorded == 6 + len(plan["arms"]) * len(plan["seeds"])
    assert started[:6] == ["search/server_lr1/seed0", "search/server_lr3/seed0", "search/server_lr10/seed0",
                           "search_nonprivate/server_lr0.3/seed0", "search_nonprivate/server_lr1/seed0",
                           "search_nonprivate/server_lr3/seed0"]
    assert started[6:6 + len(plan["arms"])] == [f"{arm}/seed0" for arm in plan["arms"]]
    for run in study.planned(plan, tmp_path / "records", plan["setting"])[6:]:
        assert run.flags[run.flags.index("--server-lr") + 1] == "3"  # each search's best validation accuracy
    data = json.loads((tmp_path / "reports" / "federated.json").read_text())
    assert data["complete"] and [s["chosen"] for s in data["searches"]] == ["3", "3"]
    assert data["arms"]["dp_fedavg"]["final_accuracy"] == [0.7, 0.71, 0.72]
    assert data["verdict"].startswith("at client-level ε = 8, DR-Encoder makes no difference")
    assert (tmp_path / "reports" / "README.md").read_text().count("INCOMPLETE") == 0


def test_never_starts_a_run_that_cannot_end_before_the_deadline(tmp_path):
    # first_run_minutes 12 -> 13.8 min expected: a 30-minute window starts two runs one after the other
    started, recorded, _, clock = run_window(tmp_path, "runs", minutes=30, seconds=600.0)
    assert started == ["search/server_lr1/seed0", "search/server_lr3/seed0"] and recorded == 2
    assert clock.now() - 1000.0 <= 30 * 60 + 10  # the fake clock starts at 1000 s
    # the ledger now says a run takes 600 s (11.5 min with the margin): the next window fits two runs in 25 min
    started, recorded, _, _ = run_window(tmp_path, "fresh_runs", minutes=25, seconds=600.0)
    assert started == ["search/server_lr10/seed0", "search_nonprivate/server_lr0.3/seed0"]


def test_a_fresh_window_starts_with_the_next_unrecorded_run(tmp_path):
    run_window(tmp_path, "runs1", minutes=30)
    started, _, _, _ = run_window(tmp_path, "runs2", minutes=12)  # an empty runs directory, records in place
    assert started == ["search/server_lr10/seed0"]


def test_commits_only_records_and_the_report(tmp_path):
    (tmp_path / ".git").mkdir()
    _, _, git, _ = run_window(tmp_path, "runs", minutes=15, commit=True)
    commits = [c for c in git.calls if c[0] == "commit"]
    assert len(commits) == 1 and "--only" in commits[0]
    paths = commits[0][commits[0].index("--") + 1:]
    assert paths == ["records", "reports"]  # the records folder and the report folder, nothing else
    assert "validation accuracy 0.6000" in commits[0][commits[0].index("-m") + 1]


def test_two_windows_over_the_same_records_cannot_run_at_once(tmp_path):
    holder = study.lock(tmp_path / "records")
    try:
        with pytest.raises(SystemExit, match="another window holds"):
            study.lock(tmp_path / "records")
    finally:
        holder.close()


def test_an_unfinished_copy_of_a_record_is_never_read(tmp_path):
    run_window(tmp_path, "runs", minutes=15)
    records = tmp_path / "records"
    (records / "dp_fedavg" / ".seed0.tmp").mkdir(parents=True)  # a copy cut short
    (records / "dp_fedavg" / "seed1.tmp").mkdir()  # the name an older version used
    data = federated_report.collect(study.load_plan(), records)
    assert data["arms"]["dp_fedavg"]["seeds"] == []


def test_a_run_that_ran_alone_is_logged_with_one_job(tmp_path):
    # one search: two of its runs go together; the third runs alone (the main runs wait for its choice)
    plan = study.load_plan()
    plan["searches"] = plan["searches"][:1]
    plan["searches"][0]["for"] = list(plan["arms"])
    run_window(tmp_path, "runs", jobs=2, plan=plan)
    rows = [json.loads(line) for line in (tmp_path / "records" / "ledger.jsonl").read_text().splitlines()]
    assert [r["jobs"] for r in rows[:4]] == [2, 2, 1, 2]


def test_incomplete_pairs_are_marked(tmp_path):
    run_window(tmp_path, "runs")
    records = tmp_path / "records"
    shutil.rmtree(records / "dr_encoder" / "seed2")
    data = federated_report.collect(study.load_plan(), records)
    pair = next(c for c in data["paired"] if (c["a"], c["b"]) == ("dp_fedavg", "dr_encoder"))
    assert not pair["complete"] and data["verdict"].startswith("not yet")
    assert "INCOMPLETE: fewer than 3 seeds" in federated_report.markdown(data, "cmd")


def test_smoke_run_of_the_tiny_bert_is_recorded(tmp_path):
    argv = ["--smoke", "--runs", str(tmp_path / "runs"), "--records", str(tmp_path / "records"),
            "--reports", str(tmp_path / "reports"), "--plan", str(_smoke_plan(tmp_path))]
    assert study.main(argv) == 0
    data = json.loads((tmp_path / "reports" / "federated.json").read_text())
    assert data["searches"][0]["chosen"] == "1"
    acc = data["arms"]["dr_encoder_rmt"]["final_accuracy"]
    assert len(acc) == 1 and 0.0 <= acc[0] <= 1.0
    written = (tmp_path / "records" / "dr_encoder_rmt" / "seed0" / "summary.json").stat().st_mtime_ns
    assert study.main(argv) == 0  # everything recorded: nothing runs again
    assert (tmp_path / "records" / "dr_encoder_rmt" / "seed0" / "summary.json").stat().st_mtime_ns == written


def _smoke_plan(tmp: Path) -> Path:
    plan = study.load_plan()
    plan["arms"] = {k: plan["arms"][k] for k in ("dp_fedavg", "dr_encoder_rmt")}
    plan["seeds"] = [0]
    plan["searches"] = plan["searches"][:1]
    plan["searches"][0].update(values=[1], **{"for": list(plan["arms"])})
    path = tmp / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def test_update_stats_on_known_updates():
    from scripts.study.federated_update_stats import update_stats

    a = {"classifier.weight": np.array([3.0, 0.0]), "lora_B": np.array([0.0, 4.0])}  # norm 5, head share 9/25
    b = {"classifier.weight": np.array([3.0, 0.0]), "lora_B": np.array([0.0, -4.0])}  # cosine to a: (9-16)/25
    stats = update_stats([a, b], ["classifier.weight"])
    assert stats["norm_median"] == 5.0 and stats["head_share_of_squared_norm_median"] == 9 / 25
    assert abs(stats["pairwise_cosine_mean"] - (-7 / 25)) < 1e-12


def _arm(label, finals, private=True):
    return {"label": label, "private": private, "seeds": list(range(len(finals))), "final_accuracy": finals,
            "final": {"n": len(finals), "mean": float(np.mean(finals)), "sd": None}, "complete": len(finals) >= 3}


def test_the_report_says_when_the_non_private_arm_is_not_a_cap():
    arms = {"dp_fedavg": _arm("DP-FedAvg-LoRA", [0.78, 0.79, 0.80]),
            "dr_encoder": _arm("DR-Encoder", [0.70, 0.71, 0.72]),
            "nonprivate_fedavg": _arm("FedAvg, NOT private (cap)", [0.73, 0.74, 0.75], False)}
    finals = {a: dict(zip(v["seeds"], v["final_accuracy"])) for a, v in arms.items()}
    pair = {"a": "dp_fedavg", "b": "nonprivate_fedavg", "complete": True,
            **federated_report.paired(finals["dp_fedavg"], finals["nonprivate_fedavg"])}
    said = federated_report.cap_check(arms, [pair])
    assert said.startswith("NOT a cap") and "DP-FedAvg-LoRA" in said and "DR-Encoder" not in said
    assert "-0.0500" in said and "resolved by the seeds" in said and "not resolved" not in said
    arms["dr_encoder"] = _arm("DR-Encoder", [0.90, 0.91, 0.92])   # above the cap, which is above DP-FedAvg
    arms["nonprivate_fedavg"] = _arm("FedAvg, NOT private (cap)", [0.85, 0.86, 0.88], False)
    finals = {a: dict(zip(v["seeds"], v["final_accuracy"])) for a, v in arms.items()}
    pair = {"a": "dp_fedavg", "b": "nonprivate_fedavg", "complete": True,
            **federated_report.paired(finals["dp_fedavg"], finals["nonprivate_fedavg"])}
    said = federated_report.cap_check(arms, [pair])
    assert "DR-Encoder ends above" in said and "(above DP-FedAvg, resolved by the seeds)" in said
    arms["dr_encoder"] = _arm("DR-Encoder", [0.70, 0.71, 0.72])
    assert "bounds them here" in federated_report.cap_check(arms, [])
    arms["nonprivate_fedavg"] = _arm("FedAvg, NOT private (cap)", [0.85, 0.86], False)
    assert federated_report.cap_check(arms, []).startswith("not yet")


def test_the_report_says_what_the_noise_costs():
    """The clipped noise-free arm is not private: it is outside the cap check's private arms, and its paired
    difference to DP-FedAvg-LoRA (b − a) reads as the noise's cost."""
    arms = {"dp_fedavg": _arm("DP-FedAvg-LoRA", [0.78, 0.79, 0.80]),
            "nonprivate_fedavg": _arm("FedAvg, NOT private (cap)", [0.83, 0.84, 0.85], False),
            "clipped_fedavg": _arm("clipped", [0.90, 0.90, 0.90], False)}
    assert "bounds them here" in federated_report.cap_check(arms, [])  # 0.90 is not a private arm
    finals = {a: dict(zip(v["seeds"], v["final_accuracy"])) for a, v in arms.items()}

    def pair(b):
        return {"a": "dp_fedavg", "b": b, "complete": True, **federated_report.paired(finals["dp_fedavg"], finals[b])}
    said = federated_report.noise_cost(arms, [pair("clipped_fedavg")])
    assert said.startswith("clipped − DP-FedAvg-LoRA") and "+0.1100" in said and "the noise costs" in said
    finals["clipped_fedavg"] = {0: 0.78, 1: 0.80, 2: 0.79}
    assert "no cost of the noise the seeds can resolve" in federated_report.noise_cost(arms, [pair("clipped_fedavg")])
    arms["clipped_fedavg"] = _arm("clipped", [0.9, 0.9], False)
    assert federated_report.noise_cost(arms, []).startswith("not yet")
