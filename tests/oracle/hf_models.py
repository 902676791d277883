"""Test oracles: tiny random transformers RoBERTa/BERT classifiers and torch-autograd gradients.

Only tests import this (torch and transformers are oracles, never dependencies of minidp/ or models/).

    hf_model = build_hf_classifier("roberta", seed=0)        # float64, eager attention, eval mode
    batch = random_batch(hf_model.config, B=5, T=9, seed=1)  # numpy ids / mask / token types / labels
    loss, grads = torch_loss_and_grads(hf_model, batch)      # gradient of the mean loss, {name: ndarray}
    per_ex = torch_per_example_grads(hf_model, batch)        # {name: (B, *shape)} one example at a time
    per_ex = torch_per_example_grads(hf_model, batch, logits_fn=mean_pooled_logits)  # minidp's pooling="mean"
"""
from __future__ import annotations

import numpy as np

from minidp.backend import to_host

from tests.helpers import require_module

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
FAMILY = {
    "roberta": dict(max_position_embeddings=40, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2),
    "bert": dict(max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0),
}


def build_hf_classifier(family: str, *, num_labels: int = 3, seed: int = 0, dtype: str = "float64", **overrides):
    """A random ``{Roberta,Bert}ForSequenceClassification`` in eval mode with eager attention.

    Every parameter gets a random perturbation (biases non-zero, LayerNorm weights ≠ 1) so that each
    gradient formula is exercised, not only the ones transformers' init leaves non-trivial.
    """
    torch = require_module("torch")
    transformers = require_module("transformers")
    torch.manual_seed(seed)
    kwargs = {**TINY, **FAMILY[family], "num_labels": num_labels, **overrides}
    if family == "roberta":
        config = transformers.RobertaConfig(**kwargs)
        cls = transformers.RobertaForSequenceClassification
    else:
        config = transformers.BertConfig(**kwargs)
        cls = transformers.BertForSequenceClassification
    config._attn_implementation = "eager"
    model = cls(config).to(getattr(torch, dtype))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            p.add_(0.1 * noise if ("LayerNorm" in name or name.endswith("bias")) else 0.02 * noise)
    model.eval()
    return model


def random_batch(config, *, B: int = 5, T: int = 9, seed: int = 0, token_types: bool = False) -> dict:
    """Random ids avoiding the pad id at real tokens; example i keeps T - (i mod 4) real tokens (rest padded)."""
    rng = np.random.default_rng(seed)
    pad = config.pad_token_id
    ids = rng.integers(3, config.vocab_size, size=(B, T))
    ids[ids == pad] = pad + 1 if pad + 1 < config.vocab_size else 3
    ids[:, 0] = 0 if config.model_type == "roberta" else 2  # <s> / a [CLS]-like id
    mask = np.ones((B, T), dtype=np.int64)
    for i in range(B):
        n_real = T - (i % 4)
        ids[i, n_real:] = pad
        mask[i, n_real:] = 0
    batch = {"input_ids": ids.astype(np.int64), "attention_mask": mask,
             "labels": rng.integers(0, config.num_labels, size=B).astype(np.int64)}
    if token_types:
        types = rng.integers(0, config.type_vocab_size, size=(B, T)).astype(np.int64)
        batch["token_type_ids"] = types * mask
    return batch


def _torch_inputs(batch, rows=slice(None)):
    torch = require_module("torch")
    out = {"input_ids": torch.from_numpy(batch["input_ids"][rows]),
           "attention_mask": torch.from_numpy(batch["attention_mask"][rows])}
    if "token_type_ids" in batch:
        out["token_type_ids"] = torch.from_numpy(batch["token_type_ids"][rows])
    return out


def torch_logits(model, batch, logits_fn=None) -> np.ndarray:
    torch = require_module("torch")
    with torch.no_grad():
        inputs = _torch_inputs(batch)
        return (model(**inputs).logits if logits_fn is None else logits_fn(model, inputs)).numpy()


def mean_pooled_logits(model, inputs):
    """(B, K) logits of ``model``'s own head on the masked mean of its last hidden states (minidp's
    pooling="mean"): z_i = Σ_t m_it h_it / max(1, Σ_t m_it), then BERT pooler.dense -> tanh -> dropout ->
    classifier, RoBERTa dropout -> classifier.dense -> tanh -> dropout -> classifier.out_proj."""
    torch = require_module("torch")
    encoder = model.roberta if model.config.model_type == "roberta" else model.bert
    h = encoder(**inputs).last_hidden_state  # (B, T, C)
    m = inputs["attention_mask"][..., None].to(h.dtype)  # (B, T, 1)
    z = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)  # (B, C)
    if model.config.model_type == "roberta":
        head = model.classifier
        return head.out_proj(head.dropout(torch.tanh(head.dense(head.dropout(z)))))
    return model.classifier(model.dropout(torch.tanh(model.bert.pooler.dense(z))))


def _loss_grads(model, batch, rows, reduction: str, logits_fn=None):
    torch = require_module("torch")
    model.zero_grad(set_to_none=True)
    inputs = _torch_inputs(batch, rows)
    logits = model(**inputs).logits if logits_fn is None else logits_fn(model, inputs)
    labels = torch.from_numpy(batch["labels"][rows])
    loss = torch.nn.functional.cross_entropy(logits, labels, reduction=reduction)
    loss.backward()
    grads = {name: p.grad.detach().numpy().copy() for name, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def torch_loss_and_grads(model, batch):
    """(mean cross-entropy, {name: gradient of the mean}) by torch autograd."""
    return _loss_grads(model, batch, slice(None), "mean")


def torch_per_example_grads(model, batch, logits_fn=None) -> dict:
    """{name: (B, *shape)}: ∇ loss_i (not divided by B), one example at a time (the obvious reference).

    ``logits_fn(model, inputs)``: the logits to differentiate (default the model's own, e.g.
    ``mean_pooled_logits``)."""
    B = batch["input_ids"].shape[0]
    per = [_loss_grads(model, batch, slice(i, i + 1), "sum", logits_fn)[1] for i in range(B)]
    return {name: np.stack([g[name] for g in per]) for name in per[0]}


def max_rel_diff(ours, ref) -> float:
    """max |ours − ref| / max |ref| (relative to the tensor's scale; 0 for two zero tensors)."""
    ours, ref = to_host(ours).astype(np.float64), to_host(ref).astype(np.float64)  # numpy or cupy arrays
    scale = np.abs(ref).max() if ref.size else 0.0
    diff = np.abs(ours - ref).max() if ref.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)
