"""scripts/study/demo_draws.py: draw seeds, the majority rate, the above-majority test and the report (no training)."""
from __future__ import annotations

import json

import pytest
from scripts.study import demo_draws as dd



def report(k, base_ci, rmt_ci):
    arm = lambda ci: {"accuracy": sum(ci) / 2, "accuracy_95ci": list(ci), "held_out_examples": 1000,
                      "epsilon": 7.99, "steps": 15, "denoise_kept_total": 3}
    return {"draw": k, "seed": 2 * k, "baseline": arm(base_ci), "rmt": arm(rmt_ci), "wall_seconds": 300.0,
            "cpu_seconds": 590.0}


def test_draw_seeds_never_share_an_arm_seed():
    arm_seeds = [dd.draw_seed(k) + a for k in range(10) for a in range(2)]
    assert len(set(arm_seeds)) == len(arm_seeds)


def test_the_majority_rate_is_the_commonest_labels_share():
    assert dd.majority_rate([0, 1, 1, 1]) == 0.75
    assert dd.majority_rate([1, 0]) == 0.5


def test_one_arm_at_the_majority_rate_fails_the_claim():
    clear = dd.summarize([report(0, (0.80, 0.85), (0.79, 0.84)), report(1, (0.78, 0.83), (0.76, 0.81))], 0.70)
    assert clear["every_arm_above_majority_on_every_draw"]
    assert clear["per_arm"]["rmt"]["min"] == pytest.approx(0.785)
    assert [r["seed"] for r in clear["rows"]] == [0, 1, 2, 3]
    at_majority = dd.summarize([report(0, (0.80, 0.85), (0.70, 0.75))], 0.70)
    assert not at_majority["every_arm_above_majority_on_every_draw"]
    assert [r["above_majority"] for r in at_majority["rows"]] == [True, False]


def test_the_report_names_every_row_and_the_verdict():
    summary = dd.summarize([report(0, (0.80, 0.85), (0.65, 0.72))], 0.70)
    text = dd.markdown(summary, {"machine": "x86_64, 2 cores", "load": "idle", "command": "python scripts/x"})
    assert "| 0 | rmt | 0.6850 | 0.650–0.720 | **no** |" in text
    assert "NOT every arm of every draw" in text and "load: idle" in text


def test_a_finished_draw_is_read_back_not_rerun(tmp_path):
    (tmp_path / "draw3").mkdir()
    (tmp_path / "draw3" / "report.json").write_text(json.dumps(report(3, (0.8, 0.85), (0.8, 0.85))))
    assert dd.run_draw(3, tmp_path)["draw"] == 3  # would start a demo (and fail here) if it reran
