"""The two audits: the bare Gaussian mechanism (calibration) and the real DP-SGD step, each an
``AuditResult``: the empirical lower bound beside the accountants' upper bounds.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from minidp.backend import RandomStreams, to_host
from minidp.denoise import default_include
from minidp.errors import ConfigError, PrivacyError
from minidp.optim import make_optimizer
from minidp.privacy.accountant import ACCOUNTANTS, get_noise_multiplier, make_accountant
from minidp.privacy.clipping import clip_and_sum
from minidp.privacy.mechanism import add_noise
from minidp.step import DenoiseSettings, DPStep
from minidp.run.audit.attack import attack
from minidp.run.audit.canaries import (POSITION_OFFSET, CanaryDataset, CanaryModel, CanaryRecord, canary_coordinates,
                                       load_audit_model, random_token_data)

MECHANISMS = ("gaussian", "dpsgd")


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
