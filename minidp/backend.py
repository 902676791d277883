"""The array backend: one place that decides NumPy vs CuPy, the dtype, and the random streams.

Every array operation in minidp goes through the module returned here (conventionally named ``xp``),
so the same code runs on a laptop (NumPy) and on one GPU (CuPy), and CPU CI covers the GPU code.

    xp = get_xp("cpu")            # numpy
    xp = get_xp("cuda")           # cupy, or a clear BackendError if CuPy / a GPU is missing
    xp = array_module(x)          # the module that owns array x
    x_host = to_host(x)           # a numpy.ndarray, whichever device x lives on

Random numbers come from independent seeded streams, one per purpose, so that e.g. changing the
dropout rate never changes which examples are sampled or which privacy noise is drawn:

    streams = RandomStreams(seed=0, device="cpu")
    streams.sampling, streams.noise, streams.dropout, streams.init   # Generators

``sampling`` is always a NumPy generator (indices select host-side data); the others live on
``device`` (numpy or cupy). ``device=None`` (the default everywhere in minidp and models) means
``MINIDP_DEVICE`` ("cpu" or "cuda"), else "cpu".
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from minidp.errors import MinidpError

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")
STREAM_NAMES = ("sampling", "noise", "dropout", "init")


class BackendError(MinidpError, RuntimeError):
    """A device or dtype that cannot be used here (e.g. cuda without CuPy or a GPU): the CLI prints it as
    one line (exit status 2)."""


def default_device() -> str:
    """The device named by ``MINIDP_DEVICE`` ("cpu" or "cuda"), else "cpu"."""
    device = os.environ.get("MINIDP_DEVICE", "cpu").strip().lower() or "cpu"
    if device not in DEVICES:
        raise BackendError(f"MINIDP_DEVICE={device!r} is not one of {DEVICES}")
    return device


def resolve_device(device: str | None) -> str:
    """``None`` -> the default device; otherwise check that ``device`` is "cpu" or "cuda"."""
    if device is None:
        return default_device()
    device = str(device).lower()
    if device not in DEVICES:
        raise BackendError(f"device={device!r} is not one of {DEVICES}")
    return device


def _import_cupy() -> ModuleType:
    try:
        import cupy  # noqa: PLC0415  (optional dependency, imported only when asked for)
    except Exception as err:  # ImportError, or a CUDA library that fails to load
        raise BackendError(
            "device='cuda' needs CuPy and an NVIDIA GPU: `pip install 'minidp[gpu]'` "
            f"(CuPy could not be imported: {type(err).__name__}: {err})"
        ) from None
    try:
        n_gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:
        raise BackendError(f"device='cuda' but CuPy finds no usable GPU ({err})") from None
    if n_gpus < 1:
        raise BackendError("device='cuda' but CuPy finds no GPU")
    return cupy


def get_xp(device: str | None = None) -> ModuleType:
    """The array module for ``device``: numpy for "cpu", cupy for "cuda"."""
    device = resolve_device(device)
    if device == "cuda":
        return _import_cupy()
    return np


def array_module(x) -> ModuleType:
    """The array module (numpy or cupy) that owns ``x``; numpy for anything that is not a CuPy array."""
    if type(x).__module__.startswith("cupy"):
        import cupy  # noqa: PLC0415

        return cupy
    return np


def device_of(x) -> str:
    """ "cuda" if ``x`` is a CuPy array, else "cpu"."""
    return "cuda" if array_module(x) is not np else "cpu"


def resolve_dtype(dtype) -> np.dtype:
    """ "float32" (the default for training) or "float64" (for checks) as a numpy dtype."""
    if dtype is None:
        dtype = "float32"
    name = np.dtype(dtype).name
    if name not in DTYPES:
        raise BackendError(f"dtype={dtype!r} is not supported; use one of {DTYPES}")
    return np.dtype(name)


def to_host(x):
    """``x`` as a numpy array (a copy from the GPU for CuPy arrays, ``x`` itself for numpy)."""
    if array_module(x) is not np:
        return x.get()
    return np.asarray(x)


def to_device(x, device: str | None = None, dtype=None):
    """``x`` (numpy, cupy or a list) as an array of ``device``; cast to ``dtype`` when given."""
    xp = get_xp(device)
    if array_module(x) is not np and xp is np:
        x = x.get()
    out = xp.asarray(x)
    if dtype is not None:
        out = out.astype(resolve_dtype(dtype), copy=False)
    return out


def scalar(x) -> float:
    """A 0-d array (numpy or cupy) or number as a Python float."""
    return float(to_host(x))


def generator_device(rng) -> str:
    """ "cuda" for a CuPy random generator, "cpu" for a NumPy one (where its draws will live)."""
    return "cuda" if type(rng).__module__.startswith("cupy") else "cpu"


DEVICE_STREAMS = ("noise", "dropout", "init")  # the streams that live on ``device``; ``sampling`` is host


@dataclass
class RandomStreams:
    """Independent seeded generators, one per purpose (see module docstring).

    Each stream is seeded from ``numpy.random.SeedSequence(seed).spawn``, so the streams are
    statistically independent. ``seed=None`` (the default) draws the root seed from the operating
    system's entropy: nobody can predict the noise. An integer seed makes every stream reproducible —
    for experiments only, since anyone who knows it can regenerate the noise.

    On cuda each device stream is a CuPy generator seeded by a *key*: a 64-bit draw from a host NumPy
    generator of its own (the key stream, spawned as above). See ``state_dict`` for why.
    """

    seed: int | None = None
    device: str | None = None

    def __post_init__(self):
        self.device = resolve_device(self.device)
        root = np.random.SeedSequence(None if self.seed is None else int(self.seed))
        children = root.spawn(len(STREAM_NAMES))
        self._keys: dict = {}  # cuda: {stream name: host generator of the keys that seed it}
        for name, child in zip(STREAM_NAMES, children):
            if name == "sampling" or self.device == "cpu":
                setattr(self, name, np.random.default_rng(child))
            else:
                self._keys[name] = np.random.default_rng(child)
                setattr(self, name, get_xp(self.device).random.default_rng(self._next_key(name)))

    def _next_key(self, name: str) -> int:
        return int(self._keys[name].integers(0, 2**63))

    def _seed_device_stream(self, name: str, key: int) -> None:
        """Point the CuPy generator ``name`` at a fresh bit generator seeded by ``key`` (the same object:
        whoever holds the generator, e.g. ``model.dropout_rng``, follows)."""
        generator = getattr(self, name)
        generator.bit_generator = type(generator.bit_generator)(key)

    def state_dict(self) -> dict:
        """The streams' states, JSON-safe, for checkpoints (``load_state_dict`` restores them).

        cpu: every generator's NumPy bit-generator state, read without side effects.
        cuda: CuPy cannot read a cuRAND generator's state (``bit_generator.state()`` is a device pointer),
        so saving *re-keys* the device streams: each continues from a fresh generator seeded by the next key
        of its host key stream, and the key streams' states and the new keys are saved. A run resumed from
        this state re-creates exactly those generators, so the resumed run draws what the uninterrupted
        run drew (bit-exact resume); where a run saves changes its draws, as a different seed would.
        """
        state = {"device": self.device, "sampling": self.sampling.bit_generator.state}
        for name in DEVICE_STREAMS:
            if self.device == "cpu":
                state[name] = getattr(self, name).bit_generator.state
            else:
                key = self._next_key(name)
                self._seed_device_stream(name, key)
                state[name] = {"key": key, "key_stream": self._keys[name].bit_generator.state}
        return state

    def load_state_dict(self, states: dict) -> None:
        """Restore ``state_dict()``'s states; BackendError if they were saved on another device."""
        saved_on = states.get("device", "cpu")
        if saved_on != self.device:
            raise BackendError(f"the random streams were saved on {saved_on} and cannot be restored on "
                               f"{self.device} (CuPy and NumPy generators differ): resume on {saved_on}")
        self.sampling.bit_generator.state = states["sampling"]
        for name in DEVICE_STREAMS:
            if self.device == "cpu":
                getattr(self, name).bit_generator.state = states[name]
            else:
                self._keys[name].bit_generator.state = states[name]["key_stream"]
                self._seed_device_stream(name, int(states[name]["key"]))
