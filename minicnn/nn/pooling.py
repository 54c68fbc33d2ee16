"""Pooling layers: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d, MaxUnpool2d.

As in torch, the hyper-parameters are stored as given (``MaxPool2d(2)`` keeps
``kernel_size=2``, and ``stride`` defaults to ``kernel_size``), so the repr matches.
Output size for a window K, stride S, padding P, dilation D:
    OH = ⌊(H + 2·P - D·(K - 1) - 1) / S⌋ + 1   (⌈...⌉ with ceil_mode).
"""
from __future__ import annotations

from .. import functional as F
from ..autograd import as_tensor
from ..functional._checks import pair
from ._utils import check_ndim
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "MaxUnpool2d"]

_LAYOUT = "(N, C, H, W) or unbatched (C, H, W)"


class MaxPool2d(Module):
    """The maximum over each KH×KW window. NOTE: padding counts as -∞ (never chosen),
    and the output size rounds down unless ``ceil_mode``.

    ``return_indices=True`` also returns, for every output, the flat index (h·W + w) of
    the chosen input element within its channel plane, which ``MaxUnpool2d`` consumes.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input):
        x = as_tensor(input)
        check_ndim(self, x, (3, 4), _LAYOUT)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def forward_after_relu(self, input):
        """``self.forward(F.relu(input))`` as one op, ``F.relu_max_pool2d`` (same values
        and gradients, one pass over the input). What ``nn.activation.act_then_pool``
        and ``nn.Sequential`` call for a plain ReLU followed by this pool; not for
        ``return_indices=True``."""
        x = as_tensor(input)
        check_ndim(self, x, (3, 4), _LAYOUT)
        return F.relu_max_pool2d(x, self.kernel_size, self.stride, self.padding,
                                 self.dilation, ceil_mode=self.ceil_mode)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """The mean over each KH×KW window. With ``count_include_pad`` (the default) the
    padded zeros count in the divisor; ``divisor_override`` replaces the divisor."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):
        x = as_tensor(input)
        check_ndim(self, x, (3, 4), _LAYOUT)
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed ``output_size`` (OH, OW) whatever the input size: output
    cell i covers input rows ⌊i·H/OH⌋ .. ⌈(i+1)·H/OH⌉ - 1 (columns likewise).
    ``None`` in ``output_size`` keeps that input dimension."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        x = as_tensor(input)
        check_ndim(self, x, (3, 4), _LAYOUT)
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """Max pooling to a fixed ``output_size``, windows as in AdaptiveAvgPool2d."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, input):
        x = as_tensor(input)
        check_ndim(self, x, (3, 4), _LAYOUT)
        return F.adaptive_max_pool2d(x, self.output_size, self.return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class MaxUnpool2d(Module):
    """The partial inverse of MaxPool2d: each value goes back to the position its
    ``indices`` name, every other position is 0.

    ``forward(input, indices, output_size=None)``; the default output size is
    OH = (H - 1)·S - 2·P + K (several input sizes pool to one size: pass
    ``output_size`` to pick one).
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair("MaxUnpool2d", "kernel_size", kernel_size)
        self.stride = pair("MaxUnpool2d", "stride", kernel_size if stride is None else stride)
        self.padding = pair("MaxUnpool2d", "padding", padding)

    def forward(self, input, indices, output_size=None):
        x = as_tensor(input)
        check_ndim(self, x, (3, 4), _LAYOUT)
        return F.max_unpool2d(x, indices, self.kernel_size, self.stride, self.padding,
                              output_size)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
