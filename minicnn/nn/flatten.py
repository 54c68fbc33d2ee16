"""Flatten and Unflatten: reshape layers for the step between features and classifier."""
from __future__ import annotations

import numbers

from .. import functional as F
from ..autograd import as_tensor, _check_dim
from ._utils import describe
from .module import Module

__all__ = ["Flatten", "Unflatten"]


class Flatten(Module):
    """Merge dims ``start_dim`` .. ``end_dim`` into one: (N, C, H, W) -> (N, C·H·W) by
    default (the batch dimension is kept, unlike ``minicnn.flatten``'s default)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dimension ``dim`` into ``unflattened_size`` (its product must equal that
    dimension's size; one entry may be -1): Unflatten(1, (C, H, W)) undoes Flatten()."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        if not isinstance(dim, numbers.Integral):
            raise TypeError(f"Unflatten: dim must be an int, got {dim!r}")
        if not isinstance(unflattened_size, (tuple, list)):
            raise TypeError(f"Unflatten: unflattened_size must be a tuple of ints, got "
                            f"{unflattened_size!r}")
        self.dim = dim
        self.unflattened_size = tuple(int(s) for s in unflattened_size)

    def forward(self, input):
        x = as_tensor(input)
        dim = _check_dim("Unflatten", self.dim, x.ndim)
        sizes = self.unflattened_size
        known = 1
        for s in sizes:
            known *= s if s != -1 else 1
        fits = (x.shape[dim] == known if -1 not in sizes
                else known != 0 and x.shape[dim] % known == 0 and sizes.count(-1) == 1)
        if not fits:
            raise ValueError(f"{describe(self)}: dimension {dim} of the input (shape "
                             f"{tuple(x.shape)}) cannot be split into {sizes}")
        return F.reshape(x, tuple(x.shape[:dim]) + sizes + tuple(x.shape[dim + 1:]))

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
