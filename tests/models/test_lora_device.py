"""A LoRA model on the device (a GPU, else the CuPy stand-in) against the host: logits, clipped sums, merge."""
from __future__ import annotations

import numpy as np

from minidp.backend import to_host
from minidp.privacy.clipping import clipped_grad_sum
from models.lora import LoraSpec, init_factors
from models.config import EncoderConfig, init_params, lora_param_shapes
from models.roberta import SequenceClassifier
from tests.nn.gradcheck import rel_err


def test_lora_model_on_the_device_equals_the_host(device):
    cfg = EncoderConfig(model_type="bert", vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    spec = LoraSpec(r=2, alpha=4, targets=("query", "value", "output.dense"))
    rng = np.random.default_rng(0)
    params = init_params(cfg, rng)
    params.update({n: v + 0.1 for n, v in init_factors(lora_param_shapes(cfg, spec), rng).items()})  # B ≠ 0
    ids = rng.integers(5, 40, size=(4, 7))
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    labels = np.array([0, 1, 1, 0])
    results = {}
    for where in ("cpu", device):
        model = SequenceClassifier(cfg, params, trainable="lora", dtype="float64", device=where, lora=spec)
        sums, norms = clipped_grad_sum(model, ids, mask, labels, max_grad_norm=0.1)
        results[where] = (to_host(model.forward(ids, mask)), to_host(norms), {n: to_host(g) for n, g in sums.items()},
                          to_host(model.merge_lora().forward(ids, mask)))
    host, dev = results["cpu"], results[device]
    for a, b in zip(host[:2] + host[3:], dev[:2] + dev[3:]):
        assert rel_err(b, a) <= 1e-12
    assert host[2].keys() == dev[2].keys() and any(".lora_A." in n for n in host[2])
    assert all(rel_err(dev[2][n], host[2][n]) <= 1e-12 for n in host[2])
