"""The benchmarks' models: the shape fields of MiniLM and RoBERTa-base, random inputs, the same random weights
for minidp and for transformers, and the transformers twin (bench_step and the study setting, _bench_study)."""
from __future__ import annotations

import numpy as np

from models.config import EncoderConfig, init_params

MODELS = {
    # name: HF-style shape fields (shared by minidp's EncoderConfig and transformers' configs)
    "minilm": dict(model_type="bert", vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                   num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512,
                   type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0),
    "roberta-base": dict(model_type="roberta", vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514,
                         type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1),
}
FIRST_TOKEN = {"bert": 101, "roberta": 0}  # [CLS] / <s>
NUM_LABELS = 2


def model_fields(spec: dict) -> dict:
    """The shape fields of ``spec["model"]``; ``spec["layers"]`` / ``spec["vocab_size"]`` (if set) override."""
    fields = dict(MODELS[spec["model"]])
    if spec.get("layers"):
        fields["num_hidden_layers"] = int(spec["layers"])
    if spec.get("vocab_size"):  # tests only: a smaller table builds faster
        fields["vocab_size"] = int(spec["vocab_size"])
    return fields


def make_inputs(fields: dict, B: int, T: int, seed: int):
    """(ids, mask, labels) int64: random ids after [CLS]/<s>, lengths uniform in [T/2, T], padding after."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(1, T // 2), T + 1, size=B)  # (B,) uniform in [T/2, T]
    ids = rng.integers(1000, fields["vocab_size"], size=(B, T))  # (B, T) clear of special ids
    ids[:, 0] = FIRST_TOKEN[fields["model_type"]]
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)  # (B, T) 1 = token
    ids = np.where(mask == 1, ids, fields["pad_token_id"]).astype(np.int64)  # (B, T)
    labels = rng.integers(0, NUM_LABELS, size=B).astype(np.int64)  # (B,)
    return ids, mask, labels


def init_weights(fields: dict, seed: int) -> dict:
    """{hf_name: float64 array}: the same random weights for minidp and torch (transformers' init scheme)."""
    config = EncoderConfig(num_labels=NUM_LABELS, **fields)
    return config, init_params(config, np.random.default_rng(seed))


def torch_model(fields: dict, params: dict):
    """transformers' *ForSequenceClassification with minidp's random weights, eager attention, no dropout."""
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    kind = fields["model_type"]
    config_cls = transformers.BertConfig if kind == "bert" else transformers.RobertaConfig
    hf_config = config_cls(num_labels=NUM_LABELS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                           classifier_dropout=0.0, **{k: v for k, v in fields.items() if k != "model_type"})
    model = transformers.AutoModelForSequenceClassification.from_config(
        hf_config, attn_implementation="eager", dtype=torch.float32)
    state = {name: torch.from_numpy(np.asarray(value, dtype=np.float32)) for name, value in params.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("position_ids")]:
        raise RuntimeError(f"weights do not match transformers: missing {missing}, unexpected {unexpected}")
    assert model.config._attn_implementation == "eager"
    return model
