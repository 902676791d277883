"""minidp.backend on both devices: defaults follow MINIDP_DEVICE, random streams save and restore.

Runs on "cpu" and "cuda" (the CuPy stand-in without a GPU; see tests/conftest.py).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from minidp.backend import BackendError, RandomStreams, device_of, generator_device, get_xp, to_host
from minidp.run.config import ModelConfig
from models import load_pretrained
from models.config import EncoderConfig, init_params
from models.roberta import SequenceClassifier
from tests.fixtures import write_tiny_bert

TINY = EncoderConfig(model_type="bert", vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=16)


def test_defaults_follow_minidp_device(device, tmp_path):
    """device=None everywhere means $MINIDP_DEVICE (the ``device`` fixture sets it)."""
    streams = RandomStreams(0)
    assert streams.device == device
    assert generator_device(streams.noise) == generator_device(streams.dropout) == device
    assert generator_device(streams.sampling) == "cpu"  # indices select host-side data
    model = SequenceClassifier(TINY, init_params(TINY, np.random.default_rng(0)))
    assert model.device == device and device_of(model.params["classifier.weight"]) == device
    loaded = load_pretrained(write_tiny_bert(tmp_path / "m"), verbose=False)
    assert loaded.device == device and generator_device(loaded.dropout_rng) == device
    assert ModelConfig(path="x").device == device


def test_a_bad_minidp_device_is_named(monkeypatch):
    monkeypatch.setenv("MINIDP_DEVICE", "tpu")
    with pytest.raises(BackendError, match="MINIDP_DEVICE='tpu'"):
        RandomStreams(0)


def _draws(streams) -> list:
    """A few draws from every stream, as host arrays."""
    return [streams.sampling.random(3), to_host(streams.noise.standard_normal((2, 3))),
            to_host(streams.dropout.random((4,))), to_host(streams.init.standard_normal(2))]


@pytest.mark.parametrize("seed", [0, None])
def test_streams_save_and_restore(device, seed):
    """Draws after load_state_dict(state) equal the draws after state_dict() (JSON round trip)."""
    streams = RandomStreams(seed)
    _draws(streams)
    dropout = streams.dropout  # held by the model (model.dropout_rng): it must follow a load
    state = json.loads(json.dumps(streams.state_dict()))
    after_save = _draws(streams)
    other = RandomStreams(12345)
    other_dropout = other.dropout
    other.load_state_dict(state)
    assert other.dropout is other_dropout and streams.dropout is dropout  # the same objects, re-seeded
    after_load = _draws(other)
    for a, b in zip(after_save, after_load):
        assert np.array_equal(a, b)


def test_saving_on_cpu_does_not_change_the_draws(monkeypatch):
    monkeypatch.setenv("MINIDP_DEVICE", "cpu")
    a, b = RandomStreams(3), RandomStreams(3)
    a.state_dict()
    for x, y in zip(_draws(a), _draws(b)):
        assert np.array_equal(x, y)


def test_streams_saved_on_one_device_are_refused_on_the_other(stand_in):
    cpu_state = RandomStreams(0, device="cpu").state_dict()
    with pytest.raises(BackendError, match="saved on cpu and cannot be restored on cuda"):
        RandomStreams(0, device="cuda").load_state_dict(cpu_state)
    cuda_state = RandomStreams(0, device="cuda").state_dict()
    with pytest.raises(BackendError, match="saved on cuda and cannot be restored on cpu"):
        RandomStreams(0, device="cpu").load_state_dict(cuda_state)


def test_cuda_streams_are_cupy_generators(stand_in):
    streams = RandomStreams(0, device="cuda")
    assert type(streams.noise).__module__.startswith("cupy")
    assert type(streams.noise.standard_normal(3)) is get_xp("cuda").ndarray


def test_device_problems_are_one_line_exit_2(tmp_path, monkeypatch, capsys):
    """No CuPy / no GPU, or a bad MINIDP_DEVICE: one line naming the problem, exit status 2, no traceback."""
    from minidp.run.cli import main  # noqa: PLC0415
    from tests import fake_cupy  # noqa: PLC0415
    from tests.conftest import real_gpu  # noqa: PLC0415
    from tests.fixtures import write_tiny_tsv  # noqa: PLC0415

    argv = ["train", "--model", str(write_tiny_bert(tmp_path / "m")), "--task", "csv", "--train-file",
            str(write_tiny_tsv(tmp_path / "t.tsv", 30)), "--text-column", "sentence", "--label-column", "label",
            "--steps", "1", "--batch-size", "4", "--max-length", "16", "--no-progress"]
    monkeypatch.setenv("MINIDP_DEVICE", "gpu")
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "minidp train: error: MINIDP_DEVICE='gpu' is not one of ('cpu', 'cuda')"]
    if real_gpu() or fake_cupy.is_installed():
        return  # CuPy is there: nothing more to refuse
    monkeypatch.setenv("MINIDP_DEVICE", "cpu")
    assert main([*argv, "--device", "cuda"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("minidp train: error: device='cuda' needs CuPy and an NVIDIA GPU")


def test_minidp_num_threads_sets_the_blas_thread_variables_before_numpy_loads():
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                             "MKL_NUM_THREADS")}
    env.update(MINIDP_NUM_THREADS="1", MKL_NUM_THREADS="3")  # an explicit BLAS variable wins
    code = ("import json, os, minidp, numpy; print(json.dumps({v: os.environ.get(v) for v in "
            "minidp.BLAS_THREAD_VARIABLES}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "3"}
