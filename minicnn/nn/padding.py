"""Padding layers: ConstantPad2d and ZeroPad2d (pad the last two dimensions)."""
from __future__ import annotations

from .. import functional as F
from ._utils import _quadruple
from .module import Module

__all__ = ["ConstantPad2d", "ZeroPad2d"]


class ConstantPad2d(Module):
    """Pad H and W with ``value``. ``padding`` is an int (all four sides) or
    (left, right, top, bottom); negative amounts crop. (H, W) -> (H + top + bottom,
    W + left + right)."""

    def __init__(self, padding, value):
        super().__init__()
        self.padding = _quadruple(padding)
        self.value = value

    def forward(self, input):
        return F.pad(input, self.padding, "constant", self.value)

    def extra_repr(self):
        return f"padding={self.padding}, value={self.value}"


class ZeroPad2d(ConstantPad2d):
    """Pad H and W with zeros; ``padding`` as in ConstantPad2d."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)

    def extra_repr(self):
        return f"{self.padding}"
