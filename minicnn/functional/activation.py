"""Activations: relu, sigmoid, tanh, softmax, log_softmax (more are added beside them).

Each backward uses the derivative written in terms of what forward computed:
relu' = [x > 0] (0 at 0, as torch), σ' = σ(1 - σ), tanh' = 1 - tanh²,
softmax: dx = y ⊙ (g - Σ g⊙y), log_softmax: dx = g - softmax ⊙ Σ g.
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function, as_tensor, _check_dim

__all__ = ["relu", "sigmoid", "tanh", "softmax", "log_softmax"]


def relu(input, inplace=False):
    """max(x, 0). NOTE: the gradient at exactly 0 is 0, as in torch. ``inplace`` is
    accepted for compatibility and computes out of place."""
    return ReLU()(as_tensor(input))


def sigmoid(input):
    """σ(x) = 1 / (1 + e^-x), computed without overflow for large |x|."""
    return Sigmoid()(as_tensor(input))


def tanh(input):
    return Tanh()(as_tensor(input))


def softmax(input, dim=None, dtype=None):
    """exp(x_i - max) / Σ exp(x_j - max) along ``dim`` (shifted for stability)."""
    x = as_tensor(input)
    if dtype is not None:
        x = x.to(dtype=dtype)
    return Softmax(_softmax_dim("softmax", x, dim), log=False)(x)


def log_softmax(input, dim=None, dtype=None):
    """x_i - max - log Σ exp(x_j - max): stable for large logits."""
    x = as_tensor(input)
    if dtype is not None:
        x = x.to(dtype=dtype)
    return Softmax(_softmax_dim("log_softmax", x, dim), log=True)(x)


def _softmax_dim(op, x, dim):
    if dim is None:
        # torch's implicit choice when dim is omitted: 0 for 0-, 1- and 3-D input, else 1
        if x.ndim <= 1:
            return 0 if x.ndim else None
        return 1 if x.ndim != 3 else 0
    if x.ndim == 0:
        return None
    return _check_dim(op, dim, x.ndim)


class ReLU(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        self.positive = x > 0
        return xp.maximum(x, 0, dtype=x.dtype) if x.dtype.kind == "f" else xp.maximum(x, 0)

    def backward(self, g):
        return g * self.positive


class Sigmoid(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        # e^-|x| never overflows; pick the form that is exact on each side of 0
        e = xp.exp(-xp.abs(x))
        self.out = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.out

    def backward(self, g):
        y = self.out
        return g * y * (1 - y)


class Tanh(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        self.out = xp.tanh(x)
        return self.out

    def backward(self, g):
        return g * (1 - self.out * self.out)


class Softmax(Function):
    def __init__(self, dim, log):
        self.dim, self.log = dim, log

    def forward(self, x):
        xp = backend.get_array_module(x)
        if self.dim is None:          # 0-d input: softmax of one value is 1
            self.out = xp.zeros_like(x) if self.log else xp.ones_like(x)
            return self.out
        shifted = x - x.max(axis=self.dim, keepdims=True)
        exps = xp.exp(shifted)
        total = exps.sum(axis=self.dim, keepdims=True)
        if self.log:
            self.out = shifted - xp.log(total)
        else:
            self.out = exps / total
        return self.out

    def backward(self, g):
        xp = backend.get_array_module(g)
        if self.dim is None:
            return xp.zeros_like(g)
        y = self.out
        if self.log:
            return g - xp.exp(y) * g.sum(axis=self.dim, keepdims=True)
        return y * (g - (g * y).sum(axis=self.dim, keepdims=True))
