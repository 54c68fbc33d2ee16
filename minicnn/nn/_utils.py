"""Small helpers shared by the layers: argument normalisation, parameter creation, and
the input checks that name the layer in their error messages. Argument checks the ops
share too (an (h, w) pair, a positive integer) live in ``minicnn/functional/_checks.py``."""
from __future__ import annotations

import numpy as np

from .. import backend
from .parameter import Parameter


def _quadruple(value, name="padding"):
    """``2 -> (2, 2, 2, 2)``; a tuple/list of length 4 is kept (as a tuple of ints).
    (An (h, w) pair is ``minicnn.functional._checks.pair``, shared with the ops.)"""
    if isinstance(value, (tuple, list)):
        if len(value) != 4:
            raise ValueError(f"{name} must be an int or a tuple of 4 ints, got {value!r}")
        return tuple(int(v) for v in value)
    return (int(value),) * 4


def empty_parameter(shape, device=None, dtype=None):
    """A Parameter of ``shape`` with uninitialised values (``reset_parameters`` fills it),
    in ``dtype`` (default: minicnn's default float dtype) on ``device`` (default: CPU)."""
    dtype = backend.get_default_dtype() if dtype is None else np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"parameters must have a floating-point dtype, got {dtype}")
    array = np.empty(shape, dtype=dtype)
    if device is not None:
        array = backend.to_device(array, device)
    return Parameter(array)


def describe(module):
    """``Conv2d(3, 16, kernel_size=(5, 5), stride=(1, 1))``: how a layer names itself in
    error messages (its repr without children)."""
    return f"{type(module).__name__}({module.extra_repr()})"


def check_ndim(module, x, allowed, layout):
    """Raise a clear error unless ``x.ndim`` is one of ``allowed``.

    ``layout`` says what the dimensions mean, e.g. ``"(N, C, H, W) or unbatched (C, H, W)"``.
    """
    if x.ndim not in allowed:
        dims = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{describe(module)}: expected a {dims} input {layout}, got shape "
                         f"{tuple(x.shape)}")


def check_channels(module, x, dim, expected, what="channels"):
    """Raise a clear error unless ``x.shape[dim] == expected``."""
    if x.shape[dim] != expected:
        raise ValueError(f"{describe(module)}: expected input with {expected} {what}, got "
                         f"shape {tuple(x.shape)}")
