"""Resampling and rearranging images: interpolate (nearest, nearest-exact, bilinear),
center_crop, pixel_shuffle and pixel_unshuffle.

Shapes use N, C, H, W for the input and OH, OW for the output.

interpolate is *separable*: it resamples H, then W. Along one dimension every output
position k reads one input position (nearest) or blends two (bilinear), at positions
and weights that depend only on the sizes, so they are computed once, on the host, as
short lists. The backward pass is the adjoint of those reads: each input position
receives the upstream gradient of every output that read it, times the weight it was
read with. For bilinear, doing this along W and then H sends each output's gradient
to its four neighbours with weights (1-λh)(1-λw), (1-λh)λw, λh(1-λw), λh λw.
"""
from __future__ import annotations

import math
import numbers
import struct

from .. import backend
from ..autograd import Function, as_tensor
from ._checks import float_input, positive_int
from .padding import ConstantPad, take, take_backward

__all__ = ["interpolate", "center_crop", "pixel_shuffle", "pixel_unshuffle"]


_MODES = ("nearest", "nearest-exact", "bilinear")


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize a batch of images (N, C, H, W) -> (N, C, OH, OW), as
    ``torch.nn.functional.interpolate``.

    Output size: ``size`` (an int or (OH, OW)), or ⌊H · scale_factor⌋ × ⌊W · scale_factor⌋.

    Where output index k reads from, with ``scale`` = 1/scale_factor when a scale factor
    is given (and not ``recompute_scale_factor``), else in/out, exactly as torch:

    * 'nearest' (torch's legacy rule): ⌊k · scale⌋, clamped to in - 1, computed in
      float32. NOTE: because scale = 1/scale_factor, ``scale_factor=1.7`` and the
      ``size`` it produces can pick different pixels. Torch also special-cases out == in
      (identity) and out == 2·in (k // 2); so does minicnn.
    * 'nearest-exact': ⌊(k + 0.5) · scale⌋, clamped (pixel centres; what PIL does).
    * 'bilinear': the source coordinate is
      ``align_corners=True``:  k · (in - 1)/(out - 1)  (corner pixels map to corners);
      ``align_corners=False``: (k + 0.5) · scale - 0.5, clamped at 0 (pixel centres).
      It lies between i0 = ⌊src⌋ and i1 = min(i0 + 1, in - 1); with λ = src - i0 the
      output is (1 - λ) x[i0] + λ x[i1], in each of H and W. Index arithmetic is done in
      the input's precision, as torch does. A dimension whose size does not change is
      copied, whatever the scale factor (torch's behaviour).

    Gradient: the adjoint of those reads (see the module docstring).
    Only 4-D input and these three modes; ``antialias`` must be False.
    """
    x = float_input("interpolate", input)
    if mode not in _MODES:
        raise ValueError(f"interpolate: mode must be one of {_MODES} (minicnn implements "
                         f"these), got {mode!r}")
    if x.ndim != 4:
        raise ValueError(f"interpolate: expected a 4-D input (N, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    if mode != "bilinear" and align_corners is not None:
        raise ValueError("interpolate: align_corners option can only be set with the "
                         "interpolating modes (bilinear here), not with mode "
                         f"{mode!r}")
    align_corners = bool(align_corners)
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not implemented")
    in_sizes = tuple(x.shape[2:])
    out_sizes, scales = _output_sizes(in_sizes, size, scale_factor, recompute_scale_factor)
    if mode == "bilinear":
        # torch computes the source positions in the input's float type
        rnd = _to_float32 if x.dtype.itemsize <= 4 else float
        reads = [_linear_reads(n, o, s, align_corners, rnd)
                 for n, o, s in zip(in_sizes, out_sizes, scales)]
        return Bilinear(reads)(x)
    exact = mode == "nearest-exact"
    reads = [_nearest_reads(n, o, s, exact) for n, o, s in zip(in_sizes, out_sizes, scales)]
    return Nearest(reads)(x)


class Nearest(Function):
    """Nearest-neighbour resampling: a gather along H, then along W."""

    def __init__(self, reads):
        self.reads = reads                  # per spatial dim: list of source positions

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.in_shape = x.shape
        for axis, index in zip((2, 3), self.reads):
            x = take(xp, x, index, axis)
        return x                                                    # (N, C, OH, OW)

    def backward(self, g):
        xp = backend.get_array_module(g)
        g = take_backward(xp, g, self.reads[1], self.in_shape[3], 3)    # (N, C, OH, W)
        return take_backward(xp, g, self.reads[0], self.in_shape[2], 2)  # (N, C, H, W)


class Bilinear(Function):
    """Linear interpolation along H, then along W."""

    def __init__(self, reads):
        self.reads = reads                  # per spatial dim: (i0 list, i1 list, λ list)

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.in_shape = x.shape
        for axis, (i0, i1, lam) in zip((2, 3), self.reads):
            w1 = _along(xp, lam, axis, x.dtype)
            x = take(xp, x, i0, axis) * (1 - w1) + take(xp, x, i1, axis) * w1
        return x                                                    # (N, C, OH, OW)

    def backward(self, g):
        xp = backend.get_array_module(g)
        for axis in (3, 2):
            i0, i1, lam = self.reads[axis - 2]
            w1 = _along(xp, lam, axis, g.dtype)
            g_i0 = take_backward(xp, g * (1 - w1), i0, self.in_shape[axis], axis)
            g = take_backward(xp, g * w1, i1, self.in_shape[axis], axis, out=g_i0)
        return g                                                    # (N, C, H, W)


def center_crop(input, size):
    """The centre (h, w) of the last two dimensions, as torchvision's
    ``transforms.functional.center_crop`` (no torch.nn.functional twin).

    ``size`` is an int, (s,) or (h, w). The crop starts at
    top = int(round((H - h) / 2)), left = int(round((W - w) / 2)) — Python's round, which
    rounds halves to even: H - h = 3 starts at 2, H - h = 5 also at 2. Where the crop is
    larger than the image, torchvision pads with zeros, (h - H) // 2 before and
    (h - H + 1) // 2 after; so does this. U-Net uses it to crop a skip connection to the
    size of the upsampled path.

    Gradient: the upstream gradient placed back in the cropped region, 0 elsewhere.
    """
    x = as_tensor(input)
    if x.ndim < 2:
        raise ValueError(f"center_crop: expected an input of at least 2 dimensions "
                         f"(..., H, W), got shape {tuple(x.shape)}")
    if isinstance(size, numbers.Number):
        size = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 1:
        size = (size[0], size[0])
    if not isinstance(size, (tuple, list)) or len(size) != 2 or \
            any(not isinstance(s, numbers.Integral) or s <= 0 for s in size):
        raise ValueError(f"center_crop: size must be a positive int or a pair (h, w) of "
                         f"them, got {size!r}")
    widths = [(0, 0)] * (x.ndim - 2)
    for n, crop in zip(x.shape[-2:], size):
        if crop > n:
            widths.append(((crop - n) // 2, (crop - n + 1) // 2))
        else:
            start = int(round((n - crop) / 2.0))
            widths.append((-start, -(n - crop - start)))    # negative padding crops
    return ConstantPad(tuple(widths), 0.0)(x)


def pixel_shuffle(input, upscale_factor):
    """(*, C·r², H, W) -> (*, C, H·r, W·r), as ``torch.nn.functional.pixel_shuffle``
    (Shi et al. 2016, sub-pixel convolution): out[c, h·r + i, w·r + j] =
    in[c·r² + i·r + j, h, w]. A pure rearrangement; its gradient is pixel_unshuffle of
    the upstream gradient.
    """
    x = as_tensor(input)
    r = positive_int("pixel_shuffle", "upscale_factor", upscale_factor)
    if x.ndim < 3:
        raise ValueError(f"pixel_shuffle: expected an input of at least 3 dimensions "
                         f"(*, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[-3] % (r * r):
        raise ValueError(f"pixel_shuffle: the number of input channels ({x.shape[-3]}) "
                         f"must be divisible by upscale_factor² = {r * r}")
    return PixelShuffle(r, inverse=False)(x)


class PixelShuffle(Function):
    def __init__(self, factor, inverse):
        self.factor, self.inverse = factor, inverse

    def forward(self, x):
        return _unshuffle(x, self.factor) if self.inverse else _shuffle(x, self.factor)

    def backward(self, g):
        return _shuffle(g, self.factor) if self.inverse else _unshuffle(g, self.factor)


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H·r, W·r) -> (*, C·r², H, W), as ``torch.nn.functional.pixel_unshuffle``,
    the inverse of pixel_shuffle; its gradient is pixel_shuffle of the upstream gradient.
    """
    x = as_tensor(input)
    r = positive_int("pixel_unshuffle", "downscale_factor", downscale_factor)
    if x.ndim < 3:
        raise ValueError(f"pixel_unshuffle: expected an input of at least 3 dimensions "
                         f"(*, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[-2] % r or x.shape[-1] % r:
        raise ValueError(f"pixel_unshuffle: height {x.shape[-2]} and width {x.shape[-1]} "
                         f"must both be divisible by downscale_factor = {r}")
    return PixelShuffle(r, inverse=True)(x)


# ------------------------------------------------------------------------ helpers

def _shuffle(a, r):
    *lead, c, h, w = a.shape
    k = len(lead)
    a = a.reshape(*lead, c // (r * r), r, r, h, w)                 # (*, C, r, r, H, W)
    a = a.transpose(*range(k), k, k + 3, k + 1, k + 4, k + 2)      # (*, C, H, r, W, r)
    return a.reshape(*lead, c // (r * r), h * r, w * r)


def _unshuffle(a, r):
    *lead, c, h, w = a.shape
    k = len(lead)
    a = a.reshape(*lead, c, h // r, r, w // r, r)                  # (*, C, H, r, W, r)
    a = a.transpose(*range(k), k, k + 2, k + 4, k + 1, k + 3)      # (*, C, r, r, H, W)
    return a.reshape(*lead, c * r * r, h // r, w // r)


def _output_sizes(in_sizes, size, scale_factor, recompute):
    """(OH, OW) and the scales (1/scale_factor, or None to use in/out) torch would use."""
    if size is not None and scale_factor is not None:
        raise ValueError("interpolate: only one of size or scale_factor should be defined")
    if size is None and scale_factor is None:
        raise ValueError("interpolate: either size or scale_factor should be defined")
    if size is not None:
        if recompute:
            raise ValueError("interpolate: recompute_scale_factor is not meaningful with "
                             "an explicit size")
        sizes = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if len(sizes) != 2 or any(not isinstance(s, numbers.Integral) or isinstance(s, bool)
                                  for s in sizes):
            raise ValueError(f"interpolate: size must be an int or a pair of ints (OH, OW) "
                             f"for a 4-D input, got {size!r}")
        out = tuple(int(s) for s in sizes)
        scales = (None, None)
    else:
        factors = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else \
            (scale_factor, scale_factor)
        if len(factors) != 2 or any(not isinstance(f, numbers.Real) or not f > 0
                                    for f in factors):
            raise ValueError(f"interpolate: scale_factor must be a positive number or a pair "
                             f"of them, got {scale_factor!r}")
        out = tuple(math.floor(n * float(f)) for n, f in zip(in_sizes, factors))
        # NOTE: unless recomputed, torch maps positions with 1/scale_factor, not in/out
        scales = (None, None) if recompute else tuple(float(f) for f in factors)
    if any(o <= 0 for o in out):
        raise ValueError(f"interpolate: output size {out} must be positive (input spatial "
                         f"size {in_sizes}, size={size!r}, scale_factor={scale_factor!r})")
    return out, scales


def _to_float32(v):
    """Round a Python float to the nearest float32 (to replay torch's float arithmetic)."""
    return struct.unpack("f", struct.pack("f", v))[0]


def _nearest_reads(n_in, n_out, scale_factor, exact):
    """Source index of each output position along one dimension (torch's float32 rule)."""
    if scale_factor is not None:
        scale = _to_float32(1.0 / scale_factor)
    else:
        scale = _to_float32(_to_float32(float(n_in)) / n_out)
    if exact:
        # (k + 0.5) is a double in torch, times a float scale, rounded back to float
        return [min(math.floor(_to_float32((k + 0.5) * scale)), n_in - 1)
                for k in range(n_out)]
    if n_out == n_in:
        return list(range(n_out))
    if n_out == 2 * n_in:
        return [k // 2 for k in range(n_out)]
    return [min(math.floor(_to_float32(_to_float32(float(k)) * scale)), n_in - 1)
            for k in range(n_out)]


def _linear_reads(n_in, n_out, scale_factor, align_corners, rnd):
    """Lists i0, i1, λ for linear interpolation along one dimension; ``rnd`` rounds each
    intermediate to the input's float precision."""
    if n_out == n_in:
        # NOTE: torch copies a dimension whose size does not change, even when a
        # scale_factor such as 1.1 (6 -> 6) would otherwise shift the samples
        return list(range(n_in)), list(range(n_in)), [0.0] * n_in
    if align_corners:
        scale = rnd((n_in - 1) / (n_out - 1)) if n_out > 1 else 0.0
    elif scale_factor is not None:
        scale = rnd(1.0 / scale_factor)
    else:
        scale = rnd(rnd(float(n_in)) / n_out)
    i0s, i1s, lams = [], [], []
    for k in range(n_out):
        if align_corners:
            src = rnd(scale * k)
        else:
            src = max(rnd(rnd(scale * rnd(k + 0.5)) - 0.5), 0.0)
        i0 = min(math.floor(src), n_in - 1)
        lam = min(max(rnd(src - i0), 0.0), 1.0)
        i0s.append(i0)
        i1s.append(min(i0 + 1, n_in - 1))
        lams.append(lam)
    return i0s, i1s, lams


def _along(xp, values, axis, dtype):
    """A 1-D list as an array shaped to broadcast along ``axis`` of a 4-D array."""
    shape = [1, 1, 1, 1]
    shape[axis] = len(values)
    return xp.asarray(values, dtype=dtype).reshape(shape)
