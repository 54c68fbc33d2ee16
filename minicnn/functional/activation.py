"""Activations: relu, sigmoid, tanh, softmax, log_softmax, leaky_relu, elu, gelu, relu6,
hardtanh, softplus, silu — as in ``torch.nn.functional``.

Each backward uses the derivative written in terms of what forward computed:
relu' = [x > 0] (0 at 0, as torch), σ' = σ(1 - σ), tanh' = 1 - tanh²,
softmax: dx = y ⊙ (g - Σ g⊙y), log_softmax: dx = g - softmax ⊙ Σ g.

Conventions at the kinks follow torch exactly (each is noted at its function): the
gradient of relu, relu6 and hardtanh is 0 *at* a kink, leaky_relu's is ``negative_slope``
at 0, elu's is ``alpha`` at 0.

``inplace=True`` is accepted everywhere torch accepts it, so model code runs unchanged,
but the result is always a new tensor: minicnn never overwrites an op's input.
"""
from __future__ import annotations

import math

from .. import backend
from ..autograd import Function, as_tensor, _check_dim
from ._checks import float_input

__all__ = ["relu", "sigmoid", "tanh", "softmax", "log_softmax", "leaky_relu", "elu",
           "gelu", "relu6", "hardtanh", "softplus", "silu"]


def relu(input, inplace=False):
    """max(x, 0). NOTE: the gradient at exactly 0 is 0, as in torch. ``inplace`` is
    accepted for compatibility and computes out of place."""
    return ReLU()(as_tensor(input))


class ReLU(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        self.positive = x > 0
        return xp.maximum(x, 0, dtype=x.dtype) if x.dtype.kind == "f" else xp.maximum(x, 0)

    def backward(self, g):
        return g * self.positive


def sigmoid(input):
    """σ(x) = 1 / (1 + e^-x), computed without overflow for large |x|; gradient
    σ(x)(1 - σ(x)), from the saved output."""
    return Sigmoid()(as_tensor(input))


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


def tanh(input):
    """tanh(x) = (eˣ - e⁻ˣ) / (eˣ + e⁻ˣ); gradient 1 - tanh²(x), from the saved output."""
    return Tanh()(as_tensor(input))


class Tanh(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        self.out = xp.tanh(x)
        return self.out

    def backward(self, g):
        return g * (1 - self.out * self.out)


def softmax(input, dim=None, dtype=None):
    """exp(x_i - max) / Σ exp(x_j - max) along ``dim`` (shifted for stability)."""
    x = as_tensor(input)
    if dtype is not None:
        x = x.to(dtype=dtype)
    return Softmax(_softmax_dim("softmax", x, dim), log=False)(x)


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


def log_softmax(input, dim=None, dtype=None):
    """x_i - max - log Σ exp(x_j - max): stable for large logits."""
    x = as_tensor(input)
    if dtype is not None:
        x = x.to(dtype=dtype)
    return Softmax(_softmax_dim("log_softmax", x, dim), log=True)(x)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x for x > 0, ``negative_slope`` · x otherwise (``torch.nn.functional.leaky_relu``).

    Gradient: 1 for x > 0, ``negative_slope`` for x ≤ 0. NOTE: at exactly 0 the gradient
    is ``negative_slope``, as in torch (relu's is 0 there). ``inplace`` computes out of place.
    """
    x = float_input("leaky_relu", input)
    return LeakyReLU(float(negative_slope))(x)


class LeakyReLU(Function):
    def __init__(self, negative_slope):
        self.negative_slope = negative_slope

    def forward(self, x):
        xp = backend.get_array_module(x)
        positive = x > 0
        self.positive = positive if self.needs_input_grad[0] else None
        return xp.where(positive, x, x * self.negative_slope).astype(x.dtype, copy=False)

    def backward(self, g):
        xp = backend.get_array_module(g)
        return xp.where(self.positive, g, g * self.negative_slope).astype(g.dtype, copy=False)


def elu(input, alpha=1.0, inplace=False):
    """x for x > 0, α(eˣ - 1) otherwise (``torch.nn.functional.elu``; Clevert et al. 2015).

    Gradient: 1 for x > 0, α eˣ for x ≤ 0. NOTE: at exactly 0 it is α (torch's choice:
    the left derivative), not 1. ``inplace`` computes out of place.
    """
    x = float_input("elu", input)
    return ELU(float(alpha))(x)


class ELU(Function):
    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, x):
        xp = backend.get_array_module(x)
        # exp only ever sees x ≤ 0, so a large positive x cannot overflow it
        exp_neg = xp.exp(xp.minimum(x, 0))
        positive = x > 0
        if self.needs_input_grad[0]:
            # d/dx: 1 for x > 0, α eˣ for x ≤ 0 (so α at 0, as torch)
            self.slope = xp.where(positive, 1, self.alpha * exp_neg).astype(x.dtype, copy=False)
        return xp.where(positive, x, self.alpha * (exp_neg - 1)).astype(x.dtype, copy=False)

    def backward(self, g):
        return g * self.slope


def gelu(input, approximate="none"):
    """x · Φ(x), Φ the standard normal CDF (``torch.nn.functional.gelu``; Hendrycks &
    Gimpel 2016).

    ``approximate='none'``:  Φ(x) = ½ (1 + erf(x / √2)),  gradient Φ(x) + x φ(x) with
    φ(x) = e^(-x²/2) / √(2π).
    ``approximate='tanh'``:  ½ x (1 + tanh u),  u = √(2/π) (x + 0.044715 x³), gradient
    ½ (1 + tanh u) + ½ x (1 - tanh² u) √(2/π) (1 + 3 · 0.044715 x²).

    erf comes from ``backend.erf`` (numba on the CPU, cupyx on the GPU): NumPy has none.
    """
    x = float_input("gelu", input)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return GELU(approximate)(x)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


class GELU(Function):
    def __init__(self, approximate):
        self.approximate = approximate

    def forward(self, x):
        xp = backend.get_array_module(x)
        if self.approximate == "none":
            cdf = 0.5 * (1 + backend.erf(x * (1 / math.sqrt(2.0))))       # Φ(x)
            if self.needs_input_grad[0]:
                # NOTE: clipped so that x² cannot overflow; φ(±40) is 0 in float64 anyway
                xc = xp.clip(x, -40, 40)
                pdf = xp.exp(-0.5 * xc * xc) * (1 / math.sqrt(2 * math.pi))  # φ(x)
                self.slope = (cdf + x * pdf).astype(x.dtype, copy=False)
            return (x * cdf).astype(x.dtype, copy=False)
        # NOTE: beyond |x| = 20, tanh(u) is ±1 exactly and 1 - tanh² u is 0 in float32 and
        # float64, so clipping x inside u changes nothing but keeps x³ finite.
        xc = xp.clip(x, -20, 20)
        t = xp.tanh(_SQRT_2_OVER_PI * (xc + _GELU_CUBIC * xc * xc * xc))
        if self.needs_input_grad[0]:
            du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * xc * xc)
            self.slope = (0.5 * (1 + t) + 0.5 * xc * (1 - t * t) * du).astype(x.dtype, copy=False)
        return (0.5 * x * (1 + t)).astype(x.dtype, copy=False)

    def backward(self, g):
        return g * self.slope


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """x clipped to [min_val, max_val] (``torch.nn.functional.hardtanh``).

    Gradient: 1 where min_val < x < max_val, 0 elsewhere. NOTE: 0 exactly at the bounds,
    as in torch. ``inplace`` computes out of place.
    """
    x = float_input("hardtanh", input)
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val "
                         f"({max_val})")
    return HardTanh(float(min_val), float(max_val))(x)


class HardTanh(Function):
    def __init__(self, min_val, max_val):
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x):
        xp = backend.get_array_module(x)
        if self.needs_input_grad[0]:
            # strict inequalities: the gradient is 0 at both bounds, as in torch
            self.inside = (x > self.min_val) & (x < self.max_val)
        return xp.clip(x, self.min_val, self.max_val).astype(x.dtype, copy=False)

    def backward(self, g):
        return g * self.inside


def relu6(input, inplace=False):
    """min(max(x, 0), 6) (``torch.nn.functional.relu6``, MobileNet's activation).

    It is ``hardtanh(x, 0, 6)``: gradient 1 strictly inside (0, 6), 0 elsewhere. NOTE: 0
    at x = 0 and at x = 6, as in torch. ``inplace`` computes out of place.
    """
    x = float_input("relu6", input)
    return HardTanh(0.0, 6.0)(x)


def softplus(input, beta=1.0, threshold=20.0):
    """(1/β) log(1 + e^(βx)), and x itself where βx > threshold
    (``torch.nn.functional.softplus``).

    Gradient: σ(βx) (the logistic sigmoid), and 1 where βx > threshold.
    log(1 + e^z) is evaluated as max(z, 0) + log(1 + e^(-|z|)), which never overflows;
    torch evaluates it directly, so the two differ only where torch returns inf (a
    ``threshold`` above ~88 in float32, ~709 in float64).
    """
    x = float_input("softplus", input)
    if beta == 0:
        raise ValueError("softplus: beta must be non-zero (it divides the result)")
    return Softplus(float(beta), float(threshold))(x)


class Softplus(Function):
    def __init__(self, beta, threshold):
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        xp = backend.get_array_module(x)
        z = x * self.beta
        linear = z > self.threshold          # torch's switch back to the identity
        soft = (xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))) / self.beta
        if self.needs_input_grad[0]:
            self.slope = xp.where(linear, 1, _sigmoid(xp, z)).astype(x.dtype, copy=False)
        return xp.where(linear, x, soft).astype(x.dtype, copy=False)

    def backward(self, g):
        return g * self.slope


def silu(input, inplace=False):
    """x · σ(x), also called swish (``torch.nn.functional.silu``; Elfwing et al. 2017).

    Gradient: σ(x) (1 + x (1 - σ(x))). ``inplace`` computes out of place.
    """
    x = float_input("silu", input)
    return SiLU()(x)


class SiLU(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        s = _sigmoid(xp, x)
        if self.needs_input_grad[0]:
            self.slope = s * (1 + x * (1 - s))
        return x * s

    def backward(self, g):
        return g * self.slope


# ------------------------------------------------------------------------ helpers

def _sigmoid(xp, z):
    """σ(z) = 1 / (1 + e^-z) without overflow: e^-|z| ≤ 1 on both sides of 0."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def _softmax_dim(op, x, dim):
    if dim is None:
        # torch's implicit choice when dim is omitted: 0 for 0-, 1- and 3-D input, else 1
        if x.ndim <= 1:
            return 0 if x.ndim else None
        return 1 if x.ndim != 3 else 0
    if x.ndim == 0:
        return None
    return _check_dim(op, dim, x.ndim)
