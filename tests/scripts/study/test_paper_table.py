"""scripts/study/paper_table.py: the paper-format table on synthetic runs (no training)."""
from __future__ import annotations

import pytest
from scipy import stats

from scripts.study import _study_stats
from scripts.study import paper_table as pt



def run(setting, arm, role, seed, curve):
    return {"name": f"{setting}/{arm}/seed{seed}", "setting": setting, "arm": arm, "role": role, "seed": seed,
            "finished": True, "summary": {"steps": max(curve)}, "curve": curve, "final_accuracy": curve[max(curve)]}


PLAN = {"settings": {"e3": {"task": "sst2", "epsilon": 3}, "e8": {"task": "sst2", "epsilon": 8},
                     "q8": {"task": "qnli", "epsilon": 8}},
        "paper_table": {"baseline": "ft", "published": [{"id": "P", "source": "S", "model": "M", "method": "DP",
                                                         "epsilon": 3, "task": "sst2", "split": "dev",
                                                         "accuracy": 0.7}]}}


def curves(start):
    """Eval every 10 to a 198-step final, rising from ``start``."""
    c = {s: start + 0.001 * s for s in range(10, 191, 10)}
    c[198] = start + 0.001 * 198
    return c


def study():
    runs = []
    for seed in range(3):
        runs.append(run("e3", "nonprivate", "nonprivate", seed, curves(0.60 + 0.01 * seed)))
        runs.append(run("e3", "ft", "baseline", seed, curves(0.50 + 0.03 * seed)))
        runs.append(run("e3", "rmt", "denoised", seed, curves(0.52 + 0.03 * seed)))
        runs.append(run("e8", "ft", "baseline", seed, curves(0.55)))
    return runs


def test_read_at_takes_the_last_evaluation_at_or_before():
    c = {10: 0.5, 20: 0.6, 30: 0.7, 198: 0.9}
    assert pt.read_at(c, 25) == (20, 0.6) and pt.read_at(c, 200) == (198, 0.9) and pt.read_at(c, 5) == (None, None)


def test_setting_numbers():
    t = pt.paper_table(PLAN, study())
    assert list(t["settings"]) == ["e3", "e8"]  # q8 has no run
    e3 = t["settings"]["e3"]
    assert e3["incomplete"] is False and e3["nonprivate_from"] == "e3"
    np_peak = 0.61 + 0.001 * 198  # the non-private mean final accuracy over seeds (0.60, 0.61, 0.62) + 0.198
    assert e3["nonprivate_final"]["mean"] == pytest.approx(np_peak) and e3["nonprivate_final"]["n"] == 3
    ft = e3["arms"]["ft"]
    assert ft["at"]["25"]["read_steps"] == [20] and ft["at"]["25"]["mean"] == pytest.approx(0.53 + 0.02)
    assert ft["at"]["200"]["read_steps"] == [198]
    assert ft["percent_of_nonprivate"] == pytest.approx(100 * (0.53 + 0.198) / (0.61 + 0.198))
    # 90% of the NP mean final: the first step with 0.50 + 0.03 seed + 0.001 step >= 0.9 * peak (seed 0 never)
    want = [next((k for k in sorted(curves(0.50 + 0.03 * s)) if curves(0.50 + 0.03 * s)[k] >= 0.9 * np_peak), None)
            for s in range(3)]
    assert ft["steps_to_90_nonprivate"] == want and want[0] is None and want[2] is not None
    rmt = e3["arms"]["rmt"]
    assert rmt["paired_vs_baseline"]["mean"] == pytest.approx(0.02)
    assert rmt["wins"]["50"] == {"wins": 3, "seeds": 3}
    assert rmt["paired_at"]["50"]["mean"] == pytest.approx(0.02) and rmt["paired_at"]["50"]["seeds"] == [0, 1, 2]
    assert ft["paired_at"] == {}
    assert "- `rmt`: at 10: " in pt.markdown(pt.paper_table(PLAN, study()))
    assert ft["paired_vs_baseline"] is None and e3["arms"]["nonprivate"]["paired_vs_baseline"] is None
    assert e3["best_dp_arm"] == "rmt" and e3["gap_to_nonprivate"] == pytest.approx(np_peak - (0.55 + 0.198))
    assert ft["at"]["10"]["read_steps"] == [10]  # the step-10 column
    # steps to 90% of the published 0.7 (0.63): seed 0 of ft (0.50 + 0.001 step) at step 130
    assert ft["steps_to_published"]["P"]["90"][0] == 130 and e3["published"] == ["P"]
    assert "| arm | P (0.700) |" in pt.markdown(t)


def test_an_optional_arm_is_shown_but_left_out_of_completeness():
    plan = {**PLAN, "optional_arms": {"e3": ["noisy"]}}
    runs = study() + [run("e3", "noisy", "denoised", 0, curves(0.9))]  # one seed only, and the best final
    e3 = pt.paper_table(plan, runs)["settings"]["e3"]
    assert e3["incomplete"] is False and e3["optional_arms"] == ["noisy"] and e3["arms"]["noisy"]["optional"]
    assert e3["best_dp_arm"] == "rmt"  # an optional arm is not the headline
    assert "| noisy (optional) | 1 |" in pt.markdown(pt.paper_table(plan, runs))
    assert pt.paper_table(PLAN, runs)["settings"]["e3"]["incomplete"] is True  # not optional: 1 seed < 3


def test_the_confirmatory_test_is_paired_one_sided_and_reported_either_way():
    plan = {**PLAN, "confirmatory": {"declared": "d", "hypothesis": "h", "arms": ["rmt", "ft"], "step": 10,
                                     "found_in": "e3", "how_found": "scan", "settings": ["e8"]}}
    runs = study()
    for seed, gain in enumerate((-0.01, 0.0, 0.005)):  # e8: rmt behind on average at step 10
        c = curves(0.55)
        c[10] += gain
        runs.append(run("e8", "rmt", "denoised", seed, c))
    conf = pt.paper_table(plan, runs)["confirmatory"]
    found = conf["exploratory"]  # e3: rmt = ft + 0.02 on every seed (no spread: no t)
    assert found["n"] == 3 and found["mean"] == pytest.approx(0.02) and found["p_one_sided"] is None
    test = conf["tests"]["e8"]
    assert test["n"] == 3 and test["mean"] == pytest.approx(-0.005 / 3) and test["p_one_sided"] > 0.5
    assert test["result"].startswith("not confirmed")
    md = pt.markdown(pt.paper_table(plan, runs))
    assert "## The confirmatory test (declared d)" in md and "- `e8`: n = 3 paired seeds" in md
    few = pt.paper_table(plan, [r for r in runs if not (r["setting"] == "e8" and r["seed"] == 2)])
    assert few["confirmatory"]["tests"]["e8"]["result"].startswith("not yet tested (2 of 3")


def test_one_sided_matches_scipy():
    a, b = {0: 0.5, 1: 0.6, 2: 0.55, 3: 0.52}, {0: 0.53, 1: 0.61, 2: 0.58, 3: 0.52}
    got = _study_stats.one_sided(a, b)
    want = stats.ttest_rel([b[s] for s in range(4)], [a[s] for s in range(4)], alternative="greater")
    assert got["t"] == pytest.approx(want.statistic) and got["p_one_sided"] == pytest.approx(want.pvalue)


def test_a_setting_without_nonprivate_runs_reads_another_of_the_same_task():
    e8 = pt.paper_table(PLAN, study())["settings"]["e8"]
    assert e8["nonprivate_from"] == "e3" and e8["arms"]["nonprivate"]["seeds"] == [0, 1, 2]
    assert e8["incomplete"] is False  # 3 seeds of ft, 3 of the borrowed reference
    md = pt.markdown(pt.paper_table(PLAN, study()))
    assert "Non-private reference: the runs of setting `e3`" in md


def test_incomplete_and_verdicts():
    runs = [r for r in study() if not (r["arm"] == "rmt" and r["seed"] == 2)]
    t = pt.paper_table(PLAN, runs)
    assert t["settings"]["e3"]["incomplete"] is True
    assert pt.verdict(t["settings"]["e3"]["arms"]["rmt"]["paired_vs_baseline"], 3).startswith("no conclusion")
    assert pt.verdict({"seeds": [0, 1, 2], "mean": 0.02, "ci95": [0.01, 0.03]}, 3) == "helps"
    assert pt.verdict({"seeds": [0, 1, 2], "mean": -0.02, "ci95": [-0.03, -0.01]}, 3) == "hurts"
    assert pt.verdict({"seeds": [0, 1, 2], "mean": 0.0, "ci95": [-0.01, 0.01]}, 3).startswith("does nothing")
    md = pt.markdown(t)
    assert "INCOMPLETE" in md and "| rmt | 2 |" in md and "nonprivate (NOT PRIVATE)" in md
    assert "Columns read: 25 → step 20; 200 → step 198." in md
    assert "## Published figures" in md and "| P | S | M | DP | 3 | — | sst2 (dev) |  | 0.7 |" in md
