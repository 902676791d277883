"""The CuPy stand-in itself (tests/fake_cupy.py): it must fail where a GPU would, and count host copies.

A harness that never fails proves nothing, so these tests plant the bugs it exists to catch — an
``np.asarray`` of a device array inside the DP step, host noise added to device gradients — and check
that the step then fails on the stand-in (while the same planted code passes on NumPy).
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.special

import minidp.privacy.clipping as clipping
from minidp.backend import RandomStreams, get_xp, to_host
from minidp.errors import ConfigError
from minidp.optim import make_optimizer
from minidp.privacy import RDPAccountant
from minidp.step import DPStep
from models.config import EncoderConfig, init_params
from models.roberta import SequenceClassifier
from tests import fake_cupy
from tests.fixtures import RandomTokens

TINY = EncoderConfig(model_type="bert", vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=16, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)


def tiny_step(device: str, streams_device: str | None = None, **kw) -> DPStep:
    streams = RandomStreams(0, device=streams_device or device)
    model = SequenceClassifier(TINY, init_params(TINY, np.random.default_rng(0)), dtype="float64", device=device,
                               dropout_rng=streams.dropout)
    return DPStep(model, RandomTokens(8, 6, TINY.vocab_size), noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.5,
                  optimizer=make_optimizer("sgd", 0.1), streams=streams, accountant=RDPAccountant(), delta=1e-5,
                  max_physical_batch=4, **kw)


# ------------------------------------------------------------------------------------------------ refusals


def test_implicit_host_conversions_are_refused(stand_in):
    x = stand_in.asarray([1.0, 2.0, 3.0])
    for convert in (np.asarray, np.array, np.asanyarray, np.ascontiguousarray, np.asfortranarray):
        with pytest.raises(TypeError, match="device"):
            convert(x)
    with pytest.raises(TypeError):
        np.array([x[0], x[1]])  # a list holding device scalars
    with pytest.raises(TypeError, match="Implicit conversion"):
        x.__array__()
    assert isinstance(to_host(x), np.ndarray) and type(to_host(x)) is np.ndarray  # the explicit way works


def test_mixing_host_and_device_arrays_is_refused(stand_in):
    x, host = stand_in.ones(3), np.ones(3)
    for mix in (lambda: x + host, lambda: host * x, lambda: stand_in.stack([x, host]),
                lambda: stand_in.ascontiguousarray(host), lambda: stand_in.maximum(x, host)):
        with pytest.raises(TypeError, match="numpy.ndarray"):
            mix()
    assert float((x + 2.0 + np.float64(1.0)).sum()) == 12.0  # Python and NumPy scalars are fine, as in CuPy
    x[np.array([0, 2])] = np.array([5.0, 6.0])  # host index / value arrays are uploaded, as in CuPy
    assert to_host(x).tolist() == [5.0, 1.0, 6.0]


def test_host_functions_and_ufuncs_on_device_arrays_are_refused(stand_in):
    x = stand_in.linspace(-1.0, 1.0, 5)
    with pytest.raises(TypeError, match="cupyx.scipy.special.erf"):
        scipy.special.erf(x)
    with pytest.raises(TypeError, match="numpy.concatenate"):
        np.concatenate([x, x])
    with pytest.raises(TypeError, match="numpy.linalg.norm|numpy.norm"):
        np.linalg.norm(x)
    import cupyx.scipy.special  # noqa: PLC0415  (the stand-in's)

    assert np.allclose(to_host(cupyx.scipy.special.erf(x)), scipy.special.erf(np.linspace(-1, 1, 5)))
    assert type(np.exp(x)).__module__ == "cupy"  # NumPy ufuncs dispatch to CuPy, as on a GPU
    with pytest.raises(AttributeError, match="stand-in has no cupy.fancy_function"):
        stand_in.fancy_function


def test_generator_has_cupys_methods_and_state_is_a_method(stand_in):
    rng = stand_in.random.default_rng(0)
    z = rng.standard_normal((2, 3), dtype=stand_in.float32)
    assert type(z).__module__ == "cupy" and z.dtype == np.float32
    assert rng.random().ndim == 0  # a 0-d device array, not a Python float
    for missing in ("normal", "choice", "permutation", "shuffle"):
        assert not hasattr(rng, missing)
    assert isinstance(rng.bit_generator.state(), int)  # a device pointer, as in CuPy
    # what RandomStreams.load_state_dict used to do on cuda: assign a NumPy state dict over the method
    rng.bit_generator.state = np.random.default_rng(0).bit_generator.state
    with pytest.raises(TypeError, match="not callable"):
        rng.standard_normal(3)


# ------------------------------------------------------------------------------------------------ counters


def test_host_copies_are_counted(stand_in):
    x = stand_in.arange(6, dtype=stand_in.float64)
    with fake_cupy.count_syncs() as syncs:
        y = (x * 2.0).sum(axis=0)  # device work only
        assert syncs.total == 0 and y.ndim == 0  # reductions give 0-d device arrays, as CuPy
        float(y)
        int(x[1])
        bool(x.max() > 2)
        to_host(x)
        x[x > 2]  # boolean-mask indexing: the size of the result needs a copy
    assert syncs.by_kind == {"float": 1, "int": 1, "bool": 1, "get": 1, "mask_index": 1}
    assert syncs.total == 5


# ------------------------------------------------------------------------------------------------ planted bugs


def test_a_planted_asarray_in_the_dp_step_fails_on_the_stand_in_only(device, monkeypatch):
    """np.asarray on the per-example norms: harmless on NumPy, an implicit device copy on a GPU."""
    original = clipping.total_norm_sq

    def planted(records):
        norm_sq = original(records)
        np.asarray(norm_sq)  # the bug: a host conversion of a device array
        return norm_sq

    monkeypatch.setattr(clipping, "total_norm_sq", planted)
    step = tiny_step(device)
    if device == "cpu":
        assert step().batch_size >= 0
    else:
        with pytest.raises(TypeError, match="numpy.asarray of a device array|Implicit conversion"):  # stand-in|CuPy
            step()


def test_mixed_streams_are_refused_when_the_step_is_built(stand_in):
    with pytest.raises(ConfigError, match="model's parameters are on cuda but streams.noise is on cpu"):
        tiny_step("cuda", streams_device="cpu")
    with pytest.raises(ConfigError, match="on cpu but streams.noise is on cuda"):
        tiny_step("cpu", streams_device="cuda")


def test_host_noise_on_device_gradients_fails_on_the_stand_in(stand_in):
    """Bypassing the check (streams swapped after the step is built): the stand-in still catches the mix."""
    step = tiny_step("cuda")
    step.streams.noise = np.random.default_rng(0)
    with pytest.raises(TypeError, match="numpy.ndarray mixed with a device array"):
        step()


def test_install_and_uninstall_restore_numpy_and_sys_modules():
    before_cupy, before_asarray = sys.modules.get("cupy"), np.asarray
    with fake_cupy.installed():
        assert sys.modules["cupy"] is fake_cupy.cupy and np.asarray is not before_asarray
        assert get_xp("cuda") is fake_cupy.cupy
    assert sys.modules.get("cupy") is before_cupy and np.asarray is before_asarray
