"""The time-boxed study window (scripts/reproduce.py --records/--jobs/--minutes/--commit, scripts/study/study_window.py)
driven by a fake clock and a fake runner: it never starts a run that cannot end before the deadline, a fresh runs
directory starts with the next unfinished run (no search or finished run repeated), it commits only records and
reports, and a stopped window resumes where it stopped."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from scripts.study import reproduce, study_window



class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def now(self):
        return self.t

    def sleep(self, seconds):
        self.t += seconds


class FakeChild:
    """A run that ends ``seconds`` after it starts on the fake clock and then writes a summary (steps, accuracy)."""

    def __init__(self, clock, spec, seconds, steps, accuracy):
        self.clock, self.spec, self.end, self.steps, self.accuracy = clock, spec, clock.now() + seconds, steps, accuracy
        self.cpu_seconds, self.rc, self.stop, self.blas_threads = None, None, False, "1"
        spec.path.mkdir(parents=True, exist_ok=True)

    def poll(self):
        if self.rc is None and self.clock.now() >= self.end:
            self.rc, self.cpu_seconds = 0, 1.0
            self.spec.path.joinpath("summary.json").write_text(json.dumps(
                {"steps": self.steps, "final_eval": {"accuracy": self.accuracy}}))
            self.spec.path.joinpath("metrics.jsonl").write_text(json.dumps({"step": self.steps}) + "\n")
        return self.rc

    def stopped(self):
        return self.stop

    def terminate(self):
        if self.rc is None:
            self.rc = -signal.SIGTERM


class FakeRunner:
    """launch(spec, action): every run takes ``rate`` s/step of its --steps or the setting's expected steps."""

    def __init__(self, clock, rate=10.0, steps=100):
        self.clock, self.rate, self.steps, self.started = clock, rate, steps, []

    def __call__(self, spec, action):
        self.started.append(spec.name)
        steps = int(spec.flags[spec.flags.index("--steps") + 1]) if "--steps" in spec.flags else self.steps
        accuracy = 0.9 if "lr0.01" in spec.arm else 0.8  # the search chooses lr 0.01
        return FakeChild(self.clock, spec, self.rate * steps, steps, accuracy)


class FakeGit:
    def __init__(self):
        self.calls = []

    def __call__(self, args, cwd):
        self.calls.append(list(args))
        return 0


def plan_file(tmp: Path) -> Path:
    plan = {
        "variables": {"steps": 100},
        "common": ["--no-progress"],
        "settings": {
            "val": {"task": "sst2", "epsilon": 3, "flags": ["--task", "sst2", "--steps", "20"]},
            "main": {"task": "sst2", "epsilon": 3, "expected_steps": 100,
                     "flags": ["--task", "sst2", "--lr", "{lr}"]}},
        "arms": {"ft": {"flags": ["--denoise", "none"], "role": "baseline"},
                 "rmt": {"flags": ["--denoise", "rmt"], "role": "denoised"},
                 "short": {"flags": ["--steps", "10", "--lr", "{lr}"], "role": "comparison"}},
        "arm_searches": {"ft": {"setting": "val", "seed": 0, "lrs": [0.001, 0.01]}, "rmt": {"same_as": "ft"},
                         "short": {"same_as": "ft"}},
        "phases": [{"name": "p", "settings": ["main"], "arms": ["ft", "rmt", "short"], "seeds": [0, 1]}],
    }
    path = tmp / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def window(tmp: Path, runs: str, *, minutes=None, jobs=1, commit=False, rate=10.0, records_rows=None, rate_from=None):
    """Run one window on fresh runs directory ``runs`` over the shared records; returns (runner, git, output)."""
    records = tmp / "records"
    records.mkdir(exist_ok=True)
    for row in records_rows or []:
        with (records / "ledger.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
    argv = ["--runs-dir", str(tmp / runs), "--plan", str(tmp / "plan.json"), "--records", str(records),
            "--reports", str(tmp / "reports"), "--jobs", str(jobs)]
    argv += ["--minutes", str(minutes)] if minutes else []
    argv += ["--commit"] if commit else []
    argv += ["--rate", rate_from] if rate_from else []
    args = reproduce.parse_args(argv)
    plan = reproduce.load_plan(args.plan, [])
    clock, git = FakeClock(), FakeGit()
    runner = FakeRunner(clock, rate=rate)

    def report():
        (tmp / "reports").mkdir(exist_ok=True)
        (tmp / "reports" / "r.md").write_text("report\n")
        return [tmp / "reports" / "r.md"]

    (tmp / runs).mkdir(parents=True, exist_ok=True)
    rc = reproduce.run_window(plan, tmp / runs, args, reproduce.Interrupt(), clock=clock, launch=runner, git=git,
                              report=report)
    assert rc == 0
    return runner, git, clock


def rows_at(rate, steps=100, jobs=1):
    """Ledger rows of finished fresh runs that took ``rate`` s/step (what the deadline's estimate reads)."""
    return [{"run": f"main/{arm}/seed9", "action": "fresh", "finished": True, "wall_seconds": rate * steps,
             "steps": steps, "jobs": jobs, "rc": 0} for arm in ("ft", "rmt", "short")]


def test_an_unlimited_window_runs_the_searches_then_every_run_and_keeps_records(tmp_path):
    plan_file(tmp_path)
    runner, _, _ = window(tmp_path, "runs1")
    assert runner.started[:2] == ["val/ft_lr0.001/seed0", "val/ft_lr0.01/seed0"]
    assert len(runner.started) == 2 + 6
    for name in runner.started:  # every finished run's records are in the records folder
        assert (tmp_path / "records" / name / "summary.json").exists()
    rows = [json.loads(line) for line in (tmp_path / "records" / "ledger.jsonl").read_text().splitlines()]
    assert [r["run"] for r in rows] == runner.started and all(r["jobs"] == 1 and r["finished"] for r in rows)


def test_never_starts_a_run_that_cannot_end_before_the_deadline(tmp_path):
    plan_file(tmp_path)
    for name in ("val/ft_lr0.001/seed0", "val/ft_lr0.01/seed0"):  # the search is done
        (tmp_path / "records" / name).mkdir(parents=True)
        (tmp_path / "records" / name / "summary.json").write_text(json.dumps(
            {"steps": 20, "final_eval": {"accuracy": 0.9 if "0.01" in name else 0.8}}))
    # 10 s/step: a 100-step run is expected to take 1150 s (19.2 min), the 10-step one 115 s. In 25 minutes:
    # main/ft/seed0 (1000 s) fits; then 500 s are left: main/rmt/seed0 (1150 s expected) does not, the short
    # arm's seed 0 (115 s) does, and seed 1's after it (400 s left); nothing else
    runner, _, clock = window(tmp_path, "runs", minutes=25, records_rows=rows_at(10.0))
    assert runner.started == ["main/ft/seed0", "main/short/seed0", "main/short/seed1"]
    assert clock.now() - 1000.0 <= 25 * 60  # every started run ended before the deadline


def test_a_fresh_window_starts_with_the_next_unfinished_run(tmp_path):
    plan_file(tmp_path)
    first, _, _ = window(tmp_path, "window1", minutes=25, records_rows=rows_at(10.0))
    # the first window runs the search (2 x 200 s), after which main/ft/seed0 (1150 s expected) no longer fits in
    # the 1100 s left, but the two short runs do
    assert first.started[:2] == ["val/ft_lr0.001/seed0", "val/ft_lr0.01/seed0"]
    second, _, _ = window(tmp_path, "window2")  # a new machine: an empty runs directory
    assert not set(second.started) & set(first.started)  # nothing finished (search included) runs again
    assert second.started[0] == "main/ft/seed0"
    assert len(first.started) + len(second.started) == 8


def test_commits_only_records_and_reports(tmp_path):
    plan_file(tmp_path)
    (tmp_path / ".git").mkdir()  # the records' checkout: commits go there, paths relative to it
    runner, git, _ = window(tmp_path, "runs", commit=True)
    commits = [c for c in git.calls if c[0] == "commit"]
    assert len(commits) == len(runner.started)  # one commit per finished run
    for call in git.calls:
        paths = call[call.index("--") + 1:]
        assert paths and all(p.startswith(("records", "reports")) or "/records/" in p or "/reports/" in p
                             for p in paths), call
    for call in commits:
        assert "--only" in call and any(name in call[call.index("-m") + 1] for name in runner.started)


def test_two_jobs_run_at_once_and_each_row_says_so(tmp_path):
    plan_file(tmp_path)
    runner, _, clock = window(tmp_path, "runs", jobs=2)
    rows = [json.loads(line) for line in (tmp_path / "records" / "ledger.jsonl").read_text().splitlines()]
    assert all(r["jobs"] == 2 for r in rows) and len(rows) == 8
    # two at a time: the two 200-s search runs together, then six runs two by two (1000, 1000, 100 s)
    assert clock.now() - 1000.0 < 200 + 1000 + 1000 + 100 + 50


def test_paused_time_extends_the_deadline():

    class StoppedOnce(FakeClock):  # the next sleep lasts 300 s: the scheduler itself was stopped
        stop = False

        def sleep(self, seconds):
            self.t += 300 if self.stop else seconds
            self.stop = False

    clock = StoppedOnce()
    deadline = study_window.Deadline(clock, minutes=10, poll=5)
    deadline.sleep()
    assert deadline.left() == pytest.approx(600 - 5)
    clock.stop = True
    deadline.sleep()
    assert deadline.left() == pytest.approx(600 - 10)  # 300 s passed, 295 s of them paused
    deadline.sleep(lambda: True)  # only the children were stopped
    assert deadline.left() == pytest.approx(600 - 10)
    clock.t += 60  # a minute of work between polls (a report, a commit): not a pause
    deadline.sleep()
    assert deadline.left() == pytest.approx(600 - 75)


def test_a_real_child_reports_its_own_cpu_time(tmp_path):

    child = study_window.Child([sys.executable, "-c", "sum(i * i for i in range(2_000_000))"], tmp_path / "log",
                               tmp_path, {"PATH": "/usr/bin:/bin"})
    while child.poll() is None:
        pass
    assert child.poll() == 0 and 0.0 < child.cpu_seconds < 60.0


def test_a_setting_can_have_its_own_search_for_an_arm(tmp_path):
    """"ARM@SETTING" in arm_searches: that setting's runs of ARM take that search's lr (the tweets search their own
    learning rates); the other settings keep the arm's search."""
    path = plan_file(tmp_path)
    plan = json.loads(path.read_text())
    plan["settings"]["other"] = {"task": "empythy3", "epsilon": 8, "flags": ["--lr", "{lr}"]}
    plan["settings"]["val2"] = {"task": "empythy3", "epsilon": 8, "flags": ["--steps", "5"]}
    plan["arm_searches"]["ft@other"] = {"setting": "val2", "seed": 0, "lrs": [0.5, 0.05]}
    plan["arm_searches"]["rmt@other"] = {"same_as": "ft@other"}
    plan["phases"].append({"name": "q", "settings": ["other"], "arms": ["ft", "rmt"], "seeds": [0]})
    path.write_text(json.dumps(plan))
    loaded = reproduce.load_plan(path, [])
    runs_dir = tmp_path / "runs"
    for name, acc in (("val/ft_lr0.001", 0.8), ("val/ft_lr0.01", 0.9), ("val2/ft_lr0.5", 0.7), ("val2/ft_lr0.05", 0.6)):
        (runs_dir / name / "seed0").mkdir(parents=True)
        (runs_dir / name / "seed0" / "summary.json").write_text(json.dumps({"final_eval": {"accuracy": acc}}))
    runs = {r.name: r for r in reproduce.planned_runs(loaded, runs_dir, None)}

    def lr(name):
        return runs[name].flags[runs[name].flags.index("--lr") + 1]

    assert lr("main/ft/seed0") == lr("main/rmt/seed0") == "0.01"
    assert lr("other/ft/seed0") == lr("other/rmt/seed0") == "0.5"
    assert runs["other/rmt/seed0"].meta["lr_from"] == "ft@other" and runs["main/rmt/seed0"].meta["lr_from"] == "ft"
    assert "val2/ft_lr0.5/seed0" in runs and runs["val2/ft_lr0.5/seed0"].meta["search_arm"] == "ft@other"


def test_an_arm_never_run_at_this_concurrency_takes_its_rate_at_any(tmp_path):

    rows = [{"run": "s/ft/seed0", "action": "fresh", "finished": True, "wall_seconds": 2000, "steps": 100, "jobs": 2},
            {"run": "s/ft/seed1", "action": "fresh", "finished": True, "wall_seconds": 1000, "steps": 100, "jobs": 1},
            {"run": "s/lora/seed0", "action": "fresh", "finished": True, "wall_seconds": 1500, "steps": 100},
            {"run": "s/rmt/seed0", "action": "resume", "finished": True, "wall_seconds": 10, "steps": 100, "jobs": 1}]
    assert study_window.seconds_per_step(rows, tmp_path, jobs=1) == {(None, "ft"): 10.0, (None, "lora"): 15.0}
    assert study_window.seconds_per_step(rows, tmp_path, jobs=2) == {(None, "ft"): 20.0, (None, "lora"): 15.0}


def test_a_run_takes_its_own_tasks_rate_before_its_arms_rate_on_another_task(tmp_path):
    """A tweets step costs several SST-2 steps: a tweets arm with no finished run is estimated from the tweets
    runs of other arms, not from its own SST-2 runs; only with no run of its task does the arm's rate elsewhere
    (then the slowest rate) stand in."""
    rows = [{"run": "sst/ft/seed0", "action": "fresh", "finished": True, "wall_seconds": 1000, "steps": 100, "jobs": 2},
            {"run": "sst/lora/seed0", "action": "fresh", "finished": True, "wall_seconds": 800, "steps": 100, "jobs": 2},
            {"run": "tw_val/ft_lr0.01/seed0", "action": "fresh", "finished": True, "wall_seconds": 800, "steps": 20,
             "jobs": 2},
            {"run": "tw/nonprivate/seed0", "action": "fresh", "finished": True, "wall_seconds": 6000, "steps": 100,
             "jobs": 2}]
    task = {"sst": "sst2", "tw_val": "tweets", "tw": "tweets"}
    rates = study_window.seconds_per_step(rows, tmp_path, jobs=2, task_of=task.get)
    assert rates == {("sst2", "ft"): 10.0, ("sst2", "lora"): 8.0, ("tweets", "ft"): 40.0,
                     ("tweets", "nonprivate"): 60.0}
    assert study_window.rate_for("tweets", "ft", rates) == 40.0          # its own (from the search's steps)
    assert study_window.rate_for("tweets", "lora", rates) == 50.0        # the task's other arms, not lora's 8
    assert study_window.rate_for("qnli", "lora", rates) == 8.0           # a task never run: the arm elsewhere
    assert study_window.rate_for("qnli", "rmt", rates) == 60.0           # nothing: the slowest rate
    assert study_window.rate_for("qnli", "rmt", {}) is None


def test_a_path_outside_the_checkout_is_left_out_of_the_commit(tmp_path, capsys):
    """git refuses a whole commit that names a path outside its checkout (as a report written into a pinned
    worktree would be): such a path is left out and said, the rest committed."""
    from scripts.study import study_window  # noqa: PLC0415

    repo, other = tmp_path / "repo", tmp_path / "worktree"
    (repo / ".git").mkdir(parents=True)
    other.mkdir()
    (repo / "a.md").write_text("a\n")
    (other / "b.md").write_text("b\n")
    git = FakeGit()
    assert study_window.commit_paths([repo / "a.md", other / "b.md"], "m", repo=repo, git=git, clock=FakeClock())
    assert git.calls == [["add", "--", "a.md"], ["commit", "-q", "-m", "m", "--only", "--", "a.md"]]
    assert "not committed (outside" in capsys.readouterr().out


def test_runs_import_minidp_from_the_code_tree_and_the_ledger_names_its_commit(tmp_path, monkeypatch):
    """--code-tree pins the code the runs use (their working directory and PYTHONPATH) while the scheduler runs
    from a newer checkout; every ledger row says which commit that tree had."""
    plan_file(tmp_path)
    launched = []

    def fake_launch_child(cmd, spec, root, *, one_thread):
        launched.append((root, one_thread))
        return FakeChild(clock, spec, 10.0, 20, 0.8)

    clock = FakeClock()
    monkeypatch.setattr(study_window, "launch_child", fake_launch_child)
    monkeypatch.setattr(reproduce, "code_commit", lambda tree: f"sha-of-{tree.name}")
    tree = tmp_path / "study-tree"
    argv = ["--runs-dir", str(tmp_path / "runs"), "--plan", str(tmp_path / "plan.json"), "--records",
            str(tmp_path / "records"), "--reports", str(tmp_path / "reports"), "--code-tree", str(tree),
            "--max-runs", "1"]
    args = reproduce.parse_args(argv)
    (tmp_path / "runs").mkdir()
    assert reproduce.run_window(reproduce.load_plan(args.plan, []), tmp_path / "runs", args, reproduce.Interrupt(),
                                clock=clock, git=FakeGit(), report=lambda: []) == 0
    assert launched == [(tree.resolve(), True)]  # a window's runs: one thread each, even at --jobs 1
    row = json.loads((tmp_path / "records" / "ledger.jsonl").read_text().splitlines()[0])
    assert row["code_commit"] == "sha-of-study-tree"
    assert reproduce.runs_code_tree(reproduce.parse_args(argv[:-6])) == reproduce.ROOT  # default: its own checkout


def test_a_code_tree_without_minidp_is_one_line_and_exit_2(tmp_path, capsys):
    plan_file(tmp_path)
    rc = reproduce.main(["--runs-dir", str(tmp_path / "runs"), "--plan", str(tmp_path / "plan.json"),
                         "--records", str(tmp_path / "records"), "--code-tree", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--code-tree" in err and "nowhere" in err
    assert not (tmp_path / "records").exists()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_code_commit_names_the_checkouts_head_and_marks_a_modified_minidp(tmp_path, monkeypatch):
    import subprocess  # noqa: PLC0415
    repo = tmp_path / "repo"
    (repo / "minidp").mkdir(parents=True)
    (repo / "minidp" / "__init__.py").write_text("")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "c"]):
        subprocess.run(git + cmd, cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert reproduce.code_commit(repo) == head
    (repo / "minidp" / "__init__.py").write_text("x = 1\n")
    assert reproduce.code_commit(repo) == head + "+modified"
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git looks no further up than tmp_path
    assert reproduce.code_commit(plain) is None  # not a checkout


def test_side_by_side_runs_get_one_blas_thread_and_a_lone_run_the_callers(tmp_path, monkeypatch):
    monkeypatch.setattr(study_window, "Child", lambda cmd, log, cwd, env: env)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    monkeypatch.setenv("MINIDP_NUM_THREADS", "2")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    spec = type("Spec", (), {"path": tmp_path / "run"})()
    side = study_window.launch_child(["python"], spec, tmp_path)
    lone = study_window.launch_child(["python"], spec, tmp_path, one_thread=False)
    assert side["OPENBLAS_NUM_THREADS"] == "1" and side["OMP_NUM_THREADS"] == "1"
    assert lone["OPENBLAS_NUM_THREADS"] == "2" and lone["OMP_NUM_THREADS"] == "1"  # unset: 1
    assert lone["MINIDP_NUM_THREADS"] == "2" and side["MINIDP_NUM_THREADS"] == "1"  # its own pool: the caller's
    assert lone["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path)


def test_a_plain_study_whose_runs_folder_is_its_records_under_another_spelling_writes_one_row(tmp_path,
                                                                                            monkeypatch):
    """--records naming the runs directory by another path is the plain study: one ledger row per attempt and
    nothing copied onto itself."""
    plan_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = reproduce.parse_args(["--runs-dir", "runs", "--plan", "plan.json", "--records", "./runs/../runs",
                                 "--reports", "reports", "--max-runs", "2"])
    (tmp_path / "runs").mkdir()
    clock = FakeClock()
    assert reproduce.run_window(reproduce.load_plan(args.plan, []), Path("runs"), args, reproduce.Interrupt(),
                                clock=clock, launch=FakeRunner(clock), git=FakeGit(), report=lambda: []) == 0
    rows = (tmp_path / "runs" / "ledger.jsonl").read_text().splitlines()
    assert [json.loads(r)["run"] for r in rows] == ["val/ft_lr0.001/seed0", "val/ft_lr0.01/seed0"]


def test_terminating_a_run_that_already_ended_keeps_its_cpu_time(tmp_path):
    """A stop signal reaching a child that has exited but is not yet reaped must not reap it behind wait4's
    back (the ledger's CPU seconds would be lost)."""
    child = study_window.Child([sys.executable, "-c", "pass"], tmp_path / "log", tmp_path, dict(os.environ))
    stat = Path(f"/proc/{child.proc.pid}/stat")
    for _ in range(600):  # until it is a zombie: exited, not reaped
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.05)
    child.terminate()
    assert child.poll() == 0 and child.cpu_seconds is not None


def test_a_full_runs_rate_wins_over_its_searches(tmp_path):
    """Searches evaluate a smaller split, so their steps are faster than a full run's: once a (task, arm) has a
    finished full run its rate comes from full runs alone."""
    search = [{"run": f"val/lora_lr{lr}/seed0", "phase": "lr_search", "action": "fresh", "finished": True,
               "wall_seconds": 520, "steps": 20, "jobs": 2} for lr in (0.003, 0.01, 0.03)]
    full = {"run": "main/lora/seed0", "phase": "tweets", "action": "fresh", "finished": True, "wall_seconds": 4200,
            "steps": 100, "jobs": 2}
    task = {"val": "tweets", "main": "tweets"}.get
    assert study_window.seconds_per_step(search, tmp_path, 2, task_of=task) == {("tweets", "lora"): 26.0}
    assert study_window.seconds_per_step(search + [full], tmp_path, 2, task_of=task) == {("tweets", "lora"): 42.0}


def test_rate_cpu_reads_each_runs_own_cpu_seconds_and_skips_rows_without_them(tmp_path):
    """--rate cpu: a run's estimate from its own CPU seconds per step (a core to itself), not the wall time a
    crowded window stretched; rows that never recorded CPU time do not count."""
    rows = [{"run": "s/ft/seed0", "action": "fresh", "finished": True, "wall_seconds": 7000, "cpu_seconds": 4000,
             "steps": 100, "jobs": 2},
            {"run": "s/ft/seed1", "action": "fresh", "finished": True, "wall_seconds": 5000, "cpu_seconds": 4200,
             "steps": 100, "jobs": 2},
            {"run": "s/lora/seed0", "action": "fresh", "finished": True, "wall_seconds": 3000, "steps": 100,
             "jobs": 2}]
    assert study_window.seconds_per_step(rows, tmp_path, jobs=2) == {(None, "ft"): 60.0, (None, "lora"): 30.0}
    assert study_window.seconds_per_step(rows, tmp_path, jobs=2, measure="cpu") == {(None, "ft"): 41.0}


def test_rate_cpu_lets_in_a_run_the_wall_rate_refuses(tmp_path):
    """The same ledger and deadline: at the wall rate (a crowded window's 20 s/step) no 100-step run fits in
    25 minutes; at the CPU rate (10 s/step: 1150 s expected) the first does."""
    plan_file(tmp_path)
    for name in ("val/ft_lr0.001/seed0", "val/ft_lr0.01/seed0"):
        (tmp_path / "records" / name).mkdir(parents=True)
        (tmp_path / "records" / name / "summary.json").write_text(json.dumps(
            {"steps": 20, "final_eval": {"accuracy": 0.9 if "0.01" in name else 0.8}}))
    rows = [dict(r, wall_seconds=2000.0, cpu_seconds=1000.0) for r in rows_at(10.0)]
    wall, _, _ = window(tmp_path, "runs_wall", minutes=25, records_rows=rows)
    assert not [n for n in wall.started if "/short/" not in n]
    (tmp_path / "records" / "ledger.jsonl").unlink()
    cpu, _, _ = window(tmp_path, "runs_cpu", minutes=25, records_rows=rows, rate_from="cpu")
    assert cpu.started[0] == "main/ft/seed0"


def test_bad_window_flags_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    plan_file(tmp_path)
    base = ["--runs-dir", str(tmp_path / "runs"), "--plan", str(tmp_path / "plan.json")]
    assert reproduce.main(base + ["--jobs", "2"]) == 2
    assert "need --records" in capsys.readouterr().err
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert reproduce.main(base + ["--records", str(tmp_path / "rec"), "--jobs", "3", "--rate", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--rate cpu" in err and "--jobs 3" in err


def test_a_second_window_over_the_same_records_is_refused(tmp_path):
    """Two windows with their own runs directories but one records folder would each start the same unfinished
    run: the records folder is locked like the runs directory."""
    plan_file(tmp_path)
    records = tmp_path / "records"
    records.mkdir()
    held = reproduce.lock(records)
    try:
        with pytest.raises(SystemExit, match="another study process holds"):
            reproduce.main(["--runs-dir", str(tmp_path / "other_runs"), "--plan", str(tmp_path / "plan.json"),
                            "--records", str(records), "--reports", str(tmp_path / "reports"), "--max-runs", "0"])
        reproduce.lock(tmp_path / "other_runs").close()  # ...and its runs directory is let go
    finally:
        held.close()
