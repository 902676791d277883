"""One DP-SGD step, as data flows (docs/design.md §3), with every intermediate kept for inspection.

    step = DPStep(model, data, noise_multiplier=σ, max_grad_norm=C, sample_rate=q, optimizer=opt,
                  streams=RandomStreams(seed), accountant=RDPAccountant(), delta=δ)
    record = step()          # a StepRecord: sampled indices, norms, clip factors, clipped sum, noise, ...

The walk, each stage handing the next exactly one thing:

    Poisson sample (each example w.p. q; the batch may be empty)
      -> virtual batches of ≤ max_physical_batch (sorted by length: less padding, same sum)
      -> per virtual batch: forward -> per-example losses -> backward (records) -> norms ‖∇_i‖
         -> clip factors c_i -> Σ_i c_i ∇_i  (accumulated)
      -> released = (Σ_i c_i ∇_i + N(0, σ²C² I)) / (qN)       [the only private release]
      -> denoised = RMT(released, s = σC/(qN))                 [post-processing: reads nothing private]
      -> optimizer step; accountant.step(σ, q)

``non_private=True`` (σ = 0; `minidp train --non-private`) is the NOT PRIVATE reference arm: the same
sampling, virtual batches, divisor qN and optimizer, but the plain sum Σ_i ∇_i (no norms, no clipping), no
noise and no accounting (ε = ∞).

Privacy by construction: after ``add_noise`` nothing reads per-example data or the clipped sum — the
denoiser receives only the released gradient and the public noise std. The NON-PRIVATE alignment diagnostic
(``diagnostics=True``) is the one exception, and it is labelled as such wherever it appears.

Devices: the model's parameters, the noise stream and the dropout stream must live on one device (checked
when the step is built); the sampling stream and the data are host-side. On a GPU a step copies to the host
a fixed number of times, whatever the number of layers or virtual batches: once for the per-example
norms, factors and losses (accumulated on the device), plus the denoiser's own copies (minidp/denoise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minidp.backend import array_module, device_of, generator_device, to_host
from minidp.denoise.diagnostics import alignment
from minidp.denoise.gradients import DenoiseSettings, denoise_gradients
from minidp.errors import ConfigError
from minidp.per_example import weighted_sums
from minidp.privacy.clipping import clip_and_sum
from minidp.privacy.mechanism import add_noise, noise_std_of_average
from minidp.privacy.sampling import poisson_sample, virtual_batches


@dataclass
class StepRecord:
    """Everything one DP step computed, in the order it was computed.

    Per-example quantities (host numpy, in the order the examples were processed = ``sampled_indices``):
    ``per_example_norms`` ‖∇_i‖ over all trainable parameters, ``clip_factors`` c_i, ``losses`` loss_i.
    Gradient dicts {hf_name: array} are kept only with ``keep_intermediates=True``.
    """

    step: int  # 1-based index of this step
    sampled_indices: np.ndarray  # (n,) the Poisson sample (n may be 0)
    per_example_norms: np.ndarray  # (n,)
    clip_factors: np.ndarray  # (n,)
    losses: np.ndarray  # (n,) per-example cross-entropy (a NON-PRIVATE statistic of the batch)
    expected_batch_size: float  # qN: the divisor of the released gradient
    noise_std: float  # σC/(qN): per-entry noise std of the released gradient
    lr: float
    epsilon: float  # ε spent so far (after this step) at ``delta``
    order: float  # the RDP order that gave ``epsilon``
    clipped_sum: dict | None = None  # Σ_i c_i ∇_i           (NON-PRIVATE)
    noise: dict | None = None  # N(0, σ²C²) draws
    released: dict | None = None  # (clipped_sum + noise) / qN  (private)
    denoised: dict | None = None  # RMT(released)               (private: post-processing)
    denoise_stats: dict | None = None  # per matrix: kept count, top λ / edge, norms
    diagnostics: dict | None = None  # NON-PRIVATE alignment cosines, only when asked for
    dropped_nonfinite: int = 0  # examples with a non-finite gradient norm, left out (NON-PRIVATE count)

    @property
    def batch_size(self) -> int:
        return int(self.sampled_indices.size)

    @property
    def mean_loss(self) -> float:
        return float(self.losses.mean()) if self.losses.size else float("nan")


class DPStep:
    """The DP-SGD step of docs/design.md §3 as a callable object (see module docstring).

    model:        a models.roberta model (forward_with_cache / backward_records / params / trainable)
    data:         a minidp.data.batching.TokenizedDataset (the private training set, N examples)
    optimizer:    a minidp.optim optimizer (``step(params, grads, lr)``)
    streams:      minidp.backend.RandomStreams (sampling and noise each have their own stream)
    accountant:   minidp.privacy.RDPAccountant: every step is recorded there
    denoise:      DenoiseSettings, or None for plain DP-SGD
    """

    def __init__(self, model, data, *, noise_multiplier: float, max_grad_norm: float, sample_rate: float,
                 optimizer, streams, accountant, delta: float, max_physical_batch: int = 32,
                 clip_method: str = "flat", denoise: DenoiseSettings | None = None,
                 keep_intermediates: bool = True, diagnostics: bool = False, non_private: bool = False):
        check_devices(model, streams)
        self.model = model
        self.data = data
        self.noise_multiplier = float(noise_multiplier)
        self.max_grad_norm = float(max_grad_norm)
        self.sample_rate = float(sample_rate)
        self.optimizer = optimizer
        self.streams = streams
        self.accountant = accountant
        self.delta = float(delta)
        self.max_physical_batch = int(max_physical_batch)
        self.clip_method = clip_method
        self.denoise = denoise
        self.keep_intermediates = keep_intermediates
        self.diagnostics = diagnostics
        self.non_private = bool(non_private)
        if self.non_private and self.noise_multiplier != 0:
            raise ConfigError(f"DPStep: non_private=True needs noise_multiplier=0, not {noise_multiplier}")
        self.steps_done = 0
        self.extra_charged_steps = 0  # steps charged twice (a resume whose replay differed; see train.py)

    @property
    def expected_batch_size(self) -> float:
        """qN: the released gradient is divided by this, not by the realised batch size (which is private)."""
        return self.sample_rate * len(self.data)

    def __call__(self, lr: float | None = None) -> StepRecord:
        model = self.model
        model.train()
        # 1. Poisson sampling: each example independently with probability q.
        indices = poisson_sample(len(self.data), self.sample_rate, self.streams.sampling)  # (n,)
        indices = self.data.by_length(indices)
        # 2. Clipped per-example gradients, summed over virtual batches.
        clipped_sum, norms, factors, losses, dropped = self.clipped_sum(indices)
        # 3. The Gaussian mechanism: the only private release.
        # (Without intermediates to keep or diagnostics to compute, the released gradient is written over the
        # clipped sum and each noise draw is freed once added: the same values, a gradient-sized array less.)
        keep = self.keep_intermediates
        released, noise = add_noise(clipped_sum, noise_multiplier=self.noise_multiplier,
                                    max_grad_norm=self.max_grad_norm,
                                    expected_batch_size=self.expected_batch_size, rng=self.streams.noise,
                                    keep_noise=keep, in_place=not (keep or self.diagnostics))
        noise_std = noise_std_of_average(noise_multiplier=self.noise_multiplier, max_grad_norm=self.max_grad_norm,
                                         expected_batch_size=self.expected_batch_size)
        # 4. Post-processing: the denoiser sees only the released gradient and the public noise std.
        update, stats = released, None
        if self.denoise is not None:
            update, stats = denoise_released(released, noise_std, self.denoise, seed=self.steps_done + 1)
        diagnostics = None
        if self.diagnostics:  # NON-PRIVATE: compares with the clipped (pre-noise) gradient
            diagnostics = alignment_diagnostics(clipped_sum, released, update if self.denoise else None,
                                                self.expected_batch_size)
        # 5. Optimizer step and accounting (a non-private reference run has nothing to account: ε = ∞).
        self.optimizer.step(model.params, update, lr=lr)
        if self.non_private:
            epsilon, order = float("inf"), float("nan")
        else:
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate, steps=1)
            epsilon, order = self.accountant.get_epsilon_and_order(self.delta)
        self.steps_done += 1
        return StepRecord(
            step=self.steps_done, sampled_indices=indices, per_example_norms=norms, clip_factors=factors,
            losses=losses, expected_batch_size=self.expected_batch_size, noise_std=float(noise_std),
            lr=float(lr if lr is not None else getattr(self.optimizer, "lr", float("nan"))),
            epsilon=float(epsilon), order=float(order),
            clipped_sum=clipped_sum if keep else None, noise=noise if keep else None,
            released=released if keep else None,
            denoised=(update if self.denoise is not None else None) if keep else None,
            denoise_stats=stats, diagnostics=diagnostics, dropped_nonfinite=dropped,
        )

    def charge_extra_step(self) -> None:
        """Record one more (σ, q) step in the accountant without releasing anything (a conservative charge)."""
        self.extra_charged_steps += 1
        if self.non_private:  # nothing is accounted in a non-private reference run
            return
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate, steps=1)

    def clipped_sum(self, indices):
        """Σ_i c_i ∇_i loss_i over ``indices`` in virtual batches, with the per-example norms, factors, losses.

        Returns ({hf_name: array}, norms (n,), factors (n,), losses (n,), dropped) — norms etc. on the host;
        ``dropped`` counts examples left out for a non-finite gradient norm (minidp/privacy/clipping.py).
        An empty ``indices`` gives zeros: an empty Poisson batch is still a (pure-noise) step.
        The per-example values stay on the device until the end: ONE host copy for all of them.
        """
        model = self.model
        xp = array_module(next(iter(model.params.values())))
        total = {name: xp.zeros_like(model.params[name]) for name in model.trainable}
        parts, dropped = [], xp.zeros((), dtype=xp.int64)  # parts: per virtual batch (3, B) norms/factors/losses
        for batch_indices in virtual_batches(indices, self.max_physical_batch):
            batch = self.data.batch(batch_indices)
            # forward -> per-example losses loss_i (not divided by B) -> ONE backward -> records
            example_losses, records = model.per_example_records(batch["input_ids"], batch["attention_mask"],
                                                                batch["labels"],
                                                                token_type_ids=batch.get("token_type_ids"))
            # ‖∇_i‖ over ALL trainable parameters -> c_i -> Σ_i c_i ∇_i
            if self.non_private:  # the NOT PRIVATE reference: plain sum Σ_i ∇_i, no norms (NaN), c_i = 1
                sums = weighted_sums(records, None)
                batch_norms = xp.full(example_losses.shape, xp.nan, dtype=example_losses.dtype)
                c, batch_dropped = xp.ones_like(batch_norms), 0
            else:
                sums, batch_norms, c, batch_dropped = clip_and_sum(records, self.max_grad_norm,
                                                                   method=self.clip_method)
            for name, grad in sums.items():
                total[name] += grad
            parts.append(xp.stack([batch_norms, c.astype(batch_norms.dtype, copy=False),
                                   example_losses.astype(batch_norms.dtype, copy=False)]))  # (3, B)
            dropped = dropped + batch_dropped
        if not parts:
            return total, np.zeros(0), np.zeros(0), np.zeros(0), 0
        per_example = xp.concatenate(parts, axis=1)  # (3, n)
        n = per_example.shape[1]
        host = to_host(xp.concatenate([per_example.reshape(-1), dropped.astype(per_example.dtype).reshape(1)]))
        # ^ (3n + 1,): the one host copy of the step
        return total, host[:n], host[n:2 * n], host[2 * n:3 * n], int(host[3 * n])

def denoise_released(released: dict, noise_std: float, settings: DenoiseSettings, seed: int = 0):
    """RMT-denoise the released gradient matrices (post-processing; see minidp.denoise).

    ``seed``: the fast path's random starting block, from a public value (the step number), so each step
    starts afresh and nothing private or secret is involved."""
    return denoise_gradients(released, noise_std, kappa=settings.kappa, norm_correction=settings.norm_correction,
                             fallback=settings.fallback, method=settings.method, seed=seed,
                             min_dim=settings.min_dim)


def alignment_diagnostics(clipped_sum: dict, released: dict, denoised: dict | None, expected_batch_size: float):
    """NON-PRIVATE: cosines of the released / denoised gradient to the clipped average (reads private data)."""
    clipped_average = {name: g / expected_batch_size for name, g in clipped_sum.items()}
    return alignment(noisy=released, denoised=denoised if denoised is not None else released,
                     clipped=clipped_average)


def check_devices(model, streams) -> str:
    """The device of a DP step's arrays; ConfigError naming the culprit if model and streams disagree.

    The model's parameters, ``streams.noise`` (the noise is added to the clipped sum where it lives) and the
    model's dropout stream must share one device; ``streams.sampling`` must be a NumPy generator (the
    indices select host-side data).
    """
    device = device_of(next(iter(model.params.values())))
    found = {"streams.noise": generator_device(streams.noise)}
    if getattr(streams, "device", None) is not None:
        found["RandomStreams(device=...)"] = streams.device
    if getattr(model, "dropout_rng", None) is not None:
        found["model.dropout_rng"] = generator_device(model.dropout_rng)
    wrong = [f"{what} is on {where}" for what, where in found.items() if where != device]
    if generator_device(streams.sampling) != "cpu":
        wrong.append("streams.sampling is on cuda (it must be a NumPy generator: it selects host-side data)")
    if wrong:
        raise ConfigError(f"DPStep: the model's parameters are on {device} but {'; '.join(wrong)}. Build the "
                          f"streams with RandomStreams(seed, device={device!r}) and set model.dropout_rng = "
                          f"streams.dropout")
    return device
