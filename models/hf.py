"""Hugging Face checkpoint directories in and out: config.json + model.safetensors (HF names and layouts).

    model = load_pretrained(path, num_labels=None, dtype="float32", device=None, trainable="all", seed=0,
                            pooling=None)      # None: the checkpoint's pooling (checkpoint_pooling)
    model.save_pretrained(out_dir)     # = save_pretrained(model, out_dir); transformers' AutoModel... loads it

    lora = load_pretrained(path, trainable="lora", lora={"r": 8, "alpha": 16, "targets": ["query", "value"],
                                                          "dropout": 0.0})      # a fresh LoRA adapter
    lora = load_pretrained(path, trainable="lora", lora={"adapter": ADAPTER_DIR})  # a PEFT adapter on top
    lora.save_pretrained(out_dir)      # a PEFT adapter directory (peft.PeftModel.from_pretrained loads it)
    lora.merge_lora().save_pretrained(out_dir)    # a plain HF model with W + (α/r)·B A

Reading accepts tensor names with or without the encoder prefix (``roberta.`` / ``bert.``; MiniLM's
checkpoint has none) and ignores what a sequence classifier does not use (``lm_head.*``, ``cls.*``,
RoBERTa's pooler, ``position_ids`` / ``token_type_ids`` buffers). A missing head (``classifier.*``; for
BERT also ``bert.pooler.*``) is initialised N(0, 0.02²), biases 0, from ``seed`` and listed in
``model.init_report``. Uses ``safetensors.numpy`` only (no torch).

Pooling (minidp.nn.pooling): what the head reads, "cls" (position 0, transformers' heads) or "mean" (the real
tokens' mean). ``pooling=None`` takes the checkpoint's (``checkpoint_pooling``): config.json's
``minidp_pooling`` (which save_pretrained writes), else sentence-transformers' ``1_Pooling/config.json``
(``pooling_mode_mean_tokens`` true -> "mean", else ``pooling_mode_cls_token`` true -> "cls"), else "cls".

What transformers reads. Its ``Bert/RobertaForSequenceClassification`` read position 0, which is a "cls"
model: save_pretrained writes it as such (``model_type`` "bert" / "roberta"). A "mean" model is written so
that it cannot be read as one of those: ``model_type`` "minidp_mean_pooling_bert" (or ``_roberta``), a class
transformers does not have, with ``auto_map`` pointing to ``modeling_minidp.py``, which save_pretrained copies
beside the weights (from ``hf_remote/modeling_minidp.py``: the same encoder and head, fed the masked mean). So
``AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)`` computes minidp's
logits, and without ``trust_remote_code=True`` it refuses ("contains custom code which must be executed to
correctly load the model"). ``read_config`` reads such a ``model_type`` back as its family.

LoRA (models/lora.py): ``lora={"r", "alpha", "targets", "dropout", "modules_to_save"}`` adds fresh factors
(B = 0, drawn from ``seed``'s init stream after any head); ``trainable="lora"`` then trains them and PEFT's
SEQ_CLS head, ``classifier.*`` (+ BERT's pooler with ``"modules_to_save": ["pooler"]``).
``lora={"adapter": DIR}`` reads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors): its
factors, and its head when it saved one (``modules_to_save``), which then replaces the checkpoint's. An
adapter carries no pooling: a "mean" model's adapter computes this model's logits on the base's "mean" export
(loaded with ``trust_remote_code=True``), not on the plain base.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from minidp.backend import RandomStreams, to_host
from minidp.errors import ConfigError, DataError
from minidp.nn.pooling import POOLING_CHOICES
from models import lora as lora_io
from models.config import (EncoderConfig, head_modules_to_save, head_param_names, init_params, lora_head_param_names,
                           lora_param_shapes, param_shapes)
from models.roberta import SequenceClassifier

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "vocab.json", "merges.txt")
ARCHITECTURES = {"roberta": "RobertaForSequenceClassification", "bert": "BertForSequenceClassification"}
IGNORED_PREFIXES = ("lm_head.", "cls.")  # pretraining heads
IGNORED_SUFFIXES = ("position_ids", "token_type_ids")  # buffers, not parameters
ACCEPTED_DTYPES = ("float16", "float32", "float64")
POOLING_FIELD = "minidp_pooling"  # config.json: the pooling a minidp model was saved with
# A "mean" model's config.json: a model_type transformers has no class for, and the code that has it.
MEAN_POOLING_MODEL_TYPES = {"bert": "minidp_mean_pooling_bert", "roberta": "minidp_mean_pooling_roberta"}
MEAN_POOLING_CLASSES = {"bert": "MeanPoolingBert", "roberta": "MeanPoolingRoberta"}  # + Config / ForSequence...
REMOTE_CODE_FILE = "modeling_minidp.py"  # written beside the weights of a "mean" model
# the file itself lives outside the package (it imports torch and transformers): found, never imported, here
REMOTE_CODE_TEMPLATE = Path(importlib.util.find_spec("hf_remote").submodule_search_locations[0]) / REMOTE_CODE_FILE
ST_POOLING_CONFIG = Path("1_Pooling") / CONFIG_FILE  # sentence-transformers' pooling module


def read_config(path) -> dict:
    """The parsed config.json of a checkpoint directory (DataError naming the file if missing/unreadable);
    a "mean" export's ``model_type`` read as its family ("bert" / "roberta"; module docstring)."""
    file = Path(path) / CONFIG_FILE
    if not Path(path).is_dir():
        raise DataError(f"{path}: not a checkpoint directory (expected {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if (Path(path) / lora_io.ADAPTER_CONFIG).is_file():
            raise DataError(f"{path}: a PEFT LoRA adapter, not a checkpoint; load it on top of its base model: "
                            f"load_pretrained(BASE, trainable='lora', lora={{'adapter': '{path}'}})") from None
        raise DataError(f"{file}: missing (a checkpoint directory needs {CONFIG_FILE})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{file}: unreadable ({err})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{file}: expected a JSON object")
    family = {exported: name for name, exported in MEAN_POOLING_MODEL_TYPES.items()}.get(raw.get("model_type"))
    if family is not None:  # minidp's own "mean" export: its family, without the pointers to the remote code
        raw = {key: value for key, value in raw.items() if key not in ("auto_map", "architectures")}
        raw["model_type"] = family
    return raw


def checkpoint_pooling(path, raw: dict | None = None) -> str:
    """The pooling a checkpoint directory asks for, "cls" | "mean" (the rule in the module docstring).

    ``raw``: its parsed config.json (read when None). DataError naming the file for an unknown
    ``minidp_pooling`` or an unreadable ``1_Pooling/config.json``."""
    raw = read_config(path) if raw is None else raw
    if POOLING_FIELD in raw:
        value = raw[POOLING_FIELD]
        if value not in POOLING_CHOICES:
            raise DataError(f"{Path(path) / CONFIG_FILE}: {POOLING_FIELD}={value!r} is not one of {POOLING_CHOICES}")
        return value
    file = Path(path) / ST_POOLING_CONFIG
    if not file.is_file():
        return "cls"
    try:
        st = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{file}: unreadable ({err})") from None
    if not isinstance(st, dict):
        raise DataError(f"{file}: expected a JSON object")
    if st.get("pooling_mode_mean_tokens") is True:
        return "mean"
    return "cls"  # pooling_mode_cls_token, or a mode minidp does not implement (max, sqrt-length)


def read_tensors(path) -> dict:
    """{name: numpy array} from model.safetensors (DataError naming the file if missing/unreadable)."""
    file = Path(path) / WEIGHTS_FILE
    if not file.is_file():
        raise DataError(f"{file}: missing (minidp reads only safetensors weights, not pytorch_model.bin)")
    try:
        return load_file(str(file))
    except Exception as err:  # safetensors raises its own SafetensorError / OSError / ValueError
        raise DataError(f"{file}: unreadable safetensors file ({type(err).__name__}: {err})") from None


def canonical_name(name: str, config: EncoderConfig) -> str | None:
    """The state_dict name of a checkpoint tensor, or None if a sequence classifier does not use it."""
    if name.startswith(IGNORED_PREFIXES) or name.rsplit(".", 1)[-1] in IGNORED_SUFFIXES:
        return None
    other = "bert." if config.model_type == "roberta" else "roberta."
    if name.startswith(other):
        return None  # a stray tensor of the other family: reported via unexpected names
    if name.startswith(("embeddings.", "encoder.", "pooler.")):
        name = config.prefix + name  # MiniLM / BertModel checkpoints: no prefix
    if config.model_type == "roberta" and name.startswith("roberta.pooler."):
        return None  # RobertaForSequenceClassification has no pooler
    return name


class PretrainedClassifier(SequenceClassifier):
    """The ``SequenceClassifier`` that ``load_pretrained`` returns: the same model, plus the method a
    transformers or PEFT user types, ``model.save_pretrained(out_dir)`` (as ``PreTrainedModel`` has it).

    The method lives here, beside the one writer it calls, so that models/roberta.py (the arithmetic) needs
    nothing from this file and no import runs in a cycle or inside a function."""

    def save_pretrained(self, out_dir, *, dtype=None) -> Path:
        """``save_pretrained(self, out_dir, dtype=dtype)``: the function below, the one writer."""
        return save_pretrained(self, out_dir, dtype=dtype)


def load_pretrained(path, num_labels=None, dtype="float32", device=None, trainable="all", *, seed: int = 0,
                    verbose: bool = True, lora: dict | None = None, pooling: str | None = None,
                    log=print) -> PretrainedClassifier:
    """A ``PretrainedClassifier`` from a HF checkpoint directory (see module docstring). Eval mode.

    ``device``: "cpu" or "cuda"; None means $MINIDP_DEVICE, else "cpu" (minidp.backend.default_device).
    ``lora``: None, ``{"r", "alpha", "targets", "dropout"}`` (a fresh adapter) or ``{"adapter": DIR}``.
    ``pooling``: "cls" | "mean"; None: the checkpoint's (``checkpoint_pooling``).
    ``log``: where the note on freshly initialised tensors goes (train() passes its own; ``verbose=False``: none).
    """
    path = Path(path)
    raw = read_config(path)
    config = EncoderConfig.from_hf_dict(raw, num_labels=num_labels, source=str(path / CONFIG_FILE))
    if pooling is None:
        pooling = checkpoint_pooling(path, raw)
    elif pooling not in POOLING_CHOICES:
        raise ConfigError(f"pooling={pooling!r}: use one of {POOLING_CHOICES} (or None: the checkpoint's)")
    spec, adapter, adapter_dir = _lora_argument(lora)
    tensors = read_tensors(path)
    weights_file = path / WEIGHTS_FILE
    shapes = param_shapes(config)
    params, unexpected = {}, []
    for name, array in tensors.items():
        key = canonical_name(name, config)
        if key is None:
            continue
        if key not in shapes:
            unexpected.append(name)
            continue
        if tuple(array.shape) != tuple(shapes[key]):
            hint = " (num_labels differs from the checkpoint's?)" if key in head_param_names(config) else ""
            raise DataError(f"{weights_file}: tensor {name!r} has shape {tuple(array.shape)}, "
                            f"expected {tuple(shapes[key])}{hint}")
        if array.dtype.name not in ACCEPTED_DTYPES:
            raise DataError(f"{weights_file}: tensor {name!r} has dtype {array.dtype.name}, "
                            f"expected one of {ACCEPTED_DTYPES}")
        params[key] = array
    lora_factors = {}
    if adapter is not None:
        lora_factors, head_override = _split_adapter(adapter, config, spec, adapter_dir)
        params.update(head_override)  # the adapter's head (modules_to_save) replaces the checkpoint's
    missing = [name for name in shapes if name not in params]
    head = set(head_param_names(config))
    missing_body = [name for name in missing if name not in head]
    if missing_body:
        more = f" and {len(missing_body) - 5} more" if len(missing_body) > 5 else ""
        raise DataError(f"{weights_file}: missing tensor(s) {missing_body[:5]}{more} "
                        f"for a {config.model_type} model with config {path / CONFIG_FILE}")
    streams = RandomStreams(seed=seed, device="cpu")
    if missing:
        params.update(init_params(config, streams.init, names=missing))
    if spec is not None:  # the adapter's factors, or fresh ones (B = 0) drawn after any head
        params.update(lora_factors or lora_io.init_factors(lora_param_shapes(config, spec), streams.init))
    model = PretrainedClassifier(config, params, trainable=trainable, dtype=dtype, device=device,
                               dropout_rng=RandomStreams(seed=seed, device=device).dropout, lora=spec,
                               pooling=pooling)
    model.init_report = missing
    model.unexpected = unexpected
    model.source_dir = path
    model.extra_config = raw
    model.lora_source = adapter_dir  # the PEFT adapter directory read, if any
    if verbose and missing:
        log(f"minidp: initialised {len(missing)} tensor(s) absent from {weights_file} "
              f"(N(0, 0.02^2), biases 0, seed={seed}): {', '.join(missing)}")
    return model


def _lora_argument(lora):
    """``lora=`` of load_pretrained -> (LoraSpec or None, adapter tensors or None, adapter dir or None)."""
    if lora is None:
        return None, None, None
    if not isinstance(lora, dict):
        raise ConfigError(f"lora={lora!r}: give a dict, {{'r': 8, 'alpha': 16, 'targets': ['query', 'value'], "
                          "'dropout': 0.0}} or {'adapter': DIR}")
    if "adapter" in lora:
        if set(lora) != {"adapter"}:
            raise ConfigError(f"lora: {sorted(set(lora) - {'adapter'})} cannot be given with 'adapter' "
                              "(the adapter's adapter_config.json sets them)")
        spec, tensors = lora_io.read_adapter(lora["adapter"])
        return spec, tensors, Path(lora["adapter"])
    return lora_io.LoraSpec.from_dict(lora), None, None


def _split_adapter(tensors: dict, config: EncoderConfig, spec, adapter_dir: Path):
    """An adapter's tensors -> ({factor name: array}, {head name: array}); DataError naming what does not fit."""
    weights_file = adapter_dir / lora_io.ADAPTER_WEIGHTS
    try:
        expected = lora_param_shapes(config, spec)
    except ConfigError as err:
        raise DataError(f"{adapter_dir / lora_io.ADAPTER_CONFIG}: {err}") from None
    head_shapes = {name: shape for name, shape in param_shapes(config).items() if name in head_param_names(config)}
    factors, head = {}, {}
    for name, array in tensors.items():
        shape = expected.get(name, head_shapes.get(name))
        if shape is None:
            raise DataError(f"{weights_file}: tensor {name!r} is neither a LoRA factor of the targeted layers nor "
                            f"the head ({', '.join(head_modules_to_save(config))})")
        if tuple(array.shape) != tuple(shape):
            raise DataError(f"{weights_file}: tensor {name!r} has shape {tuple(array.shape)}, expected {tuple(shape)}")
        if array.dtype.name not in ACCEPTED_DTYPES:
            raise DataError(f"{weights_file}: tensor {name!r} has dtype {array.dtype.name}, "
                            f"expected one of {ACCEPTED_DTYPES}")
        (factors if name in expected else head)[name] = array
    absent = [name for name in expected if name not in factors]
    if absent:
        raise DataError(f"{weights_file}: missing LoRA factor(s) {absent[:4]}{' ...' if len(absent) > 4 else ''}")
    return factors, head


def hf_config(model: SequenceClassifier) -> dict:
    """config.json content for ``model``: the source config's fields, updated with what minidp knows."""
    cfg = model.config
    raw = {k: v for k, v in model.extra_config.items()
           if k not in ("id2label", "label2id", "num_labels", "architectures", "torch_dtype", "dtype")}
    raw.update({field: getattr(cfg, field) for field in cfg.__dataclass_fields__ if field != "num_labels"})
    old_labels = model.extra_config.get("id2label") or {}
    id2label = {str(i): str(old_labels.get(str(i), f"LABEL_{i}")) for i in range(cfg.num_labels)}
    raw["architectures"] = [ARCHITECTURES[cfg.model_type]]
    raw["id2label"] = id2label
    raw["label2id"] = {label: int(i) for i, label in id2label.items()}
    raw["num_labels"] = cfg.num_labels
    raw["dtype"] = model.dtype.name
    raw[POOLING_FIELD] = model.pooling  # load_pretrained(pooling=None) reads it back
    raw.pop("auto_map", None)
    if model.pooling == "mean":  # not a class transformers has: its model_type and code say so (module docstring)
        name = MEAN_POOLING_CLASSES[cfg.model_type]
        raw["model_type"] = MEAN_POOLING_MODEL_TYPES[cfg.model_type]
        raw["architectures"] = [f"{name}ForSequenceClassification"]
        module = REMOTE_CODE_FILE.removesuffix(".py")
        raw["auto_map"] = {"AutoConfig": f"{module}.{name}Config",
                           "AutoModelForSequenceClassification": f"{module}.{name}ForSequenceClassification"}
    return raw


def _atomic_write(file: Path, write) -> None:
    """Write via a temporary file in the same folder, then rename (no half-written checkpoint)."""
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, file)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_pretrained(model: SequenceClassifier, out_dir, *, dtype=None) -> Path:
    """Write ``out_dir``/config.json and model.safetensors (full prefixed names, ``dtype`` default the
    model's), and copy tokenizer files from the source checkpoint when present. Returns ``out_dir``.
    config.json records ``minidp_pooling``; a "mean" model also gets ``modeling_minidp.py`` and a config.json
    that transformers loads only with ``trust_remote_code=True``, as that model (module docstring).

    A model with LoRA layers writes a PEFT adapter instead (``save_adapter``), as PEFT's own save_pretrained
    does; save ``model.merge_lora()`` for a plain checkpoint."""
    if model.lora is not None:
        return save_adapter(model, out_dir, dtype=dtype)
    out, save_dtype = _output_dir(out_dir), _save_dtype(model, dtype)
    tensors = {name: np.ascontiguousarray(to_host(value), dtype=save_dtype) for name, value in model.params.items()}
    config = hf_config(model)
    config["dtype"] = save_dtype.name
    _atomic_write(out / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    if "auto_map" in config:
        _atomic_write(out / REMOTE_CODE_FILE, lambda tmp: shutil.copyfile(REMOTE_CODE_TEMPLATE, tmp))
    _atomic_write(out / CONFIG_FILE,
                  lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n"))
    _copy_tokenizer(model, out)
    return out


def save_adapter(model: SequenceClassifier, out_dir, *, dtype=None) -> Path:
    """Write ``out_dir``/adapter_config.json + adapter_model.safetensors as PEFT saves a LoRA adapter: the
    LoRA factors and the head modules PEFT saves (``modules_to_save``: "classifier" and
    ``adapter_modules_to_save``), keys ``base_model.model.<hf_name>``, so that
    ``peft.PeftModel.from_pretrained(<base model>, out_dir)`` computes this model's logits. Copies the
    tokenizer files too. ``base_model_name_or_path`` is the source checkpoint's absolute path."""
    if model.lora is None:
        raise ConfigError("save_adapter: the model has no LoRA layers (use save_pretrained)")
    out, save_dtype = _output_dir(out_dir), _save_dtype(model, dtype)
    modules = adapter_modules_to_save(model)
    names = [n for n in model.params if lora_io.is_factor(n)] + lora_head_param_names(model.config, modules)
    tensors = lora_io.adapter_tensors({n: np.asarray(to_host(model.params[n]), dtype=save_dtype) for n in names})
    base = str(Path(model.source_dir).resolve()) if model.source_dir is not None else None
    config = lora_io.adapter_config(model.lora, modules_to_save=["classifier", *modules], base_model=base)
    _atomic_write(out / lora_io.ADAPTER_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    _atomic_write(out / lora_io.ADAPTER_CONFIG,
                  lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n"))
    _copy_tokenizer(model, out)
    return out


def adapter_modules_to_save(model: SequenceClassifier) -> list:
    """The head modules beside "classifier" an adapter of ``model`` saves (PEFT's modules_to_save): the LoRA
    spec's (what trained), and BERT's pooler when it was freshly initialised at load time (the base checkpoint
    lacks it, so PEFT could not rebuild it from there)."""
    modules = list(model.lora.modules_to_save)
    pooler = f"{model.config.prefix}pooler.dense.weight"
    if model.config.model_type == "bert" and "pooler" not in modules and pooler in model.init_report:
        modules.append("pooler")
    return modules


def _output_dir(out_dir) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{out}: cannot create the output directory ({err})") from None
    return out


def _save_dtype(model: SequenceClassifier, dtype) -> np.dtype:
    save_dtype = np.dtype(model.dtype if dtype is None else dtype)
    if save_dtype.name not in ("float32", "float64"):
        raise ConfigError(f"dtype={dtype!r}: save as float32 or float64")
    return save_dtype


def _copy_tokenizer(model: SequenceClassifier, out: Path) -> None:
    """Copy the source checkpoint's tokenizer files into ``out`` (when there are any)."""
    source = model.source_dir
    if source is not None and Path(source).resolve() != out.resolve():
        for name in TOKENIZER_FILES:
            if (Path(source) / name).is_file():
                shutil.copyfile(Path(source) / name, out / name)
