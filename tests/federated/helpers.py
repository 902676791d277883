"""Small update dicts named like a 2-layer BERT's LoRA adapter (query, value) plus its head, for tests."""
from __future__ import annotations

import numpy as np

from minidp.federated.codec import EncoderSettings, build_codec

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
    """{encoder kind: Codec} built from 4 random 'public' updates (quick stage 1)."""
    rng = np.random.default_rng(seed)
    public = [random_update(rng, 1e-2) for _ in range(4)]
    settings = EncoderSettings(kind="linear", latent=3, steps=20, batch_size=16, synthetic=64)
    return {kind: build_codec(kind, public, settings, rng)[0] for kind in ("none", "dr", "fedcg")}
