"""Tensor constructors: zeros, ones, full, empty, eye, arange, linspace, rand, randn,
randint, randperm, the ``*_like`` forms, and from_numpy.

Random constructors draw from minicnn's seeded generators (``minicnn.manual_seed``).
"""
from __future__ import annotations

import numpy as np

from . import backend
from .autograd import Tensor, _to_array

__all__ = ["zeros", "ones", "full", "empty", "eye", "arange", "linspace", "rand", "randn",
           "randint", "randperm", "zeros_like", "ones_like", "full_like", "empty_like",
           "rand_like", "randn_like", "from_numpy"]


def _shape(op, size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    try:
        shape = tuple(int(s) for s in size)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: expected a shape of integers, got {size!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"{op}: negative dimension in shape {shape}")
    return shape


def _xp(device):
    if device is None or backend.Device(device).type == "cpu":
        return np
    return backend.cupy()


def _make(array, requires_grad, device):
    if device is not None:
        array = backend.to_device(array, device)
    t = Tensor._wrap(array)
    return t.requires_grad_(True) if requires_grad else t


def _float_dtype(dtype):
    return np.dtype(dtype) if dtype is not None else backend.get_default_dtype()


def _fill(op, value, size, dtype, device, requires_grad):
    xp = _xp(device)
    shape = _shape(op, size)
    with _on(device):
        array = xp.full(shape, value, dtype=_float_dtype(dtype))
    return _make(array, requires_grad, device)


class _on:
    """Allocate on the CUDA device named by ``device`` (no-op on the CPU)."""

    def __init__(self, device):
        self.ctx = None
        if device is not None and backend.Device(device).type == "cuda":
            self.ctx = backend.cupy().cuda.Device(backend.Device(device).index)

    def __enter__(self):
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc):
        if self.ctx is not None:
            self.ctx.__exit__(*exc)
        return False


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _fill("zeros", 0, size, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _fill("ones", 1, size, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    # NOTE: zero-filled rather than uninitialised, so nothing depends on stale memory.
    return _fill("empty", 0, size, dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None and isinstance(fill_value, (int, np.integer)) and not isinstance(fill_value, bool):
        dtype = np.int64
    return _fill("full", fill_value, (size,) if isinstance(size, int) else tuple(size),
                 dtype, device, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    xp = _xp(device)
    with _on(device):
        array = xp.eye(n, m, dtype=_float_dtype(dtype))
    return _make(array, requires_grad, device)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Integers (int64) when every bound is an integer, else the default float dtype."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if ints else backend.get_default_dtype()
    xp = _xp(device)
    with _on(device):
        array = xp.arange(start, end, step, dtype=dtype)
    return _make(array, requires_grad, device)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    xp = _xp(device)
    with _on(device):
        array = xp.linspace(start, end, steps, dtype=_float_dtype(dtype))
    return _make(array, requires_grad, device)


def rand(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """Uniform on [0, 1)."""
    xp = _xp(device)
    shape = _shape("rand", size)
    with _on(device):
        array = (generator or backend.get_rng(xp)).random(shape, dtype=_float_dtype(dtype))
    return _make(array, requires_grad, device)


def randn(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """Standard normal."""
    xp = _xp(device)
    shape = _shape("randn", size)
    with _on(device):
        array = (generator or backend.get_rng(xp)).standard_normal(shape, dtype=_float_dtype(dtype))
    return _make(array, requires_grad, device)


def randint(low, high=None, size=(), dtype=None, device=None):
    """Integers uniform on [low, high) (int64)."""
    if high is None:
        low, high = 0, low
    xp = _xp(device)
    with _on(device):
        array = backend.get_rng(xp).integers(low, high, size=_shape("randint", (size,)),
                                             dtype=np.dtype(dtype or np.int64))
    return _make(array, False, device)


def randperm(n, device=None):
    """A random permutation of ``0 .. n-1`` (int64)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"randperm: n must be a non-negative integer, got {n!r}")
    xp = _xp(device)
    with _on(device):
        # minicnn's generator sorts random words on the device itself: the same
        # permutation on every device, and a GPU batch order never visits the host
        array = backend.get_rng(xp).permutation(int(n)).astype(np.int64)
    return _make(array, False, device)


def _like(op, fill, x, dtype, device, requires_grad):
    x = x if isinstance(x, Tensor) else Tensor(x)
    return fill(*x.shape, dtype=dtype or x.dtype, device=device or x.device,
                requires_grad=requires_grad)


def zeros_like(x, dtype=None, device=None, requires_grad=False):
    return _like("zeros_like", zeros, x, dtype, device, requires_grad)


def ones_like(x, dtype=None, device=None, requires_grad=False):
    return _like("ones_like", ones, x, dtype, device, requires_grad)


def empty_like(x, dtype=None, device=None, requires_grad=False):
    return _like("empty_like", empty, x, dtype, device, requires_grad)


def full_like(x, fill_value, dtype=None, device=None, requires_grad=False):
    x = x if isinstance(x, Tensor) else Tensor(x)
    return full(x.shape, fill_value, dtype=dtype or x.dtype, device=device or x.device,
                requires_grad=requires_grad)


def rand_like(x, dtype=None, device=None, requires_grad=False):
    return _like("rand_like", rand, x, dtype, device, requires_grad)


def randn_like(x, dtype=None, device=None, requires_grad=False):
    return _like("randn_like", randn, x, dtype, device, requires_grad)


def from_numpy(array):
    """A Tensor sharing memory with a NumPy array (as ``torch.from_numpy``)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor._wrap(_to_array(array))
