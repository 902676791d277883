"""A strict CuPy stand-in: minidp's GPU code path run on the CPU, refusing every implicit host copy.

    from tests import fake_cupy
    with fake_cupy.installed():                 # `import cupy` / `import cupyx` now give the stand-in
        x = get_xp("cuda").asarray([1.0, 2.0])  # a stand-in device array (its data live in host memory)
        np.asarray(x)                           # TypeError, as with CuPy on a GPU
        with fake_cupy.count_syncs() as syncs:
            float(x.sum())
        assert syncs.total == 1                 # one device -> host copy

The tests reach it through the ``device`` fixture and ``MINIDP_FAKE_CUPY=1`` (tests/conftest.py).

What it refuses, as CuPy does on a GPU (TypeError):
- ``np.asarray`` / ``np.array`` / ``np.asanyarray`` / ``np.ascontiguousarray`` / ``np.asfortranarray`` of a
  device array, or of a list holding one (these module functions are replaced while installed: a NumPy
  subclass alone cannot refuse them);
- a device array mixed with a host ``numpy.ndarray`` in one operation (``x + host``, ``xp.stack([x, host])``,
  ``cupy.ascontiguousarray(host)``); Python and NumPy scalars are fine, as in CuPy;
- NumPy *functions* on a device array (``np.concatenate([x])``, ``np.linalg.norm(x)``): CuPy would dispatch
  most of them, but minidp's rule is that array code goes through ``xp``, so the stand-in is stricter
  (only ``np.shape`` / ``np.ndim`` / ``np.size`` pass);
- ufuncs that are not NumPy's (``scipy.special.erf(x)``): use ``cupyx.scipy.special``;
- names CuPy does not have: ``cupy.random.default_rng(...)`` returns a generator with CuPy's methods only
  (no ``normal``, ``choice``, ``permutation``), whose ``bit_generator.state`` is a *method* returning a
  device pointer, as in CuPy — assigning a NumPy state dict to it breaks the next draw, as on a GPU.

What it counts (``SYNCS``, ``count_syncs``): every device -> host copy — ``get``, ``cupy.asnumpy``,
``float``/``int``/``bool``/``index``/``complex``/``format`` of an array, ``item``, ``tolist``, ``repr``,
and the operations whose result shape depends on the data (boolean-mask indexing, ``nonzero``,
``unique``), which CuPy must copy to the host. Uploads (host -> device) are counted apart in ``UPLOADS``.

What it cannot catch (a real GPU run, scripts/gpu_check.sh, is the only check of these):
- cuSOLVER / cuBLAS behaviour: batched ``eigh`` (syevj) convergence and its silent failures, error codes
  (``CUSOLVERError``), workspace limits, different rounding (TF32, reduction order); here LAPACK answers;
- atomics: ``cupyx.scatter_add`` is ``np.add.at`` here (deterministic); on a GPU the order of atomic adds,
  and so the last bits of a float sum, may change from run to run;
- asynchronous execution, streams and the real cost of a sync; speed and device memory (the memory pool
  reports 0 bytes); out-of-memory; kernel compilation; dtype rules where CuPy differs from NumPy;
- a device array used to index a *host* array (NumPy reads the stand-in's memory silently).
"""
from __future__ import annotations

import collections
import contextlib
import functools
import sys
import types

import numpy as np
import scipy.special

SYNCS: collections.Counter = collections.Counter()  # device -> host copies by kind, since import
UPLOADS: collections.Counter = collections.Counter()  # host -> device copies by function
_PATCHED = ("asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray")
_ORIGINAL = {name: getattr(np, name) for name in _PATCHED}
__version__ = "13.0.0+stand-in"


def _sync(kind: str) -> None:
    SYNCS[kind] += 1


class SyncCount:
    """Device -> host copies made inside a ``count_syncs()`` block: ``total`` and ``by_kind``."""

    def __init__(self):
        self._start = collections.Counter(SYNCS)
        self.by_kind: dict = {}

    def update(self) -> None:
        self.by_kind = {k: v for k, v in (SYNCS - self._start).items() if v}

    @property
    def total(self) -> int:
        self.update()
        return sum(self.by_kind.values())


@contextlib.contextmanager
def count_syncs():
    """Count the device -> host copies made in the block (see ``SyncCount``)."""
    count = SyncCount()
    try:
        yield count
    finally:
        count.update()


# ------------------------------------------------------------------------------------------------
# the device array
# ------------------------------------------------------------------------------------------------
def _host_array_error(where: str) -> TypeError:
    return TypeError(f"{where}: a numpy.ndarray mixed with a device array — CuPy refuses implicit host-to-device "
                     f"transfer (Unsupported type <class 'numpy.ndarray'>); upload it with xp.asarray first")


def _plain(x):
    """The stand-in array's memory as a plain numpy.ndarray view (the stand-in's own use only)."""
    return np.ndarray.view(x, np.ndarray)


def _wrap(x):
    """Results back on the 'device': arrays as ``ndarray``, NumPy scalars as 0-d arrays (as CuPy returns)."""
    if isinstance(x, ndarray):
        return x
    if isinstance(x, np.ndarray):
        return x.view(ndarray)
    if isinstance(x, np.generic):
        return _ORIGINAL["asarray"](x).view(ndarray)
    if isinstance(x, (tuple, list)):
        return type(x)(_wrap(v) for v in x) if type(x) in (tuple, list) else tuple(_wrap(v) for v in x)
    return x


def _operand(x, where: str):
    """A device operand as its host view; host ndarrays refused; scalars and everything else unchanged."""
    if isinstance(x, ndarray):
        return _plain(x)
    if isinstance(x, np.ndarray):
        raise _host_array_error(where)
    if isinstance(x, (tuple, list)):
        return type(x)(_operand(v, where) for v in x) if type(x) in (tuple, list) else \
            tuple(_operand(v, where) for v in x)
    return x


def _index(key):
    """An index: device arrays as host views, host arrays allowed (CuPy uploads them); counts mask syncs."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        if key.dtype == bool:
            _sync("mask_index")  # the result's size is the number of True entries: CuPy copies it to the host
        return _plain(key)
    if isinstance(key, np.ndarray):
        UPLOADS["index"] += 1
    return key


_METADATA_FUNCTIONS = ("shape", "ndim", "size")  # numpy functions allowed on device arrays


def _has_device_array(obj, depth: int = 0) -> bool:
    if isinstance(obj, ndarray):
        return True
    if depth < 4 and isinstance(obj, (list, tuple)):
        return any(_has_device_array(v, depth + 1) for v in obj)
    return False


class ndarray(np.ndarray):
    """A stand-in ``cupy.ndarray``: NumPy memory that refuses to become a NumPy array implicitly."""

    __module__ = "cupy"  # minidp.backend.array_module recognises CuPy arrays by their type's module
    __array_priority__ = 100.0

    def get(self, stream=None, order="C", out=None, blocking=True):
        """A host copy (numpy.ndarray): the one explicit device -> host transfer."""
        _sync("get")
        host = _plain(self).copy(order=order)
        if out is not None:
            out[...] = host
            return out
        return host

    @property
    def device(self):
        return cuda.Device(0)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        name = getattr(ufunc, "__name__", str(ufunc))
        if getattr(np, name, None) is not ufunc:
            raise TypeError(f"{name}: a non-NumPy ufunc (e.g. scipy.special) on a device array; use the CuPy "
                            f"version (cupyx.scipy.special.{name})")
        args = [_operand(x, f"numpy.{name}") for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(_operand(o, f"numpy.{name}(out=)") for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        if func.__name__ in _METADATA_FUNCTIONS:  # CuPy dispatches these; they read no data
            return func(*(_plain(a) if isinstance(a, ndarray) else a for a in args), **kwargs)
        raise TypeError(f"numpy.{func.__name__} called on a device array: use the array module of the data "
                        f"(xp = minidp.backend.array_module(x)), or copy it to the host with to_host first")

    # indexing: CuPy returns 0-d arrays (never scalars) and uploads host index / value arrays
    def __getitem__(self, key):
        return _wrap(_plain(self)[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and not isinstance(value, ndarray):
            UPLOADS["setitem"] += 1
        _plain(self)[_index(key)] = _plain(value) if isinstance(value, ndarray) else value

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    # conversions to Python objects: each one is a device -> host copy
    def __float__(self):
        _sync("float")
        return float(_plain(self))

    def __int__(self):
        _sync("int")
        return int(_plain(self))

    def __index__(self):
        _sync("index")
        return _plain(self).__index__()

    def __bool__(self):
        _sync("bool")
        return bool(_plain(self))

    def __complex__(self):
        _sync("complex")
        return complex(_plain(self))

    def __repr__(self):
        _sync("repr")
        return f"{repr(_plain(self))} (stand-in device array)"

    __str__ = __repr__

    def __format__(self, spec):
        _sync("format")
        return format(_plain(self).item() if self.ndim == 0 else _plain(self), spec)

    def item(self, *args):
        _sync("item")
        return _plain(self).item(*args)

    def tolist(self):
        _sync("tolist")
        return _plain(self).tolist()

    def nonzero(self):
        _sync("nonzero")
        return _wrap(_plain(self).nonzero())

    def __reduce__(self):
        raise TypeError("the CuPy stand-in does not pickle device arrays (copy to the host with .get())")


_HOST_ONLY_METHODS = ("tofile", "dump", "dumps", "tobytes", "byteswap", "setflags", "getfield", "setfield",
                      "choose", "compress", "resize", "partition", "argpartition", "to_device", "__dlpack__")
_OWN = set(vars(ndarray))


def _method(name):
    base = getattr(np.ndarray, name)

    def method(self, *args, **kwargs):
        args = [_operand(a, f"cupy.ndarray.{name}") for a in args]
        kwargs = {k: _operand(v, f"cupy.ndarray.{name}") for k, v in kwargs.items()}
        return _wrap(base(_plain(self), *args, **kwargs))

    method.__name__ = name
    return method


def _refused(name):
    def method(self, *args, **kwargs):
        raise AttributeError(f"the CuPy stand-in has no ndarray.{name} (a host-side NumPy method)")

    method.__name__ = name
    return method


for _name in dir(np.ndarray):
    if _name.startswith("_") or _name in _OWN or not callable(getattr(np.ndarray, _name)):
        continue
    setattr(ndarray, _name, _refused(_name) if _name in _HOST_ONLY_METHODS else _method(_name))


# ------------------------------------------------------------------------------------------------
# module functions
# ------------------------------------------------------------------------------------------------
def _device_function(name: str, fn, sync: str | None = None):
    """``fn`` (a NumPy function) on device arrays only: host ndarrays refused, results wrapped."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        where = f"cupy.{name}"
        args = [_operand(a, where) for a in args]
        kwargs = {k: _operand(v, where) for k, v in kwargs.items()}
        if sync:
            _sync(sync)
        return _wrap(fn(*args, **kwargs))

    wrapper.__module__ = "cupy"
    return wrapper


def _upload(x, dtype=None, copy=True, order="K"):
    """Host data (ndarray, list, scalar) or a device array -> a device array (host data always copied)."""
    if isinstance(x, ndarray):
        if not copy and (dtype is None or np.dtype(dtype) == x.dtype):
            return x  # CuPy: the same array object
        return _plain(x).astype(x.dtype if dtype is None else dtype, order=order or "K", copy=True).view(ndarray)
    if _has_device_array(x):
        raise TypeError("a list holding device arrays: use xp.stack / xp.concatenate")
    UPLOADS["asarray"] += 1
    return _ORIGINAL["array"](x, dtype=dtype, copy=True, order=order).view(ndarray)


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    return _upload(a, dtype=dtype, copy=bool(copy), order=order or "K")


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    out = _upload(obj, dtype=dtype, copy=copy, order=order)
    return out.reshape((1,) * (ndmin - out.ndim) + out.shape) if ndmin > out.ndim else out


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"cupy.ascontiguousarray: expected a cupy.ndarray, got {type(a).__module__}."
                        f"{type(a).__name__} (upload host data with cupy.asarray)")
    return _ORIGINAL["ascontiguousarray"](_plain(a), dtype=dtype).view(ndarray)


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return _ORIGINAL["asarray"](a, order=order)


_CONSTANTS = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
              "uint64", "bool_", "complex64", "complex128", "nan", "inf", "pi", "e", "newaxis", "dtype", "finfo",
              "iinfo", "result_type", "can_cast", "promote_types")
_DEVICE_FUNCTIONS = (
    # creation from shapes (no data to move)
    "zeros", "ones", "empty", "full", "arange", "linspace", "eye", "identity", "zeros_like", "ones_like",
    "empty_like", "full_like", "tri",
    # elementwise (CuPy ufuncs)
    "add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "power", "negative", "abs",
    "absolute", "sqrt", "square", "exp", "expm1", "log", "log1p", "log2", "log10", "sin", "cos", "tanh", "sign",
    "maximum", "minimum", "fmax", "fmin", "greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
    "logical_and", "logical_or", "logical_not", "logical_xor", "isfinite", "isnan", "isinf", "floor", "ceil",
    "rint", "round", "around", "clip", "where", "invert", "reciprocal", "nan_to_num", "copysign", "hypot",
    # reductions, products, shapes
    "sum", "prod", "mean", "var", "std", "max", "amax", "min", "amin", "argmax", "argmin", "all", "any",
    "cumsum", "cumprod", "count_nonzero", "dot", "vdot", "matmul", "tensordot", "einsum", "inner", "outer",
    "trace", "diag", "diagonal", "tril", "triu", "stack", "concatenate", "vstack", "hstack", "split",
    "array_split", "reshape", "ravel", "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze",
    "broadcast_to", "broadcast_arrays", "take", "take_along_axis", "repeat", "tile", "flip", "sort", "argsort",
    "searchsorted", "isclose", "atleast_1d", "atleast_2d", "pad", "copy", "allclose", "array_equal",
)
_SHAPE_FROM_DATA = ("nonzero", "flatnonzero", "argwhere", "unique")  # CuPy copies a count to the host


def _build_cupy() -> types.ModuleType:
    mod = types.ModuleType("cupy", "A strict CuPy stand-in for CPU tests (tests/fake_cupy.py).")
    mod.__version__ = __version__
    mod.STAND_IN = True
    mod.ndarray = ndarray
    for name in _CONSTANTS:
        setattr(mod, name, getattr(np, name))
    for name in _DEVICE_FUNCTIONS:
        setattr(mod, name, _device_function(name, getattr(np, name)))
    for name in _SHAPE_FROM_DATA:
        setattr(mod, name, _device_function(name, getattr(np, name), sync=name))
    for fn in (asarray, array, ascontiguousarray, asnumpy):
        setattr(mod, fn.__name__, fn)
    mod.asanyarray = asarray
    mod.get_array_module = lambda *args: mod if any(isinstance(a, ndarray) for a in args) else np
    mod.linalg = _build_linalg()
    mod.random = _build_random()
    mod.cuda = cuda
    mod.is_available = lambda: True
    mod.get_default_memory_pool = cuda.get_default_memory_pool

    def missing(name):
        raise AttributeError(f"the CuPy stand-in has no cupy.{name} (tests/fake_cupy.py lists what it provides; "
                             f"add it there if CuPy has it)")

    mod.__getattr__ = missing
    return mod


def _build_linalg() -> types.ModuleType:
    mod = types.ModuleType("cupy.linalg")
    for name in ("svd", "eigh", "eigvalsh", "qr", "norm", "solve", "inv", "cholesky", "det", "slogdet", "lstsq",
                 "pinv", "matrix_rank"):
        setattr(mod, name, _device_function(f"linalg.{name}", getattr(np.linalg, name)))
    mod.LinAlgError = np.linalg.LinAlgError
    return mod


# ------------------------------------------------------------------------------------------------
# random: CuPy's Generator API (a NumPy PCG64 underneath; its numbers are not CuPy's)
# ------------------------------------------------------------------------------------------------
class BitGenerator:
    """CuPy's BitGenerator: seeded through a SeedSequence; ``state()`` is a method returning a device pointer."""

    __module__ = "cupy.random"

    def __init__(self, seed=None):
        if isinstance(seed, ndarray):
            seed = seed.get()
        self._seed_seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self._rng = np.random.Generator(np.random.PCG64(self._seed_seq))

    def state(self) -> int:
        """The address of the generator's state in device memory (CuPy's API: not a dict, not settable)."""
        return id(self._rng)


class XORWOW(BitGenerator):
    """The default bit generator of cupy.random.default_rng."""


class Generator:
    """cupy.random.Generator: CuPy's methods only, each returning device arrays (0-d when size is None)."""

    __module__ = "cupy.random"

    def __init__(self, bit_generator):
        self.bit_generator = bit_generator

    def _rng(self) -> np.random.Generator:
        self.bit_generator.state()  # as CuPy's kernels do: a `state` that is not the method fails here
        return self.bit_generator._rng

    @staticmethod
    def _dtype(dtype) -> np.dtype:
        dtype = np.dtype(dtype)
        if dtype.name not in ("float32", "float64"):
            raise TypeError(f"cupy.random.Generator: dtype {dtype} is not supported (float32 or float64)")
        return dtype

    def random(self, size=None, dtype=np.float64, out=None):
        return _array(self._rng().random(size), self._dtype(dtype))

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return _array(self._rng().standard_normal(size), self._dtype(dtype))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return _array(self._rng().uniform(low, high, size), self._dtype(dtype))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        return _array(self._rng().integers(low, high, size=size, dtype=dtype, endpoint=endpoint))

    def standard_exponential(self, size=None, dtype=np.float64, method="inv", out=None):
        return _array(self._rng().standard_exponential(size), self._dtype(dtype))

    def exponential(self, scale=1.0, size=None):
        return _array(self._rng().exponential(scale, size))

    def binomial(self, n, p, size=None):
        return _array(self._rng().binomial(n, p, size))

    def poisson(self, lam=1.0, size=None):
        return _array(self._rng().poisson(lam, size))


def _array(values, dtype=None):
    """Host draws as a device array (0-d for a single draw), in ``dtype``."""
    out = _ORIGINAL["asarray"](values)
    return (out if dtype is None else out.astype(dtype, copy=False)).view(ndarray)


def default_rng(seed=None) -> Generator:
    if isinstance(seed, Generator):
        return seed
    return Generator(seed if isinstance(seed, BitGenerator) else XORWOW(seed))


def _build_random() -> types.ModuleType:
    mod = types.ModuleType("cupy.random")
    mod.default_rng, mod.Generator, mod.BitGenerator, mod.XORWOW = default_rng, Generator, BitGenerator, XORWOW
    return mod


# ------------------------------------------------------------------------------------------------
# cuda: one pretend device
# ------------------------------------------------------------------------------------------------
class _Device:
    def __init__(self, device=0):
        self.id = int(device)

    def synchronize(self) -> None:
        """Waits for the GPU (nothing to wait for here); copies nothing."""

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __repr__(self):
        return f"<CUDA Device {self.id} (stand-in)>"


class _MemoryPool:
    """CuPy's memory pool API; the stand-in holds no device memory, so every figure is 0."""

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


_POOL = _MemoryPool()
cuda = types.ModuleType("cupy.cuda")
cuda.Device = _Device
cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 12000,
                                     getDeviceProperties=lambda i: {"name": b"CuPy stand-in (CPU)"})
cuda.get_device_id = lambda: 0
cuda.get_default_memory_pool = lambda: _POOL
cuda.MemoryPool = _MemoryPool


# ------------------------------------------------------------------------------------------------
# cupyx: scatter_add and scipy.special
# ------------------------------------------------------------------------------------------------
def scatter_add(a, slices, value) -> None:
    """cupyx.scatter_add: a[slices] += value with repeated indices accumulated (atomics on a GPU)."""
    if not isinstance(a, ndarray):
        raise TypeError("cupyx.scatter_add: the target must be a cupy.ndarray")
    value = _plain(value) if isinstance(value, ndarray) else value
    np.add.at(_plain(a), _index(slices), value)


def _build_cupyx() -> tuple:
    cupyx = types.ModuleType("cupyx")
    scipy_mod = types.ModuleType("cupyx.scipy")
    special = types.ModuleType("cupyx.scipy.special")
    for name in ("erf", "erfc", "expit", "log_expit", "logsumexp", "softmax", "log_softmax", "gammaln", "ndtr",
                 "log_ndtr", "xlogy"):
        setattr(special, name, _device_function(f"cupyx.scipy.special.{name}", getattr(scipy.special, name)))
    cupyx.scatter_add = scatter_add
    cupyx.scipy, scipy_mod.special = scipy_mod, special
    return cupyx, scipy_mod, special


# ------------------------------------------------------------------------------------------------
# installing
# ------------------------------------------------------------------------------------------------
def _strict(name: str):
    original = _ORIGINAL[name]

    @functools.wraps(original)
    def strict(*args, **kwargs):
        first = args[0] if args else kwargs.get("a", kwargs.get("object"))
        if _has_device_array(first):
            raise TypeError(f"numpy.{name} of a device array: an implicit device -> host copy (CuPy raises "
                            f"TypeError here); use minidp.backend.to_host(x) or xp.{name}")
        return original(*args, **kwargs)

    return strict


cupy = _build_cupy()
_CUPYX = _build_cupyx()
_MODULES = {"cupy": cupy, "cupy.linalg": cupy.linalg, "cupy.random": cupy.random, "cupy.cuda": cuda,
            "cupyx": _CUPYX[0], "cupyx.scipy": _CUPYX[1], "cupyx.scipy.special": _CUPYX[2]}
_saved: list = []  # a stack: install() may nest


def is_installed() -> bool:
    return sys.modules.get("cupy") is cupy


def install() -> None:
    """Make ``import cupy`` / ``import cupyx`` give the stand-in and make NumPy's converters strict."""
    _saved.append(({name: sys.modules.get(name) for name in _MODULES}, {n: getattr(np, n) for n in _PATCHED}))
    sys.modules.update(_MODULES)
    for name in _PATCHED:
        setattr(np, name, _strict(name))


def uninstall() -> None:
    """Undo the latest ``install()``."""
    modules, functions = _saved.pop()
    for name, module in modules.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module
    for name, fn in functions.items():
        setattr(np, name, fn)


@contextlib.contextmanager
def installed():
    """The stand-in for the duration of the block (see ``install``)."""
    install()
    try:
        yield cupy
    finally:
        uninstall()
