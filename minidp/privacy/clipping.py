"""Per-example clipping of one virtual batch: the one place where per-example gradients are clipped and summed.

    sums, norms, factors, dropped = clip_and_sum(records, max_grad_norm=C)
    sums, norms = clipped_grad_sum(model, input_ids, attention_mask, labels, max_grad_norm=C)   # one batch

From the per-example records of ONE backward pass (minidp/per_example.py):
    ‖∇_i‖² = Σ_params record.norm_sq()_i, clamped at 0   (a ghost norm can round a hair below 0)
    c_i    = clip_factors(‖∇_i‖, C)                     (minidp/privacy/mechanism.py)
    sum    = {name: Σ_i c_i ∇_i}                         (each record's weighted_sum)
An example whose norm is not finite (an overflow, a NaN input) is outside the sensitivity analysis: it is
dropped — c_i = 0 and its rows of every record zeroed first, since 0·NaN = NaN would poison the sum — and
counted in ``dropped`` (a NON-PRIVATE statistic). Every other example moves the sum by at most C.

No host copy: on a GPU, asking the host whether any example is non-finite would stall the device once per
virtual batch, so there the rows are zeroed unconditionally (a ``where`` per record, cheap next to the
matrix products); on NumPy the check is free, so they are zeroed only when needed. ``dropped`` stays on the
device; the DP step copies it to the host once per step, with the norms, factors and losses.
"""
from __future__ import annotations

import numpy as np

from minidp.backend import array_module
from minidp.per_example import total_norm_sq, weighted_sums
from minidp.privacy.mechanism import clip_factors


def clip_and_sum(records: dict, max_grad_norm: float, *, method: str = "flat", gamma: float = 0.01):
    """({name: Σ_i c_i ∇_i}, norms (B,), factors (B,), dropped) — all on the records' device.

    ``dropped`` is a 0-d integer array: the number of examples left out for a non-finite norm (``int()``
    copies it to the host). Their norms are reported as NaN and their factors as 0.
    """
    norm_sq = total_norm_sq(records)  # (B,)
    xp = array_module(norm_sq)
    norms = xp.sqrt(xp.maximum(norm_sq, 0.0))  # (B,)
    keep = xp.isfinite(norms)  # (B,)
    dropped = (~keep).sum()  # 0-d, on the device
    if xp is not np or not keep.all():  # on a GPU: always (no host round trip); on NumPy: when needed
        for record in records.values():
            record.keep_examples(keep)
        norms = xp.where(keep, norms, 0.0)
    factors = clip_factors(norms, max_grad_norm, method=method, gamma=gamma)  # (B,)
    factors = xp.where(keep, factors, 0.0)
    norms = xp.where(keep, norms, xp.nan)  # report the dropped examples' norms as NaN
    return weighted_sums(records, factors), norms, factors, dropped


def clipped_grad_sum(model, input_ids, attention_mask, labels, max_grad_norm: float, token_type_ids=None, *,
                     clip_method: str = "flat", gamma: float = 0.01):
    """({hf_name: Σ_i c_i ∇_i loss_i}, per-example norms (B,)) of ``model`` on one batch, no noise.

    The bare clipped-gradient part of a DP step, for the tests and the benchmarks: ``model``'s
    ``per_example_records`` (one forward, one backward; norms by book-keeping, docs/design.md §2) through
    ``clip_and_sum``, with ‖∇_i‖ over all trainable parameters. flat: c_i = min(1, C / (‖∇_i‖ + 1e-6))
    (Abadi et al. 2016); automatic: c_i = C / (‖∇_i‖ + gamma) (Bu et al. 2023, "automatic clipping").
    """
    _, records = model.per_example_records(input_ids, attention_mask, labels, token_type_ids)
    sums, norms, _, _ = clip_and_sum(records, max_grad_norm, method=clip_method, gamma=gamma)
    return sums, norms
