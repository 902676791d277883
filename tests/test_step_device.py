"""One DP step on the device (a GPU, else the CuPy stand-in) against the host, and its host-copy budget.

The sampling stream is host-side and seeded, so a step on "cuda" samples the same batch as on "cpu":
its per-example norms, clip factors, losses and clipped sum must match the host run. The noise comes
from the device's own generator (other numbers), so the release and the denoiser are checked against
their definitions: released = (clipped sum + noise) / qN, and the denoised gradient equals the host
denoiser applied to the released one.
"""
from __future__ import annotations

import numpy as np
import pytest

from minidp.backend import RandomStreams, device_of, to_host
from minidp.denoise import denoise_gradients
from minidp.denoise.fast import check_depths
from minidp.optim import make_optimizer
from minidp.privacy import RDPAccountant
from minidp.step import DenoiseSettings, DPStep
from models.config import EncoderConfig, init_params
from models.roberta import SequenceClassifier
from tests import fake_cupy
from tests.fixtures import RandomTokens


def config(layers: int, hidden: int = 16, *, heads: int = 2, ffn: int | None = None) -> EncoderConfig:
    return EncoderConfig(model_type="bert", vocab_size=40, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=2 * hidden if ffn is None else ffn,
                         max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def make_step(device: str, cfg: EncoderConfig, *, denoise=None, diagnostics=False, sigma=1.0, n=24, q=0.5,
              batch=4) -> DPStep:
    streams = RandomStreams(0, device=device)
    model = SequenceClassifier(cfg, init_params(cfg, np.random.default_rng(0)), dtype="float64", device=device,
                               dropout_rng=streams.dropout)
    model.train()
    return DPStep(model, RandomTokens(n, 8, cfg.vocab_size), noise_multiplier=sigma, max_grad_norm=0.5,
                  sample_rate=q, optimizer=make_optimizer("sgd", 0.1), streams=streams,
                  accountant=RDPAccountant(), delta=1e-5, max_physical_batch=batch, denoise=denoise,
                  diagnostics=diagnostics)


@pytest.mark.parametrize("method", [None, "exact", "fast"])
def test_dp_step_on_the_device_matches_the_host(device, method):
    cfg = config(layers=2)
    denoise = None if method is None else DenoiseSettings(method=method)
    step, reference = make_step(device, cfg, denoise=denoise), make_step("cpu", cfg, denoise=denoise)
    before = {name: to_host(value).copy() for name, value in step.model.params.items()}
    record, host = step(lr=0.1), reference(lr=0.1)

    assert np.array_equal(record.sampled_indices, host.sampled_indices) and record.batch_size > 0
    for field in ("per_example_norms", "clip_factors", "losses"):
        value = getattr(record, field)
        assert type(value) is np.ndarray  # the step hands per-example values over on the host
        assert np.allclose(value, getattr(host, field), rtol=1e-10, atol=0), field
    names = step.model.trainable
    for name in names:
        assert device_of(record.released[name]) == device
        clipped, noise = to_host(record.clipped_sum[name]), to_host(record.noise[name])
        assert np.allclose(clipped, to_host(host.clipped_sum[name]), rtol=1e-10, atol=1e-13), name
        assert np.array_equal(to_host(record.released[name]), (clipped + noise) / record.expected_batch_size)
    noise = np.concatenate([to_host(record.noise[name]).ravel() for name in names])
    assert abs(noise.mean()) < 0.05 * 0.5 and abs(noise.std() / 0.5 - 1.0) < 0.05  # N(0, (σC)²), σC = 0.5

    update = record.released
    if method is not None:
        released = {name: to_host(record.released[name]) for name in names}
        expected, stats = denoise_gradients(released, record.noise_std, method=method, seed=1)
        for name in names:
            scale = max(np.linalg.norm(expected[name]), 1e-300)
            assert np.linalg.norm(to_host(record.denoised[name]) - expected[name]) / scale <= 1e-8, name
        assert {n: s["kept"] for n, s in stats.items()} == {n: s["kept"] for n, s in record.denoise_stats.items()}
        update = record.denoised
    for name in names:  # SGD: θ ← θ − lr · update, on the device
        assert np.allclose(to_host(step.model.params[name]), before[name] - 0.1 * to_host(update[name]),
                           rtol=0, atol=1e-15)


def krylov_checks(stats: dict) -> int:
    """How many times the fast denoiser's Krylov run read the host: the check depths up to the deepest one at
    which a matrix was done (every stack, every shape, shares each check's one copy)."""
    assert all(st["method"] in ("fast", "exact") for st in stats.values()), stats  # no fall-back to exact here
    deepest = max(st["iterations"] for st in stats.values() if st["method"] == "fast")
    return len([depth for depth in check_depths(10**6) if depth <= deepest])


def test_host_copies_per_step_do_not_grow_with_layers_or_virtual_batches(stand_in):
    """On the stand-in: a DP step copies to the host a fixed number of times.

    Per step: 1 copy of the per-example norms/factors/losses (however many virtual batches), 1 for the
    NON-PRIVATE diagnostic when asked for; the fast denoiser adds 1 for all Frobenius norms, 1 per matrix
    too small for it (the classifier's 2×C output, denoised exactly) and 1 per check of its Krylov run, shared
    by every stack of same-shape matrices (minidp/denoise/fast.py, check_depths): a function of the depth
    reached, not of the number of layers.
    """
    counts = {}
    for layers in (1, 3):
        for batch in (3, 24):  # 4 to 5 virtual batches of 3, or one of 24
            cfg = config(layers, hidden=64)
            for diagnostics in (False, True):
                with fake_cupy.count_syncs() as syncs:
                    make_step("cuda", cfg, diagnostics=diagnostics, batch=batch)(lr=0.1)
                assert syncs.total == 1 + diagnostics, syncs.by_kind
            # κ = 1.5: the pure-noise matrices sit clearly below the threshold, so no stack falls back to exact
            step = make_step("cuda", cfg, denoise=DenoiseSettings(method="fast", kappa=1.5), batch=batch)
            with fake_cupy.count_syncs() as syncs:
                record = step(lr=0.1)
            exact = sum(st["method"] == "exact" for st in record.denoise_stats.values())
            counts[layers, batch] = (syncs.total - krylov_checks(record.denoise_stats), exact)
    print("host copies per step outside the Krylov iteration, (layers, batch) -> (count, exact matrices):", counts)
    assert set(counts.values()) == {(1 + 1 + 1, 1)}  # per-example values, Frobenius norms, the 2×64 head


def test_host_copies_with_rmt_at_minilm_shapes_are_few_and_the_same_for_2_and_6_layers(stand_in):
    """MiniLM's shapes (hidden 384, 12 heads, FFN 1536), the default denoiser (fast, κ = 1.02): a DP step makes
    at most 8 device -> host copies, and the same number with 2 layers (13 matrices of 3 shapes) as with 6 (37).

    The copies: the per-example values, all Frobenius norms, the 2×384 head (denoised exactly), and one per
    check of the Krylov run that every stack shares (at depths 4, 6, 9, 14, ...: pure noise just below
    1.02 × the edge is certified by depth 9–14 here). Before this count was a test, the step made 55 (2 layers)
    and 67 (6 layers) copies: two per Krylov depth per stack of same-shape matrices."""
    counts, depths = {}, {}
    for layers in (2, 6):
        step = make_step("cuda", config(layers, hidden=384, heads=12, ffn=1536), denoise=DenoiseSettings(), batch=4)
        with fake_cupy.count_syncs() as syncs:
            record = step(lr=0.1)
        counts[layers] = syncs.total
        depths[layers] = sorted({st.get("iterations") or 0 for st in record.denoise_stats.values()})
        assert len(record.denoise_stats) == 6 * layers + 1 + 1  # Q, K, V, O, FFN in, FFN out; pooler; head
        assert 3 + krylov_checks(record.denoise_stats) == counts[layers], syncs.by_kind
    print(f"host copies per DP step with RMT, MiniLM shapes: {counts}; Krylov depths at which matrices were done "
          f"(0: the exact head): {depths}")
    assert counts[2] == counts[6] <= 8
