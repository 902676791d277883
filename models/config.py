"""The encoder's configuration, parameter names and shapes, and their initialisation (no arrays computed here).

    EncoderConfig.from_hf_dict(config.json)     the fields RoBERTa/BERT need, validated
    param_shapes(config)                        {hf_name: shape}, in transformers' state_dict order
    init_params(config, rng)                    fresh float64 arrays as transformers' _init_weights
    head_param_names / head_modules_to_save     the head (RoBERTa classifier.*, BERT pooler + classifier)
    lora_head_param_names(config, extra)        what trainable="lora" trains of the head: PEFT's SEQ_CLS set
    encoder_linear_modules / lora_param_shapes  what LoRA may target, and the factors it adds

The model that computes with them is ``models/roberta.py``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from minidp.errors import ConfigError
from minidp.nn import attention
from models.lora import LoraSpec, factor_shapes, match_targets

MODEL_TYPES = ("roberta", "bert")
TRAINABLE_CHOICES = ("all", "no-embeddings", "classifier", "lora")
# The linear layers of every encoder block (module paths after "<prefix>encoder.layer.N."): LoRA's candidates.
BLOCK_LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                 "intermediate.dense", "output.dense")


# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class EncoderConfig:
    """The fields of a Hugging Face config.json this code reads (validated on construction)."""

    model_type: str  # "roberta" | "bert"
    vocab_size: int  # V, e.g. 50265 (roberta-base), 30522 (BERT/MiniLM)
    hidden_size: int  # C, e.g. 768; a multiple of num_attention_heads
    num_hidden_layers: int  # L, e.g. 12
    num_attention_heads: int  # H, e.g. 12
    intermediate_size: int  # F, e.g. 3072
    hidden_act: str = "gelu"  # only the exact-erf "gelu" is implemented
    hidden_dropout_prob: float = 0.1  # dropout after embeddings / attention output / FFN output
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention probabilities
    max_position_embeddings: int = 512  # rows of the position table (RoBERTa: 514 = 512 + pad + 1)
    type_vocab_size: int = 2  # rows of the token-type table (RoBERTa: 1)
    layer_norm_eps: float = 1e-12  # RoBERTa 1e-5, BERT 1e-12
    pad_token_id: int = 0  # RoBERTa 1, BERT 0
    num_labels: int = 2  # K
    classifier_dropout: float | None = None  # None: use hidden_dropout_prob in the head
    position_embedding_type: str = "absolute"  # only "absolute" is implemented

    def __post_init__(self):
        def bad(name, why):
            raise ConfigError(f"config field {name}={getattr(self, name)!r}: {why}")

        if self.model_type not in MODEL_TYPES:
            bad("model_type", f"unsupported; minidp implements {MODEL_TYPES}")
        if self.hidden_act != "gelu":
            bad("hidden_act", "only 'gelu' (exact erf) is implemented")
        if self.position_embedding_type != "absolute":
            bad("position_embedding_type", "only 'absolute' is implemented")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                bad(name, "must be a positive integer")
        if self.hidden_size % self.num_attention_heads:
            bad("hidden_size", f"must be a multiple of num_attention_heads={self.num_attention_heads}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= float(value) < 1.0:
                bad(name, "must be in [0, 1)")
        if not float(self.layer_norm_eps) > 0.0:
            bad("layer_norm_eps", "must be > 0")
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            bad("pad_token_id", f"must be an integer in [0, vocab_size={self.vocab_size})")
        if self.model_type == "roberta" and self.max_tokens < 1:
            bad("max_position_embeddings", f"leaves no positions after pad_token_id={self.pad_token_id}")

    @classmethod
    def from_hf_dict(cls, raw: dict, *, num_labels: int | None = None, source: str = "config.json"):
        """Build from a parsed config.json. num_labels: the argument, else id2label / num_labels, else 2."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object, found {type(raw).__name__}")
        values = {}
        required = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size")
        for f in dataclasses.fields(cls):
            if f.name == "num_labels":
                continue
            if f.name in raw:
                values[f.name] = raw[f.name]
            elif f.name in required:
                raise ConfigError(f"{source}: missing the field {f.name!r}")
        values.setdefault("position_embedding_type", "absolute")
        if num_labels is None:
            if isinstance(raw.get("id2label"), dict) and raw["id2label"]:
                num_labels = len(raw["id2label"])
            elif "num_labels" in raw:
                num_labels = raw["num_labels"]
            else:
                num_labels = 2
        values["num_labels"] = num_labels
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None

    @property
    def prefix(self) -> str:
        """The encoder's module path in the state_dict: "roberta." or "bert."."""
        return f"{self.model_type}."

    @property
    def head_dropout(self) -> float:
        return self.hidden_dropout_prob if self.classifier_dropout is None else self.classifier_dropout

    @property
    def max_tokens(self) -> int:
        """The longest sequence the position table allows (RoBERTa ids run up to pad + T)."""
        if self.model_type == "roberta":
            return self.max_position_embeddings - self.pad_token_id - 1
        return self.max_position_embeddings

    def head_names(self) -> tuple[str, str]:
        """Module paths of the head's two linear layers: (tanh dense, output projection)."""
        if self.model_type == "roberta":
            return "classifier.dense", "classifier.out_proj"
        return "bert.pooler.dense", "classifier"


def param_shapes(config: EncoderConfig) -> dict:
    """{hf_name: shape} of every parameter, in state_dict order (Linear weight (out, in))."""
    C, F, K = config.hidden_size, config.intermediate_size, config.num_labels
    pre = config.prefix
    shapes = {
        f"{pre}embeddings.word_embeddings.weight": (config.vocab_size, C),
        f"{pre}embeddings.position_embeddings.weight": (config.max_position_embeddings, C),
        f"{pre}embeddings.token_type_embeddings.weight": (config.type_vocab_size, C),
        f"{pre}embeddings.LayerNorm.weight": (C,),
        f"{pre}embeddings.LayerNorm.bias": (C,),
    }
    for layer in range(config.num_hidden_layers):
        lp = f"{pre}encoder.layer.{layer}."
        for name in attention.PROJECTIONS:
            shapes[f"{lp}attention.self.{name}.weight"] = (C, C)
            shapes[f"{lp}attention.self.{name}.bias"] = (C,)
        shapes[f"{lp}attention.output.dense.weight"] = (C, C)
        shapes[f"{lp}attention.output.dense.bias"] = (C,)
        shapes[f"{lp}attention.output.LayerNorm.weight"] = (C,)
        shapes[f"{lp}attention.output.LayerNorm.bias"] = (C,)
        shapes[f"{lp}intermediate.dense.weight"] = (F, C)
        shapes[f"{lp}intermediate.dense.bias"] = (F,)
        shapes[f"{lp}output.dense.weight"] = (C, F)
        shapes[f"{lp}output.dense.bias"] = (C,)
        shapes[f"{lp}output.LayerNorm.weight"] = (C,)
        shapes[f"{lp}output.LayerNorm.bias"] = (C,)
    dense, out = config.head_names()
    shapes[f"{dense}.weight"] = (C, C)
    shapes[f"{dense}.bias"] = (C,)
    shapes[f"{out}.weight"] = (K, C)
    shapes[f"{out}.bias"] = (K,)
    return shapes


def encoder_linear_modules(config: EncoderConfig) -> list:
    """Module paths of the encoder's linear layers, layer by layer (the modules LoRA may target)."""
    return [f"{config.prefix}encoder.layer.{layer}.{name}" for layer in range(config.num_hidden_layers)
            for name in BLOCK_LINEARS]


def lora_param_shapes(config: EncoderConfig, spec: LoraSpec) -> dict:
    """{name: shape} of the LoRA factors ``spec`` adds (ConfigError if its targets select nothing or the head)."""
    modules = match_targets(spec.targets, encoder_linear_modules(config), list(config.head_names()))
    return factor_shapes(modules, param_shapes(config), spec.r)


def head_modules_to_save(config: EncoderConfig) -> list:
    """The head as PEFT's ``modules_to_save`` names it: RoBERTa ["classifier"], BERT ["classifier", "pooler"]."""
    return ["classifier"] if config.model_type == "roberta" else ["classifier", "pooler"]


def lora_head_param_names(config: EncoderConfig, extra=()) -> list:
    """The head parameters trainable="lora" trains, as PEFT's SEQ_CLS does: the module ``classifier`` (RoBERTa
    classifier.dense + classifier.out_proj, BERT classifier), plus the modules in ``extra`` (PEFT's
    modules_to_save beyond it: BERT's "pooler", bert.pooler.dense). ConfigError naming an unknown module."""
    paths = {"classifier": "classifier."}  # PEFT's module name -> the parameters' prefix
    if config.model_type == "bert":
        paths["pooler"] = "bert.pooler."
    unknown = [name for name in extra if name not in paths]
    if unknown:
        others = [name for name in paths if name != "classifier"]
        raise ConfigError(f"lora modules_to_save {unknown}: a {config.model_type} classifier's head modules beside "
                          f"'classifier' are {others or 'none (classifier.dense already trains)'}")
    prefixes = tuple(paths[name] for name in ("classifier", *extra))
    return [name for name in head_param_names(config) if name.startswith(prefixes)]


def head_param_names(config: EncoderConfig) -> list:
    """The parameters after the encoder: RoBERTa classifier.*, BERT bert.pooler.* and classifier.*."""
    return [f"{module}.{kind}" for module in config.head_names() for kind in ("weight", "bias")]


def init_params(config: EncoderConfig, rng: np.random.Generator, names=None, std: float = 0.02) -> dict:
    """Fresh float64 host arrays as transformers' _init_weights: weights N(0, std²), biases 0, LayerNorm (1, 0).

    ``names``: only these parameters (default all). Embedding padding rows are not zeroed (they never
    enter a prediction of a real token, and their gradient is masked; see models/embeddings.py).
    """
    shapes = param_shapes(config)
    out = {}
    for name in (shapes if names is None else names):
        shape = shapes[name]
        if "LayerNorm" in name:
            out[name] = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
        elif name.endswith("bias"):
            out[name] = np.zeros(shape)
        else:
            out[name] = rng.normal(0.0, std, size=shape)
    return out
