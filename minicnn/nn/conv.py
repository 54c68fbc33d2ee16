"""Convolution layers: Conv2d and ConvTranspose2d (LazyConv2d lives in ``lazy.py``).

Shapes use N, C, H, W (input), KH, KW (kernel), SH, SW (stride), PH, PW (padding),
DH, DW (dilation), OH, OW (output).
"""
from __future__ import annotations

import math

from .. import functional as F
from ..autograd import as_tensor
from ..functional._checks import pair, positive_int
from . import init
from ._utils import check_channels, check_ndim, describe, empty_parameter
from .module import Module

__all__ = ["Conv2d", "ConvTranspose2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    """What Conv2d and ConvTranspose2d share: hyper-parameters, weight, bias, init, repr."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 transposed, output_padding, groups, bias, padding_mode, device, dtype):
        super().__init__()
        name = type(self).__name__
        groups = positive_int(name, "groups", groups)
        if in_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) must be divisible by "
                             f"groups ({groups})")
        if out_channels % groups:
            raise ValueError(f"{name}: out_channels ({out_channels}) must be divisible by "
                             f"groups ({groups})")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of {_PADDING_MODES}, got "
                             f"{padding_mode!r}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = pair(name, "kernel_size", kernel_size)
        self.stride = pair(name, "stride", stride)
        self.dilation = pair(name, "dilation", dilation)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, a pair, 'same' or "
                                 f"'valid', got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided "
                                 f"convolutions (stride={self.stride})")
            self.padding = padding
        else:
            self.padding = pair(name, "padding", padding)
        self.transposed = transposed
        self.output_padding = pair(name, "output_padding", output_padding)
        self.groups = int(groups)
        self.padding_mode = padding_mode
        # (left, right, top, bottom): the amounts F.pad takes, last dimension first
        self._reversed_padding_repeated_twice = _explicit_padding(
            self.padding, self.kernel_size, self.dilation)
        if transposed:   # NOTE: ConvTranspose weight is (in, out/groups, KH, KW)
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:            # Conv weight is (out, in/groups, KH, KW)
            shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = empty_parameter(shape, device, dtype)
        if bias:
            self.bias = empty_parameter((out_channels,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default: W ~ U(-1/√fan_in, 1/√fan_in) (``kaiming_uniform_`` with
        a=√5), b from the same range; fan_in = dim 1 of the weight times KH·KW."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def _check_input(self, x):
        check_ndim(self, x, (3, 4), "(N, C, H, W) or unbatched (C, H, W)")
        check_channels(self, x, -3, self.in_channels)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation, as in every deep-learning library):

        out[n, o] = bias[o] + Σ_{c in o's group} Σ_{i,j} weight[o, c, i, j] ·
                    x_padded[n, c, SH·h + DH·i, SW·w + DW·j]

    Args as ``torch.nn.Conv2d``: ``in_channels``, ``out_channels``, ``kernel_size``,
    ``stride=1``, ``padding=0`` (int, pair, ``'valid'`` or ``'same'``), ``dilation=1``,
    ``groups=1``, ``bias=True``, ``padding_mode='zeros'`` (or ``'reflect'``,
    ``'replicate'``, ``'circular'``).

    Shape: (N, C_in, H, W) -> (N, C_out, OH, OW) (or unbatched (C_in, H, W)), with
        OH = ⌊(H + 2·PH - DH·(KH - 1) - 1) / SH⌋ + 1, and OW likewise.
    Parameters: ``weight`` (C_out, C_in/groups, KH, KW), ``bias`` (C_out,).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         False, 0, groups, bias, padding_mode, device, dtype)

    def forward(self, input):
        x = as_tensor(input)
        self._check_input(x)
        return self._conv_forward(x, self.weight, self.bias)

    def _conv_forward(self, x, weight, bias):
        left, right, top, bottom = self._reversed_padding_repeated_twice
        if self.padding_mode != "zeros":
            # pad explicitly with the requested mode, then convolve without padding
            x = F.pad(x, (left, right, top, bottom), mode=self.padding_mode)
            padding = 0
        elif left == right and top == bottom:
            padding = (top, left)
        else:
            # padding='same' with an even (dilated) kernel needs one more on the
            # right/bottom than on the left/top; conv2d only pads symmetrically
            x = F.pad(x, (left, right, top, bottom))
            padding = 0
        return F.conv2d(x, weight, bias, self.stride, padding, self.dilation, self.groups)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution ("deconvolution"): the gradient of Conv2d with respect to
    its input, used to upsample. Each input pixel scatters ``weight[c]`` (scaled by its
    value) onto the output at stride steps; ``padding`` then crops the border and
    ``output_padding`` adds rows/columns at the bottom/right to pick among the output
    sizes that a strided Conv2d would map to the same input size.

    Shape: (N, C_in, H, W) -> (N, C_out, OH, OW), with
        OH = (H - 1)·SH - 2·PH + DH·(KH - 1) + output_padding_H + 1, and OW likewise.
    Parameters: ``weight`` (C_in, C_out/groups, KH, KW)  (NOTE: in before out),
    ``bias`` (C_out,).
    ``forward(input, output_size=None)``: giving ``output_size`` picks output_padding.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        if padding_mode != "zeros":
            raise ValueError(f"ConvTranspose2d: only padding_mode='zeros' is supported, got "
                             f"{padding_mode!r}")
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d: padding must be an int or a pair, got "
                             f"{padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         True, output_padding, groups, bias, padding_mode, device, dtype)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= max(s, d):
                raise ValueError(f"ConvTranspose2d: output_padding {self.output_padding} "
                                 f"must be smaller than either stride {self.stride} or "
                                 f"dilation {self.dilation}")

    def forward(self, input, output_size=None):
        x = as_tensor(input)
        self._check_input(x)
        output_padding = self._output_padding(x, output_size)
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  output_padding, self.groups, self.dilation)

    def _output_padding(self, x, output_size):
        """The output_padding that yields ``output_size`` ((OH, OW), or a full shape)."""
        if output_size is None:
            return self.output_padding
        output_size = tuple(int(s) for s in output_size)
        if len(output_size) == x.ndim:
            output_size = output_size[-2:]
        if len(output_size) != 2:
            raise ValueError(f"{describe(self)}: output_size must have 2 or {x.ndim} "
                             f"elements, got {output_size}")
        smallest, largest = [], []
        for d in range(2):
            size_in = x.shape[x.ndim - 2 + d]
            size = ((size_in - 1) * self.stride[d] - 2 * self.padding[d]
                    + self.dilation[d] * (self.kernel_size[d] - 1) + 1)
            smallest.append(size)
            largest.append(size + self.stride[d] - 1)
        for d in range(2):
            if not smallest[d] <= output_size[d] <= largest[d]:
                raise ValueError(f"{describe(self)}: requested an output size of "
                                 f"{output_size}, but valid sizes range from "
                                 f"{tuple(smallest)} to {tuple(largest)} (for an input of "
                                 f"spatial size {tuple(x.shape[-2:])})")
        return tuple(output_size[d] - smallest[d] for d in range(2))


def _explicit_padding(padding, kernel_size, dilation):
    """(left, right, top, bottom) padding for an int pair or 'valid'/'same'.

    'same' keeps H and W (stride 1): a total of D·(K-1) per dimension, the odd one extra
    on the right/bottom (as torch does).
    """
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        amounts = []
        for k, d in zip(reversed(kernel_size), reversed(dilation)):
            total = d * (k - 1)
            amounts += [total // 2, total - total // 2]
        return tuple(amounts)
    ph, pw = padding
    return (pw, pw, ph, ph)
