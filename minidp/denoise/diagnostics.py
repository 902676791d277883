"""Alignment diagnostic of the paper: does denoising move the noisy gradient towards the clipped one?

    cos(a, b) = ⟨a, b⟩ / (‖a‖_F ‖b‖_F)
    gain      = cos(denoised, clipped) − cos(noisy, clipped)

per matrix and for the whole gradient (all parameters concatenated into one vector). Theorem 1 of the
paper: with the "noisy" norm correction every block keeps its norm, so per-block gains ≥ 0 imply a
whole-vector gain ≥ 0.

**NON-PRIVATE.** ``clipped`` is the clipped gradient *before* the noise, i.e. per-example data that DP-SGD
never releases. This is an analysis tool for experiments; its output must not feed back into training or
be published as part of a private release. The returned dict says so (``"non_private": True``).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

from minidp.backend import array_module, to_host

NOTE = ("NON-PRIVATE diagnostic: computed from the clipped pre-noise gradient; "
        "for analysis only, not part of the private release")
PARTS = ("nc", "dc", "nn", "dd", "cc")  # ⟨noisy, clipped⟩, ⟨denoised, clipped⟩, ‖noisy‖², ‖denoised‖², ‖clipped‖²


def _dot(a, b):
    """⟨a, b⟩ over all entries as a 0-d float64 array where a, b live: products in their dtype, sum in float64."""
    xp = array_module(a)
    return xp.sum(a * b, dtype=xp.float64)


def _cos(dot: float, sq_a: float, sq_b: float):
    denom = math.sqrt(sq_a) * math.sqrt(sq_b)
    return dot / denom if denom > 0 else None  # undefined for a zero vector: None (JSON null)


def _record(parts: dict) -> dict:
    cos_noisy = _cos(parts["nc"], parts["nn"], parts["cc"])
    cos_denoised = _cos(parts["dc"], parts["dd"], parts["cc"])
    gain = cos_denoised - cos_noisy if (cos_noisy is not None and cos_denoised is not None) else None
    return {"cos_noisy": cos_noisy, "cos_denoised": cos_denoised, "gain": gain,
            "norm_noisy": math.sqrt(parts["nn"]), "norm_denoised": math.sqrt(parts["dd"]),
            "norm_clipped": math.sqrt(parts["cc"])}


def alignment(noisy: Mapping[str, object], denoised: Mapping[str, object], clipped: Mapping[str, object],
              names: Iterable[str] | None = None) -> dict:
    """Cosines of the noisy and the denoised gradient to the clipped (pre-noise) gradient.

    ``noisy``, ``denoised``, ``clipped``: {hf_name: array} of equal shapes per name. ``names``: which
    parameters to compare (default: every name present in all three). Per-matrix records are given for
    the 2-D parameters; the whole-gradient record covers every compared parameter.
    Returns ``{"non_private": True, "note": ..., "per_matrix": {name: rec}, "whole": rec}`` with
    rec = {cos_noisy, cos_denoised, gain, norm_noisy, norm_denoised, norm_clipped} (floats, None where a
    norm is 0). NON-PRIVATE: reads the clipped gradient; see the module docstring.
    """
    if names is None:
        names = [name for name in clipped if name in noisy and name in denoised]
    names = list(names)
    dots = []  # per name: (5,) on the device; all copied to the host at once
    for name in names:
        g, d, c = noisy[name], denoised[name], clipped[name]
        if not (g.shape == d.shape == c.shape):
            raise ValueError(f"alignment: shapes differ for {name!r}: noisy {g.shape}, denoised {d.shape}, "
                             f"clipped {c.shape}")
        dots.append(array_module(g).stack([_dot(g, c), _dot(d, c), _dot(g, g), _dot(d, d), _dot(c, c)]))
    host = to_host(array_module(dots[0]).stack(dots)).tolist() if dots else []  # (P, 5): one host copy
    total = dict.fromkeys(PARTS, 0.0)
    per_matrix = {}
    for name, values in zip(names, host):
        parts = dict(zip(PARTS, values))
        for key in total:
            total[key] += parts[key]
        if noisy[name].ndim == 2:
            per_matrix[name] = _record(parts)
    return {"non_private": True, "note": NOTE, "per_matrix": per_matrix, "whole": _record(total)}
