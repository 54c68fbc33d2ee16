"""Conversions that stay in the graph: a change of dtype or of device.

``x.to(float64)`` and ``x.to("cuda")`` (``minicnn/_tensor_api.py``) are these two ops, so a
gradient flows back through them: cast back to the source dtype, moved back to the source
device.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function

__all__ = []          # reached through Tensor.to / .float() / .cuda() ..., as in torch


def cast(x, dtype):
    """``x`` as ``dtype`` (a new tensor); the gradient is cast back to ``x``'s dtype."""
    return Cast(np.dtype(dtype))(x)


class Cast(Function):
    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.src_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, g):
        return g.astype(self.src_dtype)


def to_device(x, device):
    """``x`` on ``device``; the gradient is moved back to where ``x`` lives."""
    return ToDevice(backend.Device(device))(x)


class ToDevice(Function):
    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.src_device = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, g):
        return backend.to_device(g, self.src_device)
