"""The federated run's configuration: one frozen dataclass per concern, validated before any work.

The model and data parts are ``minidp.run.config``'s own (``ModelConfig`` with trainable "lora",
``DataConfig``), so checkpoints and datasets are read exactly as ``minidp train`` reads them.

Each field is written once, with its `minidp federated` flag and help (``flag(...)``, minidp/run/flagspec.py);
the parser, ``config_from_args`` and its inverse are generated from them (``FEDERATED_FLAGS``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from minidp.run.config import DataConfig, ModelConfig
from minidp.denoise.gradients import DenoiseSettings
from minidp.denoise.rmt import DEFAULT_KAPPA, DEFAULT_NORM_CORRECTION, NORM_CORRECTIONS
from minidp.errors import ConfigError
from minidp.run.federated.autoencoder import AUTOENCODER_KINDS
from minidp.run.federated.client import LocalSettings
from minidp.run.federated.codec import ENCODERS, EncoderSettings
from minidp.run.federated.partition import PARTITIONS
from minidp.run.flagspec import Flags, flag, reuse
from minidp.optim import OPTIMIZERS


@dataclass(frozen=True)
class FederationConfig:
    clients: int = flag("--clients", 100, help="K: clients sharing the training data")
    partition: str = flag("--partition", "iid", choices=PARTITIONS,
                          help="iid, or label skew by Dirichlet(alpha)")  # iid | dirichlet (label skew)
    # Dirichlet concentration (partition dirichlet): small = few labels per client
    alpha: float = flag("--dirichlet-alpha", 0.5, help="Dirichlet concentration (small: skewed)")
    rounds: int = flag("--rounds", 50, help="T: federated rounds")
    # q: each client joins a round independently with this probability
    sample_rate: float = flag("--client-rate", 0.1,
                              help="q: each client joins a round independently with this probability (Poisson)")
    # η_s: θ ← θ + η_s · (decoded average update)
    server_lr: float = flag("--server-lr", 1.0, help="server step on the decoded average update")
    # share of the training split carved out as the PUBLIC split (all arms)
    public_fraction: float = flag("--public-fraction", 0.1,
                                  help="share of the training split carved out as the PUBLIC split (every arm "
                                  "carves it, so all arms' clients hold the same data; the encoder trains on it)")
    # stage 1: pseudo-clients on the public split whose updates train the encoder
    public_clients: int = flag("--public-clients", 8, help="stage 1: pseudo-clients on the public split")


@dataclass(frozen=True)
class FedPrivacyConfig:
    # client-level target ε; σ calibrated with RDP for all rounds. The flag's None means "not given": 8
    # unless --noise-multiplier or --non-private (config_from_args)
    epsilon: float | None = flag("--epsilon", 8.0, cli_default=None,
                                 help="client-level target ε; σ calibrated with RDP for all rounds (default 8 "
                                 "unless --noise-multiplier or --non-private)")
    # σ given directly instead (ε then reported, not targeted)
    noise_multiplier: float | None = flag("--noise-multiplier", None, help="σ, instead of calibrating from ε")
    # δ; None -> 1/K² (K·δ = 1/K, well below 1/K at client level)
    delta: float | None = flag("--delta", None, help="δ (default 1/K², so K·δ = 1/K)")
    # C: each client's whole contribution is clipped to this L2 norm
    max_grad_norm: float = flag("--clip", 0.1, help="C: bound on each client's whole contribution's L2 norm")
    # the reference: σ = 0, no clipping, nothing accounted (NOT private)
    non_private: bool = flag("--non-private", False,
                             help="NOT PRIVATE reference: no clipping, σ = 0, nothing accounted; same sampling and "
                             "divisor qK")
    # with non_private: clip each client's whole contribution to C as the private arms do, σ = 0 still (the
    # private arms' update rule without its noise: separates what the noise costs from what clipping costs)
    clip_non_private: bool = flag("--clip-non-private", False,
                                  help="with --non-private: clip each client's whole contribution to C (--clip) as "
                                  "the private arms do, still σ = 0 and NOT private: the private update rule "
                                  "without its noise")


@dataclass(frozen=True)
class FedEncoderConfig:
    # none (DP-FedAvg-LoRA) | dr (DR-Encoder) | fedcg (FedCG-style)
    encoder: str = flag("--encoder", "none", choices=ENCODERS,
                        help="none: DP-FedAvg-LoRA; dr: DR-Encoder (trained on Gaussian draws from the public "
                        "split's per-layer statistics); fedcg: FedCG-style (trained on the public split's real "
                        "updates)")
    kind: str = flag("--ae-kind", "linear", choices=AUTOENCODER_KINDS,
                     help="auto-encoder architecture")  # linear | mlp
    # k, latent size per factor vector (capped at the vector length)
    latent: int = flag("--latent", 64, help="k: latent size per factor vector (compression d/k)")
    hidden: int = flag("--ae-hidden", 128, help="mlp auto-encoder's hidden width")
    steps: int = flag("--ae-steps", 300, help="Adam steps of auto-encoder training")
    lr: float = flag("--ae-lr", 1e-2, help="auto-encoder learning rate")
    synthetic: int = flag("--synthetic", 4096, help="dr: synthetic vectors per auto-encoder")

    def settings(self) -> EncoderSettings:
        return EncoderSettings(kind=self.kind, latent=self.latent, hidden=self.hidden, steps=self.steps,
                               lr=self.lr, synthetic=self.synthetic)


@dataclass(frozen=True)
class FedDenoiseConfig:
    # RMT on the server's released aggregate (wire space; minidp/run/federated/server.py)
    denoise: bool = flag("--denoise", False,
                         help="RMT on the released aggregate, factor updates (or latents) stacked over layers")
    # keep singular values above κ · s(√m + √n)
    kappa: float = flag("--kappa", DEFAULT_KAPPA, help="keep singular values above κ × the edge")
    norm_correction: str = flag("--norm-correction", DEFAULT_NORM_CORRECTION, choices=NORM_CORRECTIONS,
                                help="rescaling of each denoised matrix")  # estimate | noisy | none
    # skip matrices whose smaller side is below this (the 2 × C head of a binary task)
    min_dim: int = flag("--denoise-min-dim", 3, help="skip matrices whose smaller side is below this")

    def settings(self) -> DenoiseSettings | None:
        if not self.denoise:
            return None
        return DenoiseSettings(kappa=self.kappa, norm_correction=self.norm_correction, method="exact",
                               min_dim=self.min_dim)


@dataclass(frozen=True)
class FedRunConfig:
    # the run directory (the flag is required)
    out: str = flag("--out", "", cli_default=None, required=True, metavar="RUN_DIR",
                    help="run directory (refused if it holds a run)")
    # None: OS entropy (private); an int reproduces every draw (experiments only)
    seed: int | None = flag("--seed", None,
                            help="reproducible draws (experiments only: NOT private against anyone who knows the "
                            "seed)")
    # evaluate on the held-out split every this many rounds (and after the last)
    eval_every: int = flag("--eval-every", 1, help="evaluate every N rounds (and after the last)")
    eval_batch_size: int = flag("--eval-batch-size", 128, help="examples per evaluation forward pass")
    progress: bool = flag("--no-progress", True, invert=True, help="no progress bar")  # on stderr
    overwrite: bool = flag("--overwrite", False,
                           help="replace the run already in --out")  # replace a finished run in ``out``
    # RUN_DIR/model: the final global adapter as a PEFT directory
    save_model: bool = flag("--no-save-model", True, invert=True, help="do not write RUN_DIR/model/")


# What a federated run trains unless told otherwise: LoRA factors + head, rank 4 and alpha 8 (train: 8, 16).
FEDERATED_MODEL = {"trainable": "lora", "lora_rank": 4, "lora_alpha": 8.0}


@dataclass(frozen=True)
class FederatedConfig:
    model: ModelConfig = field(default_factory=lambda: ModelConfig(**FEDERATED_MODEL))
    data: DataConfig = field(default_factory=DataConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    local: LocalSettings = field(default_factory=LocalSettings)
    privacy: FedPrivacyConfig = field(default_factory=FedPrivacyConfig)
    encoder: FedEncoderConfig = field(default_factory=FedEncoderConfig)
    denoise: FedDenoiseConfig = field(default_factory=FedDenoiseConfig)
    run: FedRunConfig = field(default_factory=FedRunConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """ConfigError naming the field (and its flag) for the first invalid value; reads nothing."""
        f, p, e, z, r, loc, m = (self.federation, self.privacy, self.encoder, self.denoise, self.run, self.local,
                                 self.model)
        _whole(f.clients, _named("federation.clients"), 1)
        _whole(f.rounds, _named("federation.rounds"), 1)
        _whole(f.public_clients, _named("federation.public_clients"), 1)
        if f.partition not in PARTITIONS:
            raise ConfigError(f"{_named('federation.partition')}: {f.partition!r} is not one of {PARTITIONS}")
        _positive(f.alpha, _named("federation.alpha"))
        _finite(f.sample_rate, _named("federation.sample_rate"))
        if not 0.0 < f.sample_rate <= 1.0:
            raise ConfigError(f"{_named('federation.sample_rate')}: {f.sample_rate} must be in (0, 1]")
        _positive(f.server_lr, _named("federation.server_lr"))
        _finite(f.public_fraction, _named("federation.public_fraction"))
        if not 0.0 < f.public_fraction < 1.0:
            raise ConfigError(f"{_named('federation.public_fraction')}: {f.public_fraction} must be in (0, 1)")
        _whole(loc.steps, _named("local.steps"), 1)
        _whole(loc.batch_size, _named("local.batch_size"), 1)
        _positive(loc.lr, _named("local.lr"))
        if loc.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{_named('local.optimizer')}: {loc.optimizer!r} is not one of {OPTIMIZERS}")
        _positive(p.max_grad_norm, _named("privacy.max_grad_norm"))
        if p.non_private:
            if p.epsilon is not None or p.noise_multiplier is not None:
                raise ConfigError("privacy: --non-private takes neither --epsilon nor --noise-multiplier")
        elif p.clip_non_private:
            raise ConfigError("privacy: --clip-non-private goes with --non-private (a private run always clips)")
        else:
            if p.epsilon is None and p.noise_multiplier is None:
                raise ConfigError("privacy: give --epsilon or --noise-multiplier (or --non-private)")
            if p.epsilon is not None and p.noise_multiplier is not None:
                raise ConfigError("privacy: give --epsilon or --noise-multiplier, not both")
            if p.epsilon is not None:
                _positive(p.epsilon, _named("privacy.epsilon"))
            if p.noise_multiplier is not None:
                _positive(p.noise_multiplier, _named("privacy.noise_multiplier"))
        if p.delta is not None:
            _finite(p.delta, _named("privacy.delta"))
            if not 0.0 < p.delta < 1.0:
                raise ConfigError(f"{_named('privacy.delta')}: {p.delta} must be in (0, 1)")
        if e.encoder not in ENCODERS:
            raise ConfigError(f"{_named('encoder.encoder')}: {e.encoder!r} is not one of {ENCODERS}")
        if e.kind not in AUTOENCODER_KINDS:
            raise ConfigError(f"{_named('encoder.kind')}: {e.kind!r} is not one of {AUTOENCODER_KINDS}")
        _whole(e.latent, _named("encoder.latent"), 1)
        _whole(e.hidden, _named("encoder.hidden"), 1)
        _whole(e.steps, _named("encoder.steps"), 1)
        _positive(e.lr, _named("encoder.lr"))
        _whole(e.synthetic, _named("encoder.synthetic"), 1)
        _finite(z.kappa, _named("denoise.kappa"))
        if z.kappa < 1.0:
            raise ConfigError(f"{_named('denoise.kappa')}: {z.kappa} must be >= 1")
        if z.norm_correction not in NORM_CORRECTIONS:
            raise ConfigError(f"{_named('denoise.norm_correction')}: {z.norm_correction!r} is not one of "
                              f"{NORM_CORRECTIONS}")
        _whole(z.min_dim, _named("denoise.min_dim"), 0)
        if z.denoise and p.non_private:
            raise ConfigError("denoise: --denoise needs noise to remove (not with --non-private)")
        if not r.out:
            raise ConfigError(f"{_named('run.out')}: a run directory is required")
        _whole(r.eval_every, _named("run.eval_every"), 1)
        _whole(r.eval_batch_size, _named("run.eval_batch_size"), 1)
        if m.trainable != "lora":
            raise ConfigError(f"model.trainable: federated runs train LoRA factors + head, got {m.trainable!r}")
        if not m.path:
            raise ConfigError(f"{_named('model.path')}: a checkpoint directory is required")
        _whole(m.lora_rank, _named("model.lora_rank"), 1)
        _positive(m.lora_alpha, _named("model.lora_alpha"))
        _whole(m.max_length, _named("model.max_length"), 2)
        d = self.data
        _finite(d.eval_fraction, _named("data.eval_fraction"))
        if not 0.0 < d.eval_fraction < 1.0:
            raise ConfigError(f"{_named('data.eval_fraction')}: {d.eval_fraction} must be in (0, 1)")
        if d.eval_limit is not None:
            _whole(d.eval_limit, _named("data.eval_limit"), 1)
        if d.validation_fraction is not None:
            _finite(d.validation_fraction, _named("data.validation_fraction"))
            if not 0.0 < d.validation_fraction < 1.0:
                raise ConfigError(f"{_named('data.validation_fraction')}: {d.validation_fraction} must be in (0, 1)")


# The command line of `minidp federated`, generated from the fields above (minidp/run/flagspec.py). Its model and
# data are train's ModelConfig and DataConfig: these of their flags, in this order, with federated's own help; the
# other fields keep FEDERATED_MODEL / the field defaults.
SHARED_FLAGS = {
    "model": {
        "path": reuse(ModelConfig, "path", required=True, help="HF checkpoint directory"),
        "lora_rank": reuse(ModelConfig, "lora_rank", help="LoRA rank r"),
        "lora_alpha": reuse(ModelConfig, "lora_alpha", help="LoRA alpha (update scaled by A/r)"),
        "lora_targets": reuse(ModelConfig, "lora_targets", help="comma-separated LoRA layers"),
        "dtype": reuse(ModelConfig, "dtype", help="training precision"),
        "device": reuse(ModelConfig, "device", help="default: $MINIDP_DEVICE or cpu"),
        "max_length": reuse(ModelConfig, "max_length"),
        "pooling": reuse(ModelConfig, "pooling", help="default: the checkpoint's"),
    },
    "data": {
        "task": reuse(DataConfig, "task", help="dataset (csv: any CSV/TSV, name the columns)"),
        "data_dir": reuse(DataConfig, "data_dir", help="GLUE folder or the task's own folder"),
        "train_file": reuse(DataConfig, "train_file", help="a training file instead of --data"),
        "eval_file": reuse(DataConfig, "eval_file"),
        "text_column": reuse(DataConfig, "text_column"),
        "label_column": reuse(DataConfig, "label_column"),
        "eval_fraction": reuse(DataConfig, "eval_fraction"),
        "eval_limit": reuse(DataConfig, "eval_limit"),
        "validation_fraction": reuse(DataConfig, "validation_fraction",
                                     help="for choosing hyperparameters: evaluate on a stratified share F of the "
                                     "training split (seed 0) and federate the rest; the task's dev / held-out "
                                     "split is not used"),
    },
}
FEDERATED_FLAGS = Flags(FederatedConfig, shared=SHARED_FLAGS, base={"model": FEDERATED_MODEL})
FEDERATED_FIELD_FLAGS = FEDERATED_FLAGS.field_flags()  # {"federation.sample_rate": "--client-rate", ...}


def _named(field: str) -> str:
    """"section.field (--flag)", e.g. "federation.sample_rate (--client-rate)": errors name both."""
    return f"{field} ({FEDERATED_FIELD_FLAGS[field]})"


def _finite(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what}: {value!r} must be a finite number")


def _positive(value, what: str) -> None:
    _finite(value, what)
    if not value > 0:
        raise ConfigError(f"{what}: {value!r} must be > 0")


def _whole(value, what: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what}: {value!r} must be a whole number >= {minimum}")
