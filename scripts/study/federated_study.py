"""The federated study of issue 41 (skeleton): every arm × seed as one `minidp federated` run, resumable.

    python -m scripts.study.federated_study --model DIR --data ../shared/data/glue            # the study (long)
    python -m scripts.study.federated_study --smoke --runs /tmp/fed_runs --records /tmp/fed_records   # tiny check

Arms (docs/federated.md): DP-FedAvg-LoRA, FedCG-style, DR-Encoder, DR-Encoder + RMT, DP-FedAvg + RMT, and
non-private FedAvg as the reference; ≥ 3 seeds each, all at the same client-level ε and the same C, K, q,
T, E. A run that finished has its record (config, metrics, summary) copied to RECORDS/<arm>/seed<k>/ and is
never run again; a run that did not finish (no summary.json) is started afresh with --overwrite. So the
script can be stopped at any instant and rerun: no finished run is lost. ``collect`` gathers the records
into RECORDS/results.json with an ``arms`` mapping {arm: {"seeds": [...], "final_accuracy": [...]}}.

The settings below are placeholders for the report's session to size (issue 41: MiniLM, LoRA r 4 on
query/value, mean pooling, client-level ε = 8, K chosen so that DP-FedAvg learns at all).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from minidp.cli import main as minidp_main

ROOT = Path(__file__).resolve().parents[2]

ARMS = {  # arm -> the flags that make it
    "dp_fedavg": ["--encoder", "none"],
    "fedcg": ["--encoder", "fedcg"],
    "dr_encoder": ["--encoder", "dr"],
    "dr_encoder_rmt": ["--encoder", "dr", "--denoise"],
    "dp_fedavg_rmt": ["--encoder", "none", "--denoise"],
    "nonprivate_fedavg": ["--encoder", "none", "--non-private"],
}
SEEDS = (0, 1, 2)
RECORD_FILES = ("config.json", "metrics.jsonl", "metrics_nonprivate.jsonl", "summary.json")

STUDY_SETTING = ["--task", "sst2", "--pooling", "mean", "--lora-rank", "4", "--lora-alpha", "8",
                 "--lora-targets", "query,value", "--max-length", "64", "--clients", "50", "--client-rate", "0.2",
                 "--rounds", "40", "--local-steps", "10", "--local-batch-size", "16", "--local-lr", "1e-3",
                 "--clip", "0.1", "--latent", "64", "--eval-every", "5", "--eval-limit", "872"]
PRIVATE_SETTING = ["--epsilon", "8"]
SMOKE_SETTING = ["--max-length", "16", "--clients", "6", "--client-rate", "0.5", "--rounds", "2",
                 "--local-steps", "2", "--local-batch-size", "8", "--local-lr", "0.01", "--lora-rank", "2",
                 "--latent", "4", "--ae-steps", "20", "--synthetic", "64", "--public-clients", "2"]


def arm_flags(arm: str, setting: list) -> list:
    flags = list(setting) + ARMS[arm]
    return flags if "--non-private" in ARMS[arm] else flags + PRIVATE_SETTING


def run_one(arm: str, seed: int, *, data_flags: list, setting: list, runs: Path, records: Path, log=print) -> bool:
    """Run arm × seed unless its record exists; True if it ran now."""
    record = records / arm / f"seed{seed}"
    if (record / "summary.json").exists():
        log(f"{arm} seed {seed}: recorded, skipped")
        return False
    out = runs / arm / f"seed{seed}"
    argv = ["federated", *data_flags, *arm_flags(arm, setting), "--seed", str(seed), "--out", str(out),
            "--overwrite", "--no-save-model", "--no-progress"]
    log(f"{arm} seed {seed}: minidp {' '.join(argv)}")
    code = minidp_main(argv)
    if code != 0 or not (out / "summary.json").exists():
        raise SystemExit(f"{arm} seed {seed}: minidp federated exited {code}")
    tmp = record.with_name(record.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in RECORD_FILES:
        shutil.copy2(out / name, tmp / name)
    tmp.rename(record)  # the record appears whole or not at all
    return True


def collect(records: Path) -> dict:
    """{"arms": {arm: {"seeds", "final_accuracy", "epsilon_rdp", "epsilon_gdp_approx", "bytes_per_client"}}}."""
    arms = {}
    for arm in ARMS:
        seeds, acc, eps, gdp, sent = [], [], [], [], []
        for record in sorted((records / arm).glob("seed*")):
            if not (record / "summary.json").exists():
                continue
            summary = json.loads((record / "summary.json").read_text())
            seeds.append(int(record.name[4:]))
            acc.append(summary["final_eval"]["accuracy"])
            eps.append(summary["privacy"]["epsilon_rdp"])
            gdp.append(summary["privacy"]["epsilon_gdp_approx"])
            sent.append(summary["bytes_per_client"])
        if seeds:
            arms[arm] = {"seeds": seeds, "final_accuracy": acc, "epsilon_rdp": eps, "epsilon_gdp_approx": gdp,
                         "bytes_per_client": sent}
    result = {"arms": arms}
    (records / "results.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint directory (the study: MiniLM)")
    parser.add_argument("--data", help="GLUE folder")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "federated"), help="where runs are written")
    parser.add_argument("--records", default=str(ROOT / "reports" / "records" / "federated"),
                        help="where finished runs' records are kept")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="comma-separated seeds")
    parser.add_argument("--smoke", action="store_true", help="the tiny random BERT and 2 rounds (a check)")
    args = parser.parse_args(argv)
    runs, records = Path(args.runs), Path(args.records)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; arms: {list(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:
            from tests.fixtures import write_tiny_bert, write_tiny_tsv  # noqa: PLC0415 (test assets, smoke only)

            write_tiny_bert(Path(tmp) / "model")
            data_flags = ["--model", str(Path(tmp) / "model"),
                          "--train-file", str(write_tiny_tsv(Path(tmp) / "train.tsv", 120, seed=0)),
                          "--eval-file", str(write_tiny_tsv(Path(tmp) / "dev.tsv", 40, seed=1))]
            setting = SMOKE_SETTING
        else:
            if not args.model or not args.data:
                parser.error("--model and --data are required (or --smoke)")
            data_flags, setting = ["--model", args.model, "--data", args.data], STUDY_SETTING
        for seed in seeds:  # seed-major: every arm gets seed 0 before any arm gets seed 1
            for arm in arms:
                run_one(arm, seed, data_flags=data_flags, setting=setting, runs=runs, records=records)
    print(json.dumps(collect(records)["arms"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
