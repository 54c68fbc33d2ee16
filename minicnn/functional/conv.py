"""Convolution: conv2d and conv_transpose2d, each an im2col/col2im plus a matrix multiply.

Notation: N batch, C input channels, O output channels, G groups, H×W input, KH×KW
kernel, SH×SW stride, PH×PW padding, DH×DW dilation, OH×OW output. The two ops are each
other's adjoint, and their backward passes say so (g = dL/dy, the upstream gradient):

=================  ===============================  ====================================
                   conv2d                           conv_transpose2d
=================  ===============================  ====================================
forward            im2col(x), then weight @ cols    weightᵀ @ x, then col2im
grad of input      weightᵀ @ g, then col2im         im2col(g), then weight @ cols
                   (a transposed convolution)       (a convolution)
grad of weight     g @ colsᵀ, summed over N         x @ im2col(g)ᵀ, summed over N
grad of bias       Σ g over N, OH, OW               Σ g over N, OH, OW
=================  ===============================  ====================================

The column layout is (N, C, KH, KW, OH, OW); see ``kernels/im2col.py`` for the index
arithmetic and why that layout needs no transposes.

On the CPU, float32/float64 NumPy arrays take a compiled fast path
(``kernels/numba_conv.py``, chosen by ``kernels/dispatch.py``; ``MINICNN_KERNELS=reference``
turns it off). It computes the same formulas tile by tile, so the column matrix is never
held in full: conv2d saves the input instead and rebuilds the columns in backward. conv_transpose2d, being conv2d's input gradient, runs through the
same tiles: its forward pass is ``numba_conv.conv2d_backward``'s dL/dx, its backward
conv2d's forward pass (dL/dx) and weight gradient (dL/dw) with the roles swapped.

Algorithms. A 3x3 stride-1 conv2d (dilation 1, groups 1) can also run by Winograd's
F(2x2, 3x3) or F(4x4, 3x3) (``kernels/winograd.py``: fewer multiplications, slightly
larger float32 rounding error), for its forward pass and both gradients. Which one
runs:

* ``conv2d(..., conv_algorithm="winograd")`` for one call, or ``with
  minicnn.conv_algorithm("winograd"):`` (also ``set_conv_algorithm``) for a block;
  the names are ``CONV_ALGORITHMS``: ``"auto"`` (default), ``"im2col"``, ``"winograd"``
  (F(4x4) or F(2x2), whichever multiplies less for the output size:
  ``kernels.winograd.choose_tile``), ``"winograd_2x2"``, ``"winograd_4x4"``.
  Forcing Winograd on a convolution it cannot do is an error, except in a block opened
  with ``strict=False``, where such layers keep im2col (to run a whole model so).
* ``"auto"`` applies :func:`auto_algorithm`'s stated rule.
"""
from __future__ import annotations

import contextlib

from kernels import cuda_conv, dispatch, numba_conv, numba_winograd, winograd
from kernels.im2col import (col2im, conv_output_size, conv_transpose_output_size,
                            im2col)

from ..autograd import Function, as_tensor
from ._checks import check_float, pair, positive_int
from .padding import pad as _pad
from .shape import squeeze, unsqueeze

__all__ = ["conv2d", "conv_transpose2d", "CONV_ALGORITHMS", "conv_algorithm",
           "get_conv_algorithm", "set_conv_algorithm", "auto_algorithm"]

CONV_ALGORITHMS = ("auto", "im2col", "winograd", "winograd_2x2", "winograd_4x4")
_algorithm = "auto"        # what conv2d uses when its call names none
_strict = True             # False: a forced Winograd falls back where it cannot run


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           conv_algorithm=None):
    """2-D cross-correlation (what deep learning calls convolution), as
    ``torch.nn.functional.conv2d``::

        y[n, o, i, j] = bias[o] + Σ_{c, kh, kw} weight[o, c, kh, kw]
                                  · x_pad[n, g·C/G + c, i·SH + kh·DH, j·SW + kw·DW]

    with g = o // (O/G) the group of output channel o; c runs over the C/G input
    channels of that group.

    Args: ``stride``, ``dilation``: int or (h, w) pair, >= 1. ``padding``: int or (h, w)
    pair of zeros added on both sides, or ``"valid"`` (no padding) or ``"same"``
    (output as large as the input; stride must be 1; the total DH·(KH-1) is split with
    the odd extra row/column at the bottom/right, as torch does). ``groups``: input and
    output channels are split into G groups, each convolved separately (G = C is a
    depthwise convolution). ``conv_algorithm`` (minicnn only, keyword): one of
    ``CONV_ALGORITHMS`` for this call; None follows :func:`conv_algorithm` (see the
    module docstring).

    Shape:
        input (N, C, H, W) or unbatched (C, H, W); weight (O, C/G, KH, KW); bias (O,);
        output (N, O, OH, OW) (or (O, OH, OW)) with
        OH = floor((H + 2·PH - DH·(KH-1) - 1) / SH) + 1, likewise OW.

    Forward (per group): cols = im2col(x) as (C/G·KH·KW, OH·OW) per image,
    y = weight @ cols, with weight as an (O/G, C/G·KH·KW) matrix.
    Backward (``Conv2d.backward``), with g = dL/dy:
        dL/dx      = col2im(weightᵀ @ g)      (a transposed convolution of g)
        dL/dweight = Σ_n g_n @ cols_nᵀ
        dL/dbias   = Σ_{n, i, j} g[n, :, i, j]
    """
    x, w = as_tensor(input), as_tensor(weight)
    unbatched = _check_input("conv2d", x, w)
    N, C, H, W = (1,) + tuple(x.shape) if unbatched else x.shape
    O, Cg, KH, KW = w.shape
    groups = positive_int("conv2d", "groups", groups)
    if Cg * groups != C:
        raise ValueError(f"conv2d: weight of shape {tuple(w.shape)} has {Cg} input channels "
                         f"per group, so with groups={groups} the input needs {Cg * groups} "
                         f"channels, but input of shape {tuple(x.shape)} has {C}")
    if O % groups:
        raise ValueError(f"conv2d: out_channels ({O}, weight shape {tuple(w.shape)}) must be "
                         f"divisible by groups ({groups})")
    _check_bias("conv2d", bias, O, x)
    stride = pair("conv2d", "stride", stride, minimum=1)
    dilation = pair("conv2d", "dilation", dilation, minimum=1)
    extra = (0, 0)     # bottom/right padding beyond the symmetric part ('same' only)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"conv2d: padding='same' is not supported for strided "
                                 f"convolutions (stride={stride})")
            # total padding DH·(KH-1) keeps OH = H at stride 1; torch puts the odd one
            # at the end
            total = (dilation[0] * (KH - 1), dilation[1] * (KW - 1))
            padding = (total[0] // 2, total[1] // 2)
            extra = (total[0] % 2, total[1] % 2)
        else:
            raise ValueError(f"conv2d: padding must be an int, a pair of ints, 'valid' or "
                             f"'same', got {padding!r}")
    else:
        padding = pair("conv2d", "padding", padding, minimum=0)
    Hp, Wp = H + 2 * padding[0] + extra[0], W + 2 * padding[1] + extra[1]
    OH = conv_output_size(H + extra[0], KH, stride[0], padding[0], dilation[0])
    OW = conv_output_size(W + extra[1], KW, stride[1], padding[1], dilation[1])
    if OH <= 0 or OW <= 0:
        raise ValueError(f"conv2d: kernel {KH}x{KW} with dilation {dilation} spans "
                         f"{dilation[0] * (KH - 1) + 1}x{dilation[1] * (KW - 1) + 1}, larger "
                         f"than the padded input {Hp}x{Wp} (input {tuple(x.shape)}, padding "
                         f"{padding}); the output size would be {OH}x{OW}")
    algorithm = _choose_algorithm(conv_algorithm, (N, C, H + extra[0], W + extra[1]),
                                  tuple(w.shape), stride, dilation, groups, padding)
    if unbatched:
        x = unsqueeze(x, 0)
    if extra != (0, 0):
        x = _pad(x, (0, extra[1], 0, extra[0]))
    out = Conv2d(stride, padding, dilation, groups, algorithm)(x, w, bias)
    return squeeze(out, 0) if unbatched else out


@contextlib.contextmanager
def conv_algorithm(name, strict=True):
    """``with minicnn.conv_algorithm("winograd"):`` runs every conv2d in the block (that
    names no ``conv_algorithm`` itself) with that algorithm, one of ``CONV_ALGORITHMS``.
    ``strict=False``: layers Winograd cannot do (not 3x3, strided, dilated, grouped)
    keep im2col instead of raising, so a whole model can run so."""
    previous = set_conv_algorithm(name, strict)
    try:
        yield
    finally:
        set_conv_algorithm(*previous)


def get_conv_algorithm():
    """The algorithm conv2d uses when a call names none (``"auto"`` unless changed)."""
    return _algorithm


def set_conv_algorithm(name, strict=True):
    """Set the algorithm for later conv2d calls (see :func:`conv_algorithm`); returns the
    previous (name, strict)."""
    global _algorithm, _strict
    _check_algorithm("set_conv_algorithm", name)
    previous = (_algorithm, _strict)
    _algorithm, _strict = name, bool(strict)
    return previous


#: the auto rule's limits (see auto_algorithm)
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_TILES = 32


def auto_algorithm(x_shape, w_shape, stride, dilation, groups, padding=(1, 1)):
    """The algorithm ``"auto"`` picks for a conv2d, as ``(name, m)``: ``("im2col", None)``
    or ``("winograd", 4)`` (F(4x4, 3x3)). ``x_shape`` is (N, C, H, W); ``padding`` the
    (PH, PW) pair (default 1, the usual 3x3 "same" padding).

    The rule: F(4x4, 3x3) for a 3x3, stride-1, dilation-1, groups-1 convolution when

    * it has at least WINOGRAD_MIN_CHANNELS (64) input and output channels: the
      α² GEMMs carry the work; with fewer, the transforms (memory-bound) dominate;
    * its GEMMs have at least WINOGRAD_MIN_TILES (32) rows, P = N·⌈OH/4⌉·⌈OW/4⌉
      tiles: thinner GEMMs (a 14x14 map at batch 1: 16 tiles) run far below BLAS's peak;

    else im2col. Only on the CPU fast path (float32/float64 NumPy arrays): the portable
    reference and the GPU keep im2col (``Conv2d.forward`` checks). Numbers: F(4x4) rounds
    float32 a little more than im2col (kernels/winograd.py: about 1e-5 relative against
    6e-7); float64 stays near 1e-15. Force either with ``conv_algorithm=``.

    Measured, forward + backward (fwd only at batch 1), ms, best of 7 alternating runs,
    float32, the 2-core machine otherwise quiet, im2col / F(2x2) / F(4x4) ("W" marks the
    rule's choice of Winograd)::

        N32 C64  32x32   44.5 / 52.5 / 38.8 W      N1 C64  224x224   24.6 / 27.5 / 21.6 W
        N32 C128 16x16   40.8 / 30.9 / 20.1 W      N1 C128 112x112   18.5 / 17.4 / 11.7 W
        N32 C256 8x8     37.2 / 23.4 / 16.5 W      N1 C256 56x56     16.5 / 10.8 /  7.2 W
        N32 C512 4x4     43.6 / 34.6 / 36.7 W      N1 C512 28x28     16.2 / 13.0 / 13.3 W
        N32 C64  16x16   11.6 /  9.6 /  6.5 W      N1 C512 14x14      4.7 /  7.1 /  9.5

    Per pass (ms, im2col / F(4x4)), the weight gradient gains least and at C512 4x4 not at
    all: N32 C256 8x8 forward 11.7 / 5.7, dL/dx 12.0 / 5.4, dL/dw 11.6 / 7.0; N32 C512
    4x4 forward 11.6 / 11.0, dL/dx 13.3 / 8.7, dL/dw 12.1 / 15.6. (``minicnn bench
    --compare-algorithms`` measures the shapes of the suite again on your machine.)
    """
    for name, shape in (("x_shape", x_shape), ("w_shape", w_shape)):
        if len(tuple(shape)) != 4:
            raise ValueError(f"auto_algorithm: {name} must have 4 sizes ((N, C, H, W) for "
                             f"x_shape, (O, C/G, KH, KW) for w_shape), got {tuple(shape)}")
    N, C, H, W = x_shape
    O = w_shape[0]
    if winograd.unsupported(w_shape, stride, dilation, groups) is not None:
        return ("im2col", None)
    OH = conv_output_size(H, 3, 1, padding[0])
    OW = conv_output_size(W, 3, 1, padding[1])
    tiles = N * (-(-OH // 4)) * (-(-OW // 4))
    if min(C, O) >= WINOGRAD_MIN_CHANNELS and tiles >= WINOGRAD_MIN_TILES:
        return ("winograd", 4)
    return ("im2col", None)


class Conv2d(Function):
    """conv2d on raw arrays: x (N, C, H, W), w (O, C/G, KH, KW), b (O,) or None."""

    def __init__(self, stride, padding, dilation, groups, algorithm=("im2col", None)):
        self.stride, self.padding, self.dilation, self.groups = (stride, padding, dilation,
                                                                 groups)
        # ("im2col", None), ("winograd", m) or ("auto-winograd", m): chosen by conv2d
        # (_choose_algorithm)
        self.algorithm = algorithm

    def _kernel_args(self):
        (SH, SW), (PH, PW), (DH, DW) = self.stride, self.padding, self.dilation
        return dict(SH=SH, SW=SW, PH=PH, PW=PW, DH=DH, DW=DW)

    def forward(self, x, w, b):
        self.x_shape, self.w_shape = x.shape, w.shape
        self.fast = dispatch.use_fast(x, w, b)
        if self.algorithm[0] == "auto-winograd":
            # the auto rule's choice holds on the CPU fast path, where it was measured
            self.algorithm = ("winograd", self.algorithm[1]) if self.fast else ("im2col",
                                                                                None)
        if self.algorithm[0] == "winograd":
            return self._winograd_forward(x, w, b)
        if self.fast:
            # the same formulas, tile by tile: the column matrix is never held in full,
            # so keep the input (nine times smaller for a 3x3 kernel) and let backward
            # rebuild its columns (or keep them: numba_conv.KEEP_COLUMNS)
            self.x_saved = x if self.needs_input_grad[1] else None    # dL/dw needs x
            self.w_saved = w if self.needs_input_grad[0] else None    # dL/dx needs w
            out, self.columns = numba_conv.conv2d_forward(
                x, w, b, self.stride, self.padding, self.dilation, self.groups,
                keep_columns=self.needs_input_grad[1])
            return out
        N, C, H, W = x.shape
        O, Cg, KH, KW = w.shape
        G = self.groups
        if dispatch.use_cuda(x):
            cols = cuda_conv.im2col(x, KH, KW, **self._kernel_args())
        else:
            cols = im2col(x, KH, KW, **self._kernel_args())   # (N, C, KH, KW, OH, OW)
        OH, OW = cols.shape[-2:]
        cols = cols.reshape(N, G, Cg * KH * KW, OH * OW)
        w_mat = w.reshape(G, O // G, Cg * KH * KW)
        # (G, O/G, Cg·KH·KW) @ (N, G, Cg·KH·KW, OH·OW) -> (N, G, O/G, OH·OW): one GEMM
        # per image and group, and its memory order already is (N, O, OH, OW)
        out = (w_mat @ cols).reshape(N, O, OH, OW)
        if b is not None:
            out += b.reshape(1, O, 1, 1)
        # save only what a wanted gradient needs: dx needs w, dw needs the columns
        self.w_mat = w_mat if self.needs_input_grad[0] else None
        self.cols = cols if self.needs_input_grad[1] else None
        return out

    def backward(self, g):
        if self.algorithm[0] == "winograd":
            return self._winograd_backward(g)
        if self.fast:
            return numba_conv.conv2d_backward(
                g, self.x_saved, self.w_saved, self.x_shape, self.w_shape, self.stride,
                self.padding, self.dilation, self.groups, *self.needs_input_grad,
                columns=self.columns)
        N, O, OH, OW = g.shape
        G = self.groups
        C = self.x_shape[1]
        _, Cg, KH, KW = self.w_shape
        g_mat = g.reshape(N, G, O // G, OH * OW)
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            # dL/dcols = weightᵀ @ g: (G, Cg·KH·KW, O/G) @ (N, G, O/G, OH·OW)
            gcols = self.w_mat.swapaxes(-1, -2) @ g_mat
            gcols = gcols.reshape(N, C, KH, KW, OH, OW)
            if dispatch.use_cuda(gcols):
                gx = cuda_conv.col2im(gcols, self.x_shape, **self._kernel_args())
            else:
                gx = col2im(gcols, self.x_shape, **self._kernel_args())
        if self.needs_input_grad[1]:
            # dL/dweight = Σ_n g_n @ cols_nᵀ: (N, G, O/G, OH·OW) @ (N, G, OH·OW, Cg·KH·KW)
            gw = (g_mat @ self.cols.swapaxes(-1, -2)).sum(axis=0).reshape(self.w_shape)
        if self.needs_input_grad[2]:
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb

    # Winograd (3x3, stride 1, dilation 1, groups 1): forward, dL/dx and dL/dw by
    # kernels/winograd.py (or its compiled twin), each with its own tile size unless one
    # was forced
    def _winograd_forward(self, x, w, b):
        m = self.algorithm[1]
        self.x_saved = x if self.needs_input_grad[1] else None     # dL/dw needs x
        self.w_saved = w if self.needs_input_grad[0] else None     # dL/dx needs w
        if self.fast:
            return numba_winograd.conv2d_forward(x, w, b, self.padding, m)
        return winograd.conv2d_forward(x, w, b, self.padding, m)

    def _winograd_backward(self, g):
        need_x, need_w, need_b = self.needs_input_grad
        m = self.algorithm[1]
        kernel = numba_winograd if self.fast else winograd
        gx = gw = gb = None
        if need_x:
            # a 3x3 stride-1 convolution of g (see winograd.conv2d_input_grad)
            gx = kernel.conv2d_input_grad(g, self.w_saved, self.x_shape, self.padding, m)
        if need_w:
            gw = kernel.conv2d_weight_grad(self.x_saved, g, self.padding, m)
        if need_b:
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """2-D transposed convolution ("deconvolution"), as
    ``torch.nn.functional.conv_transpose2d``: the gradient of :func:`conv2d` with
    respect to its input, used as a forward pass. Each input pixel scatters a copy of
    the kernel, scaled by its value, into the output at stride (SH, SW)::

        y[n, g·O/G + o, i·SH + kh·DH - PH, j·SW + kw·DW - PW]
            += Σ_c x[n, g·C/G + c, i, j] · weight[g·C/G + c, o, kh, kw]   (then + bias)

    ``padding`` crops PH rows/PW columns from each side of that result;
    ``output_padding`` (< stride or < dilation, per axis) adds rows/columns at the
    bottom/right only, to pick among the output sizes a strided conv2d maps to H×W.

    Shape:
        input (N, C, H, W) or unbatched (C, H, W); weight (C, O/G, KH, KW) (note: input
        channels first); bias (O,); output (N, O, OH, OW) with
        OH = (H - 1)·SH - 2·PH + DH·(KH-1) + output_padding + 1, likewise OW.

    Forward (per group): cols = weightᵀ @ x as (O/G·KH·KW, H·W) per image, with weight
    as a (C/G, O/G·KH·KW) matrix; y = col2im(cols).
    Backward (``ConvTranspose2d.backward``), with g = dL/dy and gcols = im2col(g):
        dL/dx      = weight @ gcols           (a convolution of g)
        dL/dweight = Σ_n x_n @ gcols_nᵀ
        dL/dbias   = Σ_{n, i, j} g[n, :, i, j]
    """
    op = "conv_transpose2d"
    x, w = as_tensor(input), as_tensor(weight)
    unbatched = _check_input(op, x, w)
    C = x.shape[-3]
    Cw, Og, KH, KW = w.shape
    groups = positive_int(op, "groups", groups)
    if Cw != C:
        raise ValueError(f"{op}: weight of shape {tuple(w.shape)} (in_channels, "
                         f"out_channels/groups, KH, KW) expects {Cw} input channels, but "
                         f"input of shape {tuple(x.shape)} has {C} (groups={groups})")
    if C % groups:
        raise ValueError(f"{op}: in_channels ({C}) must be divisible by groups ({groups})")
    _check_bias(op, bias, Og * groups, x)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a pair of ints (string padding "
                         f"such as {padding!r} is only for conv2d), got {padding!r}")
    stride = pair(op, "stride", stride, minimum=1)
    padding = pair(op, "padding", padding, minimum=0)
    dilation = pair(op, "dilation", dilation, minimum=1)
    output_padding = pair(op, "output_padding", output_padding, minimum=0)
    for d in range(2):
        if output_padding[d] >= max(stride[d], dilation[d]):
            raise ValueError(f"{op}: output_padding {output_padding} must be smaller than "
                             f"either stride {stride} or dilation {dilation} (per axis)")
    H, W = x.shape[-2:]
    OH = conv_transpose_output_size(H, KH, stride[0], padding[0], dilation[0],
                                    output_padding[0])
    OW = conv_transpose_output_size(W, KW, stride[1], padding[1], dilation[1],
                                    output_padding[1])
    if OH <= 0 or OW <= 0:
        raise ValueError(f"{op}: padding {padding} crops more than the uncropped output "
                         f"(input {tuple(x.shape)}, kernel {KH}x{KW}, stride {stride}); "
                         f"the output size would be {OH}x{OW}")
    if unbatched:
        x = unsqueeze(x, 0)
    out = ConvTranspose2d(stride, padding, output_padding, dilation, groups, (OH, OW))(
        x, w, bias)
    return squeeze(out, 0) if unbatched else out


class ConvTranspose2d(Function):
    """conv_transpose2d on raw arrays: x (N, C, H, W), w (C, O/G, KH, KW), b (O,) or None;
    ``out_size`` is the (OH, OW) the public function computed."""

    def __init__(self, stride, padding, output_padding, dilation, groups, out_size):
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.output_padding, self.groups, self.out_size = output_padding, groups, out_size

    def _kernel_args(self):
        (SH, SW), (PH, PW), (DH, DW) = self.stride, self.padding, self.dilation
        return dict(SH=SH, SW=SW, PH=PH, PW=PW, DH=DH, DW=DW)

    def forward(self, x, w, b):
        self.fast = dispatch.use_fast(x, w, b)
        N, C, H, W = x.shape
        _, Og, KH, KW = w.shape
        G = self.groups
        O = Og * G
        out_shape = (N, O) + tuple(self.out_size)
        self.w_shape = w.shape
        self.tiled = self.fast and self._is_conv2d_adjoint(H, W, KH, KW)
        if self.tiled:
            # conv2d's input gradient, tile by tile (kernels/numba_conv.py); backward is
            # conv2d's forward pass and weight gradient with the roles swapped
            self.x_saved = x if self.needs_input_grad[1] else None    # dL/dw needs x
            self.w_saved = w if self.needs_input_grad[0] else None    # dL/dx needs w
            out = numba_conv.conv2d_backward(x, None, w, out_shape, w.shape, self.stride,
                                             self.padding, self.dilation, G,
                                             True, False, False)[0]
            if b is not None:
                out += b.reshape(1, O, 1, 1)
            return out
        # the fast path here is the column kernel alone (compiled im2col/col2im)
        w_mat = w.reshape(G, C // G, Og * KH * KW)
        x_mat = x.reshape(N, G, C // G, H * W)
        # (G, Og·KH·KW, C/G) @ (N, G, C/G, H·W) -> (N, G, Og·KH·KW, H·W): the columns of
        # the output image, one per input pixel
        cols = (w_mat.swapaxes(-1, -2) @ x_mat).reshape(N, O, KH, KW, H, W)
        if self.fast:
            out = numba_conv.col2im(cols, out_shape, **self._kernel_args())
        elif dispatch.use_cuda(cols):
            out = cuda_conv.col2im(cols, out_shape, **self._kernel_args())
        else:
            out = col2im(cols, out_shape, **self._kernel_args())
        if b is not None:
            out += b.reshape(1, O, 1, 1)
        self.in_hw = (H, W)
        self.w_mat = w_mat if self.needs_input_grad[0] else None
        self.x_mat = x_mat if self.needs_input_grad[1] else None
        return out

    def _is_conv2d_adjoint(self, H, W, KH, KW):
        """True when conv2d with the same stride, padding and dilation maps the output
        size back to exactly H x W (always, unless output_padding >= stride, which a
        larger dilation allows): then this op is that conv2d's input gradient."""
        OH, OW = self.out_size
        (SH, SW), (PH, PW), (DH, DW) = self.stride, self.padding, self.dilation
        return (conv_output_size(OH, KH, SH, PH, DH) == H
                and conv_output_size(OW, KW, SW, PW, DW) == W)

    def backward(self, g):
        if self.tiled:
            need_x, need_w, need_b = self.needs_input_grad
            args = (self.stride, self.padding, self.dilation, self.groups)
            # dL/dx: conv2d of g with the same weight; dL/dw: conv2d's weight gradient
            # with g as its input and x as its output gradient
            gx = (numba_conv.conv2d_forward(g, self.w_saved, None, *args)[0]
                  if need_x else None)
            gw = (numba_conv.conv2d_backward(self.x_saved, g, None, g.shape, self.w_shape,
                                             *args, False, True, False)[1]
                  if need_w else None)
            return gx, gw, g.sum(axis=(0, 2, 3)) if need_b else None
        N, O = g.shape[:2]
        C, Og, KH, KW = self.w_shape
        G = self.groups
        H, W = self.in_hw
        gx = gw = gb = None
        if self.needs_input_grad[0] or self.needs_input_grad[1]:
            # NOTE: out_size: with output_padding >= stride (allowed when dilation is
            # larger) the window fits more than H positions in g; only the first H are
            # the ones forward scattered to.
            if self.fast:
                gcols = numba_conv.im2col(g, KH, KW, out_size=self.in_hw,
                                           **self._kernel_args())
            elif dispatch.use_cuda(g):
                gcols = cuda_conv.im2col(g, KH, KW, out_size=self.in_hw, **self._kernel_args())
            else:
                gcols = im2col(g, KH, KW, out_size=self.in_hw, **self._kernel_args())
            gcols = gcols.reshape(N, G, Og * KH * KW, H * W)
            if self.needs_input_grad[0]:
                # (G, C/G, Og·KH·KW) @ (N, G, Og·KH·KW, H·W) -> (N, G, C/G, H·W)
                gx = (self.w_mat @ gcols).reshape(N, C, H, W)
            if self.needs_input_grad[1]:
                # Σ_n x_n @ gcols_nᵀ: (N, G, C/G, H·W) @ (N, G, H·W, Og·KH·KW)
                gw = (self.x_mat @ gcols.swapaxes(-1, -2)).sum(axis=0).reshape(self.w_shape)
        if self.needs_input_grad[2]:
            gb = g.sum(axis=(0, 2, 3))
        return gx, gw, gb


# ------------------------------------------------------------------------ helpers

def _check_algorithm(op, name):
    if name not in CONV_ALGORITHMS:
        raise ValueError(f"{op}: conv_algorithm must be one of "
                         f"{', '.join(map(repr, CONV_ALGORITHMS))}, got {name!r}")


def _choose_algorithm(requested, x_shape, w_shape, stride, dilation, groups, padding):
    """("im2col", None) or ("winograd", m) for this conv2d: the call's
    ``conv_algorithm``, else the block's (:func:`conv_algorithm`), else the auto rule
    (then ("auto-winograd", 4): Winograd on the CPU fast path only)."""
    strict = True
    if requested is None:
        requested, strict = _algorithm, _strict
    else:
        _check_algorithm("conv2d", requested)
    if requested == "auto":
        name, m = auto_algorithm(x_shape, w_shape, stride, dilation, groups, padding)
        return ("auto-winograd", m) if name == "winograd" else (name, m)
    if requested == "im2col":
        return ("im2col", None)
    reason = winograd.unsupported(w_shape, stride, dilation, groups)
    if reason is not None:
        if not strict:
            return ("im2col", None)
        raise ValueError(f"conv2d: conv_algorithm={requested!r} needs a 3x3 kernel, stride "
                         f"1, dilation 1 and groups=1, but this convolution has {reason} "
                         f"(weight {tuple(w_shape)}); use 'im2col' or 'auto' for it")
    if requested == "winograd":
        return ("winograd", None)           # tile size chosen per pass (choose_tile)
    return ("winograd", 2 if requested == "winograd_2x2" else 4)


def _check_input(op, x, w):
    """Validate ranks and dtypes; True when the input is unbatched (C, H, W)."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: expected a 3-D (unbatched, C×H×W) or 4-D (batched, "
                         f"N×C×H×W) input, got shape {tuple(x.shape)}")
    if w.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D weight, got shape {tuple(w.shape)}")
    if min(w.shape[2:]) < 1:
        raise ValueError(f"{op}: kernel size must be at least 1x1, weight shape is "
                         f"{tuple(w.shape)}")
    check_float(op, x)
    if x.dtype != w.dtype:
        raise TypeError(f"{op}: input dtype {x.dtype} does not match weight dtype {w.dtype}")
    if x.device != w.device:
        raise RuntimeError(f"{op}: input is on {x.device} but weight is on {w.device}")
    return x.ndim == 3


def _check_bias(op, bias, out_channels, x):
    if bias is None:
        return
    b = as_tensor(bias)
    if b.shape != (out_channels,):
        raise ValueError(f"{op}: bias must have shape ({out_channels},) (one per output "
                         f"channel), got {tuple(b.shape)}")
    if b.dtype != x.dtype:
        raise TypeError(f"{op}: bias dtype {b.dtype} does not match input dtype {x.dtype}")
