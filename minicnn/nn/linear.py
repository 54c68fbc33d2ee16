"""Fully connected layers: Identity and Linear (LazyLinear lives in ``lazy.py``)."""
from __future__ import annotations

import math

from .. import functional as F
from ..autograd import as_tensor
from . import init
from ._utils import check_channels, describe, empty_parameter
from .module import Module

__all__ = ["Identity", "Linear"]


class Identity(Module):
    """Returns its input unchanged; any constructor arguments are ignored (as in torch),
    which makes it a drop-in placeholder for a layer that is switched off."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x Wᵀ + b.

    Args: ``in_features``, ``out_features``, ``bias`` (learn an additive bias, default True).

    Shape: input (*, in_features) -> output (*, out_features).
    Parameters: ``weight`` (out_features, in_features), ``bias`` (out_features,).
    Default init, as PyTorch: W ~ U(-1/√in_features, 1/√in_features) (this is
    ``kaiming_uniform_(W, a=√5)``), and b from the same range.
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        if in_features < 0 or out_features < 0:
            raise ValueError(f"Linear: in_features and out_features must be >= 0, got "
                             f"{in_features} and {out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = empty_parameter((out_features, in_features), device, dtype)
        if bias:
            self.bias = empty_parameter((out_features,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        x = as_tensor(input)
        if x.ndim == 0:
            raise ValueError(f"{describe(self)}: expected an input of shape (*, "
                             f"{self.in_features}), got a 0-D tensor")
        check_channels(self, x, -1, self.in_features, "features in the last dimension")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
