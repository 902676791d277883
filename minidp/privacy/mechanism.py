"""The Gaussian mechanism of DP-SGD: clip factors, then noise on the clipped sum. The only private release.

One step (docs/design.md §3): per-example gradient norms ‖∇_i‖ (B,) -> clip factors c_i -> clipped sum
S = Σ_i c_i ∇_i (formed by the per-example records) -> released = (S + Z) / (qN),
Z ~ N(0, (σC)² I). Because every clipped example has norm ≤ C, adding or removing one example moves S by
at most C (L2 sensitivity C), so Z with std σC gives the sampled Gaussian mechanism analysed by the
accountant (Abadi et al. 2016, §3.1; Mironov et al. 2019). Dividing by the *expected* batch size qN
(not the drawn size, which depends on the data) keeps the divisor public.

All DP noise of minidp is drawn in ``add_noise``. Everything downstream (the RMT denoiser, the optimizer)
sees only ``released`` and the public per-entry std ``noise_std_of_average``: post-processing.
"""
from __future__ import annotations

from minidp.backend import array_module
from minidp.errors import ConfigError, PrivacyError

CLIP_METHODS = ("flat", "automatic")


def clip_factors(norms, max_grad_norm: float, *, method: str = "flat", gamma: float = 0.01, eps: float = 1e-6):
    """Per-example scale factors c (B,) from per-example gradient norms (B,).

    flat (Abadi et al. 2016):         c_i = min(1, C / (‖∇_i‖ + eps))  -> ‖c_i ∇_i‖ ≤ C
    automatic (Bu et al. 2022, AUTO-S): c_i = C / (‖∇_i‖ + gamma)      -> ‖c_i ∇_i‖ < C
    ``eps`` only guards the division for zero gradients (it makes the flat bound strict, never looser).
    """
    if not max_grad_norm > 0:
        raise PrivacyError(f"max_grad_norm={max_grad_norm} must be > 0")
    xp = array_module(norms)
    norms = xp.asarray(norms)  # (B,)
    if method == "flat":
        if eps < 0:
            raise ConfigError(f"eps={eps} must be >= 0")
        return xp.minimum(1.0, max_grad_norm / (norms + eps))  # (B,)
    if method == "automatic":
        if not gamma > 0:
            raise ConfigError(f"gamma={gamma} must be > 0 for automatic clipping")
        return max_grad_norm / (norms + gamma)  # (B,)
    raise ConfigError(f"clipping method={method!r} is not one of {CLIP_METHODS}")


def _check(noise_multiplier: float, max_grad_norm: float, expected_batch_size: float) -> None:
    if not noise_multiplier >= 0:
        raise PrivacyError(f"noise_multiplier={noise_multiplier} must be >= 0")
    if not max_grad_norm > 0:
        raise PrivacyError(f"max_grad_norm={max_grad_norm} must be > 0")
    if not expected_batch_size > 0:
        raise PrivacyError(f"expected_batch_size={expected_batch_size} must be > 0")


def noise_std_of_average(*, noise_multiplier: float, max_grad_norm: float, expected_batch_size: float) -> float:
    """Per-entry std of the noise in the released (averaged) gradient: σC / (qN)."""
    _check(noise_multiplier, max_grad_norm, expected_batch_size)
    return noise_multiplier * max_grad_norm / expected_batch_size


def add_noise(clipped_sum: dict, *, noise_multiplier: float, max_grad_norm: float, expected_batch_size: float, rng,
              keep_noise: bool = True, in_place: bool = False):
    """Release the clipped sum: (released, noise), both {name: array} like ``clipped_sum``.

    noise[name]    = σC · z,  z ~ N(0, 1) elementwise, drawn by ``rng`` in float64 in the array's shape,
                     then cast to its dtype
                     (``rng`` is a numpy or cupy Generator living where the arrays live)
    released[name] = (clipped_sum[name] + noise[name]) / expected_batch_size
    Names are visited in sorted order, so the same seed gives the same noise however the dict was built.
    With σ = 0 no random numbers are drawn and the noise is exactly zero.

    Memory (the DP step's, when it keeps no intermediates): ``keep_noise=False`` returns ``noise=None`` and
    frees each draw once added; ``in_place=True`` writes ``released`` over ``clipped_sum``'s arrays (which the
    caller must not read again). Both give the same released values, bit for bit. With both, on NumPy, the
    noise of a large array is drawn, scaled, cast and added in chunks of NOISE_CHUNK entries
    (``_add_noise_in_chunks``): NumPy's Generator yields the same normals in one call or in consecutive
    calls, so the values are again bit-identical, without the array-sized float64 draw.
    """
    _check(noise_multiplier, max_grad_norm, expected_batch_size)
    std = noise_multiplier * max_grad_norm  # σC: sensitivity times noise multiplier
    released, noise = {}, {}
    for name in sorted(clipped_sum):
        s = clipped_sum[name]
        xp = array_module(s)
        if std > 0 and in_place and not keep_noise and xp.__name__ == "numpy" and s.flags.c_contiguous:
            _add_noise_in_chunks(s, std, rng)
            s /= s.dtype.type(expected_batch_size)
            released[name] = s
            continue
        if std == 0:
            z = xp.zeros_like(s)
        else:  # drawn in float64 (no float32 sampler artefacts), scaled in place, then cast to s's dtype
            z64 = rng.standard_normal(s.shape, dtype=xp.float64)
            z64 *= std
            z = z64.astype(s.dtype, copy=False)
            del z64
        if keep_noise:
            noise[name] = z
        if in_place:
            s += z
            out = s
        else:
            out = s + z
        del z
        out /= s.dtype.type(expected_batch_size)  # (s + z) / qN: the same two roundings as the expression
        released[name] = out
    return released, (noise if keep_noise else None)


NOISE_CHUNK = 1 << 20  # entries per draw in _add_noise_in_chunks: an 8 MiB float64 draw instead of the array's size


def _add_noise_in_chunks(s, std: float, rng) -> None:
    """s += (σC · z).astype(s.dtype), z ~ N(0, 1) in float64, drawn NOISE_CHUNK entries at a time.

    The same arithmetic, draw order and values as add_noise's whole-array form (tested bit-identical in
    tests/privacy/test_mechanism.py): each chunk takes the next normals of the stream."""
    flat = s.reshape(-1)  # a view: s is C-contiguous
    for start in range(0, flat.size, NOISE_CHUNK):
        z64 = rng.standard_normal(min(NOISE_CHUNK, flat.size - start))  # float64
        z64 *= std
        flat[start:start + z64.size] += z64.astype(s.dtype, copy=False)
