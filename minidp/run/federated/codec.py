"""What a client sends: its update itself, or latents of its LoRA factors (one auto-encoder per factor shape).

An update Δ is {hf_name: array} over the trainable names: LoRA factors A (r, d_in), B (d_out, r) and the head.
A factor is read as r vectors along its long side (``factor_vectors``): the rows of A (r, d_in) and the
columns of B, i.e. the rows of Bᵀ (r, d_out). The auto-encoder for the factor's shape maps each vector of
length d to a latent of length k, so a factor travels as an (r, k) latent instead of r·d numbers. The head
travels as it is (it is small for RoBERTa, and encoding it is not what the papers study).

    codec = build_codec("dr", public_updates, settings, rng)    # or "fedcg", or "none" (identity)
    wire = codec.encode(update)          # on the client: {name: latent (r, k) | head array}
    update_hat = codec.decode(wire)      # on the server, after the noise: {name: array in Δ's shapes}

Stage 1 (before any private round; docs/federated.md): ``public_updates`` are updates computed by
pseudo-clients on a PUBLIC split, disjoint from the clients' data.
- DR-Encoder (Zhang et al. 2025, arXiv 2412.17053): only per-layer statistics of those updates are used —
  for each factor name, the mean and variance of every coordinate of its vectors (``layer_statistics``) —
  and the auto-encoder trains on synthetic vectors drawn from N(mean, diag(var)) (``synthetic_vectors``).
- FedCG-style (CG-FedLLM, arXiv 2405.13746): the auto-encoder trains on the public updates' vectors
  themselves (``real_vectors``).
The encoder is fixed afterwards: a public function, the same for every client and round.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minidp.backend import array_module, to_host
from minidp.errors import ConfigError
from minidp.run.federated.autoencoder import AutoEncoder, AutoEncoderSpec, relative_error, train_autoencoder

ENCODERS = ("none", "dr", "fedcg")  # identity | DR-Encoder (synthetic prior) | FedCG-style (public updates)
BYTES_PER_NUMBER = 4  # float32 on the wire


def is_factor(name: str) -> bool:
    """A LoRA factor's name (PEFT's ``…lora_A.weight`` / ``…lora_B.weight``)."""
    return name.endswith((".lora_A.weight", ".lora_B.weight"))


def factor_vectors(name: str, matrix):
    """A (r, d_in) -> its rows (r, d_in); B (d_out, r) -> Bᵀ (r, d_out): r vectors of length d."""
    return matrix if name.endswith(".lora_A.weight") else matrix.T


def from_vectors(name: str, vectors):
    """The inverse of ``factor_vectors``: (r, d) -> the factor's own layout."""
    return vectors if name.endswith(".lora_A.weight") else vectors.T


def shape_key(name: str, shape) -> str:
    """The auto-encoder a factor uses: one per factor shape, e.g. "lora_A(4, 384)"."""
    role = "lora_A" if name.endswith(".lora_A.weight") else "lora_B"
    return f"{role}{tuple(int(s) for s in shape)}"


@dataclass(frozen=True)
class EncoderSettings:
    """How the stage-1 auto-encoders are built."""

    kind: str = "linear"  # auto-encoder: linear | mlp
    latent: int = 64  # k, the latent size of every vector (capped at the vector length d)
    hidden: int = 128  # mlp: hidden width
    steps: int = 300  # Adam steps of auto-encoder training
    lr: float = 1e-2  # Adam learning rate
    batch_size: int = 256  # vectors per training step
    synthetic: int = 4096  # DR-Encoder: synthetic vectors drawn per auto-encoder


@dataclass
class Codec:
    """Identity (``encoder="none"``) or one auto-encoder per factor shape."""

    encoder: str  # none | dr | fedcg
    autoencoders: dict = field(default_factory=dict)  # {shape_key: AutoEncoder}

    def _ae(self, name: str, shape) -> AutoEncoder | None:
        if self.encoder == "none" or not is_factor(name):
            return None
        return self.autoencoders[shape_key(name, shape)]

    def encode(self, update: dict) -> dict:
        """{name: array} in Δ's shapes -> {name: wire array}: a factor's latent (r, k), the head unchanged."""
        wire = {}
        for name, value in update.items():
            ae = self._ae(name, value.shape)
            wire[name] = value if ae is None else ae.encode(factor_vectors(name, value))  # (r, k)
        return wire

    def decode(self, wire: dict, shapes: dict) -> dict:
        """{name: wire array} -> {name: array of ``shapes[name]``} (the decoder runs on the server)."""
        out = {}
        for name, value in wire.items():
            ae = self._ae(name, shapes[name])
            out[name] = value if ae is None else from_vectors(name, ae.decode(value))  # (r, d) -> factor layout
        return out

    def wire_shapes(self, shapes: dict) -> dict:
        """{name: shape of what the client sends}."""
        out = {}
        for name, shape in shapes.items():
            ae = self._ae(name, shape)
            if ae is None:
                out[name] = tuple(shape)
            else:  # r vectors: A's rows, B's columns
                out[name] = (int(shape[0] if name.endswith(".lora_A.weight") else shape[1]), ae.spec.k)
        return out

    def numbers_sent(self, shapes: dict) -> int:
        """How many numbers one client sends per round."""
        return int(sum(int(np.prod(s)) for s in self.wire_shapes(shapes).values()))

    def reconstruction_error(self, update: dict) -> float | None:
        """‖decode(encode(Δ)) − Δ‖² / ‖Δ‖² over the factors (None for the identity codec). NOT covered by DP
        when Δ is a client's private update: it is a noise-free function of its data."""
        if self.encoder == "none":
            return None
        factors = {n: v for n, v in update.items() if is_factor(n)}
        shapes = {n: v.shape for n, v in factors.items()}
        decoded = self.decode(self.encode(factors), shapes)
        num = sum(relative_error(factors[n], decoded[n]) * _sq(factors[n]) for n in factors)
        den = sum(_sq(factors[n]) for n in factors)
        return 0.0 if den == 0.0 else num / den


def _sq(x) -> float:
    return float(to_host((x * x).sum()))


# --------------------------------------------------------------------------------------------- stage 1


def layer_statistics(updates: list[dict]) -> dict:
    """{factor name: (mean (d,), var (d,))} of the factor's vectors pooled over the r rows and the updates."""
    stats = {}
    for name in updates[0]:
        if not is_factor(name):
            continue
        xp = array_module(updates[0][name])
        vectors = xp.concatenate([factor_vectors(name, u[name]) for u in updates], axis=0)  # (P·r, d)
        stats[name] = (vectors.mean(axis=0), vectors.var(axis=0))  # (d,), (d,)
    return stats


def synthetic_vectors(stats: dict, shapes: dict, count: int, rng: np.random.Generator) -> dict:
    """{shape_key: (count, d)} synthetic vectors: for each factor name of that shape an equal share drawn
    from N(mean_name, diag(var_name)) (the DR-Encoder's Gaussian random prior), on the host by ``rng``."""
    names_by_key: dict = {}
    for name in sorted(stats):
        names_by_key.setdefault(shape_key(name, shapes[name]), []).append(name)
    out = {}
    for key, names in names_by_key.items():
        xp = array_module(stats[names[0]][0])
        parts = []
        for j, name in enumerate(names):
            mean, var = stats[name]
            n = count // len(names) + (1 if j < count % len(names) else 0)
            z = xp.asarray(rng.standard_normal((n, mean.shape[0])), dtype=mean.dtype)  # (n, d)
            parts.append(mean + xp.sqrt(var) * z)  # (n, d)
        out[key] = xp.concatenate(parts, axis=0)  # (count, d)
    return out


def real_vectors(updates: list[dict]) -> dict:
    """{shape_key: (n, d)} the public updates' factor vectors, pooled per factor shape (FedCG-style)."""
    out: dict = {}
    for update in updates:
        for name in sorted(update):
            if is_factor(name):
                out.setdefault(shape_key(name, update[name].shape), []).append(factor_vectors(name, update[name]))
    return {key: array_module(parts[0]).concatenate(parts, axis=0) for key, parts in out.items()}


def build_codec(encoder: str, public_updates: list[dict], settings: EncoderSettings,
                rng: np.random.Generator) -> tuple[Codec, dict]:
    """Stage 1: the codec for ``encoder`` and a report {shape_key: {d, k, final_loss, public_rel_error}}.

    ``public_updates`` come from the public split only; "none" needs none of them.
    """
    if encoder not in ENCODERS:
        raise ConfigError(f"encoder={encoder!r} is not one of {ENCODERS}")
    if encoder == "none":
        return Codec("none"), {}
    if not public_updates:
        raise ConfigError(f"encoder={encoder!r} needs public updates for stage 1 (a public split)")
    shapes = {n: v.shape for n, v in public_updates[0].items() if is_factor(n)}
    if encoder == "dr":
        training = synthetic_vectors(layer_statistics(public_updates), shapes, settings.synthetic, rng)
    else:
        training = real_vectors(public_updates)
    real = real_vectors(public_updates)
    autoencoders, report = {}, {}
    for key in sorted(training):
        vectors = training[key]
        d = int(vectors.shape[1])
        spec = AutoEncoderSpec(kind=settings.kind, d=d, k=min(settings.latent, d), hidden=settings.hidden)
        ae, history = train_autoencoder(vectors, spec, rng=rng, steps=settings.steps, lr=settings.lr,
                                        batch_size=settings.batch_size)
        autoencoders[key] = ae
        report[key] = {"d": d, "k": spec.k, "training_vectors": int(vectors.shape[0]),
                       "final_loss": history[-1] if history else None,
                       "public_rel_error": relative_error(real[key], ae.decode(ae.encode(real[key])))}
    return Codec(encoder, autoencoders), report
