"""study_ablations.{md,json,png}: the norm-correction and κ arms beside the main arms, on the seed they share."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scripts.study._report_runs import fmt, fmt_signed, fmt_stats, machine, PEER_ARMS, PLAN_ARM


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
