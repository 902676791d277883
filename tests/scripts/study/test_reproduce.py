"""scripts/reproduce.py on the tiny random BERT: it runs the plan in order, skips finished runs, resumes a
partial one, restarts one without a checkpoint, and writes the report JSON with the required keys."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scripts.study import reproduce
from tests.fixtures import write_tiny_bert, write_tiny_tsv

PLANS = Path(reproduce.__file__).parent  # scripts/study: the plans beside the study code
REQUIRED = {"task", "model", "epsilon", "seeds", "batch_size", "steps_to_90", "steps_to_95", "accuracy_at",
            "final_accuracy", "command"}


def tiny_plan(tmp: Path) -> Path:
    model = write_tiny_bert(tmp / "model")
    train = write_tiny_tsv(tmp / "train.tsv", 64, seed=1)
    dev = write_tiny_tsv(tmp / "dev.tsv", 24, seed=2)
    plan = {
        "variables": {"model": str(model), "train": str(train), "dev": str(dev), "steps": 2, "accountant": "rdp"},
        "common": ["--model", "{model}", "--max-length", "16", "--batch-size", "8", "--max-physical-batch", "8",
                   "--clip", "1.0", "--eval-every", "1", "--checkpoint-every", "1", "--diagnostics",
                   "--no-save-model", "--no-progress"],
        "lr_search": {"setting": "val", "arm": "baseline", "lrs": [0.001, 0.01], "seed": 0},
        "settings": {
            "val": {"task": "sst2", "epsilon": 3, "flags": ["--task", "sst2", "--train-file", "{train}",
                                                             "--eval-fraction", "0.25", "--epsilon", "3",
                                                             "--steps", "{steps}"]},
            "tiny_eps3": {"task": "sst2", "epsilon": 3, "flags": ["--task", "sst2", "--train-file", "{train}",
                                                                   "--eval-file", "{dev}", "--epsilon", "3",
                                                                   "--steps", "{steps}", "--lr", "{lr}"]}},
        "arms": {"baseline": {"flags": ["--denoise", "none"], "role": "baseline"},
                 "rmt": {"flags": ["--denoise", "rmt", "--kappa", "1.02", "--norm-correction", "noisy"],
                         "role": "denoised"},
                 "peer": {"runner": "opacus", "flags": [], "role": "peer"}},
        "phases": [{"name": "main", "settings": ["tiny_eps3"], "arms": ["baseline", "rmt"], "seeds": [0]}],
    }
    path = tmp / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def ledger(runs: Path) -> list[dict]:
    return [json.loads(line) for line in (runs / "ledger.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    plan, runs, reports = tiny_plan(tmp), tmp / "runs", tmp / "reports"
    argv = ["--runs-dir", str(runs), "--plan", str(plan), "--reports", str(reports)]
    assert reproduce.main(argv) == 0
    return reproduce, argv, runs, reports


def test_runs_in_order_and_finishes(study):
    _, _, runs, _ = study
    rows = ledger(runs)
    assert [r["run"] for r in rows] == ["val/baseline_lr0.001/seed0", "val/baseline_lr0.01/seed0",
                                        "tiny_eps3/baseline/seed0", "tiny_eps3/rmt/seed0"]
    assert all(r["rc"] == 0 and r["finished"] and r["action"] == "fresh" for r in rows)
    config = json.loads((runs / "tiny_eps3" / "rmt" / "seed0" / "config.json").read_text())
    assert config["run"]["seed"] == 0 and config["denoise"]["kappa"] == 1.02
    lr = json.loads((runs / "tiny_eps3" / "baseline" / "seed0" / "config.json").read_text())["optim"]["lr"]
    assert lr in (0.001, 0.01)  # the searched value, filled into {lr}


def test_report_json_keys(study):
    _, _, _, reports = study
    data = json.loads((reports / "study_tiny_eps3.json").read_text())
    assert REQUIRED <= set(data)
    assert set(data["final_accuracy"]) >= {"baseline", "denoised"}
    assert len(data["final_accuracy"]["baseline"]) == 1 and data["incomplete"] is True  # 1 seed < 3
    assert "INCOMPLETE" in (reports / "README.md").read_text()
    assert "reproduce.py" in data["command"]
    for name in ("study_tiny_eps3.md", "study_tiny_eps3.png", "study_lr.md", "study_lr.json"):
        assert (reports / name).exists(), name
    assert not (reports / "study_ablations.json").exists()  # a plan without ablation arms has no such report
    lr = json.loads((reports / "study_lr.json").read_text())
    assert lr["lr"] in (0.001, 0.01) and len(lr["runs"]) == 2


def test_skips_resumes_and_restarts(study):
    reproduce, argv, runs, reports = study
    n = len(ledger(runs))
    assert reproduce.main(argv) == 0
    assert len(ledger(runs)) == n  # everything finished: nothing ran
    # a run killed after a checkpoint (summary missing, checkpoint present) is resumed
    (runs / "tiny_eps3" / "rmt" / "seed0" / "summary.json").unlink()
    # a run that died before its first checkpoint is started again with --overwrite
    partial = runs / "tiny_eps3" / "baseline" / "seed0"
    for folder in partial.glob("checkpoint*"):  # checkpoint/, checkpoint.prev/, ...
        shutil.rmtree(folder)
    (partial / "summary.json").unlink()
    assert reproduce.main(argv) == 0
    new = ledger(runs)[n:]
    actions = {r["run"]: r["action"] for r in new}
    assert actions == {"tiny_eps3/baseline/seed0": "overwrite", "tiny_eps3/rmt/seed0": "resume"}
    assert all(r["rc"] == 0 and r["finished"] for r in new)


def test_report_only_and_dry_run(study, capsys):
    reproduce, argv, runs, reports = study
    (reports / "README.md").unlink()
    n = len(ledger(runs))
    assert reproduce.main(argv + ["--report-only"]) == 0
    assert (reports / "README.md").exists() and len(ledger(runs)) == n
    assert reproduce.main(argv + ["--dry-run"]) == 0
    assert "finished" in capsys.readouterr().out


def test_search_floor_blocks_later_runs(tmp_path):
    """A search whose best candidate stays under min_accuracy chooses nothing: the later runs keep waiting."""
    plan = {"variables": {"steps": 2}, "common": [], "lr_search": {"setting": "v", "arm": "b", "seed": 0,
                                                                  "candidates": [{"lr": 0.1}, {"lr": 0.2, "steps": 9,
                                                                                               "tag": "long"}]},
            "settings": {"v": {"task": "sst2", "epsilon": 3, "flags": ["--steps", "{steps}"]},
                         "s": {"task": "sst2", "epsilon": 3, "flags": ["--lr", "{lr}", "--steps", "{steps}"]}},
            "arms": {"b": {"flags": []}}, "phases": [{"name": "p", "settings": ["s"], "arms": ["b"], "seeds": [0]}]}
    for spec, acc in zip(reproduce.lr_search_runs(plan, tmp_path), (0.55, 0.58)):
        spec.path.mkdir(parents=True)
        (spec.path / "summary.json").write_text(json.dumps({"final_eval": {"accuracy": acc}}))
    chosen, record = reproduce.chosen_lr(plan, tmp_path)
    assert chosen == {"lr": 0.2, "steps": 9} and record["chosen_label"] == "long_lr0.2"
    main = reproduce.planned_runs(plan, tmp_path, chosen)[-1]
    assert main.flags == ["--lr", "0.2", "--steps", "9"] and not reproduce.unresolved(main)
    plan["lr_search"]["min_accuracy"] = 0.6
    chosen, record = reproduce.chosen_lr(plan, tmp_path)
    assert chosen is None and "0.58" in record["blocked"]
    assert reproduce.unresolved(reproduce.planned_runs(plan, tmp_path, chosen)[-1])


def test_an_arm_with_its_own_search_waits_for_it_and_takes_its_lr(tmp_path):
    """Per-arm learning rates. An arm named in "arm_searches" gets its own search runs (just before
    its first run), its runs wait until that search is done and then take its winner; "same_as" shares one;
    the arms without a search keep the shared winner and the same paths and flags as before."""
    path = tiny_plan(tmp_path)
    plan = json.loads(path.read_text())
    before = {r.name: r.flags for r in reproduce.planned_runs(reproduce.load_plan(path, []), tmp_path / "runs",
                                                                   {"lr": 0.01})}
    plan["arms"]["lora"] = {"flags": ["--trainable", "lora", "--lora-rank", "2", "--denoise", "none"]}
    plan["arms"]["lora_rmt"] = {"flags": ["--trainable", "lora", "--lora-rank", "2", "--denoise", "rmt"]}
    plan["arm_searches"] = {"lora": {"setting": "val", "seed": 0, "lrs": [0.003, 0.03]},
                            "lora_rmt": {"same_as": "lora"}}
    plan["phases"].append({"name": "lora", "settings": ["tiny_eps3"], "arms": ["lora", "lora_rmt"], "seeds": [0]})
    path.write_text(json.dumps(plan))
    runs_dir = tmp_path / "runs"
    loaded = reproduce.load_plan(path, [])
    runs = reproduce.planned_runs(loaded, runs_dir, {"lr": 0.01})
    names = [r.name for r in runs]
    assert {n: r.flags for n, r in zip(names, runs) if n in before} == before  # old runs unchanged
    assert names[-4:] == ["val/lora_lr0.003/seed0", "val/lora_lr0.03/seed0", "tiny_eps3/lora/seed0",
                          "tiny_eps3/lora_rmt/seed0"]
    search = runs[-4]
    assert search.phase == "lr_search" and search.flags[-2:] == ["--lr", "0.003"]
    assert reproduce.unresolved(runs[-2]) and reproduce.unresolved(runs[-1])  # waiting: {lr} still open
    for lr, accuracy in ((0.003, 0.7), (0.03, 0.8)):  # the search finishes: 0.03 wins
        run_dir = runs_dir / "val" / f"lora_lr{lr:g}" / "seed0"
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps({"final_eval": {"accuracy": accuracy}}))
    runs = reproduce.planned_runs(loaded, runs_dir, {"lr": 0.01})
    lora, lora_rmt = runs[-2], runs[-1]
    assert not reproduce.unresolved(lora) and lora.flags[lora.flags.index("--lr") + 1] == "0.03"
    assert lora_rmt.flags[lora_rmt.flags.index("--lr") + 1] == "0.03"  # same_as: the lora arm's choice
    record = reproduce.search_record(loaded, runs_dir)
    assert record["arms"]["lora"]["lr"] == 0.03 and record["arms"]["lora_rmt"]["same_as"] == "lora"


def test_seed_and_arm_filters_run_only_those(tmp_path):
    """--seed K / --arm A: a second study process can take some seeds or arms of a phase (a plan with its lr
    pinned, no search)."""
    plan = json.loads(tiny_plan(tmp_path).read_text())
    del plan["lr_search"]
    plan["variables"]["lr"] = 0.01
    plan["phases"] = [{"name": "main", "settings": ["tiny_eps3"], "arms": ["baseline"], "seeds": [0, 1]}]
    (tmp_path / "pinned.json").write_text(json.dumps(plan))
    runs = tmp_path / "runs"
    assert reproduce.main(["--runs-dir", str(runs), "--plan", str(tmp_path / "pinned.json"), "--reports",
                           str(tmp_path / "reports"), "--seed", "1"]) == 0
    assert (runs / "tiny_eps3/baseline/seed1/summary.json").exists()
    assert not (runs / "tiny_eps3/baseline/seed0").exists()
    plan["phases"][0]["arms"] = ["baseline", "rmt"]
    (tmp_path / "pinned.json").write_text(json.dumps(plan))
    assert reproduce.main(["--runs-dir", str(runs), "--plan", str(tmp_path / "pinned.json"), "--reports",
                           str(tmp_path / "reports"), "--seed", "1", "--arm", "rmt"]) == 0  # --arm likewise
    assert (runs / "tiny_eps3/rmt/seed1/summary.json").exists()
    assert not (runs / "tiny_eps3/rmt/seed0").exists() and not (runs / "tiny_eps3/baseline/seed0").exists()

    # the records of the finished runs, without checkpoints, regenerate the same reports elsewhere
    records = tmp_path / "records"
    assert reproduce.main(["--runs-dir", str(runs), "--plan", str(tmp_path / "pinned.json"),
                           "--save-records", str(records)]) == 0
    assert sorted(p.parent.name for p in records.glob("*/*/*/summary.json")) == ["seed1", "seed1"]
    assert not list(records.rglob("checkpoint*")) and (records / "ledger.jsonl").exists()
    for source, out in ((runs, "from_runs"), (records, "from_records")):
        assert reproduce.main(["--runs-dir", str(source), "--plan", str(tmp_path / "pinned.json"), "--reports",
                               str(tmp_path / out), "--report-only"]) == 0
    a = json.loads((tmp_path / "from_runs/study_tiny_eps3.json").read_text())
    b = json.loads((tmp_path / "from_records/study_tiny_eps3.json").read_text())
    for key in ("final_accuracy", "accuracy_at", "step_seconds", "wall_seconds", "seeds"):
        assert a[key] == b[key], key


def test_a_plan_can_extend_another(tmp_path):
    """"extends": the base plan with the child's keys on top (variables merged, caveats_more appended, null removes)."""
    (tmp_path / "base.json").write_text(json.dumps({"variables": {"a": 1, "b": 2}, "caveats": ["x"], "lr_search": {},
                                                    "phases": [1]}))
    (tmp_path / "child.json").write_text(json.dumps({"extends": "base.json", "variables": {"b": 3},
                                                     "caveats_more": ["y"], "lr_search": None, "phases": [2]}))
    assert reproduce.read_plan(tmp_path / "child.json") == {"variables": {"a": 1, "b": 3}, "caveats": ["x", "y"],
                                                            "phases": [2]}


def test_arm_filter_splits_the_arms_own_searches(tmp_path):
    """--arm / --phase: a process runs an arm's own search only when a run that waits on it passes its filters
    (and always the shared search), so two processes on two cores do not both run every search, and a
    process given other phases runs none of them; "same_as" arms pull in the search they copy."""
    path = tiny_plan(tmp_path)
    plan = json.loads(path.read_text())
    plan["arms"]["lora"] = {"flags": ["--trainable", "lora", "--lora-rank", "2", "--denoise", "none"]}
    plan["arms"]["lora_rmt"] = {"flags": ["--trainable", "lora", "--lora-rank", "2", "--denoise", "rmt"]}
    plan["arms"]["ft"] = {"flags": ["--trainable", "all", "--denoise", "none"]}
    plan["arm_searches"] = {"lora": {"setting": "val", "seed": 0, "lrs": [0.003, 0.03]},
                            "lora_rmt": {"same_as": "lora"}, "ft": {"setting": "val", "seed": 0, "lrs": [0.01]}}
    plan["phases"].append({"name": "cmp", "settings": ["tiny_eps3"], "arms": ["lora", "lora_rmt", "ft"],
                           "seeds": [0]})
    path.write_text(json.dumps(plan))
    runs = reproduce.planned_runs(reproduce.load_plan(path, []), tmp_path / "runs", None)

    def chosen(*argv):
        args = reproduce.parse_args(["--runs-dir", str(tmp_path / "runs"), *argv])
        return {r.name for r in runs if reproduce.selected(r, args, runs)}

    shared = {"val/baseline_lr0.001/seed0", "val/baseline_lr0.01/seed0"}
    lora_search = {"val/lora_lr0.003/seed0", "val/lora_lr0.03/seed0"}
    assert chosen("--arm", "lora") == shared | lora_search | {"tiny_eps3/lora/seed0"}
    assert chosen("--arm", "lora_rmt") == shared | lora_search | {"tiny_eps3/lora_rmt/seed0"}  # same_as
    assert chosen("--arm", "ft") == shared | {"val/ft_lr0.01/seed0", "tiny_eps3/ft/seed0"}
    assert chosen("--phase", "main") == shared | {"tiny_eps3/baseline/seed0", "tiny_eps3/rmt/seed0"}
    assert chosen() == {r.name for r in runs}


def test_an_arm_can_drop_a_setting_flag(tmp_path):
    """"drop_setting_flags": the non-private arm runs in a DP setting without its --epsilon (the CLI refuses a
    budget with --non-private), the flag's value going with it; the other arms keep it, and its meta says ε None."""
    path = tiny_plan(tmp_path)
    plan = json.loads(path.read_text())
    plan["arms"]["np"] = {"flags": ["--non-private", "--denoise", "none"], "role": "nonprivate",
                          "drop_setting_flags": ["--epsilon"]}
    plan["phases"][0]["arms"].append("np")
    path.write_text(json.dumps(plan))
    runs = {r.arm: r for r in reproduce.planned_runs(reproduce.load_plan(path, []), tmp_path / "runs", {"lr": 0.01})
            if r.phase == "main"}
    assert "--epsilon" not in runs["np"].flags and "--non-private" in runs["np"].flags
    assert runs["np"].flags[runs["np"].flags.index("--steps") + 1] == "2"  # the flag after the dropped value stays
    assert runs["baseline"].flags[runs["baseline"].flags.index("--epsilon") + 1] == "3"
    assert runs["np"].meta["epsilon"] is None and runs["baseline"].meta["epsilon"] == 3
    assert reproduce.setting_flags({"flags": ["--a", "--epsilon", "--b", "1"]}, {"drop_setting_flags": ["--epsilon"]}) \
        == ["--a", "--b", "1"]  # a dropped switch without a value takes nothing else


def test_the_3epoch_plan_gives_its_nonprivate_arm_no_budget(tmp_path):
    """scripts/study_plan_3epoch.json: every non-private run (its search and its full runs) parses as a
    non-private TrainConfig, and every DP run still has its budget."""
    from minidp.commands.train import config_from_args
    from minidp.cli import build_parser

    plan = reproduce.load_plan(PLANS / "study_plan_3epoch.json", ["glue=/data/glue", "model=/m"])
    runs = reproduce.planned_runs(plan, tmp_path, {"lr": 0.001})
    for spec in runs:
        flags = [f.replace("{lr}", "0.001") for f in spec.flags]
        args = build_parser().parse_args(["train", *flags, "--seed", "0", "--out", str(tmp_path / "x")])
        privacy = config_from_args(args).privacy
        if spec.arm.startswith("nonprivate"):
            assert privacy.non_private and privacy.epsilon is None and privacy.noise_multiplier is None
        else:
            assert not privacy.non_private and (privacy.epsilon is not None or privacy.noise_multiplier is not None)


def test_a_real_window_runs_two_at_once_and_keeps_each_finished_run_in_the_records(tmp_path):
    """--records/--jobs 2 with real `minidp train` children on the tiny BERT: every run lands in the records with
    its own CPU time and the reports come from the records alone; a second window on a fresh runs directory has
    nothing left to do."""
    plan = tiny_plan(tmp_path)
    records, reports = tmp_path / "records", tmp_path / "reports"
    argv = ["--plan", str(plan), "--records", str(records), "--reports", str(reports), "--jobs", "2"]
    assert reproduce.main(["--runs-dir", str(tmp_path / "runs1")] + argv) == 0
    rows = ledger(records)
    assert len(rows) == 4 and all(r["finished"] and r["jobs"] == 2 and r["cpu_seconds"] > 0 for r in rows)
    for row in rows:
        assert (records / row["run"] / "summary.json").exists() and (records / row["run"] / "metrics.jsonl").exists()
        assert not (records / row["run"] / "checkpoint").exists()  # records only, never checkpoints
    assert json.loads((reports / "study_tiny_eps3.json").read_text())["command"].endswith(
        f"--runs-dir {records} --plan {plan} --reports {reports}")
    assert reproduce.main(["--runs-dir", str(tmp_path / "runs2")] + argv) == 0
    assert len(ledger(records)) == 4  # nothing run again
