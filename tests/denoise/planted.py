"""Test data for the denoiser: planted low-rank signals plus i.i.d. Gaussian noise (float64)."""
from __future__ import annotations

import math

import numpy as np

from minidp.denoise.rmt import bulk_edge, signal_sq_estimate


def theta_for(ratio: float, m: int, n: int, s: float) -> float:
    """The signal singular value θ whose noisy singular value sits at ``ratio`` × the bulk edge (ratio > 1)."""
    lam = ratio * bulk_edge(m, n, s)
    return math.sqrt(float(signal_sq_estimate(np.array([lam]), s, m, n)[0]))


def planted(m: int, n: int, s: float, ratios, rng: np.random.Generator):
    """(X, G): X = Σ_j θ_j a_j b_jᵀ with orthonormal a, b and θ_j from ``ratios``; G = X + s·Z."""
    r = len(ratios)
    X = np.zeros((m, n))
    if r:
        A, _ = np.linalg.qr(rng.standard_normal((m, r)))  # (m, r) orthonormal columns
        B, _ = np.linalg.qr(rng.standard_normal((n, r)))  # (n, r)
        thetas = np.array([theta_for(ratio, m, n, s) for ratio in ratios])
        X = (A * thetas) @ B.T  # (m, n)
    G = X + s * rng.standard_normal((m, n))
    return X, G


def cos(a, b) -> float:
    return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))
