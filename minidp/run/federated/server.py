"""The server's post-processing of a round's release: RMT denoising (optional), decoding, the global step.

Everything here sees only the released average R (``aggregation.release``) and public settings, so it is
post-processing: the round's privacy is that of the release.

RMT denoising (``denoise_release``; minidp.denoise). The Marchenko–Pastur edge needs a matrix whose noise
is i.i.d. with a known per-entry std, here s = σC/(qK). That holds in the space where the noise was added —
the wire space: the factor updates themselves (DP-FedAvg-LoRA) or their latents (encoder arms) — and
nowhere after a non-orthogonal decoder or after merging ΔW = (B+ΔB)(A+ΔA) − BA (whose noise has rank ≤ 2r:
no bulk at all). A single factor update is r × d, far from the MP regime (docs/denoiser.md), so the
server stacks the same factor of the same target across the L layers: r·L vectors of width d (or k)
from one module kind, e.g. every layer's ``attention.self.query.lora_A`` update -> (L·r, d). The 2-D head
weights are denoised as they are (``min_dim`` skips the 2 × C classifier of a binary task).
"""
from __future__ import annotations

import re

from minidp.backend import array_module
from minidp.denoise.gradients import DenoiseSettings, denoise_gradients, summarize
from minidp.run.federated.codec import factor_vectors, from_vectors, is_factor

LAYER_INDEX = re.compile(r"\.layer\.(\d+)\.")


def stack_factors(wire: dict, *, encoded: bool) -> tuple[dict, dict]:
    """({group: (L·r, width)}, {group: [names in stacking order]}) over the factor entries of ``wire``.

    ``encoded``: entries are latents (r, k) already in vector layout; else factors (A, or B as Bᵀ).
    The group is the name with its layer index replaced by ``*``.
    """
    members: dict = {}
    for name in sorted(wire, key=lambda n: (LAYER_INDEX.sub(".layer.*.", n), _layer(n))):
        if is_factor(name):
            members.setdefault(LAYER_INDEX.sub(".layer.*.", name), []).append(name)
    stacked = {}
    for group, names in members.items():
        xp = array_module(wire[names[0]])
        rows = [wire[n] if encoded else factor_vectors(n, wire[n]) for n in names]  # each (r, width)
        stacked[group] = xp.concatenate(rows, axis=0)  # (L·r, width)
    return stacked, members


def _layer(name: str) -> int:
    found = LAYER_INDEX.search(name)
    return int(found.group(1)) if found else -1


def unstack_factors(stacked: dict, members: dict, wire: dict, *, encoded: bool) -> dict:
    """The inverse of ``stack_factors``: a new wire dict with the factor entries taken from ``stacked``."""
    out = dict(wire)
    for group, names in members.items():
        start = 0
        for name in names:
            r = wire[name].shape[0] if (encoded or name.endswith(".lora_A.weight")) else wire[name].shape[1]
            rows = stacked[group][start:start + r]  # (r, width)
            out[name] = rows if encoded else from_vectors(name, rows)
            start += r
    return out


def denoise_release(wire: dict, *, noise_std: float, settings: DenoiseSettings, encoded: bool,
                    seed: int = 0) -> tuple[dict, dict]:
    """(denoised wire dict, summary of kept components) of the released average in wire space."""
    stacked, members = stack_factors(wire, encoded=encoded)
    head = {n: v for n, v in wire.items() if not is_factor(n) and getattr(v, "ndim", 0) == 2}
    matrices = {**stacked, **head}
    new, stats = denoise_gradients(matrices, noise_std, kappa=settings.kappa,
                                   norm_correction=settings.norm_correction, fallback=settings.fallback,
                                   method=settings.method, include=list(matrices), seed=seed,
                                   min_dim=settings.min_dim)
    out = unstack_factors({g: new[g] for g in stacked}, members, wire, encoded=encoded)
    out.update({n: new[n] for n in head})
    return out, summarize(stats)


def apply_update(global_params: dict, update: dict, *, server_lr: float) -> None:
    """θ ← θ + η_s · Δ̄ in place, for every name of the update (FedAvg's server step)."""
    for name, delta in update.items():
        global_params[name] += delta.dtype.type(server_lr) * delta
