"""Client-level Gaussian mechanism: clip each client's whole contribution, sum, add noise once, divide by qK.

One round (docs/federated.md):

    c_i = min(1, C / (‖w_i‖ + 1e-6))               w_i: client i's whole contribution, every array of it
                                                    concatenated (its update, or its latents + head), never
                                                    per matrix
    S   = Σ_{i sampled} c_i w_i                     ‖c_i w_i‖ ≤ C, so adding or removing one client moves S
                                                    by at most C in L2 norm (sensitivity C)
    R   = (S + Z) / (qK),  Z ~ N(0, (σC)² I)        the only private release of the round (``add_noise``)

K clients, each sampled with probability q (Poisson), so qK is the expected number of participants: a
public divisor, and every client weighs the same whatever its data size. A client whose norm is not
finite gets c_i = 0 (it is left out, like a non-finite example in DP-SGD), so one overflow never turns
the release into NaN.
"""
from __future__ import annotations

import math

from minidp.backend import array_module, to_host
from minidp.privacy.mechanism import add_noise, clip_factors

CLIP_EPS = 1e-6  # as minidp.privacy.mechanism.clip_factors' default: guards the division for a zero update


def contribution_norm(contribution: dict) -> float:
    """‖w‖: the L2 norm of every array of the contribution concatenated (host float)."""
    names = sorted(contribution)
    if not names:
        return 0.0
    xp = array_module(contribution[names[0]])
    total = xp.stack([(contribution[n].astype(xp.float64) ** 2).sum() for n in names]).sum()
    return math.sqrt(float(to_host(total)))


def clip_contribution(contribution: dict, max_grad_norm: float) -> tuple[dict, float, float]:
    """(c·w, ‖w‖, c) with c = min(1, C / (‖w‖ + 1e-6)); c = 0 when ‖w‖ is not finite."""
    norm = contribution_norm(contribution)
    if not math.isfinite(norm):
        factor = 0.0
    else:
        factor = float(clip_factors([norm], max_grad_norm, eps=CLIP_EPS)[0])
    names = sorted(contribution)
    if factor == 0.0:
        clipped = {n: array_module(contribution[n]).zeros_like(contribution[n]) for n in names}
    else:
        clipped = {n: contribution[n] * contribution[n].dtype.type(factor) for n in names}
    return clipped, norm, factor


def clipped_sum(contributions: list, like: dict, max_grad_norm: float | None) -> tuple[dict, list, list]:
    """(S = Σ_i c_i w_i, the norms ‖w_i‖, the factors c_i); ``like`` gives the names and shapes of an empty sum.

    ``max_grad_norm=None`` sums without clipping (the non-private reference; c_i = 1).
    """
    total = {n: array_module(v).zeros_like(v) for n, v in like.items()}  # starts at 0: no client sampled
    norms, factors = [], []
    for contribution in contributions:
        if max_grad_norm is None:
            clipped, norm, factor = contribution, contribution_norm(contribution), 1.0
        else:
            clipped, norm, factor = clip_contribution(contribution, max_grad_norm)
        for n in total:
            total[n] += clipped[n]
        norms.append(norm)
        factors.append(factor)
    return total, norms, factors


def release(total: dict, *, noise_multiplier: float, max_grad_norm: float, expected_clients: float, rng) -> dict:
    """R = (S + Z) / (qK), Z ~ N(0, (σC)² I): the noise is drawn by ``minidp.privacy.mechanism.add_noise``."""
    released, _ = add_noise(total, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                            expected_batch_size=expected_clients, rng=rng, keep_noise=False)
    return released


def average_without_noise(total: dict, *, expected_clients: float) -> dict:
    """S / (qK): the non-private reference's aggregate (same divisor, nothing added)."""
    return {n: v / v.dtype.type(expected_clients) for n, v in total.items()}
