"""The denoiser leaves LoRA factors alone by default (docs/denoiser.md, "What is denoised")."""
from __future__ import annotations

import numpy as np

from minidp.denoise import default_include, denoise_gradients


def test_lora_factors_pass_through_untouched_by_default():
    rng = np.random.default_rng(0)
    pre = "roberta.encoder.layer.0.attention.self.query"
    grads = {f"{pre}.lora_A.weight": rng.standard_normal((4, 48)),
             f"{pre}.lora_B.weight": rng.standard_normal((48, 4)),
             f"{pre}.weight": rng.standard_normal((48, 48)),
             "classifier.dense.weight": rng.standard_normal((48, 48))}
    assert not default_include(f"{pre}.lora_A.weight", grads[f"{pre}.lora_A.weight"])
    assert not default_include(f"{pre}.lora_B.weight", grads[f"{pre}.lora_B.weight"])
    for method in ("exact", "fast"):
        new, stats = denoise_gradients(grads, 1.0, method=method)
        assert new[f"{pre}.lora_A.weight"] is grads[f"{pre}.lora_A.weight"]
        assert new[f"{pre}.lora_B.weight"] is grads[f"{pre}.lora_B.weight"]
        assert set(stats) == {f"{pre}.weight", "classifier.dense.weight"}
    # opting in is one predicate away
    _, stats = denoise_gradients(grads, 1.0, include=lambda name, g: g.ndim == 2 and name.endswith(".weight"))
    assert set(stats) == set(grads)
