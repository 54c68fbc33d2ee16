"""Where arrays live: the array module (NumPy or CuPy), devices, dtypes and random numbers.

This is the only file in minicnn that imports CuPy, and it does so lazily: a machine
without CuPy or without a GPU runs everything on ``"cpu"`` and only fails, with a clear
message, when ``"cuda"`` is asked for.

Every op finds its array module from its inputs::

    xp = backend.get_array_module(x)      # numpy or cupy
    y = xp.maximum(x, 0)

so one code path serves both.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "get_array_module", "Device", "device", "is_cuda_available", "cupy",
    "to_device", "device_of", "get_default_dtype", "set_default_dtype",
    "manual_seed", "get_rng", "get_rng_state", "set_rng_state", "erf",
    "float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool_",
]

float16, float32, float64 = np.float16, np.float32, np.float64
int8, int32, int64, uint8, bool_ = np.int8, np.int32, np.int64, np.uint8, np.bool_


# --------------------------------------------------------------------------- CuPy

_cupy = None          # the cupy module once imported successfully
_cupy_error = None    # why it could not be used, once we have tried


def _load_cupy():
    """Import CuPy on first use and check that a GPU is visible; remember the outcome."""
    global _cupy, _cupy_error
    if _cupy is not None or _cupy_error is not None:
        return _cupy
    try:
        import cupy as cp  # noqa: F401  the one place minicnn imports cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        _cupy_error = (f"CuPy is not installed or failed to import ({exc.__class__.__name__}: "
                       f"{exc}); install it with `pip install minicnn[gpu]` "
                       "(the cupy-cudaXXx wheel matching your CUDA)")
        return None
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:
        count, reason = 0, f"{exc.__class__.__name__}: {exc}"
    else:
        reason = "no CUDA device was found"
    if count == 0:
        _cupy_error = f"CuPy is installed but no GPU can be used ({reason})"
        return None
    _cupy = cp
    return _cupy


def is_cuda_available():
    """True when CuPy imports and at least one CUDA device is visible."""
    return _load_cupy() is not None


def cupy():
    """The cupy module, or a RuntimeError that says what is missing."""
    cp = _load_cupy()
    if cp is None:
        raise RuntimeError(f"device 'cuda' was requested but {_cupy_error}")
    return cp


def _is_cupy_array(value):
    # Decided from the type's module so that cupy is never imported just to ask.
    return type(value).__module__.split(".")[0] == "cupy"


def get_array_module(*values):
    """Return ``cupy`` if any value is a CuPy array (or a Tensor holding one), else ``numpy``.

    Tensors are recognised by their ``array`` attribute; anything else (Python numbers,
    None, NumPy arrays) counts as host data.
    """
    for value in values:
        array = getattr(value, "array", value)
        if _is_cupy_array(array):
            return cupy()
    return np


# ------------------------------------------------------------------------ devices

class Device:
    """A place for arrays: ``Device("cpu")``, ``Device("cuda")``, ``Device("cuda:1")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu"):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device: expected a string such as 'cpu' or 'cuda:0', got {spec!r}")
        name, _, index = spec.strip().lower().partition(":")
        if name not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
        if index and (name == "cpu" or not index.isdigit()):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
        self.type = name
        self.index = int(index) if index else (0 if name == "cuda" else None)

    def __eq__(self, other):
        try:
            other = Device(other)
        except (TypeError, ValueError):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"


def device(spec="cpu"):
    """``minicnn.device("cuda:0")``, as ``torch.device``."""
    return Device(spec)


def device_of(array):
    """The Device an array lives on."""
    if _is_cupy_array(array):
        return Device(f"cuda:{array.device.id}")
    return Device("cpu")


def to_device(array, dev):
    """Return ``array`` on device ``dev`` (no copy when it is already there)."""
    dev = Device(dev)
    if dev.type == "cpu":
        if _is_cupy_array(array):
            return array.get()
        return np.asarray(array)
    cp = cupy()
    if dev.index >= cp.cuda.runtime.getDeviceCount():
        raise RuntimeError(f"device {dev} was requested but only "
                           f"{cp.cuda.runtime.getDeviceCount()} CUDA device(s) exist")
    with cp.cuda.Device(dev.index):
        if _is_cupy_array(array) and array.device.id == dev.index:
            return array
        return cp.asarray(array)


# ------------------------------------------------------------------------- dtypes

_default_dtype = np.dtype(np.float32)


def get_default_dtype():
    """The float dtype new tensors get when none is given (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype):
    """Change the default float dtype; only float32 and float64 are accepted."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"set_default_dtype: expected float32 or float64, got {dtype}")
    _default_dtype = dtype


# ------------------------------------------------------------------ random numbers
#
# One generator per backend, both re-seeded by manual_seed. Ops that need randomness
# (dropout masks, initializers, shuffling) draw from get_rng(xp), so a seed fixes a run.

_seed = 0
_rngs = {}


def manual_seed(seed):
    """Seed minicnn's generators (NumPy now, CuPy whenever it is first used)."""
    global _seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed: expected a non-negative integer, got {seed!r}")
    _seed = int(seed)
    _rngs.clear()


def get_rng(xp=np):
    """The seeded generator for array module ``xp`` (a numpy/cupy ``Generator``)."""
    key = xp.__name__
    if key not in _rngs:
        if xp is np:
            _rngs[key] = np.random.Generator(np.random.PCG64(_seed))
        else:
            _rngs[key] = xp.random.default_rng(_seed)
    return _rngs[key]


def get_rng_state():
    """The host generator's state as plain data (JSON-able), for checkpoints."""
    return {"seed": _seed, "numpy": get_rng(np).bit_generator.state}


def set_rng_state(state):
    """Restore what :func:`get_rng_state` returned."""
    global _seed
    _seed = int(state["seed"])
    _rngs.pop("numpy", None)
    get_rng(np).bit_generator.state = state["numpy"]


# ------------------------------------------------------------ array-module helpers

def scatter_add(target, index, values):
    """``target[index] += values`` where repeated indices add up (NumPy's ``add.at``).

    CuPy spells this ``cupyx.scatter_add``; this is the one place that knows.
    """
    if _is_cupy_array(target):
        import cupyx  # cupy's companion module, only reachable with cupy installed
        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)
    return target


def erf(array):
    """The error function, elementwise, on the device ``array`` lives on (NumPy has none).

    CPU: numba's compiled ``math.erf`` (kernels/special.py). GPU:
    ``cupyx.scipy.special.erf``; should cupyx be missing (a CPU stand-in for CuPy), the
    portable series of kernels/special.py, written with the array module's arithmetic.
    """
    from kernels import special
    if not _is_cupy_array(array):
        return special.erf_cpu(array)
    try:
        import cupyx.scipy.special  # cupy's companion module, only with cupy installed
    except ImportError:
        return special.erf_reference(get_array_module(array), array)
    return cupyx.scipy.special.erf(array)
