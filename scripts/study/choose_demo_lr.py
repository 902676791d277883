"""Choose `minidp demo`'s learning rate on a validation split carved from the demo's TRAINING tweets.

    python -m scripts.study.choose_demo_lr [--lrs 1e-3 2e-3 5e-3 1e-2] [--out reports/demo_lr.json]

The demo's 4000 training tweets are split 90/10 (stratified, seed 1); the baseline arm (DP-AdamW, ε = 8, the
demo's other settings) trains on the 90% for each candidate learning rate with the same noise seed, and is
scored on the 10%. The model's pooling is the checkpoint's (mean for all-MiniLM-L6-v2), as in the demo, and
is recorded. The held-out tweets the demo reports are never read. One seed per candidate: a
selection, not an estimate of accuracy.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from minidp.commands.demo import DEMO_DEFAULTS, demo_config, demo_datasets
from minidp.data import split_dataset
from minidp.train import train
from models.hf import checkpoint_pooling


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 2e-3, 5e-3, 1e-2])
    parser.add_argument("--seed", type=int, default=0, help="noise seed shared by every candidate")
    parser.add_argument("--out", default="reports/demo_lr.json")
    opts = parser.parse_args()
    train_set, _ = demo_datasets(DEMO_DEFAULTS["train_size"], DEMO_DEFAULTS["eval_size"])
    fit, validation = split_dataset(train_set, eval_fraction=0.1, seed=1)
    results = []
    for lr in opts.lrs:
        args = argparse.Namespace(**{**DEMO_DEFAULTS, "lr": lr, "device": None, "no_progress": True})
        t0 = time.perf_counter()
        summary = train(demo_config(args, "none", opts.seed, None), datasets=(fit, validation), log=lambda *a: None)
        results.append({"lr": lr, "validation_accuracy": summary["final_eval"]["accuracy"],
                        "validation_examples": summary["final_eval"]["examples"], "steps": summary["steps"],
                        "epsilon": summary["epsilon"], "seconds": time.perf_counter() - t0})
        print(json.dumps(results[-1]), flush=True)
    best = max(results, key=lambda r: r["validation_accuracy"])
    pooling = checkpoint_pooling(demo_config(args, "none", opts.seed, None).model.path)
    record = {"chosen_lr": best["lr"], "pooling": pooling, "candidates": results, "fit_examples": len(fit),
              "validation_examples": len(validation), "noise_seed": opts.seed,
              "command": "python -m scripts.study.choose_demo_lr " + " ".join(sys.argv[1:]),
              "machine": f"{platform.machine()} {platform.processor() or ''} ".strip()}
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"chosen lr = {best['lr']:g} (validation accuracy {best['validation_accuracy']:.4f}); wrote {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
