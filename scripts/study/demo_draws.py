"""`minidp demo` over several independent draws: is each arm's held-out accuracy clearly above the majority rate?

    python -m scripts.study.demo_draws --runs-dir /work/runs/demo_draws [--draws 5] [--out reports/demo_draws]

Draw k runs the demo exactly as the README's first command does (its embedded defaults), with ``--seed 2k``:
the demo gives its two arms the seeds 2k and 2k + 1, so no two runs of any draw share a noise, sampling or
dropout stream. What stays fixed across draws is the demo's public data choice (which tweets are used).

"Clearly above" for one arm of one draw: the 95% Clopper–Pearson lower bound of its held-out accuracy is above
the held-out set's majority-class rate (what predicting the commoner label everywhere scores).

Resumable: a draw whose RUNS/draw<k>/report.json exists is read, not rerun. Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from minidp.commands.demo import DEMO_DEFAULTS, demo_datasets

ROOT = Path(__file__).resolve().parents[2]

ARMS = ("baseline", "rmt")


def draw_seed(k: int) -> int:
    """The --seed of draw k; the demo uses seed and seed + 1 for its two arms, so 2k keeps draws disjoint."""
    return 2 * k


def majority_rate(labels) -> float:
    """The share of the commonest label: the accuracy of always predicting it."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    return float(counts.max() / counts.sum())


def run_draw(k: int, runs_dir: Path) -> dict:
    """The demo's JSON report for draw k (run now, or read back when a previous sitting finished it)."""
    draw_dir = runs_dir / f"draw{k}"
    report_path = draw_dir / "report.json"
    if report_path.exists():
        return json.loads(report_path.read_text())
    draw_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "minidp.cli", "demo", "--seed", str(draw_seed(k)), "--json", "--no-progress",
               "--out", str(draw_dir / "runs"), "--figure", str(draw_dir / "spectrum.png")]
    t0, c0 = time.perf_counter(), os.times()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    c1 = os.times()
    (draw_dir / "demo.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"demo_draws: draw {k} failed (exit {done.returncode}); see {draw_dir / 'demo.log'}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report.update(draw=k, seed=draw_seed(k), wall_seconds=time.perf_counter() - t0,
                  cpu_seconds=(c1.children_user - c0.children_user) + (c1.children_system - c0.children_system),
                  command=" ".join(["python"] + command[1:]))
    tmp = report_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(report_path)  # a draw is either whole or absent
    return report


def summarize(reports: list[dict], majority: float) -> dict:
    """Per draw and arm: accuracy, its 95% CI, and whether the CI's lower end clears ``majority``."""
    rows, clear = [], True
    for r in reports:
        for arm in ARMS:
            low, high = r[arm]["accuracy_95ci"]
            above = bool(low > majority)
            clear &= above
            rows.append({"draw": r["draw"], "seed": r["seed"] + ARMS.index(arm), "arm": arm,
                         "accuracy": r[arm]["accuracy"], "ci95": [low, high], "above_majority": above,
                         "epsilon": r[arm]["epsilon"], "steps": r[arm]["steps"],
                         "denoise_kept_total": r[arm]["denoise_kept_total"]})
    per_arm = {}
    for arm in ARMS:
        accs = [row["accuracy"] for row in rows if row["arm"] == arm]
        per_arm[arm] = {"mean": float(np.mean(accs)), "sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
                        "min": float(min(accs)), "max": float(max(accs)), "draws": len(accs)}
    return {"draws": len(reports), "majority_rate": majority, "held_out_examples": reports[0]["baseline"][
        "held_out_examples"] if reports else None, "every_arm_above_majority_on_every_draw": clear and bool(reports),
        "per_arm": per_arm, "rows": rows,
        "wall_seconds": [r.get("wall_seconds") for r in reports], "cpu_seconds": [r.get("cpu_seconds") for r in reports]}


def markdown(summary: dict, meta: dict) -> str:
    """The summary as a short Markdown report."""
    lines = ["# `minidp demo` over independent draws", "",
             f"{summary['draws']} draws of the embedded default (`minidp demo --seed 2k`, k = 0…"
             f"{summary['draws'] - 1}; arms seeded 2k and 2k + 1), each arm evaluated on "
             f"{summary['held_out_examples']} held-out tweets whose majority-class rate is "
             f"{summary['majority_rate']:.4f}. \"Above\": the 95% Clopper–Pearson lower bound exceeds that rate.", "",
             "| draw | arm | held-out accuracy | 95% CI | above majority | ε | steps | spikes kept |",
             "|---|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        lines.append(f"| {row['draw']} | {row['arm']} | {row['accuracy']:.4f} | {row['ci95'][0]:.3f}–"
                     f"{row['ci95'][1]:.3f} | {'yes' if row['above_majority'] else '**no**'} | "
                     f"{row['epsilon']:.3f} | {row['steps']} | {row['denoise_kept_total']} |")
    lines += ["", "| arm | mean | sd | min | max |", "|---|---|---|---|---|"]
    for arm, s in summary["per_arm"].items():
        sd = "—" if s["sd"] is None else f"{s['sd']:.4f}"
        lines.append(f"| {arm} | {s['mean']:.4f} | {sd} | {s['min']:.4f} | {s['max']:.4f} |")
    verdict = ("every arm of every draw is above the majority rate"
               if summary["every_arm_above_majority_on_every_draw"] else
               "NOT every arm of every draw is above the majority rate")
    walls = [w for w in summary["wall_seconds"] if w is not None]
    lines += ["", f"Result: {verdict}.", "",
              f"Cost: {min(walls):.0f}–{max(walls):.0f} s wall per draw (both arms) on {meta['machine']}; "
              f"load: {meta['load']}." if walls else "", "",
              "Regenerate: `" + meta["command"] + "` (finished draws are read back, not rerun)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", required=True, help="where each draw's runs and report.json go (outside "
                        "the repository: the runs are large)")
    parser.add_argument("--draws", type=int, default=5, help="independent draws (≥ 5 for the README's claim)")
    parser.add_argument("--out", default="reports/demo_draws", help="writes OUT.json and OUT.md")
    parser.add_argument("--load", default="not stated", help="the machine's load while the draws ran, for the "
                        "report (e.g. 'two one-thread study runs beside it')")
    opts = parser.parse_args()
    if opts.draws < 1:
        parser.error(f"--draws {opts.draws}: need at least 1")

    _, held_out = demo_datasets(DEMO_DEFAULTS["train_size"], DEMO_DEFAULTS["eval_size"])
    majority = majority_rate(held_out.labels)
    runs_dir = Path(opts.runs_dir)
    reports = []
    for k in range(opts.draws):
        reports.append(run_draw(k, runs_dir))
        r = reports[-1]
        print(f"draw {k}: baseline {r['baseline']['accuracy']:.4f}, rmt {r['rmt']['accuracy']:.4f} "
              f"(majority {majority:.4f}); {r.get('wall_seconds', 0):.0f} s", flush=True)
    summary = summarize(reports, majority)
    meta = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} cores",
            "load": opts.load, "command": "python -m scripts.study.demo_draws " + " ".join(sys.argv[1:])}
    summary.update(demo_defaults=DEMO_DEFAULTS, **meta)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(summary, meta))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}: "
          f"every arm above majority on every draw = {summary['every_arm_above_majority_on_every_draw']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
