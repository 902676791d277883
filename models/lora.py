"""LoRA adapters for the encoders in models/roberta.py, read and written in PEFT's format.

    spec = LoraSpec.from_dict({"r": 8, "alpha": 16, "targets": ["query", "value"], "dropout": 0.0,
                               "modules_to_save": []})       # ["pooler"]: BERT's pooler trains too
    modules = match_targets(spec.targets, linear_modules, head_modules)  # module paths given a LoRA branch
    shapes = factor_shapes(modules, param_shapes, spec.r)   # {"<module>.lora_A.weight": (r, d_in), ...}
    factors = init_factors(shapes, rng)                     # A ~ U(±1/√d_in), B = 0
    spec, tensors = read_adapter(DIR)                       # adapter_config.json + adapter_model.safetensors
    adapter_config(spec, ...), adapter_tensors(tensors)     # what models.hf.save_adapter writes

Targets follow PEFT's rule: a list matches a module whose path equals an entry or ends with "." + entry
("query" matches "roberta.encoder.layer.0.attention.self.query"); a single string is a regular expression
that must match the whole path. Only the encoder's linear layers take LoRA.

What trains beside the factors is PEFT's SEQ_CLS set: the module ``classifier`` in full (RoBERTa's
classifier.dense + classifier.out_proj, BERT's classifier), plus the modules named in ``modules_to_save``
(PEFT's option of that name; for BERT "pooler", the bert.pooler.dense layer before the classifier, which PEFT
leaves frozen unless named). Parameter names are PEFT's without the ``base_model.model.`` prefix and the adapter
name: ``roberta.encoder.layer.0.attention.self.query.lora_A.weight`` (r, d_in), ``...lora_B.weight``
(d_out, r); the adapter file adds the prefix back.

Initialisation: B = 0 (Hu et al. 2021), so a fresh adapter leaves the model's output unchanged; A as PEFT's
default (torch's Kaiming-uniform with a = √5), which is U(−1/√d_in, 1/√d_in).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from minidp.errors import ConfigError, DataError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
FACTORS = ("lora_A.weight", "lora_B.weight")
SPEC_KEYS = ("r", "alpha", "targets", "dropout", "modules_to_save")
SEQ_CLS_MODULES = ("classifier", "score")  # what PEFT's SEQ_CLS always adds to modules_to_save
DEFAULT_TARGETS = ("query", "value")  # PEFT's default for BERT and RoBERTa
# PEFT options this implementation does not have, with the value that means "off".
UNSUPPORTED = {"use_dora": False, "use_rslora": False, "fan_in_fan_out": False, "rank_pattern": {},
               "alpha_pattern": {}, "layers_to_transform": None, "layers_pattern": None, "layer_replication": None,
               "exclude_modules": None, "lora_bias": False, "target_parameters": None,
               "trainable_token_indices": None}


@dataclass(frozen=True)
class LoraSpec:
    """Rank, α, target modules and dropout of a LoRA adapter (validated on construction)."""

    r: int = 8  # rank of the update B A
    alpha: float = 16.0  # the update is scaled by α / r
    targets: tuple | str = DEFAULT_TARGETS  # module names (PEFT's suffix rule) or one regular expression
    dropout: float = 0.0  # dropout on the input of A, training mode only
    modules_to_save: tuple = ()  # head modules trained in full beside "classifier", e.g. ("pooler",) (BERT)

    def __post_init__(self):
        if isinstance(self.r, bool) or not isinstance(self.r, (int, np.integer)) or self.r < 1:
            raise ConfigError(f"lora r={self.r!r}: must be a positive integer")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or \
                not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(f"lora alpha={self.alpha!r}: must be a finite number > 0")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or \
                not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora dropout={self.dropout!r}: must be in [0, 1)")
        if isinstance(self.targets, str):
            try:
                re.compile(self.targets)
            except re.error as err:
                raise ConfigError(f"lora targets={self.targets!r}: not a regular expression ({err})") from None
        else:
            targets = tuple(self.targets) if isinstance(self.targets, (list, tuple)) else None
            if not targets or not all(isinstance(t, str) and t for t in targets):
                raise ConfigError(f"lora targets={self.targets!r}: give a non-empty list of module names "
                                  "(e.g. ['query', 'value'])")
            object.__setattr__(self, "targets", targets)
        extra = self.modules_to_save
        if isinstance(extra, str) or not isinstance(extra, (list, tuple)) or \
                not all(isinstance(name, str) and name for name in extra):
            raise ConfigError(f"lora modules_to_save={extra!r}: give a list of module names, e.g. ['pooler'] "
                              "(or [] for PEFT's default, the classifier alone)")
        object.__setattr__(self, "modules_to_save", tuple(dict.fromkeys(n for n in extra if n != "classifier")))
        object.__setattr__(self, "r", int(self.r))

    @property
    def scaling(self) -> float:
        """s = α / r, the factor on the low-rank update."""
        return float(self.alpha) / self.r

    @classmethod
    def from_dict(cls, raw: dict) -> "LoraSpec":
        """From ``{"r", "alpha", "targets", "dropout", "modules_to_save"}`` (each optional; defaults 8, 16,
        query+value, 0, none)."""
        unknown = sorted(set(raw) - set(SPEC_KEYS))
        if unknown:
            raise ConfigError(f"lora: unknown key(s) {unknown}; use {list(SPEC_KEYS)} or {{'adapter': DIR}}")
        return cls(**raw)


def match_targets(targets, linear_modules, head_modules=()) -> list:
    """The paths in ``linear_modules`` that ``targets`` selects (PEFT's rule, see module docstring).

    ConfigError if a target selects a head module (the head trains in full) or nothing is selected.
    """
    def hit(path: str) -> bool:
        if isinstance(targets, str):
            return re.fullmatch(targets, path) is not None
        return any(path == t or path.endswith("." + t) for t in targets)

    on_head = [m for m in head_modules if hit(m)]
    if on_head:
        raise ConfigError(f"lora targets={_show(targets)} select head module(s) {on_head}: the head trains in "
                          "full, name encoder layers only (e.g. 'attention.output.dense', not 'dense')")
    chosen = [m for m in linear_modules if hit(m)]
    if not chosen:
        examples = sorted({m.rsplit(".", 2)[-2] + "." + m.rsplit(".", 1)[-1] for m in linear_modules})
        raise ConfigError(f"lora targets={_show(targets)} select no linear layer (names end in e.g. {examples})")
    return chosen


def _show(targets) -> str:
    return repr(targets) if isinstance(targets, str) else repr(list(targets))


def factor_shapes(modules, shapes: dict, r: int) -> dict:
    """{"<module>.lora_A.weight": (r, d_in), "<module>.lora_B.weight": (d_out, r)} from the base weights' shapes."""
    out = {}
    for module in modules:
        d_out, d_in = shapes[f"{module}.weight"]
        out[f"{module}.lora_A.weight"] = (r, d_in)
        out[f"{module}.lora_B.weight"] = (d_out, r)
    return out


def init_factors(shapes: dict, rng: np.random.Generator) -> dict:
    """Fresh float64 factors: A ~ U(−1/√d_in, 1/√d_in) (PEFT's default), B = 0 (Hu et al. 2021)."""
    out = {}
    for name, shape in shapes.items():
        if name.endswith("lora_A.weight"):
            bound = 1.0 / math.sqrt(shape[1])
            out[name] = rng.uniform(-bound, bound, size=shape)
        else:
            out[name] = np.zeros(shape)
    return out


def is_factor(name: str) -> bool:
    """True for LoRA factor names (``*.lora_A.weight`` / ``*.lora_B.weight``)."""
    return name.endswith(FACTORS)


# --------------------------------------------------------------------------------------------- PEFT files


def read_adapter(path) -> tuple[LoraSpec, dict]:
    """(spec, {name: array}) from a PEFT LoRA adapter directory; names without ``base_model.model.``.

    The tensors are LoRA factors and, when the adapter saved them, the head (PEFT's modules_to_save). The
    spec's ``modules_to_save`` is the adapter's without the SEQ_CLS defaults ("classifier", "score"): what
    ``peft.PeftModel.from_pretrained(..., is_trainable=True)`` would train beside the classifier.
    """
    path = Path(path)
    config_file, weights_file = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not path.is_dir():
        raise DataError(f"{path}: not a LoRA adapter directory (expected {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{config_file}: missing (a PEFT adapter directory needs {ADAPTER_CONFIG})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{config_file}: unreadable ({err})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{config_file}: expected a JSON object")
    if raw.get("peft_type", "LORA") != "LORA":
        raise DataError(f"{config_file}: peft_type={raw.get('peft_type')!r}; only LORA adapters are supported")
    if raw.get("bias", "none") != "none":
        raise DataError(f"{config_file}: bias={raw['bias']!r} is not supported (only 'none')")
    for key, off in UNSUPPORTED.items():
        value = raw.get(key)
        if value is not None and value != off:
            raise DataError(f"{config_file}: {key}={raw[key]!r} is not supported (only {off!r})")
    saved = raw.get("modules_to_save") or []
    try:
        spec = LoraSpec(r=raw.get("r", 8), alpha=raw.get("lora_alpha", 8), targets=raw.get("target_modules"),
                        dropout=raw.get("lora_dropout", 0.0),
                        modules_to_save=[m for m in saved if m not in SEQ_CLS_MODULES] if isinstance(saved, list)
                        else saved)
    except ConfigError as err:
        raise DataError(f"{config_file}: {err}") from None
    if not weights_file.is_file():
        raise DataError(f"{weights_file}: missing (minidp reads only safetensors adapters)")
    try:
        tensors = load_file(str(weights_file))
    except Exception as err:  # safetensors raises its own SafetensorError / OSError / ValueError
        raise DataError(f"{weights_file}: unreadable safetensors file ({type(err).__name__}: {err})") from None
    return spec, {name[len(PEFT_PREFIX):] if name.startswith(PEFT_PREFIX) else name: array
                  for name, array in tensors.items()}


def adapter_config(spec: LoraSpec, *, modules_to_save, base_model=None) -> dict:
    """adapter_config.json content as PEFT writes it for a SEQ_CLS LoRA adapter."""
    alpha = int(spec.alpha) if float(spec.alpha).is_integer() else float(spec.alpha)
    return {"peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": base_model,
            "r": spec.r, "lora_alpha": alpha, "lora_dropout": float(spec.dropout),
            "target_modules": spec.targets if isinstance(spec.targets, str) else list(spec.targets),
            "modules_to_save": list(modules_to_save), "bias": "none", "init_lora_weights": True,
            "inference_mode": True, "revision": None, **UNSUPPORTED}


def adapter_tensors(tensors: dict) -> dict:
    """{PEFT key: contiguous host array}: our names with the ``base_model.model.`` prefix."""
    return {PEFT_PREFIX + name: np.ascontiguousarray(array) for name, array in tensors.items()}
