"""RMT denoising of a whole gradient dict {hf_name: array}: which matrices, by which path, with what stats.

    new_grads, stats = denoise_gradients(released, noise_std, kappa=1.02, method="fast", seed=step)

The single-matrix algorithm is ``rmt.py`` (readable, full SVD) and ``fast.py`` (top triplets, batched by
shape); this module selects the 2-D linear weights, routes them to one of the two, and passes everything
else through untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from minidp.denoise.fast import denoise_groups
from minidp.denoise.rmt import (DEFAULT_KAPPA, DEFAULT_NORM_CORRECTION, METHODS, check_matrix, check_noise_std, check_options,
                                frobenius_norms, rmt_denoise_with_stats)
from minidp.errors import ConfigError


@dataclass(frozen=True)
class DenoiseSettings:
    """How the released gradient is denoised (see ``denoise_gradients``): defined once, used by DPStep and,
    with the on/off switch ``denoise`` added, by the training config (``minidp.run.config.DenoiseConfig``)."""

    kappa: float = DEFAULT_KAPPA  # keep singular values above κ·s(√m + √n); 1.02, the paper's value
    norm_correction: str = DEFAULT_NORM_CORRECTION  # estimate | noisy | none
    fallback: str = "noisy"  # when nothing is kept: noisy (unchanged) | zero
    method: str = "fast"  # exact SVD | fast (top-k)
    min_dim: int = 0  # skip matrices whose smaller side is below this, e.g. 3 skips a 2×d head (0: none)


def default_include(name: str, array) -> bool:
    """2-D ``*.weight`` parameters of linear layers: not embeddings, not LayerNorm, not LoRA factors (HF/PEFT
    parameter names). LoRA's r×d factors are far from the Marchenko–Pastur regime (docs/denoiser.md)."""
    return (getattr(array, "ndim", 0) == 2 and name.endswith(".weight")
            and "embeddings" not in name and "LayerNorm" not in name
            and not name.endswith((".lora_A.weight", ".lora_B.weight")))


def _include_predicate(include) -> Callable[[str, object], bool]:
    if include is None:
        return default_include
    if callable(include):
        return include
    if isinstance(include, str):
        raise ConfigError("include must be a callable(name, array) -> bool or a list of names, not a string")
    names = set(include)
    return lambda name, array: name in names


def denoise_gradients(grads: Mapping[str, object], noise_std, *, kappa=DEFAULT_KAPPA, norm_correction=DEFAULT_NORM_CORRECTION,
                      fallback="noisy", method="exact", include=None, seed=0, min_dim=0):
    """Denoise every selected weight gradient of ``grads`` ({hf_name: array}); the rest pass through.

    ``include``: callable(name, array) -> bool, or a list of names; default :func:`default_include`
    (2-D linear weights; biases, LayerNorm, embeddings and LoRA factors pass through untouched — the same
    objects).
    ``method``: "exact" (rmt.py, full SVD per matrix) or "fast" (``fast.py``: top singular triplets by
    block Krylov iteration, same-shape matrices batched and all shapes iterated together, so its host copies do
    not grow with the number of layers; ``seed`` seeds its own test matrices —
    a generator of its own, never the DP noise stream; DPStep passes the public step number).
    ``min_dim``: skip matrices whose smaller side is below it (e.g. 3 skips a binary task's 2×d head, where
    Marchenko–Pastur asymptotics say little; docs/denoiser.md weighs what that loses). 0: skip none.
    Returns ``(new_grads, stats)``: a new dict in the same key order, and {name: per-matrix stats}
    (keys kept, top_singular_value, edge, top_over_edge, norm_before, norm_after; see :func:`summarize`).
    """
    s = check_noise_std(noise_std)
    kappa = check_options(kappa, norm_correction, fallback)
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    wanted = _include_predicate(include)
    selected = [name for name, g in grads.items() if wanted(name, g) and min(g.shape) >= min_dim]
    for name in selected:
        check_matrix(grads[name], what=f"gradient {name!r}")

    new = dict(grads)  # untouched entries keep their objects
    stats: dict[str, dict] = {}
    if method == "exact":
        for name in selected:
            new[name], stats[name] = rmt_denoise_with_stats(grads[name], s, kappa, norm_correction, fallback)
    else:
        by_shape: dict[tuple, list[str]] = {}
        for name in selected:
            by_shape.setdefault(tuple(grads[name].shape), []).append(name)
        frobs = frobenius_norms([grads[name] for name in selected])  # ‖G‖_F of every matrix: one host copy
        frob_of = dict(zip(selected, frobs))
        groups = list(by_shape.values())  # every shape's stack in one Krylov run: its host copies are shared
        outs, group_stats = denoise_groups([[grads[name] for name in names] for names in groups], s, kappa=kappa,
                                           norm_correction=norm_correction, fallback=fallback,
                                           rng=np.random.default_rng(seed),
                                           frob_norms=[[frob_of[name] for name in names] for names in groups])
        for names, group_outs, group_st in zip(groups, outs, group_stats):
            for name, out, st in zip(names, group_outs, group_st):
                new[name], stats[name] = out, st
    return new, {name: stats[name] for name in selected}


def summarize(stats: Mapping[str, dict]) -> dict:
    """Totals over the per-matrix stats: matrices, total kept, which matrices kept anything."""
    with_kept = [name for name, st in stats.items() if st["kept"] > 0]
    ratios = [st["top_over_edge"] for st in stats.values() if st.get("top_over_edge") is not None]
    return {
        "matrices": len(stats),
        "total_kept": int(sum(st["kept"] for st in stats.values())),
        "matrices_with_kept": len(with_kept),
        "names_with_kept": with_kept,
        "max_top_over_edge": float(max(ratios)) if ratios else None,
    }
