"""Dropout layers: active in training mode, the identity in eval mode."""
from __future__ import annotations

from .. import functional as F
from .module import Module

__all__ = ["Dropout", "Dropout2d"]


class _DropoutNd(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"{type(self).__name__}: dropout probability has to be between "
                             f"0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each element with probability ``p`` (NOTE: p is the *drop* probability) and
    scale the survivors by 1/(1 - p), so the expected output equals the input
    (Srivastava et al., 2014). Only while ``training``."""

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """Zero whole channels (N, C, :, :) with probability ``p``, scaling the rest by
    1/(1 - p) (Tompson et al., 2015): neighbouring pixels are correlated, so dropping
    single pixels would regularise little. Only while ``training``."""

    def forward(self, input):
        return F.dropout2d(input, self.p, self.training, self.inplace)
