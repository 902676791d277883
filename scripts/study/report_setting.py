"""study_<setting>.{md,json,png} and study_lora_<setting>.*: one setting's arms compared (accuracy at fixed
steps, steps to 90% / 95%, final accuracy, the paired difference with its 95% t-interval, seeds won)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scripts.study import paper_table
from scripts.study._report_runs import (
    accuracy_at, CHECKPOINT_STEPS, fmt, fmt_ci, fmt_stats, machine, model_words, REPORT_KEY)
from scripts.study._study_stats import MIN_SEEDS, mean_sd, paired, steps_to


MAIN_REFERENCE = ("baseline", "rmt")  # the plan arms a setting's report compares (the paired difference: 2nd − 1st)
LORA_REFERENCE = ("ft", "ft_rmt")  # the DP-LoRA comparison: full fine-tuning without / with RMT; LoRA arms beside it



def plan_reference(plan: dict) -> tuple[tuple[str, str], bool]:
    """(baseline arm, denoised arm) of a plan's setting reports, and whether every arm of a setting needs
    MIN_SEEDS finished seeds before it is complete. A plan may name its own pair (``"reference": [b, d]``,
    e.g. the 3-epoch study's ft / ft + RMT estimate); then all its arms count. Else the main study's pair, which alone
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



def _add_arm(report: dict, key: str, arm: str, rs: list[dict], checkpoints: list, best) -> None:
    """One arm's rows of the setting's report (finished runs ``rs``): accuracies at the checkpoints, finals,
    steps to 90% / 95% of ``best``, mean curves, the NON-PRIVATE alignment gains, cost and denoiser activity."""
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
            # share of matrix-steps the denoiser changed (≥ 1 component kept), per seed; the rest fall back to
            # the config's `fallback` (the study's: the noisy matrix unchanged)
            "changed_share": {part: [round(r["denoised_matrices"][part][0] / r["denoised_matrices"][part][1], 4)
                                     if r.get("denoised_matrices", {}).get(part) else None for r in rs]
                              for part in ("encoder", "head")},
            "fallback": sorted({r["denoise_fallback"] for r in rs if r.get("denoise_fallback")}),
            "mean_kept_per_step": {str(s): float(np.mean([r["kept"].get(s, 0) for r in rs]))
                                   for s in sorted({s for r in rs for s in r["kept"]})}}
    report["wall_seconds"][key] = [r["wall_seconds"] for r in rs]


def _add_paired(report: dict, base: list, den: list, finished: dict, reference: tuple, checkpoints: list) -> None:
    """Paired differences (same seeds) of every arm's final accuracy to the baseline's, and of the reference
    pair at each checkpoint with its wins."""
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
    # the header states the private arms' σ and ε: a non-private arm (σ = 0, ε None) is read only when no
    # private arm has finished
    summaries = [r["summary"] for rs in finished.values() for r in rs]
    first = next((s for s in summaries if s.get("noise_multiplier")), None) or next(iter(summaries), {})
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
        _add_arm(report, REPORT_KEY.get(arm, arm), arm, rs, checkpoints, best)
    report["identical_arms"] = identical_arms(finished)
    for key in report["reference"].values():
        report["steps_to_90"].setdefault(key, [])
        report["steps_to_95"].setdefault(key, [])
        report["final_accuracy"].setdefault(key, [])
    _add_paired(report, base, den, finished, reference, checkpoints)
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



PART_WORDS = {"encoder": "encoder", "head": "head (classifier, pooler)"}
FALLBACK_WORDS = {"noisy": "the released matrix unchanged", "zero": "no update to that matrix"}


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
            share = {part: vs for part, vs in (a.get("changed_share") or {}).items()
                     if any(v is not None for v in vs)}  # a part no matrix of which was trained is left out
            if share:
                words = ", ".join(f"{PART_WORDS[part]} {vs}" for part, vs in share.items())
                fallback = "/".join(f"{f} ({FALLBACK_WORDS.get(f, f)})" for f in a.get("fallback") or []) or "—"
                lines.append(f"  - share of matrix updates it changed (≥ 1 component kept), per seed: {words}; the "
                             f"others took the fallback {fallback}")
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
