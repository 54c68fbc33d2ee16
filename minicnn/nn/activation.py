"""Activation layers: thin modules around ``minicnn.functional``'s activations, and the
fusions of a ReLU with its neighbour.

``inplace=True`` is accepted wherever torch has it, so model code moves over unchanged;
what it does is up to the functional op (the result is the same either way).

Fusions (at the end of the file): a ReLU followed by a max pool, and a batch norm
followed by a ReLU, can each run as one op (``F.relu_max_pool2d``, ``F.batch_norm_relu``:
the same values and gradients, fewer passes over memory). :func:`act_then_pool` and
:func:`norm_then_act` are what model code calls; ``nn.Sequential`` fuses such pairs of
its children by itself. A pair is fused only when both modules are exactly the plain
layers, not subclasses, and neither has a hook or an instance-level ``forward``: a hook
must see the intermediate result, which the fused op never makes.
"""
from __future__ import annotations

from .. import functional as F
from .module import Module
from .normalization import BatchNorm2d
from .pooling import MaxPool2d

__all__ = ["ReLU", "LeakyReLU", "ELU", "GELU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
           "act_then_pool", "norm_then_act", "fused_pair"]


class ReLU(Module):
    """max(x, 0) elementwise. NOTE: its gradient at exactly 0 is 0, as in torch."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return F.relu(input, inplace=self.inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """x for x > 0, negative_slope · x otherwise (default slope 0.01)."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input):
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(Module):
    """x for x > 0, alpha · (eˣ - 1) otherwise (Clevert et al., 2015)."""

    def __init__(self, alpha=1.0, inplace=False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input):
        return F.elu(input, self.alpha, self.inplace)

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class GELU(Module):
    """x · Φ(x) (Hendrycks & Gimpel, 2016); ``approximate='tanh'`` uses the tanh formula."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Sigmoid(Module):
    """1 / (1 + e⁻ˣ) elementwise."""

    def forward(self, input):
        return F.sigmoid(input)


class Tanh(Module):
    def forward(self, input):
        return F.tanh(input)


class Softmax(Module):
    """exp(x_i) / Σ_j exp(x_j) along ``dim`` (give it: the implicit choice is a legacy)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log of Softmax, computed stably: x_i - max - log Σ_j exp(x_j - max)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return F.log_softmax(input, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


# ------------------------------------------------------------------------ fusions

def act_then_pool(act, pool, x):
    """``pool(act(x))`` for an activation module ``act`` and a pooling module ``pool``.

    A plain ``ReLU`` and ``MaxPool2d`` (no hooks, no ``return_indices``) run as one op,
    ``F.relu_max_pool2d`` (same values and gradients); anything else calls the two
    modules in turn.
    """
    fused = fused_pair(act, pool)
    return pool(act(x)) if fused is None else fused(x)


def norm_then_act(norm, act, x):
    """``act(norm(x))`` for a normalisation module ``norm`` and an activation ``act``.

    A plain ``BatchNorm2d`` (with running statistics and a numeric momentum, the
    default) and ``ReLU`` without hooks run as one op, ``F.batch_norm_relu`` (same
    values, gradients and running statistics); anything else calls the two modules in
    turn, as for torch modules, where this is exactly ``act(norm(x))``.
    """
    fused = fused_pair(norm, act)
    return act(norm(x)) if fused is None else fused(x)


def fused_pair(first, second):
    """The one-op function computing ``second(first(x))`` when minicnn fuses these two
    modules (see the module docstring), else None."""
    if _plain(first, ReLU) and _plain(second, MaxPool2d) and not second.return_indices:
        return second.forward_after_relu
    if (_plain(first, BatchNorm2d) and _plain(second, ReLU) and first.momentum is not None
            and first.track_running_stats and first.num_batches_tracked is not None
            and first.running_mean is not None and first.running_var is not None):
        return lambda x: _batch_norm_relu(first, x)
    return None


def _plain(module, cls):
    """Calling ``module`` is exactly calling ``cls.forward``: an instance of ``cls`` itself
    (a subclass may change forward), with no forward hooks or pre-hooks and no forward
    set on the instance."""
    return (type(module) is cls and not module._forward_hooks
            and not module._forward_pre_hooks and "forward" not in vars(module))


def _batch_norm_relu(bn, input):
    """``relu(bn(input))``: the batch norm layer's own steps with ``F.batch_norm_relu``
    in place of ``F.batch_norm``."""
    return bn._normalize(input, F.batch_norm_relu)
