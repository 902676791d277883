"""The federated comparison's report, from its records alone: reports/federated/{README.md, federated.json,
federated_accuracy.png}.

    write(plan, records, reports) -> [paths written]

Per arm: final held-out accuracy per seed, mean ± sd, accuracy per evaluated round (mean over seeds), bytes a
client sends per round and the compression ratio, the encoder's reconstruction error on real updates (a
noise-free function of the clients' data: NOT covered, labelled), and the privacy each arm spent (ε by RDP,
the guarantee, and the GDP approximation beside it). Paired differences against DP-FedAvg over the seeds both
arms have, with 95 % t-intervals; a plain verdict for DR-Encoder against DP-FedAvg at the same ε. An arm with
fewer than 3 seeds is listed and marked INCOMPLETE; no verdict is drawn from it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scripts.study._report_runs import fmt, fmt_ci, fmt_stats, read_jsonl
from scripts.study._study_stats import MIN_SEEDS, mean_sd, paired

COMPARISONS = (  # (a, b): b − a, paired over seeds
    ("dp_fedavg", "dr_encoder"), ("dp_fedavg", "fedcg"), ("dp_fedavg", "dr_encoder_rmt"),
    ("dp_fedavg", "dp_fedavg_rmt"), ("dr_encoder", "dr_encoder_rmt"), ("fedcg", "dr_encoder"),
    ("dp_fedavg", "nonprivate_fedavg"), ("dp_fedavg", "clipped_fedavg"))


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_run(folder: Path) -> dict | None:
    """One recorded run: summary, config, its accuracy per evaluated round, its non-private rows."""
    summary = _read(folder / "summary.json")
    if summary is None:
        return None
    rows = read_jsonl(folder / "metrics.jsonl")
    return {"summary": summary, "config": _read(folder / "config.json") or {},
            "curve": {r["round"]: r["eval"]["accuracy"] for r in rows if r.get("eval")},
            "nonprivate": read_jsonl(folder / "metrics_nonprivate.jsonl")}


def collect(plan: dict, records: Path) -> dict:
    """Everything the report shows, as plain data (the JSON twin)."""
    arms = {}
    for arm, spec in plan["arms"].items():
        runs = {}
        folders = [p for p in (records / arm).glob("seed*") if p.name[4:].isdigit()]  # not an unfinished copy
        for folder in sorted(folders, key=lambda p: int(p.name[4:])):
            run = load_run(folder)
            if run is not None:
                runs[int(folder.name[4:])] = run
        finals = {s: r["summary"]["final_eval"]["accuracy"] for s, r in runs.items()}
        rounds = sorted({t for r in runs.values() for t in r["curve"]})
        errors = [row["reconstruction_error_non_private"] for r in runs.values() for row in r["nonprivate"]
                  if row.get("reconstruction_error_non_private") is not None]
        privacy = [r["summary"]["privacy"] for r in runs.values()]
        first = next(iter(runs.values()), None)
        arms[arm] = {
            "label": spec["label"], "private": "--non-private" not in spec["flags"], "about": spec.get("about"),
            "seeds": sorted(finals), "final_accuracy": [finals[s] for s in sorted(finals)],
            "final": mean_sd(finals.values()), "complete": len(finals) >= MIN_SEEDS,
            "accuracy_per_round": {str(t): mean_sd([r["curve"].get(t) for r in runs.values()]) for t in rounds},
            "bytes_per_client": first["summary"]["bytes_per_client"] if first else None,
            "compression_ratio": first["summary"]["compression_ratio"] if first else None,
            "epsilon_rdp": [p["epsilon_rdp"] for p in privacy],
            "epsilon_gdp_approx": [p["epsilon_gdp_approx"] for p in privacy],
            "noise_multiplier": privacy[0]["noise_multiplier"] if privacy else None,
            "reconstruction_error_non_private": float(np.mean(errors)) if errors else None,
            "seconds_per_round": float(np.mean([row["seconds"] for r in runs.values() for row in r["nonprivate"]]))
            if runs else None,
        }
    finals = {arm: dict(zip(a["seeds"], a["final_accuracy"])) for arm, a in arms.items()}
    comparisons = [{"a": a, "b": b, "complete": arms[a]["complete"] and arms[b]["complete"],
                    **paired(finals[a], finals[b])} for a, b in COMPARISONS if a in finals and b in finals]
    return {"about": plan["about"], "setting": plan["setting"], "private": plan["private"],
            "searches": searches(plan, records), "arms": arms, "paired": comparisons,
            "epsilon": target_epsilon(plan), "complete": all(a["complete"] for a in arms.values()),
            "verdict": verdict(arms, comparisons, target_epsilon(plan)),
            "cap": cap_check(arms, comparisons), "noise_cost": noise_cost(arms, comparisons)}


def searches(plan: dict, records: Path) -> list[dict]:
    """Each search's validation accuracies and its choice (None until all its runs are recorded)."""
    out = []
    for s in plan["searches"]:
        results = {}
        for v in s["values"]:
            run = load_run(records / s["name"] / f"{s['variable']}{v:g}" / f"seed{s['seed']}")
            results[f"{v:g}"] = None if run is None else run["summary"]["final_eval"]["accuracy"]
        done = all(acc is not None for acc in results.values())
        best = max(results, key=lambda k: (results[k], -float(k))) if done else None
        out.append({"name": s["name"], "variable": s["variable"], "arm": s["arm"], "for": s["for"], "seed": s["seed"],
                    "flags": s["flags"], "why": s.get("why"), "validation_accuracy": results, "chosen": best,
                    "rule": "highest final validation accuracy (ties: the smaller value)"})
    return out


def target_epsilon(plan: dict) -> str:
    """The client-level ε every private arm targets, as the plan's flags give it (e.g. "8")."""
    return plan["private"][plan["private"].index("--epsilon") + 1]


def verdict(arms: dict, comparisons: list, epsilon: str) -> str:
    """DR-Encoder against DP-FedAvg at the same ε, in words, from the paired interval."""
    pair = next((c for c in comparisons if (c["a"], c["b"]) == ("dp_fedavg", "dr_encoder")), None)
    if pair is None or not (arms.get("dp_fedavg", {}).get("complete") and arms.get("dr_encoder", {}).get("complete")):
        return f"not yet: DR-Encoder and DP-FedAvg need {MIN_SEEDS} seeds each"
    lo, hi = pair["ci95"]
    words = ("helps" if lo > 0 else "hurts" if hi < 0 else "makes no difference the seeds can resolve")
    return (f"at client-level ε = {epsilon}, DR-Encoder {words} against DP-FedAvg-LoRA: final accuracy difference "
            f"{pair['mean']:+.4f}, 95% interval [{lo:+.4f}, {hi:+.4f}] over {len(pair['seeds'])} paired seeds")


NONPRIVATE = "nonprivate_fedavg"  # the reference arm: the cap the private arms are read against


def cap_check(arms: dict, comparisons: list) -> str:
    """Whether the non-private arm is a cap, in words: the private arms with MIN_SEEDS seeds whose mean final
    accuracy is above its own, and non-private − DP-FedAvg's paired interval. Nothing is said until the
    non-private arm and at least one private arm have MIN_SEEDS seeds."""
    cap = arms.get(NONPRIVATE)
    private = {a: v for a, v in arms.items() if v["private"] and v["complete"]}
    if cap is None or not cap["complete"] or not private:
        return f"not yet: the non-private arm and at least one private arm need {MIN_SEEDS} seeds each"
    above = [v["label"] for v in private.values() if v["final"]["mean"] > cap["final"]["mean"]]
    if not above:
        return (f"every private arm with {MIN_SEEDS} seeds ends at or below the non-private arm "
                f"({cap['final']['mean']:.4f}): it bounds them here")
    pair = next((c for c in comparisons if (c["a"], c["b"]) == ("dp_fedavg", NONPRIVATE) and c["complete"]), None)
    resolved = ""
    if pair is not None and pair.get("ci95"):
        lo, hi = pair["ci95"]
        resolved = (f"; non-private − DP-FedAvg-LoRA {pair['mean']:+.4f}, 95% interval [{lo:+.4f}, {hi:+.4f}] "
                    + ("(below DP-FedAvg, resolved by the seeds)" if hi < 0 else
                       "(above DP-FedAvg, resolved by the seeds)" if lo > 0 else "(not resolved by the seeds)"))
    return (f"NOT a cap in this setting: {', '.join(above)} {'ends' if len(above) == 1 else 'end'} above the "
            f"non-private arm's mean final accuracy "
            f"({cap['final']['mean']:.4f}){resolved}. The non-private arm steps with unclipped updates at its own "
            f"searched server learning rate (below), the private arms with clipped, noised ones at theirs, so it "
            f"is a reference run of this protocol, not an upper bound on what the model can reach")


CLIPPED = "clipped_fedavg"  # the private arms' update rule without its noise (NOT private)


def noise_cost(arms: dict, comparisons: list) -> str:
    """What the noise costs DP-FedAvg-LoRA, in words: the clipped noise-free arm (same clipping, divisor and
    server lr, σ = 0) − DP-FedAvg-LoRA, paired over seeds. Nothing is said until both have MIN_SEEDS seeds."""
    pair = next((c for c in comparisons if (c["a"], c["b"]) == ("dp_fedavg", CLIPPED)), None)
    if pair is None or not pair["complete"] or not pair.get("ci95"):
        return f"not yet: the clipped noise-free arm and DP-FedAvg-LoRA need {MIN_SEEDS} seeds each"
    lo, hi = pair["ci95"]
    words = ("the noise costs DP-FedAvg-LoRA accuracy, resolved by the seeds" if lo > 0 else
             "DP-FedAvg-LoRA ends above its own noise-free run, resolved by the seeds" if hi < 0 else
             "no cost of the noise the seeds can resolve")
    return (f"{arms[CLIPPED]['label']} − DP-FedAvg-LoRA (the same clipping to C, divisor qK and server learning "
            f"rate, σ = 0): {pair['mean']:+.4f}, 95% interval [{lo:+.4f}, {hi:+.4f}] over {len(pair['seeds'])} "
            f"paired seeds: {words}")


def markdown(data: dict, command: str) -> str:
    arms = data["arms"]
    lines = ["# Federated fine-tuning with client-level DP: DR-Encoder beside DP-FedAvg-LoRA and a FedCG-style "
             "encoder", "", f"Regenerate: `{command}`", "", data["about"], "",
             f"Setting flags: `{' '.join(data['setting'])}`; private arms add `{' '.join(data['private'])}`.", "",
             f"What is private: each run of a private arm spends client-level ε = {data['epsilon']} under "
             "add/remove-one-client adjacency, σ calibrated by the RDP accountant for all its rounds (the "
             "guarantee); the GDP ε beside it is the central-limit approximation (Bu et al. 2020), not an upper "
             "bound. Central DP: the server is trusted with the clipped contributions. The non-private arms (the "
             "unclipped reference and the clipped noise-free diagnostic) are NOT private. Not counted in ε: the "
             "server-learning-rate searches (runs on the same clients' "
             "data; their validation examples are client data in the main runs). Every run is "
             "seeded (`--seed k`), so its noise is reproducible: experiments only, NOT private against anyone "
             "who knows the seed. docs/federated.md gives every design choice.", "",
             "## Verdict", "", f"**DR-Encoder vs DP-FedAvg:** {data['verdict']}.", "",
             f"**The non-private reference:** {data['cap']}.", "",
             f"**What the noise costs:** {data['noise_cost']}.", "",
             *[line for a in arms.values() if a.get("about") for line in (f"{a['label']}: {a['about']}", "")],
             "## Final held-out accuracy (SST-2 dev)", "",
             "| arm | seeds | final accuracy (mean ± sd) | per seed | ε (RDP) | ε (GDP approx.) | bytes / client / "
             "round | compression | reconstruction error (NOT covered) | s / round |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for arm, a in arms.items():
        eps = sorted(set(round(e, 4) for e in a["epsilon_rdp"] if e is not None))
        gdp = sorted(set(round(e, 4) for e in a["epsilon_gdp_approx"] if e is not None))
        per_seed = ", ".join(f"{x:.4f}" for x in a["final_accuracy"]) or "—"
        lines.append(
            f"| {a['label']}{'' if a['complete'] else ' (INCOMPLETE)'} | {a['seeds']} | {fmt_stats(a['final'])} | "
            f"{per_seed} | {_eps(a, eps)} | {', '.join(map(str, gdp)) or '—'} | "
            f"{fmt(a['bytes_per_client'])} | {fmt(a['compression_ratio'], 2)} | "
            f"{fmt(a['reconstruction_error_non_private'])} | {fmt(a['seconds_per_round'], 1)} |")
    lines += ["", "Reconstruction error: ‖decode(encode(Δ)) − Δ‖² / ‖Δ‖² over each sampled client's real factor "
              "update, averaged over clients and rounds (metrics_nonprivate.jsonl: computed from the clients' "
              "data without noise, outside the guarantee).", "", "## Paired differences (b − a, same seeds)", "",
              "| a | b | mean [95% t-interval] |", "|---|---|---|"]
    for c in data["paired"]:
        mark = "" if c["complete"] else f" (INCOMPLETE: fewer than {MIN_SEEDS} seeds; no conclusion)"
        lines.append(f"| {arms[c['a']]['label']} | {arms[c['b']]['label']} | {fmt_ci(c)}{mark} |")
    lines += ["", "## Accuracy per round (mean over seeds)", "", "![accuracy per round](federated_accuracy.png)", "",
              "| arm | " + " | ".join(f"round {t}" for t in _rounds(arms)) + " |",
              "|---|" + "---|" * len(_rounds(arms))]
    for arm, a in arms.items():
        cells = [fmt((a["accuracy_per_round"].get(str(t)) or {}).get("mean")) for t in _rounds(arms)]
        lines.append(f"| {a['label']} | " + " | ".join(cells) + " |")
    lines += ["", "## The server learning rate, chosen on a validation split", ""]
    for s in data["searches"]:
        why = f" Why its own: {s['why']}." if s["why"] else ""
        lines += [f"`{s['name']}`: arm `{s['arm']}`, seed {s['seed']}, flags `{' '.join(s['flags'])}`; rule: "
                  f"{s['rule']}. Used by: {', '.join(arms[a]['label'] for a in s['for'])}. Chosen: "
                  f"{s['chosen'] if s['chosen'] is not None else 'not yet'}.{why}",
                  "", f"| {s['variable']} | final validation accuracy |", "|---|---|"]
        lines += [f"| {v} | {fmt(acc)} |" for v, acc in s["validation_accuracy"].items()] + [""]
    lines += ["", "JSON twin: `federated.json`. Records: `reports/records/federated/`.", ""]
    return "\n".join(lines)


def _eps(arm: dict, values: list) -> str:
    """The RDP ε the arm's runs spent: '—' before any run, '∞ (not private)' for the reference."""
    if not arm["seeds"]:
        return "—"
    return ", ".join(map(str, values)) or "∞ (not private)"


def _rounds(arms: dict) -> list:
    return sorted({int(t) for a in arms.values() for t in a["accuracy_per_round"]})


def plot(data: dict, path: Path) -> Path | None:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for a in data["arms"].values():
        rounds = sorted(int(t) for t in a["accuracy_per_round"])
        if rounds:
            ax.plot(rounds, [a["accuracy_per_round"][str(t)]["mean"] for t in rounds], marker=".",
                    label=f"{a['label']} (n={a['final']['n']})")
    ax.set(title=f"SST-2 dev accuracy per round (mean over seeds), client-level ε = {data['epsilon']}", xlabel="round",
           ylabel="accuracy")
    ax.title.set_fontsize(9)
    if ax.lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(plan: dict, records: Path, reports: Path,
          command: str = "python -m scripts.study.federated_study --report-only") -> list:
    """Regenerate the report from ``records``; returns the paths written."""
    data = collect(plan, Path(records))
    reports.mkdir(parents=True, exist_ok=True)
    paths = [reports / "federated.json", reports / "README.md"]
    paths[0].write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    paths[1].write_text(markdown(data, command))
    png = plot(data, reports / "federated_accuracy.png")
    return paths + ([png] if png else [])
