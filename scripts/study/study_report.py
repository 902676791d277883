"""Reports of the RMT study from whatever runs have finished (used by scripts/reproduce.py): write_reports
calls one module per report (report_setting, report_ablations, report_lr, report_readme).

    write_reports(plan, runs_dir, reports_dir, command=..., runs=[RunSpec, ...], lr_record={...})

writes, into ``reports_dir``:
    study_<setting>.{md,json,png}   baseline vs denoised (and peers) per setting: accuracy at fixed steps, steps
                                    to 90% / 95% of the best baseline accuracy, final accuracy mean ± sd, the
                                    paired difference with a 95% t-interval, seeds won at each checkpoint
    study_lora_<setting>.{md,json,png}  the DP-LoRA comparison: full fine-tuning vs + RMT (the reference pair) and DP-LoRA
                                    arms (plan role "lora_comparison"), each arm's paired difference to full
                                    fine-tuning, trainable parameters, s/step and its own searched lr
    study_ablations.{md,json,png}   norm correction and κ arms next to the main arms; alignment gain per step;
                                    the denoiser's measured overhead per step
    study_lr.{md,json}              the learning-rate search on the validation split
    README.md                       the findings in plain words, from the numbers above only

An archive (``archive=DIR``: reports an earlier run directory produced, kept unchanged after that directory
was lost, with DIR/ARCHIVE.json saying why and what it cost) joins the findings: a setting complete in the
archive but not in RUNS_DIR is stated from the archive (its report linked there), seeds rerun here are set
beside their archived results, and the archive's search and cost are used where RUNS_DIR has none.

A setting with fewer than 3 finished seeds in an arm is marked INCOMPLETE and no conclusion is drawn from it.
Reads RUN_DIR/{summary.json, metrics.jsonl, metrics_nonprivate.jsonl} (rows looked up in both files, so
it works before and after the split of non-private statistics into their own file) and RUNS_DIR/ledger.jsonl.
"""
from __future__ import annotations

import json
from pathlib import Path

from scripts.study import paper_table
from scripts.study._report_runs import load_run, read_jsonl
from scripts.study.report_ablations import ablation_markdown, ablation_report, has_ablations, plot_ablations
from scripts.study.report_lr import lr_markdown
from scripts.study.report_readme import included_tables, LORA_ROLE, read_archive, readme, REGIME_MAPS, status_table
from scripts.study.report_setting import (
    compare_setting, LORA_REFERENCE, nonprivate_target, plan_reference, plot_setting, setting_markdown)


def required_arms(plan: dict, setting: str, arms: list) -> tuple:
    """The arms of ``setting`` that need MIN_SEEDS finished seeds before its report is complete: every planned arm
    but the plan's optional ones there (``"optional_arms": {setting: [arm, ...]}``), as the paper table counts."""
    optional = set((plan.get("optional_arms") or {}).get(setting, ()))
    return tuple(a for a in dict.fromkeys(arms) if a not in optional)


def cost_per_arm(loaded: list[dict], ledger: list[dict]) -> list[dict]:
    """Per (setting, arm), over its finished runs: CPU and wall seconds per step = (seconds of every attempt of
    those runs, restarts included) / (their steps), and the load average range the ledger saw at the attempts'
    starts and ends (what else the machine ran). Rows in the plan's order."""
    groups: dict[tuple, list[dict]] = {}
    for r in loaded:
        if r["finished"] and (r["summary"] or {}).get("steps"):
            groups.setdefault((r["setting"], r["arm"]), []).append(r)
    out = []
    for (setting, arm), runs in groups.items():
        steps = sum(int(r["summary"]["steps"]) for r in runs)
        names = {r["name"] for r in runs}
        attempts = [a for a in ledger if a.get("run") in names]
        loads = [a[k] for a in attempts for k in ("load_start", "load_end") if a.get(k) is not None]
        out.append({"setting": setting, "arm": arm, "runs": len(runs), "attempts": len(attempts), "steps": steps,
                    "cpu_s_per_step": sum(r["cpu_seconds"] for r in runs) / steps,
                    "wall_s_per_step": sum(r["wall_seconds"] for r in runs) / steps,
                    "load": [min(loads), max(loads)] if loads else None})
    return out


def write_reports(plan: dict, runs_dir: Path, reports_dir: Path, *, command: str, runs: list, lr_record: dict,
                  archive: Path | None = None):
    reports_dir.mkdir(parents=True, exist_ok=True)
    kept = read_archive(archive)
    ledger = read_jsonl(runs_dir / "ledger.jsonl")
    loaded = [load_run(spec, ledger) for spec in runs]
    written = []
    if lr_record.get("chosen") is not None:  # the search's winner fills the plan's {lr} (a pinned plan has it)
        plan = {**plan, "variables": {**plan["variables"], "lr": lr_record["lr"], **lr_record["chosen"]}}
    lr_runs = [r for r, spec in zip(loaded, runs) if spec.phase == "lr_search"]
    study_runs = [r for r, spec in zip(loaded, runs) if spec.phase != "lr_search"]
    if lr_runs:
        (reports_dir / "study_lr.json").write_text(json.dumps({**lr_record, "command": command, "runs": [
            {k: r[k] for k in ("name", "finished", "final_accuracy", "wall_seconds", "cpu_seconds", "command")}
            for r in lr_runs]}, indent=1) + "\n")
        (reports_dir / "study_lr.md").write_text(lr_markdown(lr_record, lr_runs, command))
        written += [reports_dir / "study_lr.json", reports_dir / "study_lr.md"]
    paper = None
    if plan.get("paper_table") is not None:  # the 3-epoch study: the paper's format, the non-private arm beside
        paper = paper_table.paper_table(plan, study_runs)
        (reports_dir / "paper_table.json").write_text(json.dumps({**paper, "command": command}, indent=1) + "\n")
        (reports_dir / "paper_table.md").write_text(paper_table.markdown(paper))
        written += [reports_dir / "paper_table.json", reports_dir / "paper_table.md"]
    settings, lora = {}, {}
    lora_runs = [r for r in study_runs if r["role"] == LORA_ROLE]  # the DP-LoRA comparison: its own report
    study_runs = [r for r in study_runs if r["role"] != LORA_ROLE]
    for group, runs_in_group in (("main", study_runs), ("lora", lora_runs)):
        for setting in dict.fromkeys(r["setting"] for r in runs_in_group):
            runs_here = [r for r in runs_in_group if r["setting"] == setting]
            if not any(r["finished"] for r in runs_here):
                continue
            if group == "main":
                reference, all_arms = plan_reference(plan)
                required = required_arms(plan, setting, [r["arm"] for r in runs_here]) if all_arms else None
                report = compare_setting(setting, plan, runs_here, command, reference=reference, required=required,
                                         target=nonprivate_target(setting, plan, loaded))
                name = f"study_{setting}"
                settings[setting] = report
            else:
                report = compare_setting(setting, plan, runs_here, command, reference=LORA_REFERENCE,
                                         required=tuple(dict.fromkeys(r["arm"] for r in runs_here)))
                report.update(comparison="lora", lr="per arm (each arm's own search)", trainable="per arm")
                name = f"study_lora_{setting}"
                lora[setting] = report
            (reports_dir / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
            (reports_dir / f"{name}.md").write_text(setting_markdown(report, name))
            written += [reports_dir / f"{name}.json", reports_dir / f"{name}.md"]
            png = plot_setting(report, reports_dir / f"{name}.png")
            written += [png] if png else []
    archived_settings = {f"{name} (archived)": r for name, r in (kept or {}).get("settings", {}).items()
                         if not r["incomplete"]}  # the archive's complete settings stand beside this directory's
    ablations = ablation_report(plan, {**archived_settings, **settings}, command)
    for name, s in ablations["settings"].items():  # one seed here: the seed spread of the archived seeds
        same, old = s.get("same_seed"), archived_settings.get(f"{name} (archived)")
        if same and same["denoised_seed_sd"] is None and old is not None:
            same["denoised_seed_sd"] = (old["final_accuracy_stats"].get("denoised") or {}).get("sd")
            same["sd_source"] = "the archived seeds of this setting"
    if has_ablations(plan):  # a plan without ablation arms (the 3-epoch study's) has no such report
        (reports_dir / "study_ablations.json").write_text(json.dumps(ablations, indent=1) + "\n")
        (reports_dir / "study_ablations.md").write_text(ablation_markdown(ablations))
        written += [reports_dir / "study_ablations.json", reports_dir / "study_ablations.md"]
        png = plot_ablations(ablations, reports_dir / "study_ablations.png")
        written += [png] if png else []
    cost = {"planned": len(loaded), "finished": sum(r["finished"] for r in loaded),
            "cpu_hours": sum(r.get("cpu_seconds") or 0.0 for r in ledger) / 3600,
            "wall_hours": sum(r.get("wall_seconds", 0.0) for r in ledger) / 3600,
            "per_arm": cost_per_arm([r for r, spec in zip(loaded, runs) if spec.phase != "lr_search"], ledger)}
    regimes = {}
    for name, _ in REGIME_MAPS:
        try:
            regimes[name] = json.loads((reports_dir / f"{name}.json").read_text())
        except (OSError, ValueError):
            pass
    (reports_dir / "README.md").write_text(readme(plan, settings, ablations, lr_record, cost, command,
                                                    regimes.get("regime_map"), status_table(loaded, runs),
                                                    more_regimes=regimes, archive=kept, lora=lora,
                                                    paper=included_tables(plan, reports_dir, paper)))
    written.append(reports_dir / "README.md")
    return written
