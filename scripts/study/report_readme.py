"""README.md of a reports folder: the findings in plain words, from the numbers of the other reports only
(and an archive's, and the regime maps')."""
from __future__ import annotations

import json
from pathlib import Path

from scripts.study import paper_table
from scripts.study._report_runs import fmt, fmt_ci, fmt_signed, fmt_stats, PEER_ARMS, PLAN_ARM, REPORT_KEY
from scripts.study.report_ablations import has_ablations
from scripts.study.report_setting import identical_words


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



LORA_ROLE = "lora_comparison"  # the plan role of the DP-LoRA comparison's arms



def lora_finding(r: dict) -> str:
    """The DP-LoRA comparison in one line per setting: each arm's final accuracy, trainable parameters, s/step and lr, and its
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
    for link, md in paper or []:  # the 3-epoch study's table first: the study where the paper makes its claim
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
    if arm_searches:  # the DP-LoRA comparison's arms search their own learning rates on the same validation split
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
    lines += cost_table(cost.get("per_arm") or [])
    return "\n".join(lines)


def cost_table(per_arm: list[dict]) -> list[str]:
    """The finished runs' seconds per step by setting and arm (study_report.cost_per_arm), with the load the
    machine carried: wall time well above CPU time means the run shared its core."""
    if not per_arm:
        return []
    out = ["Seconds per step of the finished runs (every attempt's seconds over their steps; each run one BLAS "
           "thread; load = the 1-minute load average at the attempts' starts and ends, on 2 cores):", "",
           "| setting | arm | runs (attempts) | CPU s/step | wall s/step | wall / CPU | load |",
           "|---|---|---|---|---|---|---|"]
    for c in per_arm:
        load = f"{c['load'][0]:.1f}-{c['load'][1]:.1f}" if c["load"] else "—"
        ratio = f"{c['wall_s_per_step'] / c['cpu_s_per_step']:.2f}" if c["cpu_s_per_step"] else "—"  # 0: unmeasured
        out.append(f"| {c['setting']} | {c['arm']} | {c['runs']} ({c['attempts']}) | {c['cpu_s_per_step']:.1f} | "
                   f"{c['wall_s_per_step']:.1f} | {ratio} | {load} |")
    return out + [""]



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
