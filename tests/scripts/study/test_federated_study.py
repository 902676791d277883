"""scripts/study/federated_study.py: a smoke run of two arms on the tiny BERT, resumable, and the collected arms."""
from __future__ import annotations

import json

from scripts.study import federated_study as study



def test_arms_are_the_issues():
    assert set(study.ARMS) == {"dp_fedavg", "fedcg", "dr_encoder", "dr_encoder_rmt", "dp_fedavg_rmt",
                               "nonprivate_fedavg"}
    assert len(study.SEEDS) >= 3
    assert "--epsilon" not in study.arm_flags("nonprivate_fedavg", study.STUDY_SETTING)
    assert "--epsilon" in study.arm_flags("dr_encoder_rmt", study.STUDY_SETTING)


def test_smoke_is_resumable(tmp_path, capsys):
    argv = ["--smoke", "--runs", str(tmp_path / "runs"), "--records", str(tmp_path / "records"),
            "--arms", "dp_fedavg,dr_encoder_rmt", "--seeds", "0"]
    assert study.main(argv) == 0
    results = json.loads((tmp_path / "records" / "results.json").read_text())
    assert set(results["arms"]) == {"dp_fedavg", "dr_encoder_rmt"}
    assert results["arms"]["dp_fedavg"]["seeds"] == [0]
    assert 0.0 <= results["arms"]["dr_encoder_rmt"]["final_accuracy"][0] <= 1.0
    summary = tmp_path / "records" / "dp_fedavg" / "seed0" / "summary.json"
    written = summary.stat().st_mtime_ns
    capsys.readouterr()
    assert study.main(argv) == 0  # everything recorded: nothing runs again
    assert capsys.readouterr().out.count("recorded, skipped") == 2
    assert summary.stat().st_mtime_ns == written
