"""Window sums for local response normalisation (no autograd).

LRN divides each activation by a power of the sum of squares over a small window: across
neighbouring channels (``channel_window_sum``) or over a spatial neighbourhood inside one
channel (``spatial_window_sum``). Both are box sums with zero padding, built here from
``box_sum`` along one axis at a time (a box over several axes is separable).

A window of ``size`` elements along an axis of length L covers, for output position j,
the input positions ``j - before .. j - before + size - 1`` (positions outside 0..L-1
count as zeros). ``before = size // 2`` is how torch centres the window, which for an
even size puts one more element before j than after it.

NOTE: the backward pass of such a window sum needs the *transposed* window: input i
contributes to every j whose window holds i, i.e. ``j = i - (size - 1 - before) .. i +
before``. For odd sizes this is the same window; for even sizes it is mirrored, so the
backward passes ``before = size - 1 - forward_before`` (see ``transposed_before``).

The sums are done by slice accumulation: one vectorised add per offset in the window
(``size`` adds per axis, no loop over pixels). Unlike a running cumulative sum it does not
subtract large partial sums, so float32 results stay as accurate as the inputs allow.

Portable: every routine works on NumPy and CuPy arrays alike; the array module is taken
from the argument's type, so this file never imports cupy itself.
"""
from __future__ import annotations

import sys

import numpy as np

__all__ = ["array_module", "box_sum", "channel_window_sum", "spatial_window_sum",
           "transposed_before"]


def array_module(a):
    """numpy, or cupy when ``a`` is a CuPy array (already imported if one exists)."""
    root = type(a).__module__.split(".")[0]
    return sys.modules[root] if root == "cupy" else np


def transposed_before(size, before):
    """The ``before`` of the window that sums gradients back (the mirrored window)."""
    return size - 1 - before


def box_sum(a, size, axes, before=None):
    """Zero-padded sliding-window sum of ``a`` along each axis in ``axes``.

    ``out[..., j, ...] = Σ_{o=0}^{size-1} a[..., j - before + o, ...]`` along every listed
    axis (a ``size`` × ``size`` × ... box), with out-of-range positions counting as 0.
    The output has the shape of ``a``. ``before`` defaults to ``size // 2`` (torch's
    centring).
    """
    if before is None:
        before = size // 2
    out = a
    for axis in axes:
        out = _axis_window_sum(out, size, axis, before)
    return out


def channel_window_sum(a, size, before=None):
    """Window sum across channels (axis 1) of an (N, C, *) array."""
    return box_sum(a, size, (1,), before)


def spatial_window_sum(a, size, before=None):
    """Box sum over every spatial axis (axes 2, 3, ...) of an (N, C, *) array: a
    ``size`` × ``size`` window for (N, C, H, W) input, ``size`` for (N, C, L)."""
    return box_sum(a, size, tuple(range(2, a.ndim)), before)


def _axis_window_sum(a, size, axis, before):
    xp = array_module(a)
    length = a.shape[axis]
    out = xp.zeros_like(a)
    for offset in range(-before, size - before):
        # out[j] += a[j + offset] wherever both j and j + offset are inside 0..length-1
        lo, hi = max(0, -offset), min(length, length - offset)
        if lo >= hi:
            continue
        dst = [slice(None)] * a.ndim
        src = [slice(None)] * a.ndim
        dst[axis] = slice(lo, hi)
        src[axis] = slice(lo + offset, hi + offset)
        out[tuple(dst)] += a[tuple(src)]
    return out
