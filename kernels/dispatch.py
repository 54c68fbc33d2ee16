"""Which kernels run: the portable reference, or a compiled CPU fast path.

Every op is written once against the NumPy/CuPy array API (the *reference*: what the
docstrings describe and what runs on the GPU). Some ops also have a fast path for the
CPU, compiled with numba (``kernels/numba_*.py``), that computes the same numbers with
fewer passes over memory. An op asks :func:`use_fast` whether to take it.

The fast path is taken only when

* the mode is ``"auto"`` (the default), not ``"reference"``;
* every array given is a plain ``numpy.ndarray`` (not a subclass, never a CuPy array)
  of float32 or float64, and none is empty (an empty batch takes the reference).

The mode comes from the environment variable ``MINICNN_KERNELS`` (``auto`` or
``reference``) when this module is imported, and can be changed at run time::

    from kernels import dispatch
    dispatch.set_kernels("reference")       # everything through the reference
    with dispatch.kernels("reference"):     # only inside the block
        ...

How an op joins a fast path (one seam, the same in every op)
------------------------------------------------------------

1. The fast module, ``kernels/<impl>_<family>.py`` (``numba_conv.py``), offers functions
   with the arguments and results of the reference they replace: a kernels/ routine
   (``numba_conv.col2im`` for ``im2col.col2im``, ``numba_pool.max_pool2d_forward`` for
   ``pooling.max_pool2d_forward``), or a whole forward/backward pair when the fast path
   fuses more than one routine (``numba_conv.conv2d_forward`` / ``conv2d_backward``).
   Its compiled loops are marked ``@jit(...)`` (``kernels/_jit.py``), so that importing
   it imports no numba and compiles nothing.
2. The op file imports it plainly, next to the reference: ``from kernels import
   numba_conv``.
3. The Function decides once, in ``forward``, and remembers the choice, because
   backward must read what forward saved::

       def forward(self, x, w, b):
           self.fast = dispatch.use_fast(x, w, b)
           if self.fast:
               ...                      # save what the fast backward needs
               return numba_conv.conv2d_forward(x, w, b, ...)
           ...                          # the reference

       def backward(self, g):
           if self.fast:
               return numba_conv.conv2d_backward(g, ...)
           ...

   Where the fast path replaces a single routine, the ``if self.fast:`` branch calls it
   in place, with the reference routine in the ``else``. No helper chooses a module or
   a function by name: the branch is where a reader can see it.

A GPU kernel joins the same way: a module of functions with the reference's contract
(``kernels/cuda_<family>.py``, written with numba.cuda), the predicate :func:`use_cuda`,
and one more branch at the same place::

       self.fast = dispatch.use_fast(x)
       self.gpu = dispatch.use_cuda(x)
       if self.fast:
           out = numba_pool.max_pool2d_forward(...)
       elif self.gpu:
           out = cuda_pool.max_pool2d_forward(...)
       else:
           out = pooling.max_pool2d_forward(...)       # the reference

Threads: most compiled loops (pooling, normalisation, RoI ops) run on the calling
thread. The convolution paths (``numba_conv``, ``numba_winograd``) share their work out
over as many threads as NumPy's BLAS would use (``kernels/_threads.py``), holding BLAS
at one thread meanwhile, so that the BLAS setting (``threadpoolctl``,
``OPENBLAS_NUM_THREADS``) still decides how many cores they take; the fused optimizers
(``minicnn/optim/_fused.py``) cut large updates over every core.
"""
from __future__ import annotations

import contextlib
import os

import numpy

__all__ = ["MODES", "get_kernels", "set_kernels", "kernels", "use_fast", "use_cuda",
           "on_host"]

MODES = ("auto", "reference")
_FAST_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


def _mode_from_environment():
    value = os.environ.get("MINICNN_KERNELS", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"MINICNN_KERNELS must be one of {', '.join(MODES)}, got {value!r}")
    return value


_mode = _mode_from_environment()


def get_kernels():
    """The current mode: ``"auto"`` or ``"reference"``."""
    return _mode


def set_kernels(mode):
    """Set the mode (``"auto"`` or ``"reference"``); returns the previous one."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"set_kernels: mode must be one of {', '.join(MODES)}, got {mode!r}")
    previous, _mode = _mode, mode
    return previous


@contextlib.contextmanager
def kernels(mode):
    """``with kernels("reference"):`` runs the block in that mode."""
    previous = set_kernels(mode)
    try:
        yield
    finally:
        set_kernels(previous)


def use_fast(*arrays):
    """True when the CPU fast path should handle these arrays (``None`` entries, such as
    an absent bias, are skipped). All of them must share one float32/float64 dtype, and
    none may be empty: an empty batch (N = 0) takes the reference, whose whole-array
    expressions give empty results where the compiled tile loops would not run at all."""
    if _mode != "auto":
        return False
    dtype = None
    for a in arrays:
        if a is None:
            continue
        # NOTE: `type(a) is ndarray`, not isinstance: a subclass may stand for device
        # memory (tests/fake_cupy.py does exactly that), and compiled code would read it
        # as host memory.
        if type(a) is not numpy.ndarray or a.dtype not in _FAST_DTYPES or a.size == 0:
            return False
        if dtype is None:
            dtype = a.dtype
        elif a.dtype != dtype:
            return False
    return dtype is not None


def use_cuda(*arrays):
    """True when the numba.cuda fast path should handle these arrays: the same rules as
    :func:`use_fast`, for CuPy arrays instead of NumPy ones (arrays that numba.cuda can
    read in place: they carry ``__cuda_array_interface__``), and numba can launch CUDA
    kernels on this machine."""
    if _mode != "auto":
        return False
    dtype = None
    for a in arrays:
        if a is None:
            continue
        if (type(a).__module__.split(".")[0] != "cupy"
                or not hasattr(a, "__cuda_array_interface__")
                or a.dtype not in _FAST_DTYPES or a.size == 0):
            return False
        if dtype is None:
            dtype = a.dtype
        elif a.dtype != dtype:
            return False
    from kernels import _cuda
    return dtype is not None and _cuda.available()


def on_host(*arrays):
    """True when every array given (``None`` entries skipped) is a plain NumPy array, of
    any dtype: for arrays a fast path reads besides its float inputs (running
    statistics, say)."""
    return all(a is None or type(a) is numpy.ndarray for a in arrays)

