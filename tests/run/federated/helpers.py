"""Small update dicts named like a 2-layer BERT's LoRA adapter (query, value) plus its head, for tests."""
from __future__ import annotations

import numpy as np

from minidp.run.federated.codec import EncoderSettings, build_codec

R, D, LAYERS = 2, 6, 2


def update_shapes() -> dict:
    shapes = {}
    for layer in range(LAYERS):
        for target in ("query", "value"):
            base = f"bert.encoder.layer.{layer}.attention.self.{target}"
            shapes[f"{base}.lora_A.weight"] = (R, D)
            shapes[f"{base}.lora_B.weight"] = (D, R)
    shapes["classifier.weight"] = (2, D)
    shapes["classifier.bias"] = (2,)
    return shapes


def random_update(rng: np.random.Generator, scale: float = 1.0) -> dict:
    return {n: scale * rng.standard_normal(s) for n, s in update_shapes().items()}


def codecs(seed: int = 0) -> dict:
    """{name: Codec} for every encoder choice, linear and mlp auto-encoders, built from 4 random 'public'
    updates (a quick stage 1): "none", "dr", "fedcg", "dr-mlp", "fedcg-mlp"."""
    rng = np.random.default_rng(seed)
    public = [random_update(rng, 1e-2) for _ in range(4)]
    out = {}
    for kind in ("linear", "mlp"):
        settings = EncoderSettings(kind=kind, latent=3, hidden=4, steps=20, batch_size=16, synthetic=64)
        for encoder in ("none", "dr", "fedcg") if kind == "linear" else ("dr", "fedcg"):
            out[encoder if kind == "linear" else f"{encoder}-mlp"] = build_codec(encoder, public, settings, rng)[0]
    return out
