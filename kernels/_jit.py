"""``@jit``: numba's ``njit``, applied on the first call instead of at import.

The CPU fast paths (``kernels/numba_*.py``) mark their compiled loops ``@jit(...)``, with
the options ``numba.njit`` takes. Importing such a module then costs what importing a
plain Python module costs: numba itself is imported, and the loops compiled (or loaded
from numba's on-disk cache), only when one of them is first called. So the op files can
import the fast paths plainly (``from kernels import numba_conv``), an editor can follow
``numba_conv.conv2d_forward`` to its code, and ``import minicnn`` still does not pay for
numba.

On that first call every ``@jit`` function of the module is handed to ``numba.njit`` at
once, and the module's global names are rebound to the compiled functions. NOTE: all of
them, not only the one called: a compiled loop that calls another (``_u`` inside
``_im2col_tile``) must find a numba function under that name when numba compiles it,
not the placeholder this decorator leaves there.
"""
from __future__ import annotations

import functools
import threading

__all__ = ["jit"]

_lock = threading.Lock()


def jit(**options):
    """Decorator: ``@jit(cache=True, nogil=True)`` compiles the function with
    ``numba.njit(cache=True, nogil=True)`` when it is first called."""
    def decorate(py_func):
        return _Deferred(py_func, options)
    return decorate


class _Deferred:
    """A function waiting to be compiled: calls compile its module, then go through."""

    def __init__(self, py_func, options):
        self.py_func, self.options = py_func, options
        self.compiled = None
        functools.update_wrapper(self, py_func)

    def __call__(self, *args):
        if self.compiled is None:
            _compile_module(self.py_func.__globals__)
        return self.compiled(*args)

    def __repr__(self):
        state = "compiled" if self.compiled is not None else "not compiled yet"
        return f"<jit {self.py_func.__module__}.{self.py_func.__qualname__} ({state})>"


def _compile_module(namespace):
    """Wrap every deferred function of a module's ``namespace`` in ``numba.njit`` and
    rebind its name there to the result (numba compiles each on its first call)."""
    with _lock:
        try:
            import numba
        except ImportError as exc:      # numba is a dependency (setup.py): say what to do
            raise ImportError("the CPU fast paths of minicnn need numba: pip install numba, "
                              "or set MINICNN_KERNELS=reference to run without them") from exc
        for name, value in list(namespace.items()):
            if isinstance(value, _Deferred):
                if value.compiled is None:
                    value.compiled = numba.njit(**value.options)(value.py_func)
                namespace[name] = value.compiled
