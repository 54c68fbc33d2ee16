"""Padding: ``pad(x, pad, mode="constant", value=0)`` as ``torch.nn.functional.pad``.

``pad`` lists (before, after) pairs starting from the *last* dimension, as torch does:
``(left, right, top, bottom)`` pads W then H. Negative amounts crop.
The gradient of constant padding is the upstream gradient cut back to the input's region.
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function, as_tensor

__all__ = ["pad"]

_MODES = ("constant", "reflect", "replicate", "circular")


def pad(input, pad, mode="constant", value=0.0):
    """Pad (or, with negative amounts, crop) the trailing dimensions of ``input``."""
    x = as_tensor(input)
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: expected an even number of amounts covering at most "
                         f"{x.ndim} dimensions, got {pad}")
    if mode not in _MODES:
        raise ValueError(f"pad: mode must be one of {_MODES}, got {mode!r}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    for d, (lo, hi) in enumerate(widths):
        if x.shape[d] + lo + hi < 0 or (x.shape[d] + lo + hi == 0 and (lo or hi)):
            raise ValueError(f"pad: padding {(lo, hi)} of dimension {d} (size {x.shape[d]}) "
                             f"leaves no elements")
    if mode == "constant":
        return ConstantPad(tuple(widths), value)(x)
    raise NotImplementedError(f"pad: mode {mode!r} is not implemented yet")


class ConstantPad(Function):
    def __init__(self, widths, value):
        self.widths, self.value = widths, value

    def forward(self, x):
        xp = backend.get_array_module(x)
        out_shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, self.widths))
        out = xp.full(out_shape, self.value, dtype=x.dtype)
        # where the input lands in the output, and which part of it survives a crop
        self.dst = tuple(slice(max(lo, 0), max(lo, 0) + n + min(lo, 0) + min(hi, 0))
                         for n, (lo, hi) in zip(x.shape, self.widths))
        self.src = tuple(slice(-min(lo, 0), n + min(hi, 0))
                         for n, (lo, hi) in zip(x.shape, self.widths))
        self.in_shape = x.shape
        out[self.dst] = x[self.src]
        return out

    def backward(self, g):
        xp = backend.get_array_module(g)
        grad = xp.zeros(self.in_shape, dtype=g.dtype)
        grad[self.src] = g[self.dst]
        return grad
