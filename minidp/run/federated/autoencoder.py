"""A small gradient auto-encoder: encoder and decoder as forward/backward pairs, and its training loop.

Vectors of length d (rows of a LoRA factor, see ``codec.py``) are compressed to latents of length k < d:

    linear:  z = (x/s) Eᵀ                         x̂ = s · z Dᵀ
    mlp:     z = tanh((x/s) E1ᵀ + e1) E2ᵀ          x̂ = s · tanh(z D1ᵀ + d1) D2ᵀ

E (k, d), D (d, k); mlp: E1 (h, d), e1 (h,), E2 (k, h), D1 (h, k), d1 (h,), D2 (d, h). ``s`` is a fixed,
public input scale (the RMS of the training vectors), so the weights train at unit scale; a linear
auto-encoder is scale-equivariant, x̂(c·x) = c·x̂(x), so for it ``s`` changes the optimisation only. The
linear encoder has no bias, so it maps 0 to 0 and is a fixed linear map of the update.

Training minimises the mean squared reconstruction error over a batch of B vectors,

    L = (1/B) Σ_i ‖x̂_i − x_i‖² / s²                (dL/dx̂ = 2 (x̂ − x) / (B s²)),

with hand-written backward passes (``encoder_backward``, ``decoder_backward``) and Adam
(``minidp.optim``); afterwards the latent's scale is matched to the inputs' (``match_latent_norm``). Shapes: B vectors, d the vector length, k the latent size, h the hidden width.
tests/run/federated/test_autoencoder.py checks every backward against finite differences.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minidp.backend import array_module, to_device, to_host
from minidp.errors import ConfigError
from minidp.nn import activations
from minidp.optim import make_optimizer

AUTOENCODER_KINDS = ("linear", "mlp")


@dataclass(frozen=True)
class AutoEncoderSpec:
    """The shape of one auto-encoder."""

    kind: str  # "linear" | "mlp"
    d: int  # input vector length
    k: int  # latent size (compression d / k)
    hidden: int = 0  # mlp only: hidden width h

    def __post_init__(self):
        if self.kind not in AUTOENCODER_KINDS:
            raise ConfigError(f"auto-encoder kind={self.kind!r} is not one of {AUTOENCODER_KINDS}")
        if not (isinstance(self.k, int) and 1 <= self.k):
            raise ConfigError(f"latent size k={self.k!r} must be a whole number >= 1")
        if self.kind == "mlp" and self.hidden < 1:
            raise ConfigError(f"an mlp auto-encoder needs hidden >= 1, got {self.hidden!r}")

    def shapes(self) -> dict:
        """{parameter name: shape} of this auto-encoder."""
        if self.kind == "linear":
            return {"encoder.weight": (self.k, self.d), "decoder.weight": (self.d, self.k)}
        h = self.hidden
        return {"encoder.0.weight": (h, self.d), "encoder.0.bias": (h,), "encoder.1.weight": (self.k, h),
                "decoder.0.weight": (h, self.k), "decoder.0.bias": (h,), "decoder.1.weight": (self.d, h)}


def init_params(spec: AutoEncoderSpec, rng: np.random.Generator, *, device=None, dtype="float64") -> dict:
    """Weights N(0, 1/fan_in) (so activations keep unit scale), biases 0; drawn on the host by ``rng``."""
    params = {}
    for name, shape in spec.shapes().items():
        if name.endswith("bias"):
            value = np.zeros(shape)
        else:
            value = rng.standard_normal(shape) / np.sqrt(shape[1])
        params[name] = to_device(value, device, dtype)
    return params


# --------------------------------------------------------------------------------------------- layers


@dataclass
class EncoderCache:
    x: object  # (B, d) the scaled input x/s
    hidden: object  # mlp: tanh output (B, h); linear: None


def encoder_forward(p, x, *, kind: str, scale: float):
    """x (B, d) -> z (B, k), cache."""
    xs = x / scale  # (B, d)
    if kind == "linear":
        z = xs @ p["encoder.weight"].T  # (B, d) @ (d, k) -> (B, k)
        return z, EncoderCache(x=xs, hidden=None)
    pre = xs @ p["encoder.0.weight"].T + p["encoder.0.bias"]  # (B, d) @ (d, h) -> (B, h)
    hid, _ = activations.tanh_forward(pre)  # (B, h)
    z = hid @ p["encoder.1.weight"].T  # (B, h) @ (h, k) -> (B, k)
    return z, EncoderCache(x=xs, hidden=hid)


def encoder_backward(p, cache: EncoderCache, dz, *, kind: str, scale: float):
    """dz (B, k) -> dx (B, d), {name: dL/dparam} (summed over the batch)."""
    if kind == "linear":
        grads = {"encoder.weight": dz.T @ cache.x}  # (k, B) @ (B, d) -> (k, d)
        dx = dz @ p["encoder.weight"] / scale  # (B, k) @ (k, d) -> (B, d); x/s contributes 1/s
        return dx, grads
    grads = {"encoder.1.weight": dz.T @ cache.hidden}  # (k, B) @ (B, h) -> (k, h)
    dhid = dz @ p["encoder.1.weight"]  # (B, k) @ (k, h) -> (B, h)
    dpre = activations.tanh_backward(cache.hidden, dhid)  # (B, h): (1 − tanh²) · dhid
    grads["encoder.0.weight"] = dpre.T @ cache.x  # (h, B) @ (B, d) -> (h, d)
    grads["encoder.0.bias"] = dpre.sum(axis=0)  # (h,)
    dx = dpre @ p["encoder.0.weight"] / scale  # (B, h) @ (h, d) -> (B, d)
    return dx, grads


@dataclass
class DecoderCache:
    z: object  # (B, k) the latent
    hidden: object  # mlp: tanh output (B, h); linear: None


def decoder_forward(p, z, *, kind: str, scale: float):
    """z (B, k) -> x̂ (B, d), cache."""
    if kind == "linear":
        x_hat = scale * (z @ p["decoder.weight"].T)  # (B, k) @ (k, d) -> (B, d)
        return x_hat, DecoderCache(z=z, hidden=None)
    pre = z @ p["decoder.0.weight"].T + p["decoder.0.bias"]  # (B, k) @ (k, h) -> (B, h)
    hid, _ = activations.tanh_forward(pre)  # (B, h)
    x_hat = scale * (hid @ p["decoder.1.weight"].T)  # (B, h) @ (h, d) -> (B, d)
    return x_hat, DecoderCache(z=z, hidden=hid)


def decoder_backward(p, cache: DecoderCache, dx_hat, *, kind: str, scale: float):
    """dx̂ (B, d) -> dz (B, k), {name: dL/dparam} (summed over the batch)."""
    dy = scale * dx_hat  # (B, d): x̂ = s · y
    if kind == "linear":
        grads = {"decoder.weight": dy.T @ cache.z}  # (d, B) @ (B, k) -> (d, k)
        return dy @ p["decoder.weight"], grads  # (B, d) @ (d, k) -> (B, k)
    grads = {"decoder.1.weight": dy.T @ cache.hidden}  # (d, B) @ (B, h) -> (d, h)
    dhid = dy @ p["decoder.1.weight"]  # (B, d) @ (d, h) -> (B, h)
    dpre = activations.tanh_backward(cache.hidden, dhid)  # (B, h)
    grads["decoder.0.weight"] = dpre.T @ cache.z  # (h, B) @ (B, k) -> (h, k)
    grads["decoder.0.bias"] = dpre.sum(axis=0)  # (h,)
    return dpre @ p["decoder.0.weight"], grads  # (B, h) @ (h, k) -> (B, k)


def mse_forward(x_hat, x, *, scale: float):
    """L = (1/B) Σ_i ‖x̂_i − x_i‖² / s² (a float), and dL/dx̂ (B, d)."""
    B = x.shape[0]
    diff = (x_hat - x) / scale  # (B, d)
    loss = float(to_host((diff * diff).sum())) / B
    return loss, 2.0 * diff / (B * scale)  # (B, d)


# --------------------------------------------------------------------------------------------- model


@dataclass
class AutoEncoder:
    """One trained auto-encoder: ``encode`` runs on the clients, ``decode`` on the server."""

    spec: AutoEncoderSpec
    params: dict  # {name: array}, see AutoEncoderSpec.shapes
    scale: float  # public input scale s

    def encode(self, x):
        """x (B, d) -> z (B, k)."""
        return encoder_forward(self.params, x, kind=self.spec.kind, scale=self.scale)[0]

    def decode(self, z):
        """z (B, k) -> x̂ (B, d)."""
        return decoder_forward(self.params, z, kind=self.spec.kind, scale=self.scale)[0]

    def loss_and_grads(self, x):
        """The reconstruction loss of x (B, d) and its gradient {name: array}: forward, then backward."""
        kind, s = self.spec.kind, self.scale
        z, enc_cache = encoder_forward(self.params, x, kind=kind, scale=s)  # (B, k)
        x_hat, dec_cache = decoder_forward(self.params, z, kind=kind, scale=s)  # (B, d)
        loss, dx_hat = mse_forward(x_hat, x, scale=s)
        dz, grads = decoder_backward(self.params, dec_cache, dx_hat, kind=kind, scale=s)  # (B, k)
        _, enc_grads = encoder_backward(self.params, enc_cache, dz, kind=kind, scale=s)
        grads.update(enc_grads)
        return loss, grads


def relative_error(x, x_hat) -> float:
    """‖x̂ − x‖² / ‖x‖² over all entries (0 when x is 0 and x̂ is too; +∞ when only x is 0)."""
    num = float(to_host(((x_hat - x) ** 2).sum()))
    den = float(to_host((x * x).sum()))
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def train_autoencoder(vectors, spec: AutoEncoderSpec, *, rng: np.random.Generator, steps: int = 300,
                      lr: float = 1e-2, batch_size: int = 256) -> tuple[AutoEncoder, list[float]]:
    """Fit an auto-encoder to ``vectors`` (n, d) by Adam on minibatches drawn by ``rng``.

    Returns (the auto-encoder, the loss at every step). The vectors are the only data it sees: synthetic
    draws for DR-Encoder, public updates for the FedCG-style encoder (``codec.py``).
    """
    xp = array_module(vectors)
    n, d = vectors.shape
    if d != spec.d:
        raise ConfigError(f"training vectors have length {d}, the auto-encoder expects {spec.d}")
    if n == 0:
        raise ConfigError("no training vectors for the auto-encoder")
    rms = float(to_host(xp.sqrt((vectors * vectors).mean())))
    scale = rms if rms > 0 else 1.0
    device = "cuda" if xp is not np else "cpu"
    model = AutoEncoder(spec=spec, params=init_params(spec, rng, device=device, dtype=vectors.dtype), scale=scale)
    optimizer = make_optimizer("adam", lr)
    history = []
    for _ in range(int(steps)):
        idx = rng.choice(n, size=min(batch_size, n), replace=False)  # (B,) host indices
        loss, grads = model.loss_and_grads(vectors[xp.asarray(idx)])
        optimizer.step(model.params, grads)
        history.append(loss)
    match_latent_norm(model, vectors)
    return model, history


def match_latent_norm(model: AutoEncoder, vectors) -> float:
    """Rescale the latent so that its mean squared norm equals the vectors' (in place); returns the factor a.

    z ↦ a·z with the decoder's first weight ↦ its /a leaves every reconstruction unchanged (z enters the
    decoder linearly), but fixes the latent's scale, which training leaves arbitrary. Then a client's
    latent carries about the energy of its update, and a clip norm C means the same with and without an
    encoder (the client-level mechanism clips the latent, ``aggregation.py``).
    """
    z = model.encode(vectors)  # (n, k)
    z_sq = float(to_host((z * z).sum()))
    x_sq = float(to_host((vectors * vectors).sum()))
    if z_sq == 0.0 or x_sq == 0.0:
        return 1.0
    a = (x_sq / z_sq) ** 0.5
    last_encoder = "encoder.weight" if model.spec.kind == "linear" else "encoder.1.weight"
    first_decoder = "decoder.weight" if model.spec.kind == "linear" else "decoder.0.weight"
    model.params[last_encoder] *= a
    model.params[first_decoder] /= a
    return a
