"""GPU fast path of max pooling (``kernels/pooling.py``), written with numba.cuda.

Same arguments and results as the reference's ``max_pool2d_forward`` /
``max_pool2d_backward``: the maximum of each (dilated) window with padding counting as
-inf, and the winning kernel offset ``kh*KW + kw`` (the first maximum in row-major
order, or the window's last NaN, as torch). The reference makes several launches per
kernel offset; here one launch does the forward (a thread per output, its window in
registers), and one the backward:

* backward is a gather: a thread per *input* pixel adds the gradients of the windows it
  won, found among the kernel offsets whose window row ``(i + PH - kh*DH) / SH`` and
  column are whole numbers inside the output. No atomic adds: the same sums every run.

Arrays of ``x``'s module (CuPy on a GPU; NumPy in numba's simulator for the tests).
"""
from __future__ import annotations

import math

from kernels import pooling as _reference
from kernels._cuda import kernel, launch, source_window, unravel4

__all__ = ["max_pool2d_forward", "max_pool2d_backward"]


def max_pool2d_forward(x, kernel_size, stride, padding, dilation, out_size, with_argmax=True):
    """:func:`kernels.pooling.max_pool2d_forward`, one thread per output."""
    xp = _reference._array_module(x)
    N, C = x.shape[:2]
    OH, OW = out_size
    out = xp.empty((N, C, OH, OW), dtype=x.dtype)
    KH, KW = kernel_size
    argmax = xp.empty((N, C, OH, OW),
                      dtype=_reference._offset_dtype(KH * KW) if with_argmax else "u1")
    launch(_forward, out.size, x, out, argmax, KH, KW, *stride, *padding, *dilation)
    return out, (argmax if with_argmax else None)


def max_pool2d_backward(grad, argmax, in_shape, kernel_size, stride, padding, dilation):
    """:func:`kernels.pooling.max_pool2d_backward`, one thread per input pixel."""
    xp = _reference._array_module(grad)
    gx = xp.empty(tuple(in_shape), dtype=grad.dtype)
    launch(_backward, gx.size, grad, argmax, gx, *kernel_size, *stride, *padding, *dilation)
    return gx


@kernel
def _forward(x, out, argmax, KH, KW, SH, SW, PH, PW, DH, DW, total):
    t = cuda.grid(1)                                           # noqa: F821 (bound by _cuda)
    if t >= total:
        return
    N, C, OH, OW = out.shape
    n, c, oh, ow = unravel4(t, C, OH, OW)
    top = -math.inf
    best = -1
    for kh in range(KH):
        i = oh * SH - PH + kh * DH
        if i < 0 or i >= x.shape[2]:
            continue
        for kw in range(KW):
            j = ow * SW - PW + kw * DW
            if j < 0 or j >= x.shape[3]:
                continue
            v = x[n, c, i, j]
            if best < 0:
                # the window starts at its first tap inside the input, as in torch
                best = kh * KW + kw
            # NaN wins, and the last NaN stays: it is the one value unequal to itself
            if v > top or v != v:
                top = v
                best = kh * KW + kw
    out[n, c, oh, ow] = top
    argmax[n, c, oh, ow] = best


@kernel
def _backward(grad, argmax, gx, KH, KW, SH, SW, PH, PW, DH, DW, total):
    t = cuda.grid(1)                                           # noqa: F821
    if t >= total:
        return
    N, C, H, W = gx.shape
    OH, OW = grad.shape[2], grad.shape[3]
    n, c, i, j = unravel4(t, C, H, W)
    acc = grad[n, c, 0, 0] * 0                              # a zero of grad's dtype
    for kh in range(KH):
        oh = source_window(i, PH, kh, DH, SH, OH)
        if oh < 0:
            continue
        for kw in range(KW):
            ow = source_window(j, PW, kw, DW, SW, OW)
            if ow >= 0 and argmax[n, c, oh, ow] == kh * KW + kw:
                acc += grad[n, c, oh, ow]
    gx[n, c, i, j] = acc
