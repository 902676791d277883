"""The federated run's configuration: one frozen dataclass per concern, validated before any work.

The model and data parts are ``minidp.run.config``'s own (``ModelConfig`` with trainable "lora",
``DataConfig``), so checkpoints and datasets are read exactly as ``minidp train`` reads them.
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
from minidp.optim import OPTIMIZERS


@dataclass(frozen=True)
class FederationConfig:
    clients: int = 100  # K clients sharing the private training data
    partition: str = "iid"  # iid | dirichlet (label skew)
    alpha: float = 0.5  # Dirichlet concentration (partition dirichlet): small = few labels per client
    rounds: int = 50  # T rounds
    sample_rate: float = 0.1  # q: each client joins a round independently with this probability
    server_lr: float = 1.0  # η_s: θ ← θ + η_s · (decoded average update)
    public_fraction: float = 0.1  # share of the training split carved out as the PUBLIC split (all arms)
    public_clients: int = 8  # stage 1: pseudo-clients on the public split whose updates train the encoder


@dataclass(frozen=True)
class FedPrivacyConfig:
    epsilon: float | None = 8.0  # client-level target ε; σ calibrated with RDP for all rounds
    noise_multiplier: float | None = None  # σ given directly instead (ε then reported, not targeted)
    delta: float | None = None  # δ; None -> 1/K² (K·δ = 1/K, well below 1/K at client level)
    max_grad_norm: float = 0.1  # C: each client's whole contribution is clipped to this L2 norm
    non_private: bool = False  # the reference: σ = 0, no clipping, nothing accounted (NOT private)


@dataclass(frozen=True)
class FedEncoderConfig:
    encoder: str = "none"  # none (DP-FedAvg-LoRA) | dr (DR-Encoder) | fedcg (FedCG-style)
    kind: str = "linear"  # auto-encoder: linear | mlp
    latent: int = 64  # k, latent size per factor vector (capped at the vector length)
    hidden: int = 128  # mlp hidden width
    steps: int = 300  # Adam steps of auto-encoder training
    lr: float = 1e-2  # auto-encoder learning rate
    synthetic: int = 4096  # DR-Encoder: synthetic vectors per auto-encoder

    def settings(self) -> EncoderSettings:
        return EncoderSettings(kind=self.kind, latent=self.latent, hidden=self.hidden, steps=self.steps,
                               lr=self.lr, synthetic=self.synthetic)


@dataclass(frozen=True)
class FedDenoiseConfig:
    denoise: bool = False  # RMT on the server's released aggregate (wire space; minidp/run/federated/server.py)
    kappa: float = DEFAULT_KAPPA  # keep singular values above κ · s(√m + √n)
    norm_correction: str = DEFAULT_NORM_CORRECTION  # estimate | noisy | none
    min_dim: int = 3  # skip matrices whose smaller side is below this (the 2 × C head of a binary task)

    def settings(self) -> DenoiseSettings | None:
        if not self.denoise:
            return None
        return DenoiseSettings(kappa=self.kappa, norm_correction=self.norm_correction, method="exact",
                               min_dim=self.min_dim)


@dataclass(frozen=True)
class FedRunConfig:
    out: str = ""  # the run directory
    seed: int | None = None  # None: OS entropy (private); an int reproduces every draw (experiments only)
    eval_every: int = 1  # evaluate on the held-out split every this many rounds (and after the last)
    eval_batch_size: int = 128
    progress: bool = True  # progress bar on stderr
    overwrite: bool = False  # replace a finished run in ``out``
    save_model: bool = True  # RUN_DIR/model: the final global adapter as a PEFT directory


@dataclass(frozen=True)
class FederatedConfig:
    model: ModelConfig = field(default_factory=lambda: ModelConfig(trainable="lora", lora_rank=4, lora_alpha=8.0))
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
        _whole(f.clients, "federation.clients (--clients)", 1)
        _whole(f.rounds, "federation.rounds (--rounds)", 1)
        _whole(f.public_clients, "federation.public_clients (--public-clients)", 1)
        if f.partition not in PARTITIONS:
            raise ConfigError(f"federation.partition (--partition): {f.partition!r} is not one of {PARTITIONS}")
        _positive(f.alpha, "federation.alpha (--dirichlet-alpha)")
        _finite(f.sample_rate, "federation.sample_rate (--client-rate)")
        if not 0.0 < f.sample_rate <= 1.0:
            raise ConfigError(f"federation.sample_rate (--client-rate): {f.sample_rate} must be in (0, 1]")
        _positive(f.server_lr, "federation.server_lr (--server-lr)")
        _finite(f.public_fraction, "federation.public_fraction (--public-fraction)")
        if not 0.0 < f.public_fraction < 1.0:
            raise ConfigError(f"federation.public_fraction (--public-fraction): {f.public_fraction} must be in (0, 1)")
        _whole(loc.steps, "local.steps (--local-steps)", 1)
        _whole(loc.batch_size, "local.batch_size (--local-batch-size)", 1)
        _positive(loc.lr, "local.lr (--local-lr)")
        if loc.optimizer not in OPTIMIZERS:
            raise ConfigError(f"local.optimizer (--local-optimizer): {loc.optimizer!r} is not one of {OPTIMIZERS}")
        _positive(p.max_grad_norm, "privacy.max_grad_norm (--clip)")
        if p.non_private:
            if p.epsilon is not None or p.noise_multiplier is not None:
                raise ConfigError("privacy: --non-private takes neither --epsilon nor --noise-multiplier")
        else:
            if p.epsilon is None and p.noise_multiplier is None:
                raise ConfigError("privacy: give --epsilon or --noise-multiplier (or --non-private)")
            if p.epsilon is not None and p.noise_multiplier is not None:
                raise ConfigError("privacy: give --epsilon or --noise-multiplier, not both")
            if p.epsilon is not None:
                _positive(p.epsilon, "privacy.epsilon (--epsilon)")
            if p.noise_multiplier is not None:
                _positive(p.noise_multiplier, "privacy.noise_multiplier (--noise-multiplier)")
        if p.delta is not None:
            _finite(p.delta, "privacy.delta (--delta)")
            if not 0.0 < p.delta < 1.0:
                raise ConfigError(f"privacy.delta (--delta): {p.delta} must be in (0, 1)")
        if e.encoder not in ENCODERS:
            raise ConfigError(f"encoder.encoder (--encoder): {e.encoder!r} is not one of {ENCODERS}")
        if e.kind not in AUTOENCODER_KINDS:
            raise ConfigError(f"encoder.kind (--ae-kind): {e.kind!r} is not one of {AUTOENCODER_KINDS}")
        _whole(e.latent, "encoder.latent (--latent)", 1)
        _whole(e.hidden, "encoder.hidden (--ae-hidden)", 1)
        _whole(e.steps, "encoder.steps (--ae-steps)", 1)
        _positive(e.lr, "encoder.lr (--ae-lr)")
        _whole(e.synthetic, "encoder.synthetic (--synthetic)", 1)
        _finite(z.kappa, "denoise.kappa (--kappa)")
        if z.kappa < 1.0:
            raise ConfigError(f"denoise.kappa (--kappa): {z.kappa} must be >= 1")
        if z.norm_correction not in NORM_CORRECTIONS:
            raise ConfigError(f"denoise.norm_correction (--norm-correction): {z.norm_correction!r} is not one of "
                              f"{NORM_CORRECTIONS}")
        _whole(z.min_dim, "denoise.min_dim (--denoise-min-dim)", 0)
        if z.denoise and p.non_private:
            raise ConfigError("denoise: --denoise needs noise to remove (not with --non-private)")
        if not r.out:
            raise ConfigError("run.out (--out): a run directory is required")
        _whole(r.eval_every, "run.eval_every (--eval-every)", 1)
        _whole(r.eval_batch_size, "run.eval_batch_size (--eval-batch-size)", 1)
        if m.trainable != "lora":
            raise ConfigError(f"model.trainable: federated runs train LoRA factors + head, got {m.trainable!r}")
        if not m.path:
            raise ConfigError("model.path (--model): a checkpoint directory is required")
        _whole(m.lora_rank, "model.lora_rank (--lora-rank)", 1)
        _positive(m.lora_alpha, "model.lora_alpha (--lora-alpha)")
        _whole(m.max_length, "model.max_length (--max-length)", 2)
        d = self.data
        _finite(d.eval_fraction, "data.eval_fraction (--eval-fraction)")
        if not 0.0 < d.eval_fraction < 1.0:
            raise ConfigError(f"data.eval_fraction (--eval-fraction): {d.eval_fraction} must be in (0, 1)")
        if d.eval_limit is not None:
            _whole(d.eval_limit, "data.eval_limit (--eval-limit)", 1)


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
