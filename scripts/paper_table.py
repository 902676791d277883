"""The study in the paper's format (issue 25): one table per setting, the non-private reference beside it.

    table = paper_table(plan, runs)            runs: study_report.load_run dicts of the finished study
    markdown(table)                            the Markdown of reports/<dir>/paper_table.md

Per setting and arm (seeds finished, ≥ 3 for a conclusion):
    accuracy at steps 25 / 50 / 100 / 200     the last evaluation at or before that step (mean ± sd over seeds;
                                              the step actually read is shown: at --eval-every 10 step 25 reads
                                              step 20, and a 198-step run's "200" is its final evaluation)
    final accuracy                            mean ± sd, and as a % of the non-private arm's final mean
    steps to 90% / 95% of non-private         first evaluated step with accuracy ≥ 0.9 · A_np (0.95 · A_np),
                                              A_np = the highest point of the non-private mean curve
    steps to 90% / 95% of the best DP arm     the same with A_dp = the highest point of any DP arm's mean curve
    paired difference to the baseline arm     arm − baseline over shared seeds, mean and 95% t-interval, of the
                                              final accuracy and of the accuracy at each step above (the paper's
                                              claim is about early steps: an arm can gain early and not at the end)
    wins per checkpoint                       seeds where arm > baseline at each of the steps above

The non-private arm (plan role "nonprivate") has no ε: a setting without its own non-private runs reads those
of another setting of the same task and number of steps (said in the table). The published figures come from
the plan (plan["paper_table"]["published"]), each with its source; they are set beside, never mixed in.
"""
from __future__ import annotations

import numpy as np

from _study_stats import MIN_SEEDS, mean_sd, paired, read_at, steps_to

PAPER_STEPS = (25, 50, 100, 200)
NONPRIVATE_ROLE = "nonprivate"


def mean_curve(runs: list[dict]) -> dict:
    """{step: mean accuracy over the runs evaluated at that step}."""
    steps = sorted({s for r in runs for s in r["curve"]})
    return {s: float(np.mean([r["curve"][s] for r in runs if s in r["curve"]])) for s in steps}


def nonprivate_runs(setting: str, plan: dict, finished: list[dict]) -> tuple[list[dict], str | None]:
    """The setting's own finished non-private runs, else those of another setting with the same task and the
    same number of steps (non-private does not depend on ε). Returns (runs, the setting they come from)."""
    def steps(r):
        return r["summary"].get("steps")

    task = plan["settings"][setting]["task"]
    here = [r for r in finished if r["setting"] == setting]
    own = [r for r in here if r["role"] == NONPRIVATE_ROLE]
    if own:
        return own, setting
    dp_steps = {steps(r) for r in here}
    for other in plan["settings"]:
        if other != setting and plan["settings"][other]["task"] == task:
            found = [r for r in finished if r["setting"] == other and r["role"] == NONPRIVATE_ROLE
                     and steps(r) in dp_steps]
            if found:
                return found, other
    return [], None


def setting_table(setting: str, plan: dict, finished: list[dict], baseline: str) -> dict:
    """One setting of the paper table (see the module docstring); ``finished``: every finished study run."""
    spec = plan["settings"][setting]
    dp = {}
    for r in finished:
        if r["setting"] == setting and r["role"] != NONPRIVATE_ROLE:
            dp.setdefault(r["arm"], []).append(r)
    np_runs, np_from = nonprivate_runs(setting, plan, finished)
    arms = ({"nonprivate": np_runs} if np_runs else {}) | dp
    np_curve = mean_curve(np_runs) if np_runs else {}
    a_np = max(np_curve.values()) if np_curve else None
    a_dp = max((max(mean_curve(rs).values()) for rs in dp.values()), default=None)
    np_final = mean_sd([r["final_accuracy"] for r in np_runs])["mean"] if np_runs else None
    base = {r["seed"]: r for r in dp.get(baseline, [])}
    out = {"setting": setting, "task": spec["task"], "epsilon": spec["epsilon"], "baseline": baseline,
           "nonprivate_from": np_from, "nonprivate_peak": a_np, "best_dp_peak": a_dp,
           "best_dp_arm": max(dp, key=lambda a: max(mean_curve(dp[a]).values())) if dp else None,
           "steps": max((r["summary"].get("steps") or 0 for rs in arms.values() for r in rs), default=None),
           "incomplete": any(len(rs) < MIN_SEEDS for rs in arms.values()) or not np_runs or baseline not in dp,
           "arms": {}}
    for arm, rs in arms.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        row = {"role": rs[0]["role"], "seeds": [r["seed"] for r in rs], "at": {}, "wins": {}, "paired_at": {},
               "final": mean_sd([r["final_accuracy"] for r in rs])}
        for step in PAPER_STEPS:
            reads = [read_at(r["curve"], step) for r in rs]
            row["at"][str(step)] = {"read_steps": sorted({s for s, _ in reads if s is not None}),
                                    **mean_sd([a for _, a in reads])}
            if arm != baseline and arm != "nonprivate" and base:
                pairs = [(read_at(base[r["seed"]]["curve"], step)[1], a) for r, (_, a) in zip(rs, reads)
                         if r["seed"] in base]
                pairs = [(b, a) for b, a in pairs if b is not None and a is not None]
                row["wins"][str(step)] = {"wins": sum(a > b for b, a in pairs), "seeds": len(pairs)}
                row["paired_at"][str(step)] = paired({seed: read_at(r["curve"], step)[1] for seed, r in base.items()},
                                                     {r["seed"]: a for r, (_, a) in zip(rs, reads)})
        row["percent_of_nonprivate"] = (100.0 * row["final"]["mean"] / np_final
                                        if np_final and row["final"]["mean"] is not None else None)
        for name, peak in (("nonprivate", a_np), ("best_dp", a_dp)):
            for frac in (90, 95):
                row[f"steps_to_{frac}_{name}"] = ([steps_to(r["curve"], frac / 100 * peak) for r in rs]
                                                  if peak is not None else None)
        row["paired_vs_baseline"] = (paired({s: r["final_accuracy"] for s, r in base.items()},
                                            {r["seed"]: r["final_accuracy"] for r in rs})
                                     if arm not in (baseline, "nonprivate") and base else None)
        out["arms"][arm] = row
    return out


def paper_table(plan: dict, runs: list[dict]) -> dict:
    """Every setting with a finished run, in the plan's order; plan["paper_table"] names the baseline arm and the
    published figures."""
    config = plan.get("paper_table") or {}
    finished = [r for r in runs if r["finished"]]
    settings = [s for s in plan["settings"] if any(r["setting"] == s and r["role"] != NONPRIVATE_ROLE
                                                  for r in finished)]
    return {"baseline": config.get("baseline", "ft"), "published": config.get("published", []),
            "min_seeds": MIN_SEEDS,
            "settings": {s: setting_table(s, plan, finished, config.get("baseline", "ft")) for s in settings}}


# ---------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------
def _acc(st: dict) -> str:
    if not st or not st.get("n"):
        return "—"
    return f"{st['mean']:.3f}" + (f" ± {st['sd']:.3f}" if st.get("sd") is not None else "")


def _steps(values) -> str:
    """Per-seed steps as 'a/b/c' ('>' where a seed never reached it)."""
    if values is None:
        return "—"
    return "/".join(">" if v is None else str(v) for v in values)


def _diff(pd) -> str:
    if not pd or pd.get("mean") is None:
        return "—"
    ci = pd.get("ci95")
    return f"{pd['mean']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else " (1 pair)")


def _reads(t: dict) -> str:
    """The steps a checkpoint column actually read, when they differ from its name."""
    notes = []
    for step in PAPER_STEPS:
        read = sorted({s for row in t["arms"].values() for s in row["at"][str(step)]["read_steps"]})
        if read and read != [step]:
            notes.append(f"{step} → step {'/'.join(map(str, read))}")
    return "; ".join(notes)


def verdict(pd, n_needed: int) -> str:
    """What the paired interval says, in words; no conclusion below ``n_needed`` pairs."""
    if not pd or pd.get("mean") is None:
        return "no pair yet"
    if len(pd["seeds"]) < n_needed or not pd.get("ci95"):
        return f"no conclusion ({len(pd['seeds'])} paired seed(s) of {n_needed})"
    lo, hi = pd["ci95"]
    return "helps" if lo > 0 else "hurts" if hi < 0 else "does nothing the seeds can resolve"


def markdown(table: dict) -> str:
    base = table["baseline"]
    lines = ["# The study in the paper's format (issue 25)", "",
             "SST-2 dev accuracy (QNLI dev for the second task) of all-MiniLM-L6-v2 (6 layers, width 384; mean "
             "pooling, embeddings frozen), expected batch 1024, 3 epochs. Accuracy at a step is the last "
             "evaluation at or before it (mean ± sd over seeds); steps to x% are per seed (a/b/c; > never "
             "reached) against the highest point of the non-private mean curve (NP) and of the best DP arm's "
             f"(DP); Δ is the paired final difference to `{base}` with its 95% t-interval; wins count seeds above "
             f"`{base}` at 25/50/100/200. A setting is INCOMPLETE below {table['min_seeds']} seeds in an arm or "
             "without its non-private reference: its numbers are listed, no conclusion is drawn.", ""]
    for name, t in table["settings"].items():
        eps = "non-private only" if t["epsilon"] is None else f"ε = {t['epsilon']:g}"
        lines += [f"## {t['task']}, {eps} (setting `{name}`, {t['steps']} steps)"
                  + (" — INCOMPLETE" if t["incomplete"] else ""), ""]
        if t["nonprivate_from"] and t["nonprivate_from"] != name:
            lines += [f"Non-private reference: the runs of setting `{t['nonprivate_from']}` (same task and steps; "
                      "a non-private run has no ε).", ""]
        lines += ["| arm | seeds | acc 25 | acc 50 | acc 100 | acc 200 | final | % of NP | steps to 90% / 95% NP "
                  "| steps to 90% / 95% DP | Δ final vs " + base + " [95% CI] | wins 25/50/100/200 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for arm, row in t["arms"].items():
            wins = "/".join(f"{row['wins'][str(s)]['wins']}" for s in PAPER_STEPS) if row["wins"] else "—"
            n = row["wins"][str(PAPER_STEPS[0])]["seeds"] if row["wins"] else None
            pct = "—" if row["percent_of_nonprivate"] is None else f"{row['percent_of_nonprivate']:.1f}%"
            lines.append(
                f"| {arm}{' (NOT PRIVATE)' if arm == 'nonprivate' else ''} | {len(row['seeds'])} | "
                + " | ".join(_acc(row["at"][str(s)]) for s in PAPER_STEPS)
                + f" | {_acc(row['final'])} | {pct} | {_steps(row['steps_to_90_nonprivate'])} / "
                f"{_steps(row['steps_to_95_nonprivate'])} | {_steps(row['steps_to_90_best_dp'])} / "
                f"{_steps(row['steps_to_95_best_dp'])} | {_diff(row['paired_vs_baseline'])} | "
                + (f"{wins} of {n}" if n else wins) + " |")
        peaks = (f"NP peak {t['nonprivate_peak']:.3f}" if t["nonprivate_peak"] is not None else "No non-private run yet")
        dp = (f"; best DP arm `{t['best_dp_arm']}`, peak {t['best_dp_peak']:.3f}" if t["best_dp_peak"] is not None
              else "")
        reads = _reads(t)
        lines += ["", peaks + dp + "." + (f" Columns read: {reads}." if reads else ""), ""]
        denoised = {a: r for a, r in t["arms"].items() if r["role"] == "denoised"}
        if denoised:
            lines += ["Where RMT helps, does nothing or hurts (paired with `" + base + "` at each step column and at "
                      "the end):", ""]
            for a, r in denoised.items():
                at = [f"at {s}: {verdict(r['paired_at'].get(str(s)), table['min_seeds'])} "
                      f"({_diff(r['paired_at'].get(str(s)))})" for s in PAPER_STEPS]
                lines.append(f"- `{a}`: " + "; ".join(at) + f"; final: {verdict(r['paired_vs_baseline'], table['min_seeds'])}"
                             f" ({_diff(r['paired_vs_baseline'])})")
            lines += [""]
    if table["published"]:
        lines += ["## Published figures this is set beside (not measured here)", "",
                  "| source | model | method | ε | task | accuracy | note |", "|---|---|---|---|---|---|---|"]
        for p in table["published"]:
            lines.append(f"| {p['source']} | {p['model']} | {p['method']} | {p.get('epsilon', '—')} | {p['task']} | "
                         f"{p['accuracy']} | {p.get('note', '')} |")
        lines += [""]
    return "\n".join(lines)
