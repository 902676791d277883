"""The study in the paper's format: one table per setting, the non-private reference beside it.

    table = paper_table(plan, runs)            runs: study_report.load_run dicts of the finished study
    markdown(table)                            the Markdown of reports/<dir>/paper_table.md

Per setting and arm (seeds finished, ≥ 3 for a conclusion):
    accuracy at steps 10/25/50/100/200        the last evaluation at or before that step (mean ± sd over seeds;
                                              the step actually read is shown: at --eval-every 10 step 25 reads
                                              step 20, and a 198-step run's "200" is its final evaluation)
    final accuracy                            mean ± sd, and as a % of the non-private arm's final mean A_np
    steps to 90% / 95% of non-private         first evaluated step with accuracy ≥ 0.9 · A_np (0.95 · A_np),
                                              A_np = the non-private arm's MEAN FINAL accuracy over its seeds
                                              (a reference not read off the best point of any reported curve)
    steps to 90% / 95% of a published figure  the same against each published accuracy of the setting's task
                                              (plan["paper_table"]["published"], each with its setting and source)
    paired difference to the baseline arm     arm − baseline over shared seeds, mean and 95% t-interval, of the
                                              final accuracy and of the accuracy at each step above (the paper's
                                              claim is about early steps: an arm can gain early and not at the end)
    wins per checkpoint                       seeds where arm > baseline at each of the steps above

An arm listed in plan["optional_arms"][setting] is shown, labelled optional, and left out of the setting's
completeness check. The non-private arm (plan role "nonprivate") has no ε: a setting without its own non-private
runs reads those of another setting of the same task and number of steps (said in the table). The confirmatory
test declared in the plan (plan["confirmatory"]: an exploratory finding, the settings that test it) is a paired
one-sided t-test per testing setting, reported whichever way it falls.
"""
from __future__ import annotations

import numpy as np

from scripts.study._study_stats import MIN_SEEDS, mean_sd, one_sided, paired, read_at, steps_to

PAPER_STEPS = (10, 25, 50, 100, 200)
ALPHA = 0.05  # the confirmatory test's level
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
    optional = set((plan.get("optional_arms") or {}).get(setting, []))
    dp = {}
    for r in finished:
        if r["setting"] == setting and r["role"] != NONPRIVATE_ROLE:
            dp.setdefault(r["arm"], []).append(r)
    np_runs, np_from = nonprivate_runs(setting, plan, finished)
    arms = ({"nonprivate": np_runs} if np_runs else {}) | dp
    np_final = mean_sd([r["final_accuracy"] for r in np_runs]) if np_runs else {"n": 0, "mean": None, "sd": None}
    a_np = np_final["mean"]
    finals = {a: mean_sd([r["final_accuracy"] for r in rs])["mean"] for a, rs in dp.items() if a not in optional}
    best = max(finals, key=finals.get) if finals else None
    published = [p for p in (plan.get("paper_table") or {}).get("published", []) if p.get("task") == spec["task"]]
    base = {r["seed"]: r for r in dp.get(baseline, [])}
    out = {"setting": setting, "task": spec["task"], "epsilon": spec["epsilon"], "baseline": baseline,
           "nonprivate_from": np_from, "nonprivate_final": np_final, "best_dp_arm": best,
           "best_dp_final": finals.get(best), "gap_to_nonprivate": (a_np - finals[best]) if best and a_np else None,
           "optional_arms": sorted(optional & set(dp)),
           "steps": max((r["summary"].get("steps") or 0 for rs in arms.values() for r in rs), default=None),
           "incomplete": any(len(rs) < MIN_SEEDS for a, rs in arms.items() if a not in optional)
           or not np_runs or baseline not in dp,
           "published": [p["id"] for p in published], "arms": {}}
    for arm, rs in arms.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        row = {"role": rs[0]["role"], "optional": arm in optional, "seeds": [r["seed"] for r in rs], "at": {},
               "wins": {}, "paired_at": {}, "final": mean_sd([r["final_accuracy"] for r in rs])}
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
        row["percent_of_nonprivate"] = (100.0 * row["final"]["mean"] / a_np
                                        if a_np and row["final"]["mean"] is not None else None)
        for frac in (90, 95):
            row[f"steps_to_{frac}_nonprivate"] = ([steps_to(r["curve"], frac / 100 * a_np) for r in rs]
                                                  if a_np is not None else None)
        row["steps_to_published"] = {p["id"]: {str(frac): [steps_to(r["curve"], frac / 100 * p["accuracy"])
                                                           for r in rs] for frac in (90, 95)} for p in published}
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
            "published_missing": config.get("published_missing"), "min_seeds": MIN_SEEDS,
            "settings": {s: setting_table(s, plan, finished, config.get("baseline", "ft")) for s in settings},
            "confirmatory": confirmatory(plan, finished)}


def confirmatory(plan: dict, finished: list[dict]):
    """The test declared in plan["confirmatory"] (None if the plan declares none): for the setting that found the
    effect (exploratory, shown for reference) and for each setting that tests it, the paired one-sided t-test of
    arm − baseline at the declared step > 0, with its n, mean, two-sided 95% interval and p."""
    conf = plan.get("confirmatory")
    if not conf:
        return None
    arm, baseline = conf["arms"]
    step = int(conf["step"])

    def test(setting):
        at = {a: {r["seed"]: read_at(r["curve"], step)[1] for r in finished if r["setting"] == setting
                  and r["arm"] == a} for a in (arm, baseline)}
        result = one_sided(at[baseline], at[arm])
        if result["n"] < MIN_SEEDS:
            result["result"] = f"not yet tested ({result['n']} of {MIN_SEEDS} pairs)"
        elif result["p_one_sided"] is not None and result["p_one_sided"] < ALPHA:
            result["result"] = f"confirmed: {arm} ahead of {baseline} at step {step} (one-sided p < {ALPHA:g})"
        else:
            result["result"] = (f"not confirmed: no evidence at level {ALPHA:g} that {arm} is ahead of {baseline} "
                                f"at step {step}")
        return result

    return {"declared": conf.get("declared"), "hypothesis": conf.get("hypothesis"), "arms": [arm, baseline],
            "step": step, "alpha": ALPHA, "found_in": conf["found_in"], "how_found": conf.get("how_found"),
            "exploratory": test(conf["found_in"]), "tests": {s: test(s) for s in conf["settings"]}}


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


TASK_DATA = {"sst2": "SST-2 dev (872 sentences)", "empythy3": "the tweets' held-out 10% (3,816 tweets, 3 classes)"}


def _test_line(name: str, r: dict, exploratory: bool = False) -> str:
    """One setting's paired step-10 difference; the setting where the effect was found states it, nothing more
    (its p is descriptive: the step was picked by scanning that setting, so it cannot confirm itself)."""
    if not r["n"]:
        return f"- `{name}`: no pair yet."
    ci = r.get("ci95")
    p = r.get("p_one_sided")
    result = "the exploratory finding the tests check" if exploratory else r["result"]
    return (f"- `{name}`: n = {r['n']} paired seeds, mean difference {r['mean']:+.4f}"
            + (f", 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "")
            + (f", one-sided p = {p:.4f}" if p is not None else "") + f" — {result}.")


def confirmatory_markdown(conf: dict) -> list[str]:
    arm, base = conf["arms"]
    lines = [f"## The confirmatory test (declared {conf['declared']})", "",
             f"Hypothesis: {conf['hypothesis']}. Found while exploring `{conf['found_in']}` ({conf['how_found']}); "
             f"tested, as declared before their runs started, in {', '.join(f'`{s}`' for s in conf['tests'])}: "
             f"`{arm}` − `{base}` at step {conf['step']}, paired over seeds, one-sided t-test at level "
             f"{conf['alpha']:g}.", "", "Where it was found (exploratory, not a test):",
             _test_line(conf["found_in"], conf["exploratory"], exploratory=True), "", "The tests:"]
    lines += [_test_line(s, r) for s, r in conf["tests"].items()]
    return lines + [""]


def markdown(table: dict) -> str:
    base = table["baseline"]
    steps = "/".join(str(s) for s in PAPER_STEPS)
    published = {p["id"]: p for p in table["published"]}
    lines = ["# The study in the paper's format", "",
             "Accuracy of all-MiniLM-L6-v2 (6 layers, width 384; mean pooling, embeddings frozen), expected batch "
             "1024, 3 epochs, on each task's evaluation data (named per setting). Accuracy at a step is the last "
             "evaluation at or before it (mean ± sd over seeds); % of NP and steps to 90% / 95% are against the "
             "non-private arm's mean final accuracy (NP), steps per seed (a/b/c; > never reached); Δ is the paired "
             f"final difference to `{base}` with its 95% t-interval; wins count seeds above `{base}` at {steps}. "
             f"A setting is INCOMPLETE below {table['min_seeds']} seeds in an arm or without its non-private "
             "reference: its numbers are listed, no conclusion is drawn. Optional arms are left out of that check.",
             ""]
    for name, t in table["settings"].items():
        eps = "non-private only" if t["epsilon"] is None else f"ε = {t['epsilon']:g}"
        lines += [f"## {t['task']}, {eps} (setting `{name}`, {t['steps']} steps)"
                  + (" — INCOMPLETE" if t["incomplete"] else ""), "",
                  f"Evaluated on {TASK_DATA.get(t['task'], t['task'] + ' evaluation data')}.", ""]
        if t["nonprivate_from"] and t["nonprivate_from"] != name:
            lines += [f"Non-private reference: the runs of setting `{t['nonprivate_from']}` (same task and steps; "
                      "a non-private run has no ε).", ""]
        head = " | ".join(f"acc {s}" for s in PAPER_STEPS)
        lines += [f"| arm | seeds | {head} | final | % of NP | steps to 90% / 95% NP | Δ final vs {base} [95% CI] "
                  f"| wins {steps} |", "|---|---|" + "---|" * len(PAPER_STEPS) + "---|---|---|---|---|"]
        for arm, row in t["arms"].items():
            wins = "/".join(f"{row['wins'][str(s)]['wins']}" for s in PAPER_STEPS) if row["wins"] else "—"
            n = row["wins"][str(PAPER_STEPS[0])]["seeds"] if row["wins"] else None
            pct = "—" if row["percent_of_nonprivate"] is None else f"{row['percent_of_nonprivate']:.1f}%"
            label = " (NOT PRIVATE)" if arm == "nonprivate" else " (optional)" if row.get("optional") else ""
            lines.append(
                f"| {arm}{label} | {len(row['seeds'])} | " + " | ".join(_acc(row["at"][str(s)]) for s in PAPER_STEPS)
                + f" | {_acc(row['final'])} | {pct} | {_steps(row['steps_to_90_nonprivate'])} / "
                f"{_steps(row['steps_to_95_nonprivate'])} | {_diff(row['paired_vs_baseline'])} | "
                + (f"{wins} of {n}" if n else wins) + " |")
        npf = t["nonprivate_final"]
        cap = (f"Non-private final (the cap): {_acc(npf)}" if npf.get("n") else "No non-private run yet")
        best = (f"; best DP arm by mean final accuracy: `{t['best_dp_arm']}`, {t['best_dp_final']:.3f}"
                + (f" ({100 * t['gap_to_nonprivate']:.1f} points below non-private)"
                   if t["gap_to_nonprivate"] is not None else "") if t["best_dp_arm"] else "")
        reads = _reads(t)
        lines += ["", cap + best + "." + (f" Columns read: {reads}." if reads else ""), ""]
        if t["published"]:
            lines += ["Steps to 90% / 95% of published accuracies (per seed; the published runs are a different, "
                      "larger model in their own setting: see the table of published figures):", "",
                      "| arm | " + " | ".join(f"{pid} ({published[pid]['accuracy']:.3f})" for pid in t["published"])
                      + " |", "|---|" + "---|" * len(t["published"])]
            for arm, row in t["arms"].items():
                cells = [f"{_steps(row['steps_to_published'][pid]['90'])} / {_steps(row['steps_to_published'][pid]['95'])}"
                         for pid in t["published"]]
                lines.append(f"| {arm} | " + " | ".join(cells) + " |")
            lines += [""]
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
    if table.get("confirmatory"):
        lines += confirmatory_markdown(table["confirmatory"])
    if table["published"]:
        lines += ["## Published figures this is set beside (not measured here)", "",
                  "| id | source | model | method | ε | δ | task (split) | setting | accuracy | where at the source |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for p in table["published"]:
            lines.append(f"| {p['id']} | {p['source']} | {p['model']} | {p['method']} | {p.get('epsilon', '—')} | "
                         f"{p.get('delta', '—')} | {p['task']} ({p.get('split', '')}) | {p.get('setting', '')} | "
                         f"{p['accuracy']} | {p.get('where', '')} |")
        lines += [""]
    if table.get("published_missing"):
        lines += ["Not given: " + table["published_missing"], ""]
    return "\n".join(lines)
