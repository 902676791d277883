"""Poisson subsampling and virtual batches.

The privacy analysis of DP-SGD (Abadi et al. 2016; Mironov et al. 2019, "Rényi DP of the sampled
Gaussian mechanism") assumes each step's batch is a Poisson sample: every example joins independently
with probability q = sample_rate. The batch size is therefore Binomial(N, q) — it varies, and may be 0.
That is why the mechanism divides by the *expected* batch size qN, never by the drawn size.

A drawn batch can be larger than memory allows, so it is split into virtual (physical) batches that are
processed one after another and whose clipped sums are added up before the noise is drawn once.

Indices are host-side (they select rows of a Python dataset), so ``rng`` is a NumPy Generator: the
"sampling" stream of ``minidp.backend.RandomStreams``.
"""
from __future__ import annotations

import numpy as np

from minidp.errors import ConfigError, PrivacyError


def _check_rate(num_examples: int, sample_rate: float) -> None:
    if int(num_examples) != num_examples or num_examples < 1:
        raise ConfigError(f"num_examples={num_examples} must be a positive integer")
    if not 0.0 < sample_rate <= 1.0:
        raise PrivacyError(f"sample_rate={sample_rate} must lie in (0, 1]")


def poisson_sample(num_examples: int, sample_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted int64 indices of a Poisson sample: each i in [0, N) is included independently w.p. q.

    One uniform draw per example, u_i < q  <=>  i is in the batch; the result may be empty.
    """
    _check_rate(num_examples, sample_rate)
    u = rng.random(int(num_examples))  # (N,) uniform on [0, 1)
    return np.flatnonzero(u < sample_rate).astype(np.int64)  # (|batch|,) ascending


def virtual_batches(indices, max_physical_batch: int) -> list[np.ndarray]:
    """``indices`` cut into consecutive chunks of at most ``max_physical_batch``; [] when empty."""
    if int(max_physical_batch) != max_physical_batch or max_physical_batch < 1:
        raise ConfigError(f"max_physical_batch={max_physical_batch} must be a positive integer")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    step = int(max_physical_batch)
    return [indices[start : start + step] for start in range(0, indices.size, step)]
