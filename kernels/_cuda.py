"""``@kernel``: ``numba.cuda.jit``, applied on the first launch instead of at import.

The GPU fast paths (``kernels/cuda_*.py``) are written with numba.cuda, which runs on
CuPy arrays without a copy (through ``__cuda_array_interface__``), and, with
``NUMBA_ENABLE_CUDASIM=1``, on NumPy arrays in numba's CUDA simulator: that is how
the tests check them on a machine without a GPU. As with ``kernels/_jit.py``, importing
such a module imports no numba: on the first launch numba.cuda is imported, bound to the
module's global names ``cuda`` and ``types`` (numba.types, for shared arrays), which
the kernel bodies use, and the kernel compiled.

A kernel is launched over a flat range of ``total`` work items with :func:`launch`:
``launch(kernel, total, *args)``; each thread takes item ``cuda.grid(1)`` and returns
when it is past ``total``.
"""
from __future__ import annotations

import functools
import threading

__all__ = ["kernel", "device", "launch", "available", "unravel4", "source_window",
           "THREADS"]

THREADS = 128          # threads per block for the flat launches
_lock = threading.Lock()


def kernel(py_func):
    """Decorator: a numba.cuda kernel compiled on its first launch."""
    return _Deferred(py_func)


def device(py_func):
    """Decorator: a numba.cuda device function (called from kernels), compiled with the
    first kernel of a module that uses it."""
    return _DeviceFunction(py_func)


class _DeviceFunction:
    def __init__(self, py_func):
        self.py_func, self.compiled = py_func, None
        functools.update_wrapper(self, py_func)


class _Deferred:
    def __init__(self, py_func):
        self.py_func, self.compiled = py_func, None
        functools.update_wrapper(self, py_func)

    def __getitem__(self, config):
        if self.compiled is None:
            with _lock:
                if self.compiled is None:
                    from numba import cuda, types
                    _bind(self.py_func.__globals__, cuda, types)
                    self.compiled = cuda.jit(self.py_func)
        return self.compiled[config]


def _bind(namespace, cuda, types):
    """Give a kernel module's namespace what its kernels use: ``cuda``, ``types``, and
    its device functions compiled, under their own names."""
    namespace["cuda"], namespace["types"] = cuda, types      # types: for shared arrays
    for name, value in list(namespace.items()):
        if isinstance(value, _DeviceFunction):
            if value.compiled is None:      # compiled by numba when a kernel calls it
                value.compiled = cuda.jit(device=True)(value.py_func)
                _bind(value.py_func.__globals__, cuda, types)
            namespace[name] = value.compiled


@device
def unravel4(t, C, H, W):
    """(n, c, i, j) of the flat index t = ((n*C + c)*H + i)*W + j of an (N, C, H, W)
    array: which element a thread of a flat launch works on."""
    return t // (W * H * C), (t // (W * H)) % C, (t // W) % H, t % W


@device
def source_window(i, P, k, D, S, O):
    """Along one axis: the window o (0 <= o < O) whose tap k reads input position i,
    i.e. i = o*S - P + k*D, or -1 when there is none. What a gather over the windows
    that read a pixel (col2im, max pooling's backward) asks for each kernel offset."""
    start = i + P - k * D            # = o*S for the window, if it exists
    if start < 0 or start % S:
        return -1
    o = start // S
    return o if o < O else -1


def launch(deferred, total, *args):
    """Run ``deferred`` with one thread per work item ``0 .. total-1``."""
    if total > 0:
        deferred[(total + THREADS - 1) // THREADS, THREADS](*args, total)


@functools.lru_cache(maxsize=None)
def available():
    """True when numba can launch CUDA kernels here (a GPU and its driver, or the
    simulator); imports numba.cuda on the first call only."""
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:            # numba without its CUDA target, a broken driver
        return False
