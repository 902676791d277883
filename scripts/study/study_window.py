"""Time-boxed study windows: N single-thread runs at once, a deadline no run is started past, and each finished
run's records committed to the repository the moment it finishes.

Why: a study run (198 steps of MiniLM at expected batch 1024) takes 30-50 minutes on two cores, and the machine
it runs on is held for a window of a few hours, after which every uncommitted file is gone. So what is done
lives in the repository (``--records``, e.g. reports/records/study3ep), never only in the runs directory:

    window start   the runs directory is seeded from the records: every finished run (and search run) and every
                   FAILED mark is copied in, so nothing finished is run again and the searches' choices hold
    each slot      the first ready run, in the plan's priority order, whose expected wall time ends before the
                   deadline (a shorter run further down may take a slot a long one cannot use)
    run finished   its records are copied into --records, its ledger row appended there, the reports
                   regenerated from --records alone, and with --commit exactly those paths committed
    deadline       no new run starts after it; a run still going ``grace`` minutes past it is stopped with
                   SIGTERM (it checkpoints) and the window ends

Expected wall time of a run = its steps left x its median seconds per step x (1 + margin). The rate is
read from the ledger's finished fresh runs at this many concurrent runs (full runs before searches, whose
smaller evaluation split makes their steps faster), for the run's own task and arm; a pair with no finished
run takes the median of its task's other arms (a step's cost follows the task's sequence lengths far more than
the arm: in the ledger a tweets step costs 4-6 SST-2 steps), then the arm's rate on other tasks, then the slowest rate.
Seconds per step are wall seconds by default (``--rate wall``: what the runs took, including whatever else the
machine ran beside them, so the estimate errs long after a crowded window). ``--rate cpu`` reads each run's own
CPU seconds instead: the wall time a single-thread run takes with a core to itself, which is right for a window
whose machine runs the study alone (jobs <= cores) and errs short under outside load (then the grace stop
checkpoints the run). In the ledger, runs made with nothing beside them took 1.00-1.01x their CPU time.
Time the study spends stopped (SIGSTOP, e.g. while a benchmark runs) extends the deadline: the scheduler sees
either a gap between its polls far longer than the poll interval (it was stopped itself) or every child in
state T (only the children were stopped).

The clock, the launcher and git are passed in, so tests drive a window with a fake clock and a fake runner.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MARGIN = 0.15  # expected wall time = median s/step x steps x (1 + MARGIN)
POLL_SECONDS = 5.0
EARLIER_JOBS = 2  # ledger rows written before "jobs" was recorded: the study ran two single-thread runs at once
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "MINIDP_NUM_THREADS": "1"}
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")  # a lone run's defaults (the caller's win)


# ---------------------------------------------------------------------------------------------------------
# time
# ---------------------------------------------------------------------------------------------------------
class Clock:
    """Monotonic seconds (it keeps counting while the process is stopped, which is how a pause is seen)."""
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Deadline:
    """``minutes`` from ``start`` on ``clock``, extended by the time the study spent paused."""
    clock: object
    minutes: float
    poll: float = POLL_SECONDS
    start: float = field(init=False)
    paused: float = field(init=False, default=0.0)

    def __post_init__(self):
        self.start = self.clock.now()

    def sleep(self, children_stopped=lambda: False) -> None:
        """One poll: sleep ``poll`` seconds. A sleep that lasted over 3 polls means this process was stopped (the
        excess is a pause); ``children_stopped()`` true after it means every running child was paused for the
        whole poll. Only the sleep is measured: time spent working between polls (reaping a run, regenerating
        reports, committing) is never counted as a pause."""
        before = self.clock.now()
        self.clock.sleep(self.poll)
        gap = self.clock.now() - before
        if gap > 3 * self.poll:
            self.paused += gap - self.poll
        elif children_stopped():
            self.paused += gap

    def left(self) -> float:
        """Seconds until the deadline (negative past it)."""
        return self.start + 60.0 * self.minutes + self.paused - self.clock.now()


# ---------------------------------------------------------------------------------------------------------
# expected wall time, from the ledger
# ---------------------------------------------------------------------------------------------------------
def arm_of(run_name: str) -> str:
    """'setting/arm/seedK' -> 'arm' (a search run 'setting/ft_lr0.003/seed0' -> 'ft_lr0.003')."""
    return run_name.split("/")[1]


def run_steps(records: Path, run_name: str):
    """The steps a finished run took, from its summary in the records (None if not there)."""
    try:
        return int(json.loads((records / run_name / "summary.json").read_text())["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


RATE_FIELDS = {"wall": "wall_seconds", "cpu": "cpu_seconds"}  # --rate: which ledger seconds a step costs


def seconds_per_step(rows: list[dict], records: Path, jobs: int, task_of=lambda setting: None,
                     measure: str = "wall") -> dict:
    """{(task, arm): median seconds per step} (``measure``: "wall" or the run's own "cpu" seconds; a row without
    them is skipped) over the ledger's finished fresh runs made at ``jobs``
    concurrent runs (rows without "jobs" count as EARLIER_JOBS); a pair never run at ``jobs`` takes its median
    over every concurrency (at more runs at once a step is slower: the estimate errs long). ``task_of`` maps a
    run's setting to its task (the plan's "task"). Search runs count under their arm ('ft_lr0.003' -> 'ft') only
    while the pair has no finished full run: a search evaluates a smaller split, so its steps run faster."""
    found: dict[tuple, dict[tuple, list[float]]] = {}  # key -> {(is_search, at_jobs): rates}
    for row in rows:
        if row.get("action") != "fresh" or not row.get("finished"):
            continue
        steps = row.get("steps") or run_steps(records, row["run"])
        seconds = row.get(RATE_FIELDS[measure])
        if not steps or seconds is None:
            continue
        key = (task_of(row["run"].split("/")[0]), arm_of(row["run"]).split("_lr")[0])
        rate = float(seconds) / steps
        kinds = found.setdefault(key, {})
        search = row.get("phase") == "lr_search"
        kinds.setdefault((search, False), []).append(rate)
        if int(row.get("jobs", EARLIER_JOBS)) == jobs:
            kinds.setdefault((search, True), []).append(rate)
    preference = ((False, True), (False, False), (True, True), (True, False))  # full runs first, then at jobs
    return {key: statistics.median(next(kinds[k] for k in preference if k in kinds)) for key, kinds in found.items()}


def rate_for(task, arm: str, rates: dict):
    """Wall seconds per step for ``arm`` on ``task`` from ``seconds_per_step``'s table: the pair's own rate, else
    the median over the task's other arms, else the arm's median over other tasks, else the slowest rate known
    (None when the table is empty)."""
    if (task, arm) in rates:
        return rates[(task, arm)]
    for same in ([r for (t, _), r in rates.items() if t == task], [r for (_, a), r in rates.items() if a == arm]):
        if same:
            return statistics.median(same)
    return max(rates.values()) if rates else None


def flag_value(flags: list, name: str):
    return flags[flags.index(name) + 1] if name in flags and flags.index(name) + 1 < len(flags) else None


def planned_steps(spec, plan: dict, records: Path):
    """Steps the run will take: its --steps flag, else the setting's "expected_steps" in the plan, else the
    median steps of the setting's finished runs in the records; None if nothing says."""
    steps = flag_value(spec.flags, "--steps")
    if steps is not None and "{" not in str(steps):
        return int(steps)
    expected = plan["settings"].get(spec.setting, {}).get("expected_steps")
    if expected:
        return int(expected)
    done = [json.loads(p.read_text()).get("steps") for p in (records / spec.setting).glob("*/seed*/summary.json")]
    done = [s for s in done if s]
    return int(statistics.median(done)) if done else None


def steps_logged(run_dir: Path) -> int:
    """Steps already in a run directory's metrics (a run resumed from its checkpoint has only the rest left)."""
    try:
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return 0
    return max((int(r["step"]) for r in rows if "step" in r and "eval" not in r), default=0)


def expected_seconds(spec, plan: dict, records: Path, rates: dict):
    """Expected wall seconds for ``spec`` (None: unknown, as when the ledger has no finished fresh run)."""
    steps = planned_steps(spec, plan, records)
    task = plan["settings"].get(spec.setting, {}).get("task")
    rate = rate_for(task, spec.arm.split("_lr")[0], rates)
    if steps is None or rate is None:
        return None
    left = max(steps - steps_logged(spec.path), 0)
    return left * rate * (1.0 + MARGIN)


# ---------------------------------------------------------------------------------------------------------
# the repository side: records in, records out, commit
# ---------------------------------------------------------------------------------------------------------
def seed_from_records(runs: list, runs_dir: Path, records: Path, record_files: tuple) -> int:
    """Copy every finished run's records (and every FAILED mark) from ``records`` into ``runs_dir`` where the
    runs directory lacks them, so a fresh window skips what is done. Returns how many runs were seeded."""
    seeded = 0
    for spec in runs:
        source = records / spec.path.relative_to(runs_dir)
        done = (source / "summary.json").exists() or (source / "FAILED").exists()
        if not done or (spec.path / "summary.json").exists() or (spec.path / "FAILED").exists():
            continue
        if spec.path.exists():  # a partial run of an earlier attempt: the records' finished one wins
            shutil.rmtree(spec.path)
        spec.path.mkdir(parents=True)
        for name in record_files + ("FAILED",):
            if (source / name).exists():
                shutil.copy2(source / name, spec.path / name)
        seeded += 1
    return seeded


def save_run(spec, runs_dir: Path, records: Path, record_files: tuple) -> Path:
    """Copy one run's records (finished, or its FAILED mark and log) into ``records``; returns the folder."""
    target = records / spec.path.relative_to(runs_dir)
    target.mkdir(parents=True, exist_ok=True)
    for name in record_files + ("FAILED",):
        if (spec.path / name).exists():
            shutil.copy2(spec.path / name, target / name)
    return target


def append_row(ledger: Path, row: dict) -> None:
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with ledger.open("a") as f:
        f.write(json.dumps(row, allow_nan=False) + "\n")


def git_cli(args: list, cwd: Path) -> int:
    return subprocess.run(["git"] + args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT).returncode


def commit_paths(paths: list, message: str, *, repo: Path, git=git_cli, clock=None, tries: int = 60) -> bool:
    """``git add`` then ``git commit --only`` exactly ``paths`` (nothing else staged goes in), retrying while
    another git process holds .git/index.lock. Returns whether the commit was made."""
    clock = clock or Clock()
    inside = [Path(p).resolve() for p in paths if Path(p).exists()]
    outside = [p for p in inside if not p.is_relative_to(repo.resolve())]
    if outside:  # never what a window should write; git would refuse the whole commit for them
        print(f"study: not committed (outside {repo}): {', '.join(map(str, outside))}", flush=True)
    rel = [str(p.relative_to(repo.resolve())) for p in inside if p.is_relative_to(repo.resolve())]
    for _ in range(tries):
        if (repo / ".git" / "index.lock").exists():
            clock.sleep(2.0)
            continue
        if git(["add", "--"] + rel, repo) == 0 and git(["commit", "-q", "-m", message, "--only", "--"] + rel,
                                                         repo) == 0:
            return True
        clock.sleep(2.0)
    return False


# ---------------------------------------------------------------------------------------------------------
# children
# ---------------------------------------------------------------------------------------------------------
class Child:
    """One training run as a subprocess with one BLAS thread; its own CPU time from wait4 (not RUSAGE_CHILDREN,
    which mixes concurrent runs)."""
    def __init__(self, cmd: list, log: Path, cwd: Path, env: dict):
        self.log = log.open("a")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=str(cwd),
                                     start_new_session=False)
        self.cpu_seconds = None
        self.blas_threads = env.get("OPENBLAS_NUM_THREADS")  # what the ledger row records

    def poll(self):
        """The exit status once the run has ended, else None."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return None
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        self.log.close()
        return self.proc.returncode

    def stopped(self) -> bool:
        """Whether the child is stopped (SIGSTOP): state T in /proc/PID/stat."""
        try:
            return Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
        except (OSError, IndexError):
            return False

    def terminate(self) -> None:
        """SIGTERM to a run still going (it checkpoints). Not Popen.send_signal: that reaps an exited child
        itself, and its CPU time, which only wait4 in ``poll`` reads, would be lost."""
        if self.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)


def launch_child(cmd: list, spec, root: Path, *, one_thread: bool = True) -> Child:
    """Start one run in ``root`` with it on PYTHONPATH: every thread pool at one thread whatever the caller's
    environment says (a window's runs), or with ``one_thread=False`` (the plain study's lone run) the caller's
    thread settings, with only the BLAS pools defaulting to one thread where unset."""
    threads = ONE_THREAD if one_thread else {k: os.environ.get(k, "1") for k in BLAS_THREADS}
    env = {**os.environ, **threads, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    spec.path.mkdir(parents=True, exist_ok=True)
    log = spec.path / "study.log"
    with log.open("a") as f:
        f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n")
    return Child(cmd, log, root, env)
