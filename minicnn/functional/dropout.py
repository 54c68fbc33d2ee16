"""Dropout: ``dropout`` (each element) and ``dropout2d`` (whole channels).

In training each unit is kept with probability 1 - p and multiplied by 1/(1 - p)
("inverted" dropout), so the expected output equals the input and evaluation needs no
rescaling:

    y = x ⊙ m / (1 - p),   m ~ Bernoulli(1 - p),   dL/dx = dL/dy ⊙ m / (1 - p)

The masks come from minicnn's seeded generator (``backend.get_rng``), so
``minicnn.manual_seed`` fixes them. ``p`` is the probability of *dropping*, as in torch.

NOTE: ``inplace=True`` is accepted so that torch code runs unchanged, but the result is
always a new tensor and the input is left as it was: use the returned value.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from .. import backend
from ..autograd import Function, as_tensor
from ._checks import check_float

__all__ = ["dropout", "dropout2d"]


def dropout(input, p=0.5, training=True, inplace=False):
    """Element-wise dropout (Srivastava et al. 2014), as ``torch.nn.functional.dropout``.

    Shapes: any input; the mask has the input's shape; output as input.
    ``training=False``, ``p=0`` or an empty input return ``input`` itself (no random
    numbers drawn), ``p=1`` returns exact zeros (no 0/0), as torch does.
    Gradient: dx = dy ⊙ m / (1 - p), the same mask as the forward pass.
    """
    x = as_tensor(input)
    p = _check_p("dropout", p)
    return _masked_dropout("dropout", x, p, training, x.shape)


class Dropout(Function):
    """Multiply by a fixed, already scaled mask (broadcast to the input)."""

    def __init__(self, mask):
        self.mask = mask        # m / (1 - p), in the input's dtype

    def forward(self, x):
        return x * self.mask

    def backward(self, g):
        return g * self.mask


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Channel-wise ("spatial") dropout (Tompson et al. 2015), as
    ``torch.nn.functional.dropout2d``: each channel of each sample is kept or zeroed as a
    whole, which suits feature maps whose neighbouring pixels are strongly correlated.

    Shapes: input (N, C, H, W); the mask is (N, C, 1, 1), broadcast over H and W;
    output as input. Gradient: dx = dy ⊙ m / (1 - p) with the same per-channel mask.

    NOTE: as in torch 2.x, a 3-D input is read as (N, C, L), not as an unbatched
    (C, H, W): the mask is drawn per (dim 0, dim 1) pair and broadcast over the last
    dimension, and a warning says so. Other ranks (at least 2) work the same way, with a
    deprecation warning, as torch's do.
    """
    x = as_tensor(input)
    p = _check_p("dropout2d", p)
    if x.ndim < 2:
        raise RuntimeError(f"dropout2d: feature dropout requires at least 2 dimensions "
                           f"(N, C, *), got input of shape {tuple(x.shape)}")
    if x.ndim == 3:
        warnings.warn("dropout2d: received a 3-D input; as in torch it is read as "
                      "(N, C, L), not as an unbatched (C, H, W), and whole (n, c) rows are "
                      "dropped. Pass (N, C, H, W) to drop channels of images.",
                      UserWarning, stacklevel=2)
    elif x.ndim != 4:
        warnings.warn(f"dropout2d: received a {x.ndim}-D input; dropout2d is meant for "
                      f"(N, C, H, W) (torch deprecates other ranks). Channels (dim 1) of "
                      f"each sample are dropped as a whole.", UserWarning, stacklevel=2)
    mask_shape = tuple(x.shape[:2]) + (1,) * (x.ndim - 2)    # (N, C, 1, 1)
    return _masked_dropout("dropout2d", x, p, training, mask_shape)


# ------------------------------------------------------------------------ helpers

def _masked_dropout(op, x, p, training, mask_shape):
    if not training or p == 0 or x.numel() == 0:
        return x
    check_float(op, x)
    xp = backend.get_array_module(x.array)
    if p == 1:
        # every unit dropped: a zero mask, not 0 · 1/(1 - p) = 0 · inf = NaN
        mask = xp.zeros(mask_shape, dtype=x.dtype)
    else:
        # keep where u >= p, u uniform in [0, 1): probability 1 - p. Drawn in float32
        # (one word of the stream per unit, steps of 2**-24) whatever the input's dtype,
        # so a seed gives the same mask for float32 and float64 inputs, on every device.
        keep = backend.get_rng(xp).random(mask_shape, dtype=np.float32) >= np.float32(p)
        mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - p))
    return Dropout(mask)(x)


def _check_p(op, p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"{op}: dropout probability p has to be between 0 and 1, but "
                         f"got {p!r}")
    return float(p)
