"""The peer arm of the RMT study: the same DP fine-tuning run, trained with Opacus on `transformers`.

    python -m scripts.study.opacus_peer <the flags of `minidp train`> --seed K --out RUN_DIR [--overwrite]

Takes exactly `minidp train`'s flags (parsed by minidp's own parser) so the study plan can swap runners, and
shares with minidp everything that is not the training step: the data and its split, the tokenisation,
the privacy plan (σ from minidp's RDP calibration, q = B/N, δ, steps), the learning-rate schedule, the set of
trainable parameters and the fresh classifier head's initial values (copied from minidp's model at the same
seed). The step itself is the standard implementation: `transformers.BertForSequenceClassification` wrapped in
`opacus.GradSampleModule` (per-example gradients by hooks) and `opacus.optimizers.DPOptimizer` (flat
clipping to C, Gaussian noise σC on the sum), over the Poisson batch in length-sorted physical batches of
--max-physical-batch, divided by the expected batch size B, then torch AdamW.

Writes RUN_DIR/{config.json, metrics.jsonl, metrics_nonprivate.jsonl, summary.json} in the layout of
`minidp train` (summary.json last). No checkpoints: a killed run starts again (the study passes --overwrite).
torch, transformers and opacus are test oracles: this script lives in scripts/, never in minidp/.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from minidp.commands.train import add_parser, config_from_args
from minidp.data import load_tokenizer
from minidp.data.batching import TokenizedDataset
from minidp.optim import linear_schedule
from minidp.privacy import RDPAccountant
from minidp.privacy.sampling import poisson_sample
from minidp.train import build_model, load_splits, plan_privacy


def parse(argv):
    parser = argparse.ArgumentParser(prog="opacus_peer.py")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    return sub.choices["train"].parse_args(argv)


def torch_batch(data: TokenizedDataset, indices, torch):
    b = data.batch(indices)
    out = {"input_ids": torch.as_tensor(b["input_ids"]), "attention_mask": torch.as_tensor(b["attention_mask"])}
    if b.get("token_type_ids") is not None:
        out["token_type_ids"] = torch.as_tensor(b["token_type_ids"]).long()
    return out, torch.as_tensor(b["labels"])


def evaluate(model, data: TokenizedDataset, torch, batch_size: int) -> dict:
    model.eval()
    order = data.by_length(np.arange(len(data)))
    correct, losses = 0, []
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            inputs, labels = torch_batch(data, order[start:start + batch_size], torch)
            logits = model(**inputs).logits
            losses.append(torch.nn.functional.cross_entropy(logits, labels, reduction="none").numpy())
            correct += int((logits.argmax(-1) == labels).sum())
    model.train()
    return {"accuracy": correct / max(1, len(order)), "loss": float(np.concatenate(losses).mean()),
            "examples": int(len(order))}


def main(argv=None) -> int:
    import torch  # noqa: PLC0415
    from opacus import GradSampleModule, __version__ as opacus_version  # noqa: PLC0415
    from opacus.optimizers import DPOptimizer  # noqa: PLC0415
    from transformers import BertForSequenceClassification  # noqa: PLC0415

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = parse(list(sys.argv[1:] if argv is None else argv))
    config = config_from_args(args)
    r, p, o = config.run, config.privacy, config.optim
    if config.denoise.denoise != "none":
        raise SystemExit("opacus_peer.py: the peer arm is plain DP-SGD (--denoise none)")
    if r.seed is None or not r.out:
        raise SystemExit("opacus_peer.py: give --seed and --out")
    out = Path(r.out)
    if (out / "summary.json").exists() and not args.overwrite:
        raise SystemExit(f"opacus_peer.py: {out} already holds a finished run (use --overwrite)")
    if out.exists() and args.overwrite:
        for name in ("config.json", "metrics.jsonl", "metrics_nonprivate.jsonl", "summary.json"):
            if (out / name).exists():
                (out / name).unlink()
        if (out / "model").is_dir():
            shutil.rmtree(out / "model")
    out.mkdir(parents=True, exist_ok=True)

    train_set, eval_set = load_splits(config)
    if eval_set is not None and config.data.eval_limit is not None:
        eval_set = eval_set.subset(np.arange(min(len(eval_set), config.data.eval_limit)))
    plan = plan_privacy(config, len(train_set))
    tokenizer = load_tokenizer(config.model.path)
    train_data = TokenizedDataset(train_set, tokenizer, config.model.max_length)
    eval_data = TokenizedDataset(eval_set, tokenizer, config.model.max_length)
    reference = build_model(config, num_labels=train_set.num_classes)  # minidp's: trainable set, head init

    torch.manual_seed(r.seed)
    model = BertForSequenceClassification.from_pretrained(config.model.path, num_labels=train_set.num_classes)
    with torch.no_grad():
        state = dict(model.named_parameters())
        for name in reference.init_report:  # the fresh head: the same initial values as minidp's run
            state[name].copy_(torch.as_tensor(np.asarray(reference.params[name], dtype=np.float32)))
    trainable = set(reference.trainable)
    missing = trainable - set(state)
    if missing:
        raise SystemExit(f"opacus_peer.py: minidp parameters with no transformers counterpart: {sorted(missing)[:5]}")
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
    model.train()
    gsm = GradSampleModule(model, loss_reduction="sum")
    params = [param for param in gsm.parameters() if param.requires_grad]
    inner = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    noise_gen = torch.Generator().manual_seed(r.seed)
    optimizer = DPOptimizer(inner, noise_multiplier=plan.noise_multiplier, max_grad_norm=p.max_grad_norm,
                            expected_batch_size=r.batch_size, loss_reduction="sum", generator=noise_gen)
    sampling = np.random.default_rng([r.seed, 7])
    accountant = RDPAccountant()
    B = plan.sample_rate * plan.num_examples
    (out / "config.json").write_text(json.dumps({**config.to_dict(), "runner": "opacus",
                                                 "opacus_version": opacus_version,
                                                 "privacy_plan": plan.__dict__}, indent=2, default=str) + "\n")
    metrics, nonprivate = (out / "metrics.jsonl").open("w"), (out / "metrics_nonprivate.jsonl").open("w")
    started = time.perf_counter()
    for step in range(1, plan.steps + 1):
        t0 = time.perf_counter()
        lr = linear_schedule(step - 1, total_steps=plan.steps, warmup_steps=int(o.warmup_fraction * plan.steps),
                             base_lr=o.lr)
        for group in inner.param_groups:
            group["lr"] = lr
        indices = train_data.by_length(poisson_sample(len(train_data), plan.sample_rate, sampling))
        chunks = [indices[i:i + r.max_physical_batch] for i in range(0, len(indices), r.max_physical_batch)]
        losses = []
        optimizer.zero_grad()
        for k, chunk in enumerate(chunks):
            inputs, labels = torch_batch(train_data, chunk, torch)
            loss = torch.nn.functional.cross_entropy(gsm(**inputs).logits, labels, reduction="none")
            loss.sum().backward()
            losses.append(loss.detach().numpy())
            if k < len(chunks) - 1:
                optimizer.signal_skip_step(True)
                optimizer.pre_step()  # clip and accumulate only
                optimizer.zero_grad()
        if chunks:
            optimizer.pre_step()  # clip, accumulate, add N(0, σ²C²) to the sum
        else:  # an empty Poisson batch is still a (pure-noise) step
            for param in params:
                param.grad = torch.normal(0.0, plan.noise_multiplier * p.max_grad_norm, size=param.shape,
                                          generator=noise_gen)
        for param in params:
            param.grad /= B  # the released average: divide by the expected batch size
        inner.step()
        optimizer.zero_grad()
        accountant.step(noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate, steps=1)
        row = {"step": step, "epsilon": accountant.get_epsilon(plan.delta), "lr": lr}
        if r.eval_every and step % r.eval_every == 0 and step < plan.steps:
            row["eval"] = evaluate(model, eval_data, torch, r.eval_batch_size)
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
        nonprivate.write(json.dumps({"step": step, "batch_size": int(len(indices)),
                                     "loss": float(np.concatenate(losses).mean()) if losses else None,
                                     "seconds": time.perf_counter() - t0}) + "\n")
        nonprivate.flush()
    final = evaluate(model, eval_data, torch, r.eval_batch_size)
    metrics.write(json.dumps({"step": plan.steps, "eval": final, "final": True}) + "\n")
    metrics.close()
    nonprivate.close()
    epsilon, order = accountant.get_epsilon_and_order(plan.delta)
    summary = {"epsilon": float(epsilon), "delta": plan.delta, "noise_multiplier": plan.noise_multiplier,
               "sample_rate": plan.sample_rate, "steps": plan.steps, "planned_steps": plan.steps,
               "rdp_order": float(order), "target_epsilon": plan.target_epsilon, "max_grad_norm": p.max_grad_norm,
               "expected_batch_size": r.batch_size, "train_examples": plan.num_examples, "final_eval": final,
               "denoise": "none", "seed": r.seed, "noise_reproducible_from_seed": True, "runner": "opacus",
               "opacus_version": opacus_version, "seconds": time.perf_counter() - started}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / "summary.json")
    print(f"final eval: accuracy = {final['accuracy']:.4f} on {final['examples']} examples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
