"""What a client's update looks like at the initial adapter, for choosing the federated comparison's local
optimizer and clip norm: norms, the classifier's share of the squared norm, and the pairwise cosine between
clients, for local Adam and local SGD. Noise-free statistics of training data: NOT private (a design aid).

    python -m scripts.study.federated_update_stats --model MINILM_DIR --data ../shared/data/glue \\
        --out reports/federated/update_stats.json

The setting is the plan's (scripts/study/federated_plan.json: K clients, E local steps of b examples); the first
``--clients`` shards each run one local update from the same initial adapter.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from minidp.run.cli import build_parser
from minidp.run.commands.federated import config_from_args
from minidp.run.federated.client import LocalSettings, local_update
from minidp.run.federated.run import build
from scripts.study.federated_study import PLAN, load_plan

OPTIMIZERS = (("adam", 1e-3), ("sgd", 1.0))  # (optimizer, local lr): the skeleton's default and the plan's


def flag(flags: list, name: str) -> str:
    return flags[flags.index(name) + 1]


def update_stats(updates: list[dict], head: list[str]) -> dict:
    """Norms, the head's share of ‖Δ‖², and the mean pairwise cosine, over clients' updates {name: array}."""
    flat = np.array([np.concatenate([np.asarray(u[n], dtype=np.float64).ravel() for n in sorted(u)])
                     for u in updates])  # (clients, d)
    heads = np.array([np.concatenate([np.asarray(u[n], dtype=np.float64).ravel() for n in head]) for u in updates])
    norms = np.linalg.norm(flat, axis=1)
    unit = flat / norms[:, None]
    cos = unit @ unit.T
    off = ~np.eye(len(updates), dtype=bool)
    return {"clients": len(updates), "norm_median": float(np.median(norms)), "norm_min": float(norms.min()),
            "norm_max": float(norms.max()),
            "head_share_of_squared_norm_median": float(np.median((heads ** 2).sum(1) / norms ** 2)),
            "pairwise_cosine_mean": float(cos[off].mean())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint directory (MiniLM)")
    parser.add_argument("--data", required=True, help="GLUE folder")
    parser.add_argument("--clients", type=int, default=12, help="how many clients' updates")
    parser.add_argument("--out", default=None, help="write the statistics here as JSON (default: stdout only)")
    args = parser.parse_args(argv)
    setting = load_plan(PLAN)["setting"]
    keep = ["--task", "--pooling", "--max-length", "--lora-rank", "--lora-alpha", "--lora-targets", "--clients",
            "--partition"]
    flags = sum(([name, flag(setting, name)] for name in keep), [])
    cli = build_parser().parse_args(["federated", "--model", args.model, "--data", args.data, *flags,
                                     "--encoder", "none", "--seed", "0", "--out", "unused", "--eval-limit", "1"])
    fed = build(config_from_args(cli), log=lambda *a: None)
    model = fed.model
    start = {n: model.params[n].copy() for n in model.trainable}
    head = sorted(n for n in start if "classifier" in n)
    result = {"setting": flags, "local_steps": int(flag(setting, "--local-steps")),
              "local_batch_size": int(flag(setting, "--local-batch-size")), "optimizers": {}}
    for optimizer, lr in OPTIMIZERS:
        local = LocalSettings(steps=result["local_steps"], batch_size=result["local_batch_size"], lr=lr,
                              optimizer=optimizer)
        rng = np.random.default_rng(0)
        updates = [local_update(model, fed.client_data, fed.shards[i], start, local, rng)[0]
                   for i in range(args.clients)]
        result["optimizers"][f"{optimizer} lr {lr:g}"] = update_stats(updates, head)
    text = json.dumps(result, indent=1, allow_nan=False)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
