"""Argument checks shared by the op files (and by the layers of ``minicnn.nn``).

Each raises an error that names the op, the argument, what was expected and what was
given, e.g. ``conv2d: stride must be >= 1, got (0, 1)``. Checks that only one op needs
stay in its file.
"""
from __future__ import annotations

import numbers

from ..autograd import as_tensor

__all__ = ["REDUCTIONS", "float_input", "check_float", "pair", "positive_int",
           "check_reduction"]

REDUCTIONS = ("none", "mean", "sum")


def float_input(op, input):
    """``input`` as a Tensor; a TypeError unless it is floating point."""
    x = as_tensor(input)
    check_float(op, x)
    return x


def check_float(op, x, integers_ok=False):
    """A TypeError unless the Tensor ``x`` is floating point (or, with ``integers_ok``,
    an integer type too)."""
    kinds, what = ("fiu", "floating-point or integer") if integers_ok else ("f", "floating-point")
    if x.dtype.kind not in kinds:
        raise TypeError(f"{op}: expected a {what} input, got dtype {x.dtype}")


def pair(op, name, value, minimum=None):
    """An int, or a tuple/list of one or two ints, as an (h, w) pair of ints: ``2`` and
    ``(2,)`` give (2, 2). With ``minimum``, both entries must be at least that.

    TypeError for anything else (floats and bools included, so that ``stride=1.5`` is
    not silently truncated); ValueError for an entry below ``minimum``.
    """
    items = value if isinstance(value, (tuple, list)) else (value,)
    if not (len(items) in (1, 2) and all(_is_int(v) for v in items)):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    result = (int(items[0]), int(items[-1]))
    if minimum is not None and min(result) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {result}")
    return result


def positive_int(op, name, value):
    """``value`` as an int; a ValueError unless it is an integer >= 1 (not a bool)."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive integer, got {value!r}")
    return int(value)


def check_reduction(op, reduction):
    """A ValueError unless ``reduction`` is 'none', 'mean' or 'sum'."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
