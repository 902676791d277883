"""Client-level sensitivity: adding or removing one client moves the pre-noise sum by at most C, for every
encoder choice; the wire format, the noise and the server's stacking."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minidp.denoise.gradients import DenoiseSettings
from minidp.run.federated import aggregation, server
from minidp.run.federated.codec import BYTES_PER_NUMBER, is_factor
from tests.run.federated.helpers import R, D, LAYERS, codecs, random_update, update_shapes

CODECS = codecs()


def sum_norm_difference(a: dict, b: dict) -> float:
    return math.sqrt(sum(float(((a[n] - b[n]) ** 2).sum()) for n in a))


scales = st.one_of(st.just(0.0), st.floats(-8, 8).map(lambda e: 10.0 ** e), st.just(math.inf))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # an infinite update's latent
@pytest.mark.parametrize("encoder", sorted(CODECS))  # none, dr, fedcg, dr-mlp, fedcg-mlp
@settings(max_examples=25, deadline=None)
@given(others=st.lists(scales, max_size=4), extra=scales, clip=st.floats(1e-3, 1e3), seed=st.integers(0, 2**31 - 1))
def test_one_client_moves_the_sum_by_at_most_C(encoder, others, extra, clip, seed):
    codec = CODECS[encoder]
    rng = np.random.default_rng(seed)
    wires = [codec.encode(random_update(rng, s)) for s in others]
    extra_wire = codec.encode(random_update(rng, extra))
    like = {n: np.zeros_like(v) for n, v in extra_wire.items()}
    without, _, _ = aggregation.clipped_sum(wires, like, clip)
    with_it, norms, factors = aggregation.clipped_sum(wires + [extra_wire], like, clip)
    moved = sum_norm_difference(with_it, without)
    assert moved <= clip * (1 + 1e-9), (encoder, moved, clip)
    assert all(np.isfinite(v).all() for v in with_it.values())
    assert factors[-1] == 0.0 or math.isfinite(norms[-1])


@pytest.mark.parametrize("encoder", sorted(CODECS))
def test_wire_shapes_and_bytes(encoder):
    codec = CODECS[encoder]
    shapes = update_shapes()
    wire = codec.encode(random_update(np.random.default_rng(0)))
    assert {n: v.shape for n, v in wire.items()} == codec.wire_shapes(shapes)
    decoded = codec.decode(wire, shapes)
    assert {n: v.shape for n, v in decoded.items()} == shapes
    sent = codec.numbers_sent(shapes)
    raw = sum(int(np.prod(s)) for s in shapes.values())
    if encoder == "none":
        assert sent == raw and codec.reconstruction_error(random_update(np.random.default_rng(1))) is None
    else:  # each factor travels as (r, k=3) instead of r·d = 12 numbers
        assert sent == raw - 2 * LAYERS * 2 * R * (D - 3)
        err = codec.reconstruction_error(random_update(np.random.default_rng(1)))
        assert 0.0 < err  # random updates are not on the learnt subspace
    print(encoder, "numbers sent", sent, "of", raw, "bytes", sent * BYTES_PER_NUMBER)


def test_clipping_whole_contribution_not_per_matrix():
    """One clip factor for the whole concatenated contribution: the ratios between matrices survive."""
    update = random_update(np.random.default_rng(2), 10.0)
    clipped, norm, factor = aggregation.clip_contribution(update, 1.0)
    assert abs(aggregation.contribution_norm(clipped) - 1.0) < 1e-5
    for n in update:
        np.testing.assert_allclose(clipped[n], factor * update[n], rtol=1e-12)
    small, _, f_small = aggregation.clip_contribution(random_update(np.random.default_rng(3), 1e-3), 1.0)
    assert f_small == 1.0


def test_release_noise_std_and_divisor():
    like = {"w": np.zeros((200, 200))}
    rng = np.random.default_rng(0)
    out = aggregation.release(like, noise_multiplier=2.0, max_grad_norm=0.5, expected_clients=4.0, rng=rng)
    std = out["w"].std()  # σC/(qK) = 0.25
    print(f"noise std {std:.5f} (expected 0.25)")
    assert abs(std - 0.25) < 0.005


@pytest.mark.parametrize("encoded", [False, True])
def test_stack_unstack_round_trip(encoded):
    codec = CODECS["dr" if encoded else "none"]
    wire = codec.encode(random_update(np.random.default_rng(4)))  # latents (r, k) or the factors themselves
    stacked, members = server.stack_factors(wire, encoded=encoded)
    assert set(stacked) == {"bert.encoder.layer.*.attention.self.query.lora_A.weight",
                            "bert.encoder.layer.*.attention.self.query.lora_B.weight",
                            "bert.encoder.layer.*.attention.self.value.lora_A.weight",
                            "bert.encoder.layer.*.attention.self.value.lora_B.weight"}
    width = 3 if encoded else D
    assert all(v.shape == (LAYERS * R, width) for v in stacked.values())
    back = server.unstack_factors(stacked, members, wire, encoded=encoded)
    for n in wire:
        np.testing.assert_array_equal(back[n], wire[n])


def test_denoise_release_keeps_names_and_shapes():
    wire = CODECS["none"].encode(random_update(np.random.default_rng(5), 1e-3))
    out, summary = server.denoise_release(wire, noise_std=1.0, settings=DenoiseSettings(min_dim=3), encoded=False)
    assert {n: v.shape for n, v in out.items()} == {n: v.shape for n, v in wire.items()}
    assert summary["matrices"] == 4  # four stacked factor groups; the 2 × 6 head skipped by min_dim
    np.testing.assert_array_equal(out["classifier.bias"], wire["classifier.bias"])
    assert sum(is_factor(n) for n in out) == 2 * LAYERS * 2
