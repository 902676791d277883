"""The federated comparison, run in time windows: every arm × seed one `minidp federated` run, each finished
run's records committed the moment it finishes.

    python -m scripts.study.federated_study --model DIR --data ../shared/data/glue \\
        --runs /tmp/fed_runs --jobs 2 --minutes 150 --commit          # a window of the study
    python -m scripts.study.federated_study --report-only              # the report, from the records alone
    python -m scripts.study.federated_study --smoke --runs R --records REC   # the tiny random BERT (a check)

The plan (scripts/study/federated_plan.json) holds the setting's flags, the arms' flags, the seeds and the
search. Order:

    searches       an arm at each server learning rate, seed 0, evaluated on a validation split carved from
                   the training data; the best validation accuracy (ties: the smaller rate) is the
                   {server_lr} of the arms the search is ``for`` (DP-FedAvg's for every private arm, the
                   non-private arm's own for itself). The reported set (SST-2 dev) never chooses anything.
    main runs      seed-major: every arm's seed 0, then seed 1, ... (the plan's arm order within a seed)

What is done lives in --records (reports/records/federated), not in the runs directory: a run whose record
holds summary.json is never run again, and a window that ends mid-run loses that run only. A run is started
only if its expected wall time (the median of the finished runs at this --jobs, else the plan's
first_run_minutes, + 15 %) ends before --minutes; time the window spends stopped extends it
(study_window.Deadline). After each run: records copied, ledger row appended, report regenerated from the
records (scripts/study/federated_report.py), and with --commit exactly those paths committed.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.study import federated_report, study_window
from scripts.study._report_runs import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
PLAN = Path(__file__).resolve().parent / "federated_plan.json"
RECORDS = ROOT / "reports" / "records" / "federated"
REPORTS = ROOT / "reports" / "federated"
RECORD_FILES = ("config.json", "metrics.jsonl", "metrics_nonprivate.jsonl", "summary.json")

SMOKE_SETTING = ["--max-length", "16", "--clients", "6", "--client-rate", "0.5", "--rounds", "2",
                 "--local-steps", "2", "--local-batch-size", "8", "--local-lr", "0.01", "--lora-rank", "2",
                 "--latent", "4", "--ae-steps", "20", "--synthetic", "64", "--public-clients", "2",
                 "--server-lr", "{server_lr}"]


def load_plan(path=PLAN) -> dict:
    return json.loads(Path(path).read_text())


@dataclass
class FedRun:
    """One planned run: RUNS/<name> while it runs, RECORDS/<name> once finished."""
    name: str  # "<arm>/seed<k>", or "<search>/server_lr3/seed0" for a search run
    arm: str
    seed: int
    flags: list  # may hold {server_lr} until the search is done

    def ready(self) -> bool:
        return not any("{" in f for f in self.flags)


def arm_flags(plan: dict, arm: str, setting: list) -> list:
    """The setting's flags + the arm's + ε for a private arm."""
    flags = list(setting) + plan["arms"][arm]["flags"]
    return flags if "--non-private" in flags else flags + plan["private"]


def fill(flags: list, variables: dict) -> list:
    return [f.format(**variables) if "{" in f and all(k in variables for k in _names(f)) else f for f in flags]


def _names(text: str) -> list:
    return [part.split("}")[0] for part in text.split("{")[1:]]


def search_runs(plan: dict, setting: list) -> list[FedRun]:
    """Every search's runs: its arm at each value, on the validation split (RECORDS/<search>/<variable><v>/seed<k>)."""
    return [FedRun(f"{s['name']}/{s['variable']}{v:g}/seed{s['seed']}", s["arm"], s["seed"],
                   fill(arm_flags(plan, s["arm"], setting), {s["variable"]: f"{v:g}"}) + s["flags"])
            for s in plan["searches"] for v in s["values"]]


def chosen(search: dict, records: Path) -> dict | None:
    """{variable: value} once every run of ``search`` is recorded: the best validation accuracy, ties to the
    smaller value; None before."""
    results = []
    for v in search["values"]:
        summary = read_summary(records / search["name"] / f"{search['variable']}{v:g}" / f"seed{search['seed']}")
        if summary is None:
            return None
        results.append((-summary["final_eval"]["accuracy"], v))
    return {search["variable"]: f"{min(results)[1]:g}"}


def planned(plan: dict, records: Path, setting: list) -> list[FedRun]:
    """Every run in priority order: the searches, then seed-major arms, each arm's placeholders filled once the
    search that serves it (``for``) has chosen."""
    values = {}
    for search in plan["searches"]:
        for arm in search["for"]:
            values[arm] = chosen(search, records) or {}
    runs = search_runs(plan, setting)
    for seed in plan["seeds"]:
        for arm in plan["arms"]:
            flags = fill(arm_flags(plan, arm, setting), values.get(arm, {}))
            runs.append(FedRun(f"{arm}/seed{seed}", arm, seed, flags))
    return runs


def read_summary(path: Path) -> dict | None:
    try:
        return json.loads((Path(path) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def save_record(run_dir: Path, record: Path) -> Path:
    """Copy a finished run's record files; the record appears whole or not at all (summary.json last)."""
    tmp = record.with_name("." + record.name + ".tmp")  # hidden: never read as a record
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in RECORD_FILES:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, tmp / name)
    shutil.rmtree(record, ignore_errors=True)
    tmp.rename(record)
    return record


def expected_seconds(plan: dict, ledger_rows: list, jobs: int) -> float:
    """The median wall time of the finished runs at this many concurrent runs, else the plan's guess, + 15 %."""
    walls = [r["wall_seconds"] for r in ledger_rows if r.get("finished") and r.get("jobs") == jobs]
    base = statistics.median(walls) if walls else 60.0 * plan["first_run_minutes"]
    return base * (1 + study_window.MARGIN)


def command(run: FedRun, data_flags: list, out: Path, python: str) -> list:
    return [python, "-m", "minidp.cli", "federated", *data_flags, *run.flags, "--seed", str(run.seed),
            "--out", str(out), "--overwrite", "--no-save-model", "--no-progress"]


def window(plan: dict, args, data_flags: list, setting: list, *, clock=None, launch=None, git=study_window.git_cli,
           report=None, log=print) -> int:
    """Run the unrecorded runs, ``args.jobs`` at a time, none started past the deadline; record, report and
    (with ``args.commit``) commit each as it finishes. ``clock``, ``launch(run, cmd, out)``, ``git`` and
    ``report()`` are for tests. Returns the number of runs recorded in this window."""
    clock = clock or study_window.Clock()
    records, runs_dir, jobs = Path(args.records), Path(args.runs), max(int(args.jobs), 1)
    launch = launch or (lambda run, cmd, out: study_window.launch_child(cmd, _Spec(out), ROOT))
    report = report or (lambda: federated_report.write(plan, records, Path(args.reports)))
    deadline = study_window.Deadline(clock, args.minutes) if args.minutes else None
    running, refused, recorded = {}, set(), 0
    peak = {}  # run -> the most runs seen going at once while it ran (its ledger row's "jobs")
    while True:
        for name, (run, child, start, load) in list(running.items()):
            peak[name] = max(peak.get(name, 0), len(running))
            rc = child.poll()
            if rc is None:
                continue
            del running[name]
            recorded += finish(run, child, rc, clock.now() - start, load, args, peak.pop(name), clock=clock,
                               git=git, report=report, log=log)
        left = deadline.left() if deadline else float("inf")
        if left <= -60.0 * args.grace:  # a run still going this long past the deadline is stopped (lost)
            for _, child, _, _ in running.values():
                child.terminate()
            if running:
                clock.sleep(study_window.POLL_SECONDS)
                continue
            break
        if left > 0:
            rows = read_jsonl(records / "ledger.jsonl")
            todo = [r for r in planned(plan, records, setting) if r.ready() and r.name not in running
                    and read_summary(records / r.name) is None and not _failed(rows, r.name)]
            for run in todo:
                if len(running) >= jobs:
                    break
                expected = expected_seconds(plan, rows, jobs)
                if deadline is not None and expected > left:
                    if run.name not in refused:
                        refused.add(run.name)
                        log(f"federated: {run.name} not started: expected {expected / 60:.0f} min, "
                            f"{left / 60:.0f} min left")
                    continue
                out = runs_dir / run.name
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                log(f"federated: start {run.name} (expected {expected / 60:.0f} min)")
                running[run.name] = (run, launch(run, command(run, data_flags, out, args.python), out), clock.now(),
                                     os.getloadavg()[0])
        if not running:
            break
        if deadline is not None:
            deadline.sleep(lambda: all(child.stopped() for _, child, _, _ in running.values()))
        else:
            clock.sleep(study_window.POLL_SECONDS)
    return recorded


class _Spec:
    """What study_window.launch_child needs of a run: the folder its study.log goes to."""
    def __init__(self, path: Path):
        self.path = path


def _failed(rows: list, name: str) -> bool:
    """Two failed attempts: left for a person to look at (the ledger says so)."""
    return sum(1 for r in rows if r["run"] == name and not r["finished"] and r["rc"] not in (-15, 143)) >= 2


def finish(run: FedRun, child, rc, wall: float, load: float, args, jobs: int, *, clock, git, report, log) -> int:
    """Ledger row (``jobs``: the most runs going at once while it ran), the record and the report for a finished
    run, and with --commit all of --records and the report folder (a record an earlier commit missed goes in
    too). Returns 1 if the run finished."""
    records, out = Path(args.records), Path(args.runs) / run.name
    finished = rc == 0 and read_summary(out) is not None
    row = {"run": run.name, "rc": rc, "finished": finished, "wall_seconds": wall, "cpu_seconds": child.cpu_seconds,
           "jobs": jobs, "blas_threads": 1, "load_start": load, "load_end": os.getloadavg()[0],
           "ended": time.strftime("%Y-%m-%dT%H:%M:%S")}
    study_window.append_row(records / "ledger.jsonl", row)
    if finished:
        save_record(out, records / run.name)
        report()
    summary = read_summary(out) if finished else None
    measured = "validation accuracy" if run.name.count("/") == 2 else "final accuracy"  # search runs: 3 parts
    what = (f"finished ({measured} {summary['final_eval']['accuracy']:.4f})" if finished
            else f"stopped or failed (rc {rc})")
    log(f"federated: {run.name} {what}")
    if args.commit:
        message = f"federated study: {run.name} {what}; records" + (" and report" if finished else "")
        if not study_window.commit_paths([records, Path(args.reports)], message, repo=_repo(records), git=git,
                                         clock=clock):
            log(f"federated: could not commit the records of {run.name}")
    return int(finished)


def _repo(path: Path) -> Path:
    path = Path(path).resolve()
    for parent in [path, *path.parents]:
        if (parent / ".git").exists():
            return parent
    return ROOT


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (the study: MiniLM)")
    parser.add_argument("--data", help="GLUE folder")
    parser.add_argument("--plan", default=str(PLAN), help="the study plan (JSON)")
    parser.add_argument("--runs", default="/tmp/fed_runs", help="where runs are written while they run")
    parser.add_argument("--records", default=str(RECORDS), help="where finished runs' records are kept")
    parser.add_argument("--reports", default=str(REPORTS), help="where the report is written")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (each with one BLAS thread)")
    parser.add_argument("--minutes", type=float, default=None, help="start no run that would end past this")
    parser.add_argument("--grace", type=float, default=10.0, help="minutes past the deadline before stopping runs")
    parser.add_argument("--commit", action="store_true", help="commit each finished run's records and the report")
    parser.add_argument("--report-only", action="store_true", help="only regenerate the report from --records")
    parser.add_argument("--smoke", action="store_true", help="the tiny random BERT, 2 rounds (a check)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter runs start with")
    return parser.parse_args(argv)


def lock(records: Path):
    """One window at a time over the same records: an exclusive lock on RECORDS/../.NAME.lock (not committed)."""
    path = records.parent / f".{records.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"federated: another window holds {path}") from None
    return handle


def main(argv=None) -> int:
    args = parse_args(argv)
    plan = load_plan(args.plan)
    if args.report_only:
        for path in federated_report.write(plan, Path(args.records), Path(args.reports)):
            print(path)
        return 0
    holder = lock(Path(args.records))  # held until the process exits
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            from tests.fixtures import write_tiny_bert, write_tiny_tsv  # noqa: PLC0415 (test assets, smoke only)

            write_tiny_bert(Path(tmp) / "model")
            data_flags = ["--model", str(Path(tmp) / "model"),
                          "--train-file", str(write_tiny_tsv(Path(tmp) / "train.tsv", 160, seed=0)),
                          "--eval-file", str(write_tiny_tsv(Path(tmp) / "dev.tsv", 40, seed=1))]
            setting = SMOKE_SETTING
        else:
            if not args.model or not args.data:
                raise SystemExit("federated: --model and --data are required (or --smoke, or --report-only)")
            data_flags, setting = ["--model", args.model, "--data", args.data], plan["setting"]
        recorded = window(plan, args, data_flags, setting)
    print(f"federated: {recorded} run(s) recorded in this window")
    holder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
