"""Reports of the RMT study from whatever runs have finished (used by scripts/reproduce.py).

    write_reports(plan, runs_dir, reports_dir, command=..., runs=[RunSpec, ...], lr_record={...})

writes, into ``reports_dir``:
    study_<setting>.{md,json,png}   baseline vs denoised (and peers) per setting: accuracy at fixed steps, steps
                                    to 90% / 95% of the best baseline accuracy, final accuracy mean ± sd, the
                                    paired difference with a 95% t-interval, seeds won at each checkpoint
    study_lora_<setting>.{md,json,png}  issue 18: full fine-tuning vs + RMT (the reference pair) and DP-LoRA
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
import os
import platform
from pathlib import Path

import numpy as np

from scripts.study import paper_table
from scripts.study._study_stats import MIN_SEEDS, mean_sd, paired, read_at, steps_to

CHECKPOINT_STEPS = (25, 50, 100, 200)
REPORT_KEY = {"baseline": "baseline", "rmt": "denoised"}  # plan arm -> its key in a report; other arms keep names
PLAN_ARM = {key: arm for arm, key in REPORT_KEY.items()}  # the reverse


def read_jsonl(path) -> list[dict]:
    rows = []
    try:
        text = Path(path).read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a torn last line
    return rows


# ---------------------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------------------
def load_run(spec, ledger_rows: list[dict]) -> dict:
    """What a report needs of one run (finished or not)."""
    path = Path(spec.path)
    summary = None
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        pass
    rows = read_jsonl(path / "metrics.jsonl") + read_jsonl(path / "metrics_nonprivate.jsonl")
    curve, step_seconds, gains, cos_noisy, kept = {}, {}, {}, {}, {}
    final = None
    for row in rows:
        step = row.get("step")
        if "eval" in row and row["eval"]:
            if row.get("final"):
                final = (step, row["eval"].get("accuracy"))
            else:
                curve[step] = row["eval"].get("accuracy")
        if "denoise_kept_total" in row:
            kept[step] = row["denoise_kept_total"]
        if "seconds" in row:
            step_seconds[step] = row["seconds"]
        diag = row.get("diagnostics_non_private")
        if diag and diag.get("whole"):
            gains[step] = diag["whole"].get("gain")
            cos_noisy[step] = diag["whole"].get("cos_noisy")
    if final is not None:
        curve[final[0]] = final[1]
    attempts = [r for r in ledger_rows if r.get("run") == spec.name]
    return {
        "name": spec.name, "setting": spec.setting, "arm": spec.arm, "seed": spec.seed, "role": spec.role,
        "path": str(path), "finished": summary is not None, "summary": summary,
        "curve": dict(sorted((int(k), v) for k, v in curve.items() if v is not None)),
        "final_accuracy": final[1] if (summary is not None and final) else None,
        "step_seconds_mean": float(np.mean(list(step_seconds.values()))) if step_seconds else None,
        "steps_logged": len(step_seconds),
        "gain": dict(sorted((int(k), v) for k, v in gains.items() if v is not None)),
        "kept": dict(sorted((int(k), int(v)) for k, v in kept.items())),
        "wall_seconds": float(sum(r.get("wall_seconds", 0.0) for r in attempts)),
        "cpu_seconds": float(sum(r.get("cpu_seconds", 0.0) for r in attempts)),
        "attempts": len(attempts), "command": attempts[-1]["command"] if attempts else None,
        "load": [r.get("load_start") for r in attempts],
        "blas_threads": sorted({r.get("blas_threads") or "1" for r in attempts}),  # older rows: reproduce's 1
    }


def accuracy_at(curve: dict, step: int):
    """The accuracy read at ``step``: the last evaluation at or before it (runs evaluated every 10 steps are
    read at 20 for step 25, as in the paper table)."""
    return read_at(curve, step)[1]


# ---------------------------------------------------------------------------------------------------------
# one setting: baseline vs denoised (and the other arms)
# ---------------------------------------------------------------------------------------------------------
MAIN_REFERENCE = ("baseline", "rmt")  # the plan arms a setting's report compares (the paired difference: 2nd − 1st)
LORA_REFERENCE = ("ft", "ft_rmt")  # issue 18: full fine-tuning without / with RMT; the LoRA arms are set beside


def plan_reference(plan: dict) -> tuple[tuple[str, str], bool]:
    """(baseline arm, denoised arm) of a plan's setting reports, and whether every arm of a setting needs
    MIN_SEEDS finished seeds before it is complete. A plan may name its own pair (``"reference": [b, d]``,
    e.g. issue 25's ft / ft + RMT estimate); then all its arms count. Else the main study's pair, which alone
    counts (its ablation arms run one seed)."""
    if plan.get("reference"):
        return tuple(plan["reference"]), True
    return MAIN_REFERENCE, False


def nonprivate_target(setting: str, plan: dict, loaded: list[dict]):
    """("the non-private arm's mean final accuracy", A_np) over the finished non-private runs that serve this
    setting (paper_table.nonprivate_runs: its own, or a same-task setting's), or None without any."""
    runs, _ = paper_table.nonprivate_runs(setting, plan, [r for r in loaded if r["finished"]])
    if not runs:
        return None
    return (f"the non-private arm's mean final accuracy ({len(runs)} seeds)",
            float(np.mean([r["final_accuracy"] for r in runs])))


def compare_setting(setting: str, plan: dict, runs: list[dict], command: str,
                    reference: tuple[str, str] = MAIN_REFERENCE, required: tuple[str, ...] | None = None,
                    target: tuple[str, float] | None = None) -> dict:
    """One setting's report. ``reference`` = (baseline arm, denoised arm): the paired difference and the wins are
    denoised − baseline; every other arm gets its paired difference to the baseline arm too. The steps-to targets
    are 90% / 95% of ``target`` = (what it is, its accuracy), e.g. the non-private arm's mean final accuracy;
    without one, of the best point of the baseline's mean curve (the earlier studies had no non-private arm).
    INCOMPLETE while an arm of ``required`` (default: the reference arms) has fewer than MIN_SEEDS finished seeds."""
    arms = {}
    for run in runs:
        arms.setdefault(run["arm"], []).append(run)
    finished = {arm: [r for r in rs if r["finished"]] for arm, rs in arms.items()}
    finished = {arm: rs for arm, rs in finished.items() if rs}
    base, den = finished.get(reference[0], []), finished.get(reference[1], [])
    base_curves = [r["curve"] for r in base]
    steps_all = sorted({s for c in base_curves for s in c})
    mean_base = {s: float(np.mean([c[s] for c in base_curves if s in c])) for s in steps_all}
    best = max(mean_base.values()) if mean_base else None
    if target is not None:
        best = target[1]
    planned_steps = max((r["summary"]["steps"] for rs in finished.values() for r in rs), default=None)
    checkpoints = [s for s in CHECKPOINT_STEPS if planned_steps is None or s <= planned_steps]
    if planned_steps and planned_steps not in checkpoints:
        checkpoints.append(planned_steps)
    setting_plan = plan["settings"][setting]
    first = next((r["summary"] for rs in finished.values() for r in rs), None) or {}
    report = {
        "task": setting_plan["task"], "setting": setting, "epsilon": setting_plan["epsilon"],
        "model": plan["variables"].get("model"), "batch_size": first.get("expected_batch_size",
                                                                        plan["variables"].get("batch")),
        "planned_steps": planned_steps, "noise_multiplier": first.get("noise_multiplier"),
        "delta": first.get("delta"), "epsilon_spent": first.get("epsilon"),
        "lr": plan["variables"].get("lr") or ("per arm (each arm's own search)" if plan.get("arm_searches")
                                              else None),
        "trainable": plan["variables"].get("trainable"),
        "accountant": plan["variables"].get("accountant", "rdp"),
        "seeds": {arm: sorted(r["seed"] for r in rs) for arm, rs in finished.items()},
        "seeds_started": {arm: sorted(r["seed"] for r in rs if r["finished"] or r.get("steps_logged"))
                          for arm, rs in arms.items() if any(r["finished"] or r.get("steps_logged") for r in rs)},
        "incomplete": any(len(finished.get(arm, [])) < MIN_SEEDS for arm in (required or reference)),
        "reference": {"baseline": REPORT_KEY.get(reference[0], reference[0]),
                      "denoised": REPORT_KEY.get(reference[1], reference[1])},
        "paired_vs_baseline": {},
        "best_baseline_accuracy": best, "checkpoint_steps": checkpoints,
        **({"steps_to_reference": target[0]} if target is not None else {}),
        "accuracy_at": {}, "steps_to_90": {}, "steps_to_95": {}, "final_accuracy": {},
        "final_accuracy_stats": {}, "wins_at": {}, "paired_final": None, "paired_at": {},
        "mean_curve": {}, "gain_curve_non_private": {}, "gain_per_seed_non_private": {},
        "step_seconds": {}, "wall_seconds": {},
        "trainable_parameters": {}, "lr_per_arm": {},
        "denoiser_activity": {},
        "command": command, "run_commands": {r["name"]: r["command"] for rs in arms.values() for r in rs},
        "noise_reproducible_from_seed": True,
        "machine": machine(), "load_at_start": {r["name"]: r["load"] for rs in arms.values() for r in rs},
        "blas_threads": {r["name"]: r.get("blas_threads", ["1"]) for rs in arms.values() for r in rs
                         if r["attempts"]},
    }
    for arm, rs in finished.items():
        key = REPORT_KEY.get(arm, arm)
        report["accuracy_at"][key] = {str(s): [accuracy_at(r["curve"], s) for r in rs] for s in checkpoints}
        report["final_accuracy"][key] = [r["final_accuracy"] for r in rs]
        report["final_accuracy_stats"][key] = mean_sd(report["final_accuracy"][key])
        if best is not None:
            report["steps_to_90"][key] = [steps_to(r["curve"], 0.9 * best) for r in rs]
            report["steps_to_95"][key] = [steps_to(r["curve"], 0.95 * best) for r in rs]
        steps = sorted({s for r in rs for s in r["curve"]})
        report["mean_curve"][key] = {str(s): mean_sd([r["curve"].get(s) for r in rs]) for s in steps}
        gsteps = sorted({s for r in rs for s in r["gain"]})
        if gsteps and arm != "baseline":
            report["gain_curve_non_private"][key] = {str(s): mean_sd([r["gain"].get(s) for r in rs]) for s in gsteps}
            report["gain_per_seed_non_private"][key] = [
                {"mean": float(np.mean(list(r["gain"].values()))), "min": float(min(r["gain"].values())),
                 "negative": int(sum(g < 0 for g in r["gain"].values())), "steps": len(r["gain"])}
                if r["gain"] else None for r in rs]
        report["step_seconds"][key] = mean_sd([r["step_seconds_mean"] for r in rs])
        report["trainable_parameters"][key] = rs[0]["summary"].get("trainable_parameters")  # older runs: None
        report["lr_per_arm"][key] = rs[0]["summary"].get("lr")
        if any(r["kept"] for r in rs):
            active = [[s for s, k in r["kept"].items() if k > 0] for r in rs]
            report["denoiser_activity"][key] = {
                "steps_with_kept": [len(a) for a in active], "last_step_with_kept": [max(a) if a else None
                                                                                    for a in active],
                "kept_total": [int(sum(r["kept"].values())) for r in rs],
                "mean_kept_per_step": {str(s): float(np.mean([r["kept"].get(s, 0) for r in rs]))
                                       for s in sorted({s for r in rs for s in r["kept"]})}}
        report["wall_seconds"][key] = [r["wall_seconds"] for r in rs]
    report["identical_arms"] = identical_arms(finished)
    for key in report["reference"].values():
        report["steps_to_90"].setdefault(key, [])
        report["steps_to_95"].setdefault(key, [])
        report["final_accuracy"].setdefault(key, [])
    a = {r["seed"]: r["final_accuracy"] for r in base}
    if base:
        for arm, rs in finished.items():
            if arm != reference[0]:
                report["paired_vs_baseline"][REPORT_KEY.get(arm, arm)] = paired(
                    a, {r["seed"]: r["final_accuracy"] for r in rs})
    if base and den:
        report["paired_final"] = report["paired_vs_baseline"][REPORT_KEY.get(reference[1], reference[1])]
        for s in checkpoints:
            a_s = {r["seed"]: accuracy_at(r["curve"], s) for r in base}
            b_s = {r["seed"]: accuracy_at(r["curve"], s) for r in den}
            pd = paired(a_s, b_s)
            report["paired_at"][str(s)] = pd
            report["wins_at"][str(s)] = {"denoised_wins": int(sum(d > 0 for d in pd["differences"])),
                                         "ties": int(sum(d == 0 for d in pd["differences"])),
                                         "seeds": len(pd["differences"])}
    return report


def identical_arms(finished: dict) -> list[dict]:
    """Pairs of arms with the same finished seeds whose runs give the same accuracy at every evaluation of
    every seed (e.g. an arm whose own search chose another arm's lr repeats that arm's runs: with --seed the
    runs are deterministic). ``finished``: {arm: [loaded runs]}."""
    names, out = list(finished), []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ca = {r["seed"]: r["curve"] for r in finished[a]}
            cb = {r["seed"]: r["curve"] for r in finished[b]}
            if ca and ca.keys() == cb.keys() and all(ca[s] == cb[s] for s in ca):
                out.append({"arms": [REPORT_KEY.get(a, a), REPORT_KEY.get(b, b)], "seeds": sorted(ca)})
    return out


def identical_words(r: dict) -> str:
    return "; ".join(f"{p['arms'][0]} and {p['arms'][1]} give the same accuracy at every evaluation of seeds "
                     f"{p['seeds']}" for p in r.get("identical_arms") or [])


def machine() -> dict:

    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "note": "shared 2-core CPU VM; other work ran beside the study (load average per run attempt in "
                    "load_at_start)"}


def fmt(x, digits=4):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def fmt_signed(x) -> str:
    return "—" if x is None else f"{x:+.4f}"


def fmt_stats(st: dict) -> str:
    if not st or st.get("n", 0) == 0:
        return "—"
    return f"{st['mean']:.4f}" + (f" ± {st['sd']:.4f}" if st.get("sd") is not None else "") + f" (n={st['n']})"


def fmt_ci(pd) -> str:
    if not pd or pd.get("mean") is None:
        return "—"
    ci = pd.get("ci95")
    return f"{pd['mean']:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else " (1 pair: no interval)") + \
        f" over seeds {pd['seeds']}"


def model_words(path: str) -> str:
    """The model as a reader elsewhere can find it: an installed package's model is named by its package
    (the absolute path of this machine's site-packages says nothing to anyone else)."""
    marker = "site-packages/"
    if marker in str(path):
        return f"`{str(path).split(marker, 1)[1]}` (installed package)"
    return f"`{path}`"


def setting_markdown(r: dict, name: str) -> str:
    status = ("**INCOMPLETE** (fewer than 3 finished seeds in an arm): numbers are listed, no conclusion is "
              "drawn." if r["incomplete"] else "complete (≥ 3 finished seeds per arm).")
    ref = r.get("reference") or {"baseline": "baseline", "denoised": "denoised"}
    title = (f"# Study: full fine-tuning (+ RMT) vs DP-LoRA, {r['task']}, ε = {r['epsilon']:g} (setting "
             f"`{r['setting']}`)" if r.get("comparison") == "lora" else
             f"# Study: {r['task']}, ε = {r['epsilon']:g} (setting `{r['setting']}`)")
    lines = [title, "",
             f"Status: {status}  ",
             f"Command (regenerates this report from finished runs): `{r['command']} --report-only`  ",
             f"Model: {model_words(r['model'])}; expected batch {r['batch_size']}; {r['planned_steps']} steps; σ = "
             f"{fmt(r['noise_multiplier'])}; δ = {r['delta']:.3g}; ε spent {fmt(r['epsilon_spent'], 3)} "
             f"({r['accountant']}); lr {r['lr']}; trainable {r['trainable']}. Noise, batches and dropout are reproducible from each run's "
             f"--seed.  ",
             f"Machine: {r['machine']['platform']}, {r['machine']['cpus']} CPUs ({r['machine']['note']}); BLAS "
             f"threads per run: {sorted({t for ts in r.get('blas_threads', {}).values() for t in ts}) or '—'} "
             f"(s/step compares arms only at equal threads).  ",
             f"Finished seeds: {r['seeds']}; started: {r['seeds_started']}.", ""]
    arms = list(r["final_accuracy_stats"])
    lines += ["## Final accuracy (reported evaluation set)", "", "| arm | final accuracy mean ± sd | per seed | "
              "mean s/step | wall s per run | trainable parameters | lr |", "|---|---|---|---|---|---|---|"]
    for arm in arms:
        params = (r.get("trainable_parameters") or {}).get(arm)
        lines.append(f"| {arm} | {fmt_stats(r['final_accuracy_stats'][arm])} | "
                     f"{', '.join(fmt(v) for v in r['final_accuracy'][arm])} | "
                     f"{fmt_stats(r['step_seconds'].get(arm, {}))} | "
                     f"{', '.join(f'{w:.0f}' for w in r['wall_seconds'].get(arm, []))} | "
                     f"{params if params is not None else '—'} | {(r.get('lr_per_arm') or {}).get(arm) or '—'} |")
    if r.get("identical_arms"):
        lines += ["", f"Identical runs: {identical_words(r)} (with --seed a run is deterministic)."]
    if r["denoiser_activity"]:
        lines += ["", "What the denoiser did (release-safe counts from metrics.jsonl):", ""]
        for arm, a in r["denoiser_activity"].items():
            lines.append(f"- {arm}: kept components in {a['steps_with_kept']} of {r['planned_steps']} steps per seed "
                         f"(last at step {a['last_step_with_kept']}); components kept in total {a['kept_total']}")
    lines += ["", f"Paired difference {ref['denoised']} − {ref['baseline']} at the end: {fmt_ci(r['paired_final'])}",
              ""]
    others = {arm: pd for arm, pd in (r.get("paired_vs_baseline") or {}).items() if arm != ref["denoised"]}
    if others:
        lines += [f"Paired difference of the other arms to {ref['baseline']} at the end (same seeds):", ""]
        lines += [f"- {arm} − {ref['baseline']}: {fmt_ci(pd)}" for arm, pd in others.items()] + [""]
    lines += [f"## Accuracy at fixed steps (mean over seeds; {ref['denoised']} wins / paired seeds)", "",
              "| step | " + " | ".join(arms) + f" | {ref['denoised']} wins | paired diff [95% CI] |",
              "|---|" + "---|" * (len(arms) + 2)]
    for s in r["checkpoint_steps"]:
        cells = []
        for arm in arms:
            vals = [v for v in r["accuracy_at"][arm].get(str(s), []) if v is not None]
            cells.append(f"{np.mean(vals):.4f}" if vals else "—")
        wins = r["wins_at"].get(str(s))
        lines.append(f"| {s} | " + " | ".join(cells) + " | " +
                     (f"{wins['denoised_wins']}/{wins['seeds']}" if wins else "—") + " | " +
                     fmt_ci(r["paired_at"].get(str(s))) + " |")
    what = r.get("steps_to_reference") or f"the best {ref['baseline']} accuracy"
    lines += ["", f"## Steps to reach 90% / 95% of {what} ({fmt(r['best_baseline_accuracy'])})",
              "", "| arm | steps to 90% (per seed) | steps to 95% (per seed) |", "|---|---|---|"]
    for arm in arms:
        lines.append(f"| {arm} | {r['steps_to_90'].get(arm)} | {r['steps_to_95'].get(arm)} |")
    lines += ["", "(None: never reached within the run; steps are evaluation steps, every "
              "--eval-every steps.)", "", f"![accuracy and alignment]({name}.png)", "",
              f"JSON twin: `{name}.json`.", ""]
    return "\n".join(lines)


def plot_setting(r: dict, path: Path) -> Path | None:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
    for arm, a in r["denoiser_activity"].items():
        steps = [int(s) for s in a["mean_kept_per_step"]]
        axes[2].plot(steps, [a["mean_kept_per_step"][str(s)] for s in steps], drawstyle="steps-mid", label=arm)
    axes[2].set(title="singular components kept per step (mean over seeds)", xlabel="step")
    if r["denoiser_activity"]:
        axes[2].legend(fontsize=7)
    for arm, curve in r["mean_curve"].items():
        steps = [int(s) for s in curve]
        mean = np.array([curve[str(s)]["mean"] for s in steps])
        sd = np.array([curve[str(s)]["sd"] or 0.0 for s in steps])
        axes[0].plot(steps, mean, marker=".", label=f"{arm} (n={max(c['n'] for c in curve.values())})")
        axes[0].fill_between(steps, mean - sd, mean + sd, alpha=0.2)
    axes[0].set(title=f"{r['task']}, ε={r['epsilon']:g}: accuracy (mean ± sd over seeds)", xlabel="step",
                ylabel="accuracy")
    axes[0].legend(fontsize=7)
    for arm, curve in r["gain_curve_non_private"].items():
        steps = [int(s) for s in curve]
        axes[1].plot(steps, [curve[str(s)]["mean"] for s in steps], lw=0.9, label=arm)
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].set(title="alignment gain cos(denoised,clipped)−cos(noisy,clipped)\n(NON-PRIVATE diagnostic)",
                xlabel="step")
    if r["gain_curve_non_private"]:
        axes[1].legend(fontsize=7)
    for ax in axes:
        ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------
# ablations, learning rate, README
# ---------------------------------------------------------------------------------------------------------
def ablation_report(plan: dict, settings: dict, command: str) -> dict:
    out = {"command": command, "settings": {}, "machine": machine()}
    for name, r in settings.items():
        arms = {arm: {"final_accuracy": r["final_accuracy"].get(arm), "stats": r["final_accuracy_stats"].get(arm),
                      "seeds": r["seeds"].get(PLAN_ARM.get(arm, arm)),
                      "mean_gain_non_private": _mean_gain(r["gain_curve_non_private"].get(arm)),
                      "step_seconds": r["step_seconds"].get(arm)}
                for arm in r["final_accuracy_stats"]}
        overhead = None
        b, d = r["step_seconds"].get("baseline"), r["step_seconds"].get("denoised")
        threads = {t for name, ts in (r.get("blas_threads") or {}).items() if name.split("/")[1] in ("baseline", "rmt")
                   for t in ts}
        if b and d and b.get("mean") and d.get("mean") and len(threads) <= 1:  # only at equal BLAS threads
            overhead = d["mean"] / b["mean"] - 1.0
        out["settings"][name] = {"task": r["task"], "epsilon": r["epsilon"], "arms": arms,
                                 "denoiser_overhead_per_step": overhead, "gain_curves": r["gain_curve_non_private"],
                                 "same_seed": same_seed(r, plan)}
    return out


SAME_SEED = 0  # every ablation arm runs this seed; the main arms have it too


def has_ablations(plan: dict) -> bool:
    """Whether the plan has ablation arms (role "ablation"): only then is there an ablation report."""
    return any(arm.get("role") == "ablation" for arm in (plan.get("arms") or {}).values())


def arm_change(plan: dict, arm: str) -> str:
    """What an arm changes, from its CLI flags in the plan (e.g. '--kappa 1.1 --norm-correction noisy')."""
    flags = (plan.get("arms") or {}).get(arm, {}).get("flags", [])
    return " ".join(f for f in flags if f not in ("--denoise",)).replace("rmt ", "", 1) or arm


def same_seed(r: dict, plan: dict) -> dict | None:
    """Each arm at the seed all arms share (SAME_SEED): final accuracy, its difference to the denoised arm
    (κ = 1.02, noisy norm correction) and to the baseline at that seed, and the run's mean NON-PRIVATE
    alignment gain. One seed: a description of that seed, not a conclusion."""
    rows = {}
    for key, finals in r["final_accuracy"].items():
        seeds = r["seeds"].get(PLAN_ARM.get(key, key), [])
        if SAME_SEED not in seeds or key in PEER_ARMS:  # a peer implementation is not an ablation
            continue
        i = seeds.index(SAME_SEED)
        gains = (r.get("gain_per_seed_non_private") or {}).get(key)
        rows[key] = {"final_accuracy": finals[i], "gain_non_private": gains[i] if gains else None,
                     "flags": arm_change(plan, PLAN_ARM.get(key, key))}
    if not any(arm not in PLAN_ARM for arm in rows):  # no ablation arm at that seed
        return None
    for row in rows.values():
        for ref in ("denoised", "baseline"):
            row[f"minus_{ref}"] = (row["final_accuracy"] - rows[ref]["final_accuracy"]) if ref in rows else None
    sd = (r["final_accuracy_stats"].get("denoised") or {}).get("sd")
    return {"seed": SAME_SEED, "arms": rows, "denoised_seed_sd": sd, "sd_source": "this setting's seeds"}


def _mean_gain(curve):
    if not curve:
        return None
    vals = [c["mean"] for c in curve.values() if c["mean"] is not None]
    return float(np.mean(vals)) if vals else None


def ablation_markdown(a: dict) -> str:
    lines = ["# Study: ablations (norm correction, κ) and the denoiser's overhead", "",
             f"Command: `{a['command']} --report-only`  ", f"Machine: {a['machine']['platform']}, "
             f"{a['machine']['cpus']} CPUs ({a['machine']['note']}).", "",
             "Arms with fewer than 3 finished seeds are listed for the record only; no conclusion is drawn "
             "from them. The alignment gain is the NON-PRIVATE diagnostic averaged over all steps of the run(s).",
             "", "| setting | arm | final accuracy | mean alignment gain | s/step |", "|---|---|---|---|---|"]
    for name, s in a["settings"].items():
        for arm, v in s["arms"].items():
            lines.append(f"| {name} | {arm} | {fmt_stats(v['stats'])} | {fmt(v['mean_gain_non_private'])} | "
                         f"{fmt_stats(v['step_seconds'] or {})} |")
    for name, s in a["settings"].items():
        same = s.get("same_seed")
        if not same:
            continue
        sd = same["denoised_seed_sd"]
        lines += ["", f"### {name}: one arm changed at a time, seed {same['seed']}", "",
                  "Every arm below ran the same --seed (same batches and noise draw), so the differences are the "
                  "arm's effect on that one seed; the denoised arm's seed-to-seed sd here is "
                  f"{fmt(sd)} ({same.get('sd_source', 'this setting')})"
                  + (", so differences of that size are within what another seed could give."
                     if sd is not None else ": one seed only."), "",
                  "| arm | flags | final accuracy | − denoised (κ 1.02, noisy) | − baseline | mean alignment gain | "
                  "steps with gain < 0 (min) |", "|---|---|---|---|---|---|---|"]
        for arm, row in same["arms"].items():
            g = row["gain_non_private"]
            lines.append(f"| {arm} | `{row['flags']}` | {fmt(row['final_accuracy'])} | "
                         f"{fmt_signed(row['minus_denoised'])} | {fmt_signed(row['minus_baseline'])} | "
                         + (f"{g['mean']:.4f} | {g['negative']}/{g['steps']} ({g['min']:+.4f})" if g else "— | —")
                         + " |")
    lines += ["", "Denoiser overhead per step (mean step time of the RMT arm over the baseline's − 1; wall "
              "time on a shared machine, so only indicative):", ""]
    for name, s in a["settings"].items():
        o = s["denoiser_overhead_per_step"]
        lines.append(f"- {name}: " + ("— (no pair of arms at one BLAS thread count throughout)" if o is None
                                      else f"{100 * o:+.1f}%"))
    lines += ["", "![alignment gain per step](study_ablations.png)", "", "JSON twin: `study_ablations.json`.", ""]
    return "\n".join(lines)


def plot_ablations(a: dict, path: Path) -> Path | None:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    names = [n for n, s in a["settings"].items() if s["gain_curves"]]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for arm, curve in a["settings"][name]["gain_curves"].items():
            steps = [int(s) for s in curve]
            ax.plot(steps, [curve[str(s)]["mean"] for s in steps], lw=0.9, label=arm)
        ax.axhline(0, color="k", lw=0.5)
        ax.set(title=f"{name}: alignment gain per step (NON-PRIVATE)", xlabel="step")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def lr_markdown(rec: dict, runs: list[dict], command: str) -> str:
    shared = (f"Chosen: {rec.get('chosen') if rec.get('chosen') is not None else 'not yet (runs unfinished)'}."
              if rec.get("validation_accuracy") else "The shared search is not part of this plan (its outcome "
              "is pinned in the plan's variables); the arms' own searches follow.")
    lines = ["# Study: learning-rate search (validation split carved from the training data)", "",
             f"Command: `{command} --report-only`  ",
             f"Rule: {rec.get('rule', 'highest final validation accuracy')}. {shared}",
             f"{('**Blocked:** ' + rec['blocked']) if rec.get('blocked') else ''}", ""]
    for arm, arm_rec in (rec.get("arms") or {}).items():
        source = f"takes `{arm_rec['same_as']}`'s" if arm_rec.get("same_as") else "its own search"
        lines.append(f"- arm `{arm}` ({source}): chosen "
                     f"{arm_rec.get('chosen') if arm_rec.get('chosen') is not None else 'not yet'}"
                     + (f"; **blocked:** {arm_rec['blocked']}" if arm_rec.get("blocked") else ""))
    lines += ["", "| run | finished | final validation accuracy | wall s |", "|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['name']} | {r['finished']} | {fmt(r['final_accuracy'])} | {r['wall_seconds']:.0f} |")
    return "\n".join(lines) + "\n\nJSON twin: `study_lr.json`.\n"


PEER_ARMS = ("opacus",)  # arms that run another implementation of the baseline


def direction(ci, up: str, down: str) -> str:
    """What a paired 95% interval says: `up` if it lies above 0, `down` if below, else that the seeds cannot
    tell (also when there is no interval)."""
    if not ci:
        return "no interval (one pair)"
    return up if ci[0] > 0 else down if ci[1] < 0 else "no difference the seeds can resolve"


def finding(r: dict) -> str:
    """One plain sentence per setting, from measured numbers only."""
    head = f"{r['task']} at ε = {r['epsilon']:g} (batch {r['batch_size']}, {r['planned_steps']} steps)"
    if r["incomplete"]:
        n = {arm: len(s) for arm, s in r["seeds"].items()}
        return f"- {head}: INCOMPLETE ({n} finished seeds): no conclusion yet."
    pd = r["paired_final"]
    ref = r.get("reference") or {"baseline": "baseline", "denoised": "denoised"}
    b, d = r["final_accuracy_stats"][ref["baseline"]], r["final_accuracy_stats"][ref["denoised"]]
    ci = pd["ci95"]
    verdict = direction(ci, "the denoiser helps", "the denoiser hurts")
    early = r["checkpoint_steps"][0]
    wins = r["wins_at"].get(str(early), {})
    peers = [f"{arm} (peer implementation) {fmt_stats(st)}"
             for arm, st in r["final_accuracy_stats"].items() if arm not in ref.values()
             and arm in PEER_ARMS and st.get("n")]
    return (f"- {head}: final accuracy {b['mean']:.4f} ± {b['sd']:.4f} ({ref['baseline']}) vs {d['mean']:.4f} ± "
            f"{d['sd']:.4f} ({ref['denoised']}); paired difference {pd['mean']:+.4f}, 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}] "
            f"— {verdict}. At step {early} {ref['denoised']} wins {wins.get('denoised_wins')}/{wins.get('seeds')} "
            f"seeds." + (f" Final accuracy of {'; '.join(peers)}." if peers else ""))


LORA_ROLE = "lora_comparison"  # the plan role of issue 18's arms


def lora_finding(r: dict) -> str:
    """Issue 18 in one line per setting: each arm's final accuracy, trainable parameters, s/step and lr, and its
    paired difference to full fine-tuning; measured numbers only."""
    head = (f"- {r['task']} at ε = {r['epsilon']:g} (batch {r['batch_size']}, {r['planned_steps']} steps)")
    if r["incomplete"]:
        n = {arm: len(s) for arm, s in r["seeds"].items()}
        prefix = f"{head}: INCOMPLETE ({n} finished seeds), listed for the record, no conclusion yet: "
    else:
        prefix = f"{head}: "
    base = r["reference"]["baseline"]
    parts = []
    for arm, st in r["final_accuracy_stats"].items():
        pd = (r.get("paired_vs_baseline") or {}).get(arm)
        parts.append(f"{arm} {fmt_stats(st)} ({(r.get('trainable_parameters') or {}).get(arm) or '—'} trainable, "
                     f"{fmt(r['step_seconds'].get(arm, {}).get('mean'), 1)} s/step, lr "
                     f"{(r.get('lr_per_arm') or {}).get(arm) or '—'}"
                     + (f"; − {base} {fmt_ci(pd)}" if pd else "")
                     + (f": {direction(pd.get('ci95'), f'above {base}', f'below {base}')}"
                        if pd and not r["incomplete"] else "") + ")")
    same = identical_words(r)
    return prefix + "; ".join(parts) + "." + (f" Identical runs: {same}." if same else "")


def status_table(loaded: list[dict], runs: list) -> list[str]:
    """Every planned (phase, setting, arm): seeds finished / planned, and any run in progress."""
    groups: dict[tuple, list] = {}
    for r, spec in zip(loaded, runs):
        groups.setdefault((spec.phase, spec.setting, spec.arm), []).append(r)
    lines = ["| phase | setting | arm | finished seeds / planned | in progress (steps logged) |", "|---|---|---|---|---|"]
    for (phase, setting, arm), rs in groups.items():
        done = [r["seed"] for r in rs if r["finished"]]
        partial = [f"seed{r['seed']} ({r['steps_logged']})" for r in rs if not r["finished"] and r["steps_logged"]]
        lines.append(f"| {phase} | {setting} | {arm} | {len(done)} / {len(rs)} | {', '.join(partial) or '—'} |")
    return lines


REGIME_MAPS = (("regime_map", None), ("regime_map_head", None))  # reports/<name>.json, in this order
REGIME_TITLES = {"regime_map": "all but the embeddings trainable",
                 "regime_map_head": "pooler + head trainable (the study's setting)"}


def trajectory_words(regime: dict) -> str:
    t = regime.get("trajectory") or {}
    words = [f"trainable {regime.get('trainable')}"] + [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                      for k, v in t.items() if not isinstance(v, (list, dict))]
    return ", ".join(words)


def read_archive(archive_dir: Path | None) -> dict | None:
    """DIR/ARCHIVE.json plus its reports: {"dir", "about", "settings": {setting: report}, "lr": record}."""
    if archive_dir is None:
        return None
    archive_dir = Path(archive_dir)
    about = json.loads((archive_dir / "ARCHIVE.json").read_text())
    settings = {}
    for path in sorted(archive_dir.glob("study_*.json")):
        name = path.stem[len("study_"):]
        if name not in ("lr", "ablations"):
            settings[name] = json.loads(path.read_text())
    lr_path = archive_dir / "study_lr.json"
    lr = json.loads(lr_path.read_text()) if lr_path.exists() else None
    return {"dir": archive_dir, "about": about, "settings": settings, "lr": lr}


def rerun_pairs(archived: dict, fresh: dict) -> list[tuple]:
    """(report key, seed, rerun final accuracy, archived final accuracy) for every seed finished in both."""
    pairs = []
    for arm, seeds in fresh["seeds"].items():
        key = REPORT_KEY.get(arm, arm)
        old = dict(zip(archived["seeds"].get(arm, []), archived["final_accuracy"].get(key, [])))
        new = dict(zip(seeds, fresh["final_accuracy"].get(key, [])))
        pairs += [(key, s, new[s], old[s]) for s in sorted(set(old) & set(new))]
    return pairs


def rerun_check(archived: dict, fresh: dict) -> str | None:
    """Seeds finished in both: the rerun's final accuracy beside the archived one (same --seed, same noise)."""
    return "; ".join(f"{key} seed {s}: {new:.4f} rerun vs {old:.4f} archived"
                     for key, s, new, old in rerun_pairs(archived, fresh)) or None


def rerun_summary(archive: dict, name: str, archived: dict, fresh: dict) -> str | None:
    """A complete setting rerun here, against the archive's runs of the same seeds: how many final accuracies
    are identical and the largest difference (same --seed: same batches, noise and dropout)."""
    diffs = [abs(new - old) for _, _, new, old in rerun_pairs(archived, fresh)]
    if not diffs:
        return None
    rel = f"{archive['dir'].name}/study_{name}.md"
    return (f"Rerun of the archived runs ([{rel}]({rel})), same seeds: {sum(d == 0 for d in diffs)} of {len(diffs)} "
            f"final accuracies identical (largest difference {max(diffs):.4f}).")


def archived_finding(archive: dict, name: str, archived: dict, fresh: dict | None) -> str:
    rel = f"{archive['dir'].name}/study_{name}"
    line = finding(archived) + f" Archived report: [{rel}.md]({rel}.md), ![]({rel}.png)."
    if fresh is not None:
        check = rerun_check(archived, fresh)
        line += (f" Rerun in this run directory ([study_{name}.md](study_{name}.md)): "
                 + (check if check else "no seed in common") + ".")
    return line


def gain_words(row: dict) -> str:
    """A same-seed row's NON-PRIVATE gain in words: its mean and the steps where it was negative."""
    g = row["gain_non_private"]
    return "gain —" if g is None else f"gain {g['mean']:.4f}, < 0 at {g['negative']}/{g['steps']} steps"


def ablation_findings(ablations: dict) -> list[str]:
    """One plain line per setting with a same-seed ablation table: each changed arm's final accuracy, its
    difference to the denoised arm, its mean NON-PRIVATE gain, and whether the largest difference exceeds the
    denoised arm's seed-to-seed sd."""
    out = []
    for name, s in (ablations.get("settings") or {}).items():
        same = s.get("same_seed")
        if not same:
            continue
        rows = same["arms"]
        parts = [f"{arm} (`{row['flags']}`) {row['final_accuracy']:.4f} ({fmt_signed(row['minus_denoised'])} vs "
                 f"denoised, {gain_words(row)})" for arm, row in rows.items() if arm not in PLAN_ARM]
        diffs = [abs(row["minus_denoised"]) for arm, row in rows.items()
                 if arm not in PLAN_ARM and row["minus_denoised"] is not None]
        sd = same["denoised_seed_sd"]
        den, base = rows.get("denoised"), rows.get("baseline")
        head = (f"- {name}, seed {same['seed']} (one run per arm): baseline "
                f"{fmt(base['final_accuracy']) if base else '—'}, denoised (κ 1.02, noisy) "
                f"{fmt(den['final_accuracy']) if den else '—'} ({gain_words(den) if den else '—'}); ")
        verdict = ""
        if diffs and sd is not None:
            verdict = (f" The largest difference to the denoised arm, {max(diffs):.4f}, is "
                       + ("within" if max(diffs) <= sd else "larger than")
                       + f" that arm's seed-to-seed sd ({sd:.4f}, {same.get('sd_source', 'this setting')}).")
        out.append(head + "; ".join(parts) + "." + verdict)
    return out


def included_tables(plan: dict, reports_dir: Path, paper: dict | None) -> list[tuple[str, str]]:
    """[(link, Markdown)] of the paper-format tables a README shows: this study's own, then those of the
    report directories the plan names (plan["paper_tables_from"], relative to REPORTS_DIR), as they stand."""
    out = [("paper_table.md", paper_table.markdown(paper))] if paper is not None else []
    for sub in plan.get("paper_tables_from", []):
        path = reports_dir / sub / "paper_table.md"
        if path.exists():
            out.append((f"{sub}/paper_table.md", path.read_text()))
    return out


def demoted(md: str, link: str) -> str:
    """A report's Markdown inside a README: its title dropped for a link, headings one level down, and
    relative links kept pointing at the report's own directory."""
    body = md.split("\n", 1)[1] if md.startswith("# ") else md
    return f"From [{link}]({link}):\n" + "\n".join("#" + line if line.startswith("#") else line
                                                  for line in body.splitlines())


def readme(plan: dict, settings: dict, ablations: dict, lr_rec: dict, cost: dict, command: str,
           regime: dict | None, status: list[str] | None = None, more_regimes: dict | None = None,
           archive: dict | None = None, lora: dict | None = None, paper: list | None = None) -> str:
    title = plan.get("title", "Reports: what RMT denoising is worth in minidp")
    lines = [f"# {title}", "",
             "Generated by `" + command + " --report-only` from the finished runs (and `scripts/regime_map.py` for "
             "the regime map). Numbers here are measured; settings with fewer than 3 finished seeds per arm "
             "are marked INCOMPLETE and no conclusion is drawn from them.", ""]
    for link, md in paper or []:  # issue 25's table first: the study where the paper makes its claim
        lines += ["## The study in the paper's format", "", demoted(md, link), ""]
    if plan.get("how_to_run"):  # the study in time windows on a small machine
        lines += ["## How to run it in time windows", ""] + plan["how_to_run"] + [""]
    if plan.get("why"):
        lines += ["## Where the study runs, and why", "", plan["why"], ""]
    if plan.get("caveats"):
        lines += ["## Caveats", ""] + [f"- {c}" for c in plan["caveats"]] + [""]
    for name, reg in REGIME_MAPS:
        found = regime if name == "regime_map" else (more_regimes or {}).get(name)
        if not found:
            continue
        files = "spectrum_{}.png" if name == "regime_map" else name + "_spectrum_{}.png"
        lines += [f"## Regime map: {REGIME_TITLES[name]}", "", f"[{name}.md]({name}.md) · ![regime map]({name}.png)",
                  "", f"Trajectory: {trajectory_words(found)}", ""]
        lines += regime_findings(found) + [""]
        lines += [f"Spectrum figures: [denoiser acts]({files.format('acts')}) · [denoiser keeps nothing]"
                  f"({files.format('idle')})", ""]
    lr_link, arm_searches = "study_lr.md", lr_rec.get("arms") or {}
    if archive and archive["lr"] is not None and not lr_rec.get("validation_accuracy"):
        lr_rec, lr_link = archive["lr"], f"{archive['dir'].name}/study_lr.md"
    lines += ["## Training study", ""]
    if archive:
        about = archive["about"]
        lines += [f"Archive: [{archive['dir'].name}/]({archive['dir'].name}/ARCHIVE.json) — {about['about']} "
                  f"It holds {about['finished_runs']} finished runs ({about['cpu_hours']:.2f} CPU h, "
                  f"{about['wall_hours']:.2f} wall h).", ""]
    if plan.get("lr_search") is not None or lr_rec.get("chosen") is not None:  # one search for the whole plan
        lines += [f"Learning rate (and trainable set): [{lr_link}]({lr_link}) — chosen "
                  f"{lr_rec.get('chosen') if lr_rec.get('chosen') is not None else 'not yet'} on a validation "
                  f"split of the training data." + (f" **Blocked:** {lr_rec['blocked']}." if lr_rec.get("blocked")
                                                    else ""), ""]
    if arm_searches:  # issue 18's arms search their own learning rates on the same validation split
        lines += ["Arms with their own search ([study_lr.md](study_lr.md)): " + "; ".join(
            f"{arm} {rec.get('chosen') if rec.get('chosen') is not None else 'not yet'}"
            + (f" (**blocked:** {rec['blocked']})" if rec.get("blocked") else "") for arm, rec in arm_searches.items())
            + ".", ""]
    archived = (archive or {}).get("settings", {})
    for name in dict.fromkeys([*archived, *settings]):
        r, old = settings.get(name), archived.get(name)
        if old is not None and not old["incomplete"] and (r is None or r["incomplete"]):
            lines.append(archived_finding(archive, name, old, r))
        elif r is not None:
            check = rerun_summary(archive, name, old, r) if old is not None else None
            lines.append(finding(r) + f" ([study_{name}.md](study_{name}.md), ![](study_{name}.png))"
                         + (f" {check}" if check else ""))
    if status:
        lines += ["", "### Progress of the study (what is finished, what is not)", ""] + status
    if has_ablations(plan):
        lines += ["", "Ablations and overhead: [study_ablations.md](study_ablations.md)", ""]
        lines += ablation_findings(ablations)
    if lora:
        lines += ["", "## Full fine-tuning + RMT or DP-LoRA?", ""]
        lines += [lora_finding(r) + f" ([study_lora_{name}.md](study_lora_{name}.md), ![](study_lora_{name}.png))"
                  for name, r in lora.items()]
    lines += ["",
              "## Cost", "",
              f"Runs finished {cost['finished']} of {cost['planned']} planned; CPU time of all attempts so far "
              f"{cost['cpu_hours']:.2f} h, wall time {cost['wall_hours']:.2f} h (RUNS_DIR/ledger.jsonl)."
              + (f" With the archive: {cost['cpu_hours'] + archive['about']['cpu_hours']:.2f} CPU h, "
                 f"{cost['wall_hours'] + archive['about']['wall_hours']:.2f} wall h in all." if archive else ""), ""]
    return "\n".join(lines)


def regime_findings(regime: dict) -> list[str]:
    """Per (ε, B): the largest top/edge at each trajectory step and the matrices kept at κ = 1.02."""
    k = f"{regime['main_kappa']:g}"
    out = ["| ε | B | " + " | ".join(f"step {p}: max top/edge, matrices kept" for p in regime["points"]) + " |",
           "|---|---|" + "---|" * len(regime["points"])]
    for eps in regime["epsilons"]:
        for b in regime["batch_sizes"]:
            cells = []
            for p in regime["points"]:
                c = next(c for c in regime["cells"] if c["epsilon"] == eps and c["batch_size"] == b
                         and c["point"] == p)
                cells.append(f"{c['max_top_over_edge']:.2f}, {c['matrices_kept'][k]}")
            out.append(f"| {eps:g} | {b} | " + " | ".join(cells) + " |")
    return out


# ---------------------------------------------------------------------------------------------------------
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
    if plan.get("paper_table") is not None:  # issue 25: the paper's format, the non-private arm beside
        paper = paper_table.paper_table(plan, study_runs)
        (reports_dir / "paper_table.json").write_text(json.dumps({**paper, "command": command}, indent=1) + "\n")
        (reports_dir / "paper_table.md").write_text(paper_table.markdown(paper))
        written += [reports_dir / "paper_table.json", reports_dir / "paper_table.md"]
    settings, lora = {}, {}
    lora_runs = [r for r in study_runs if r["role"] == LORA_ROLE]  # issue 18's comparison: its own report
    study_runs = [r for r in study_runs if r["role"] != LORA_ROLE]
    for group, runs_in_group in (("main", study_runs), ("lora", lora_runs)):
        for setting in dict.fromkeys(r["setting"] for r in runs_in_group):
            runs_here = [r for r in runs_in_group if r["setting"] == setting]
            if not any(r["finished"] for r in runs_here):
                continue
            if group == "main":
                reference, all_arms = plan_reference(plan)
                required = tuple(dict.fromkeys(r["arm"] for r in runs_here)) if all_arms else None
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
    if has_ablations(plan):  # a plan without ablation arms (issue 25's) has no such report
        (reports_dir / "study_ablations.json").write_text(json.dumps(ablations, indent=1) + "\n")
        (reports_dir / "study_ablations.md").write_text(ablation_markdown(ablations))
        written += [reports_dir / "study_ablations.json", reports_dir / "study_ablations.md"]
        png = plot_ablations(ablations, reports_dir / "study_ablations.png")
        written += [png] if png else []
    cost = {"planned": len(loaded), "finished": sum(r["finished"] for r in loaded),
            "cpu_hours": sum(r.get("cpu_seconds", 0.0) for r in ledger) / 3600,
            "wall_hours": sum(r.get("wall_seconds", 0.0) for r in ledger) / 3600}
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
