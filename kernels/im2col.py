"""im2col / col2im: turn a convolution into one matrix multiply, and back.

A 2-D convolution slides a (C, KH, KW) window over the zero-padded input. ``im2col``
copies every window into a column, so that the convolution becomes the product of the
weight matrix (C_out, C*KH*KW) with the column matrix (C*KH*KW, OH*OW) of each image.
``col2im`` is its adjoint: it adds every column entry back to the input pixel it was
copied from (pixels shared by overlapping windows receive the sum). It is what the
gradient of a convolution with respect to its input needs, and what a transposed
convolution's forward pass is.

Notation: N batch, C channels, H×W input, KH×KW kernel, SH×SW stride, PH×PW zero padding
(each side), DH×DW dilation, OH×OW output positions.

Layout (chosen by measuring; see below)::

    cols.shape == (N, C, KH, KW, OH, OW)
    cols[n, c, kh, kw, oh, ow] == x_pad[n, c, oh*SH + kh*DH, ow*SW + kw*DW]

where ``x_pad`` is ``x`` with PH zero rows above and below and PW zero columns left
and right, i.e. ``x_pad[n, c, i, j] == x[n, c, i - PH, j - PW]`` inside the image.
The array is C-contiguous, so ``cols.reshape(N, C*KH*KW, OH*OW)`` is free: one
(C*KH*KW, OH*OW) matrix per image, whose rows are ordered (c, kh, kw) like the weight's
``w.reshape(C_out, C*KH*KW)`` columns. ``w2 @ cols3`` (a batched matmul) gives
(N, C_out, OH*OW), which *is* the output (N, C_out, OH, OW) after a free reshape: no
transpose anywhere. Channels are the outermost factor of the row index, so grouped
convolution only needs another free reshape to (N, groups, C/groups*KH*KW, OH*OW).
(The alternative (C*KH*KW, N*OH*OW) layout makes one larger GEMM but needs the output
and the upstream gradient transposed between (N, C_out, ...) and (C_out, N, ...); it
measured no faster on the CPU.)

Both routines loop over the KH*KW kernel offsets only; each step moves one strided
slice of shape (N, C, OH, OW) with a single array operation, so no Python loop ever
runs over pixels. They work on NumPy and CuPy arrays alike: the array module is taken
from the array's type, and nothing here imports CuPy.
"""
import sys

import numpy

__all__ = ["conv_output_size", "conv_transpose_output_size", "im2col_output_size",
           "check_col2im_shapes", "im2col", "col2im"]


def _array_module(a):
    """numpy or cupy, from the module that defines ``type(a)`` (already imported if an
    array of that type exists, so this never imports cupy itself)."""
    root = type(a).__module__.split(".")[0]
    if root == "cupy":
        return sys.modules["cupy"]
    return numpy


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """Number of window positions along one axis (the same formula as torch)::

        OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1

    ``DH*(KH - 1) + 1`` is the extent of a dilated kernel; the result is 0 or negative
    when that extent is larger than the padded input (the caller reports the error).
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size, kernel, stride=1, padding=0, dilation=1,
                               output_padding=0):
    """Output length of a transposed convolution (torch's formula)::

        OH = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding + 1

    It is the largest input length of a convolution with these parameters whose output
    length is H; ``output_padding`` picks among the lengths a stride > 1 maps to H.
    """
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def im2col_output_size(x_shape, KH, KW, SH, SW, PH, PW, DH, DW, out_size=None):
    """(OH, OW) of im2col on an (N, C, H, W) input: the window positions that fit, or
    ``out_size`` (fewer, as conv_transpose2d's backward needs); a ValueError when the
    kernel does not fit the padded input."""
    H, W = x_shape[2], x_shape[3]
    OH = conv_output_size(H, KH, SH, PH, DH)
    OW = conv_output_size(W, KW, SW, PW, DW)
    if out_size is not None:
        if not (0 < out_size[0] <= OH and 0 < out_size[1] <= OW):
            raise ValueError(f"im2col: out_size {tuple(out_size)} must be positive and at "
                             f"most the {(OH, OW)} window positions that fit")
        OH, OW = out_size
    if OH <= 0 or OW <= 0:
        raise ValueError(f"im2col: a dilated {KH}x{KW} kernel (dilation {DH}x{DW}) does not "
                         f"fit the padded {H + 2 * PH}x{W + 2 * PW} input: output size "
                         f"would be {OH}x{OW}")
    return OH, OW


def check_col2im_shapes(cols_shape, x_shape, SH, SW, PH, PW, DH, DW):
    """A ValueError unless cols (N, C, KH, KW, OH, OW) can be folded back onto x_shape."""
    N, C, KH, KW, OH, OW = cols_shape
    if len(x_shape) != 4 or tuple(x_shape[:2]) != (N, C):
        raise ValueError(f"col2im: x_shape {tuple(x_shape)} does not match cols of shape "
                         f"{tuple(cols_shape)} (expected ({N}, {C}, H, W))")
    Hp, Wp = x_shape[2] + 2 * PH, x_shape[3] + 2 * PW
    if (KH - 1) * DH + (OH - 1) * SH >= Hp or (KW - 1) * DW + (OW - 1) * SW >= Wp:
        raise ValueError(f"col2im: {OH}x{OW} positions of a {KH}x{KW} kernel (stride "
                         f"{SH}x{SW}, dilation {DH}x{DW}) do not fit a padded {Hp}x{Wp} image")


def im2col(x, KH, KW, SH=1, SW=1, PH=0, PW=0, DH=1, DW=1, out_size=None):
    """Copy every (KH, KW) window of the padded ``x`` into a column.

    Parameters: ``x`` (N, C, H, W), any strides; kernel size, stride, zero padding and
    dilation per axis as ints. ``out_size`` = (OH, OW) keeps only the first OH×OW window
    positions instead of all of them (a transposed convolution's backward needs that
    when output_padding >= stride).

    Returns a new C-contiguous array of shape (N, C, KH, KW, OH, OW) and ``x``'s dtype::

        cols[n, c, kh, kw, oh, ow] = x_pad[n, c, oh*SH + kh*DH, ow*SW + kw*DW]
    """
    xp = _array_module(x)
    N, C, H, W = x.shape
    OH, OW = im2col_output_size(x.shape, KH, KW, SH, SW, PH, PW, DH, DW, out_size)
    if PH or PW:
        x_pad = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=x.dtype)
        x_pad[:, :, PH:PH + H, PW:PW + W] = x
    else:
        x_pad = x
    cols = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for kh in range(KH):
        # rows kh*DH, kh*DH + SH, ..., kh*DH + (OH-1)*SH of x_pad: the kh-th kernel row
        # of every window, one per output row
        top = kh * DH
        rows = slice(top, top + (OH - 1) * SH + 1, SH)
        for kw in range(KW):
            left = kw * DW
            cols[:, :, kh, kw] = x_pad[:, :, rows, left:left + (OW - 1) * SW + 1:SW]
    return cols


def col2im(cols, x_shape, SH=1, SW=1, PH=0, PW=0, DH=1, DW=1):
    """The adjoint of :func:`im2col`: add each column entry back onto its input pixel.

    ``cols`` has shape (N, C, KH, KW, OH, OW) (the kernel size and the number of window
    positions are read from it); ``x_shape`` is the (N, C, H, W) image to rebuild.
    Returns an array of shape ``x_shape`` and ``cols``' dtype with::

        out[n, c, i, j] = Σ cols[n, c, kh, kw, oh, ow]
                          over i + PH = oh*SH + kh*DH,  j + PW = ow*SW + kw*DW

    so that Σ im2col(x) ⊙ cols == Σ x ⊙ col2im(cols) for every x. Entries that land in
    the padding are dropped. The result is a view into a padded buffer when PH or PW is
    not 0 (no copy is made to crop it).
    """
    xp = _array_module(cols)
    N, C, KH, KW, OH, OW = cols.shape
    check_col2im_shapes(cols.shape, x_shape, SH, SW, PH, PW, DH, DW)
    H, W = x_shape[2:]
    Hp, Wp = H + 2 * PH, W + 2 * PW
    x_pad = xp.zeros((N, C, Hp, Wp), dtype=cols.dtype)
    for kh in range(KH):
        top = kh * DH
        rows = slice(top, top + (OH - 1) * SH + 1, SH)
        for kw in range(KW):
            left = kw * DW
            # NOTE: +=, not =: windows overlap whenever the stride is smaller than the
            # kernel's extent, and an input pixel's gradient is the sum over all of them.
            # Within one (kh, kw) the target positions are distinct, so one vectorised
            # += is exact.
            x_pad[:, :, rows, left:left + (OW - 1) * SW + 1:SW] += cols[:, :, kh, kw]
    if PH or PW:
        return x_pad[:, :, PH:PH + H, PW:PW + W]
    return x_pad
