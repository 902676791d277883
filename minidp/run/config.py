"""Run configuration: one frozen dataclass per concern, validated right after parsing, saved with the run.

    config = TrainConfig(model=ModelConfig(path="..."), data=DataConfig(task="sst2", data_dir="..."), ...)
    config.validate()                 # ConfigError naming the field, before any work starts
    config.to_dict() / TrainConfig.from_dict(d)     # what RUN_DIR/config.json holds

Each field is written once: with its default, its `minidp train` flag and that flag's help
(``flag("--clip", 1.0, help=...)``, minidp/run/flagspec.py). The parser's groups, ``config_from_args``, its
inverse and ``FIELD_FLAGS`` are generated from the fields (``TRAIN_FLAGS``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from minidp.backend import DEVICES, DTYPES, default_device
from minidp.data import TASKS
from minidp.denoise.gradients import DenoiseSettings
from minidp.denoise.rmt import DEFAULT_NORM_CORRECTION, FALLBACKS, METHODS as DENOISE_METHODS, NORM_CORRECTIONS
from minidp.errors import ConfigError
from minidp.nn.pooling import POOLING_CHOICES
from minidp.optim import OPTIMIZERS
from minidp.privacy.accountant import ACCOUNTANTS
from minidp.privacy.mechanism import CLIP_METHODS
from minidp.run.flagspec import Flags, flag

# The option lists live with the code that implements them; the config re-exports them for the CLI.
DENOISERS = ("none", "rmt")


@dataclass(frozen=True)
class ModelConfig:
    # HF checkpoint directory (config.json + model.safetensors [+ tokenizer files])
    path: str = flag("--model", "", cli_default=None, metavar="DIR",
                     help="HF checkpoint directory: config.json, model.safetensors and tokenizer files "
                     "(required unless --resume)")
    # "all" | "no-embeddings" | "classifier" | "lora" | comma-separated HF names
    trainable: str = flag("--trainable", "all",
                          help="which parameters train: all | no-embeddings | classifier | lora (LoRA factors + "
                          "the classifier, PEFT's SEQ_CLS set; see --lora-modules-to-save) | comma-separated HF "
                          "names")
    dtype: str = flag("--dtype", "float32", choices=DTYPES)  # "float32" (training) | "float64" (checks)
    # "cpu" | "cuda"; default $MINIDP_DEVICE, else "cpu" (the flag's None is resolved by resolve_device)
    device: str = flag("--device", default_factory=default_device, cli_default=None, choices=DEVICES,
                       help="array backend (default: $MINIDP_DEVICE or cpu)")
    # tokens per example after truncation, special tokens included
    max_length: int = flag("--max-length", 128, help="tokens per example after truncation")
    # what the head reads: "cls" (position 0) | "mean" (the real tokens' mean); None: the checkpoint's
    # (models.hf.checkpoint_pooling); a run records the one it used
    pooling: str | None = flag("--pooling", None, choices=POOLING_CHOICES,
                               help="what the classification head reads: cls (the first token, <s> / [CLS]) or "
                               "mean (the mean of the real tokens' last hidden states). Default: the checkpoint's "
                               "(config.json's minidp_pooling, else sentence-transformers' 1_Pooling/config.json, "
                               "else cls); the run's config.json records the one used")
    # LoRA (trainable="lora" only): the factors A (r, d_in), B (d_out, r) of the targeted layers + the head train
    lora_rank: int = flag("--lora-rank", 8, metavar="R", help="LoRA rank r (--trainable lora)")
    lora_alpha: float = flag("--lora-alpha", 16.0, metavar="A",
                             help="LoRA alpha: the update B A is scaled by alpha / r (--trainable lora)")
    # comma-separated module names, PEFT's rule: a path equal to or ending in one
    lora_targets: str = flag("--lora-targets", "query,value", metavar="NAMES",
                             help="comma-separated layers that get LoRA (PEFT's rule: module paths ending in a "
                             "name), e.g. query,key,value,attention.output.dense,intermediate.dense,output.dense")
    lora_dropout: float = flag("--lora-dropout", 0.0, metavar="P",
                               help="dropout on the LoRA branch's input (training only)")
    lora_modules_to_save: str = flag("--lora-modules-to-save", "", metavar="NAMES",
                                     help="head modules that train in full beside the classifier (PEFT's "
                                     "modules_to_save): 'pooler' trains a BERT checkpoint's pooler "
                                     "(bert.pooler.dense), which PEFT and the default leave frozen; RoBERTa's head "
                                     "has none (--trainable lora)")
    lora_adapter: str | None = flag("--lora-adapter", None, metavar="DIR",
                                    help="start from this PEFT LoRA adapter (adapter_config.json + "
                                    "adapter_model.safetensors); it sets rank, alpha, targets and dropout")
    # save RUN_DIR/model as W + (α/r)·B A (default: a PEFT adapter)
    merge_lora: bool = flag("--merge-lora", False,
                            help="save RUN_DIR/model as a plain HF model with W + (alpha/r) B A merged, instead of "
                            "a PEFT adapter directory")

    def lora_target_list(self) -> list:
        """``lora_targets`` as a list of module names."""
        return [name.strip() for name in self.lora_targets.split(",") if name.strip()]

    def lora_modules_to_save_list(self) -> list:
        """``lora_modules_to_save`` as a list of module names."""
        return [name.strip() for name in self.lora_modules_to_save.split(",") if name.strip()]


@dataclass(frozen=True)
class DataConfig:
    task: str = flag("--task", "sst2", choices=TASKS)
    data_dir: str | None = flag("--data", None, metavar="DIR",
                                help="GLUE folder (holding SST-2/, QNLI/, ...) or the task's own folder")
    # a single training file instead of data_dir (csv, or the task's own layout)
    train_file: str | None = flag("--train-file", None, help="a training file instead of --data (csv: any CSV/TSV)")
    # the evaluation file of train_file; without one, eval_fraction of train is held out
    eval_file: str | None = flag("--eval-file", None, help="evaluation file (default: hold out --eval-fraction)")
    text_column: str | None = flag("--text-column", None, help="csv: the text column")
    text_pair_column: str | None = flag("--text-pair-column", None, help="csv: the second-text column of a pair task")
    label_column: str | None = flag("--label-column", None, help="csv: the label column")
    # share of train held out when there is no eval split (0 < f < 1)
    eval_fraction: float = flag("--eval-fraction", 0.1, help="held-out share without an eval file")
    # None: evaluate on every eval example
    eval_limit: int | None = flag("--eval-limit", None, help="evaluate on the first N eval examples only")
    # choose hyperparameters: evaluate on this stratified share of the TRAINING split (seed 0) and train on the
    # rest; the task's dev / held-out split is never used (None: evaluate on the task's eval split)
    validation_fraction: float | None = flag(
        "--validation-fraction", None, metavar="F",
        help="for choosing hyperparameters: evaluate on a stratified share F of the training split (seed 0) and "
        "train on the rest; the task's dev / held-out split is not used")


@dataclass(frozen=True)
class PrivacyConfig:
    # the flag's None means "not given": 8 unless --noise-multiplier or --non-private (config_from_args)
    epsilon: float | None = flag("--epsilon", 8.0, cli_default=None,
                                 help="target ε (σ is calibrated so the whole run spends at most this); default 8 "
                                 "unless --noise-multiplier is given")
    delta: float | None = flag("--delta", None,
                               help="δ (default 1/N^1.1 with N the training examples, the convention of Li et al. "
                               "2021: δ well below 1/N, so N·δ = N^-0.1 < 1; the statement prints N·δ)")
    # σ given directly (then epsilon, if set, caps the run)
    noise_multiplier: float | None = flag("--noise-multiplier", None, help="σ, instead of calibrating from ε")
    # C: each example's whole gradient is clipped to this L2 norm
    max_grad_norm: float = flag("--clip", 1.0, help="C: per-example gradient norm bound")
    clip_method: str = flag("--clip-method", "flat", choices=CLIP_METHODS,
                            help="flat: min(1, C/‖g‖); automatic: C/(‖g‖ + 0.01)")
    accountant: str = flag("--accountant", "rdp", choices=ACCOUNTANTS,
                           help="rdp: Rényi DP (Mironov et al. 2019); pld: privacy loss distribution (tighter: a "
                           "smaller σ for the same ε; docs/accountant.md)")
    # NOT PRIVATE reference: σ = 0, clipping off, nothing accounted (epsilon must be None)
    non_private: bool = flag("--non-private", False,
                             help="NOT PRIVATE reference run: the same sampling, steps and divisor qN, but σ = 0, "
                             "clipping off and nothing accounted (ε = ∞); every output is labelled not private. "
                             "Takes no --epsilon or --noise-multiplier")


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = flag("--optimizer", "adamw", choices=OPTIMIZERS)
    lr: float = flag("--lr", 5e-4)  # peak learning rate
    weight_decay: float = flag("--weight-decay", 0.0)  # L2 (adam) or decoupled (adamw) weight decay
    momentum: float = flag("--momentum", 0.0, help="sgd only")
    # share of steps with linear warm-up; then linear decay to 0
    warmup_fraction: float = flag("--warmup", 0.0, help="fraction of steps with linear warm-up")


@dataclass(frozen=True)
class DenoiseConfig(DenoiseSettings):
    """The denoiser's settings (``DenoiseSettings``: κ, norm correction, fallback, method, min_dim) and whether
    training uses it at all. The settings' fields are redeclared here only to give each its flag; their
    defaults are ``DenoiseSettings``' own (the core does not know the command line)."""

    kappa: float = flag("--kappa", DenoiseSettings.kappa,
                        help="keep singular values above κ × the bulk edge (1.02: the paper's value)")
    norm_correction: str = flag("--norm-correction", DenoiseSettings.norm_correction, choices=NORM_CORRECTIONS,
                                help="rescale the denoised matrix to: estimate, √(Σ θ̂²) (the default, chosen on "
                                "the study's evidence); noisy, ‖G‖_F (the paper's Step C); none")
    fallback: str = flag("--fallback", DenoiseSettings.fallback, choices=FALLBACKS, help="when no component is kept")
    method: str = flag("--denoise-method", DenoiseSettings.method, choices=DENOISE_METHODS,
                       help="exact: full SVD per matrix; fast: top singular triplets (equal to exact as measured)")
    min_dim: int = flag("--denoise-min-dim", DenoiseSettings.min_dim,
                        help="skip weight matrices whose smaller side is below this (3 skips a binary head's 2×d "
                        "matrix; 0 denoises every 2-D linear weight, the paper's choice)")
    denoise: str = flag("--denoise", "none", choices=DENOISERS)  # "none" | "rmt"

    def settings(self) -> DenoiseSettings | None:
        """What DPStep takes: the settings, or None for plain DP-SGD."""
        if self.denoise == "none":
            return None
        return DenoiseSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DenoiseSettings)})


@dataclass(frozen=True)
class RunConfig:
    # passes over the data (steps = ceil(epochs / q)); the flag's None means "not given": 1 unless --steps
    epochs: float | None = flag("--epochs", 1.0, cli_default=None, group="optim", exclusive="length",
                                help="passes over the data (default 1)")
    steps: int | None = flag("--steps", None, group="optim", exclusive="length",
                             help="number of DP steps")  # overrides epochs
    # EXPECTED logical batch size qN (Poisson sampling: the real size varies)
    batch_size: int = flag("--batch-size", 256, group="optim", help="EXPECTED batch size qN (Poisson sampling)")
    # examples per forward/backward (virtual batches); the memory knob
    max_physical_batch: int = flag("--max-physical-batch", 32, group="optim",
                                   help="examples per forward/backward pass")
    # None: noise, sampling and dropout from OS entropy; N: all reproducible (NOT private against anyone who
    # knows N); the head's initialisation uses N (or 0)
    seed: int | None = flag("--seed", None,
                            help="make noise, sampling and dropout reproducible (experiments only: the run is then "
                            "NOT private against anyone who knows the seed); default: OS entropy")
    eval_every: int = flag("--eval-every", 0, help="evaluate every N steps (0: at the end only)")
    eval_batch_size: int = flag("--eval-batch-size", 128)  # examples per forward pass when evaluating
    # run directory (config.json, metrics.jsonl, summary.json, model/)
    out: str | None = flag("--out", None, metavar="RUN_DIR",
                           help="run directory (refused if it already holds a run, unless --overwrite)")
    # NON-PRIVATE alignment diagnostic (reads the clipped gradient)
    diagnostics: bool = flag("--diagnostics", False,
                             help="NON-PRIVATE alignment diagnostic: cosines to the clipped (pre-noise) gradient")
    plot: bool = flag("--plot", False, help="write plots to RUN_DIR (needs matplotlib)")
    save_model: bool = flag("--no-save-model", True, invert=True, help="do not write RUN_DIR/model/")
    progress: bool = flag("--no-progress", True, invert=True, help="no progress bar")  # on stderr
    checkpoint_every: int = flag("--checkpoint-every", 25,
                                 help="write RUN_DIR/checkpoint/ every N steps (and always after the last step)")


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


# The command line of `minidp train`, generated from the fields above (minidp/run/flagspec.py).
TRAIN_FLAGS = Flags(TrainConfig)
# The `minidp train` flag of each field, so an error names both: {"privacy.max_grad_norm": "--clip", ...}
FIELD_FLAGS = TRAIN_FLAGS.field_flags()


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
