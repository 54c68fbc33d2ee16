"""CPU fast path of max pooling: each window visited once, in compiled loops.

``kernels/pooling.py`` is the reference and the description: same arguments, same
results, same conventions (padding never wins, ties go to the first maximum in
row-major window order, a NaN always wins and the last NaN is reported, a window of
nothing but -inf reports its first tap inside the input). These loops compute the same
for float32/float64 NumPy arrays (``kernels/dispatch.py`` decides).

Why it is faster: the reference makes, per kernel offset, several whole-array passes
(compare, record the winner, take the maximum) through strided views; here each output
reads its KH·KW taps once and writes its maximum and winner once. The backward pass
adds each output's gradient straight onto its winner's position. The loops run on the
calling thread (see kernels/numba_conv.py for why not numba's parallel=True).

The 2x2, stride-2 pool without padding or dilation (LeNet's, VGG's, U-Net's) has loops
of its own (:func:`_max_pool_2x2`): four taps named one by one and the winner chosen by
selects instead of branches, so LLVM vectorises across the row. It measured about 8
times faster forward and 4 times backward than the general loops, which test and branch
per tap; the results are the same. The unpadded 3x3, stride-2 pool (AlexNet's) has
its own too (:func:`_max_pool_3x3s2`, 3.5-4 times faster forward); its backward, with
overlapping windows, stays the general one, as do the padded 3x3/2 pools of the
ImageNet ResNets and GoogLeNet (their edge windows would need the general scan).

``relu=True`` (``F.relu_max_pool2d``, max pooling of relu(x)) clamps each maximum at 0
(as it is written in the loops of their own; after the general loops, on the output),
so a ReLU before the pool costs no pass of its own over the (four times larger, for 2x2
windows) input; its backward skips the outputs that are not > 0.
"""
from __future__ import annotations

import numpy as np

from kernels._jit import jit

__all__ = ["max_pool2d_forward", "max_pool2d_backward"]


@jit(cache=True, nogil=True)
def _max_pool(x, out, argmax, KH, KW, SH, SW, PH, PW, DH, DW):
    NC, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for p in range(NC):
        for oh in range(OH):
            top = oh * SH - PH
            # the first kernel row inside the input: where a window of -inf points
            kh0 = 0 if top >= 0 else (-top + DH - 1) // DH
            for ow in range(OW):
                left = ow * SW - PW
                kw0 = 0 if left >= 0 else (-left + DW - 1) // DW
                best = -np.inf
                arg = kh0 * KW + kw0
                for kh in range(kh0, KH):
                    i = top + kh * DH
                    if i >= H:
                        break
                    for kw in range(kw0, KW):
                        j = left + kw * DW
                        if j >= W:
                            break
                        v = x[p, i, j]
                        # NOTE: `v != v` holds only for NaN: a NaN wins even over an
                        # earlier NaN, so the last one is reported (torch, reference)
                        if v > best or v != v:
                            best = v
                            arg = kh * KW + kw
                out[p, oh, ow] = best
                argmax[p, oh, ow] = arg


@jit(cache=True, nogil=True, inline="always")
def _u(i):
    # NOTE: unsigned indices: numba checks signed ones for negative values, which stops
    # LLVM from vectorising the loops (see kernels/numba_conv.py)
    return np.uintp(i)


@jit(cache=True, nogil=True, inline="always")
def _pick(v, k, best, arg):
    """One tap of the row-major scan: (v, k) replace (best, arg) when v is greater or
    NaN (the same rule as the general loops), written as selects, not branches."""
    take = (v > best) | (v != v)
    return (v if take else best), (k if take else arg)


@jit(cache=True, nogil=True)
def _max_pool_2x2(x, out, argmax, relu):
    """_max_pool for kernel 2x2, stride 2, no padding or dilation, every window inside x
    (C-contiguous (NC, H, W)): taps 0..3 are (0, 0), (0, 1), (1, 0), (1, 1)."""
    NC, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    xf, of, af = x.reshape(-1), out.reshape(-1), argmax.reshape(-1)
    for p in range(NC):
        for oh in range(OH):
            top = (p * H + 2 * oh) * W              # the window's upper row
            o = (p * OH + oh) * OW
            for ow in range(OW):
                i = top + 2 * ow
                # the first tap is where the scan starts (a window of -inf reports it)
                best, arg = xf[_u(i)], 0
                best, arg = _pick(xf[_u(i + 1)], 1, best, arg)
                best, arg = _pick(xf[_u(i + W)], 2, best, arg)
                best, arg = _pick(xf[_u(i + W + 1)], 3, best, arg)
                of[_u(o + ow)] = 0 if relu and best < 0 else best
                af[_u(o + ow)] = arg


@jit(cache=True, nogil=True)
def _max_pool_2x2_backward(grad, argmax, gx, relu_out, relu):
    """_max_pool_backward for _max_pool_2x2's windows, which do not overlap: each input
    position gets at most one gradient, written, not added."""
    NC, OH, OW = grad.shape
    H, W = gx.shape[1], gx.shape[2]
    gf, af, xf, mf = grad.reshape(-1), argmax.reshape(-1), gx.reshape(-1), relu_out.reshape(-1)
    for p in range(NC):
        for oh in range(OH):
            top = (p * H + 2 * oh) * W
            o = (p * OH + oh) * OW
            for ow in range(OW):
                k = af[_u(o + ow)]
                v = gf[_u(o + ow)]
                if relu:
                    v = v if mf[_u(o + ow)] > 0 else 0
                xf[_u(top + (k >> 1) * W + 2 * ow + (k & 1))] = v


@jit(cache=True, nogil=True)
def _max_pool_3x3s2(x, out, argmax, relu):
    """_max_pool for kernel 3x3, stride 2, no padding or dilation, every window inside x
    (AlexNet's pools), C-contiguous (NC, H, W): nine named taps, as _max_pool_2x2."""
    NC, H, W = x.shape
    OH, OW = out.shape[1], out.shape[2]
    xf, of, af = x.reshape(-1), out.reshape(-1), argmax.reshape(-1)
    for p in range(NC):
        for oh in range(OH):
            top = (p * H + 2 * oh) * W
            o = (p * OH + oh) * OW
            for ow in range(OW):
                i = top + 2 * ow
                best, arg = xf[_u(i)], 0
                best, arg = _pick(xf[_u(i + 1)], 1, best, arg)
                best, arg = _pick(xf[_u(i + 2)], 2, best, arg)
                best, arg = _pick(xf[_u(i + W)], 3, best, arg)
                best, arg = _pick(xf[_u(i + W + 1)], 4, best, arg)
                best, arg = _pick(xf[_u(i + W + 2)], 5, best, arg)
                best, arg = _pick(xf[_u(i + 2 * W)], 6, best, arg)
                best, arg = _pick(xf[_u(i + 2 * W + 1)], 7, best, arg)
                best, arg = _pick(xf[_u(i + 2 * W + 2)], 8, best, arg)
                of[_u(o + ow)] = 0 if relu and best < 0 else best
                af[_u(o + ow)] = arg


def _named_taps(size, kernel, stride, padding, dilation, in_hw, out_size):
    """Whether the pool is the size x size, stride-size (2) or stride-2 (3) one with
    loops of its own: square, stride 2, no padding or dilation, no window hanging over
    the input's edge."""
    return (kernel == (size, size) and stride == (2, 2) and padding == (0, 0)
            and dilation == (1, 1)
            and all(2 * (o - 1) + size <= n for o, n in zip(out_size, in_hw)))


@jit(cache=True, nogil=True)
def _max_pool_backward(grad, argmax, gx, relu_out, relu, KW, SH, SW, PH, PW, DH, DW):
    NC, OH, OW = grad.shape
    H, W = gx.shape[1], gx.shape[2]
    for p in range(NC):
        for oh in range(OH):
            for ow in range(OW):
                if relu and not relu_out[p, oh, ow] > 0:
                    continue                # relu' of the winner is 0 (NaN too)
                k = argmax[p, oh, ow]
                i = oh * SH - PH + (k // KW) * DH
                j = ow * SW - PW + (k % KW) * DW
                # a window that misses the input entirely (the op refuses those, this
                # kernel drops them as the reference does) points outside it
                if 0 <= i < H and 0 <= j < W:
                    gx[p, i, j] += grad[p, oh, ow]


def max_pool2d_forward(x, kernel, stride, padding, dilation, out_size, with_argmax=True,
                       relu=False):
    """:func:`kernels.pooling.max_pool2d_forward`: same arguments and results
    ``(out, argmax or None)``. With ``relu`` the maximum is clamped at 0 as it is
    written: relu and max pooling in one pass over x."""
    N, C, H, W = x.shape
    OH, OW = out_size
    out = np.empty((N, C, OH, OW), x.dtype)
    # the same winner type as the reference: one byte for kernels up to 16x16 (computed
    # even when not asked for: a quarter of the output's size, and one loop fewer)
    argmax = np.empty((N, C, OH, OW), np.uint8 if kernel[0] * kernel[1] <= 256 else np.int32)
    window = (kernel, stride, padding, dilation, (H, W), out_size)
    planes = (out.reshape(N * C, OH, OW), argmax.reshape(N * C, OH, OW))
    if _named_taps(2, *window):
        _max_pool_2x2(np.ascontiguousarray(x).reshape(N * C, H, W), *planes, bool(relu))
    elif _named_taps(3, *window):
        _max_pool_3x3s2(np.ascontiguousarray(x).reshape(N * C, H, W), *planes, bool(relu))
    else:
        _max_pool(x.reshape(N * C, H, W), *planes, *kernel, *stride, *padding, *dilation)
        if relu:
            # NOTE: here after the loops, on the output only: a clamp inside them
            # measured 10 % slower (a NaN stays NaN)
            np.maximum(out, 0, out=out)
    return out, (argmax if with_argmax else None)


def max_pool2d_backward(grad, argmax, in_shape, kernel, stride, padding, dilation,
                        relu_out=None):
    """:func:`kernels.pooling.max_pool2d_backward`: the (N, C, H, W) gradient; with
    ``relu_out`` only the outputs > 0 send theirs."""
    N, C, OH, OW = grad.shape
    gx = np.zeros(in_shape, grad.dtype)
    grad = np.ascontiguousarray(grad).reshape(N * C, OH, OW)
    relu = relu_out is not None
    # without relu the mask is never read: grad stands in, so one compiled version serves
    mask = np.ascontiguousarray(relu_out).reshape(N * C, OH, OW) if relu else grad
    argmax = np.ascontiguousarray(argmax).reshape(N * C, OH, OW)
    if _named_taps(2, kernel, stride, padding, dilation, in_shape[2:], (OH, OW)):
        _max_pool_2x2_backward(grad, argmax, gx.reshape(N * C, *in_shape[2:]), mask, relu)
    else:
        _max_pool_backward(grad, argmax, gx.reshape(N * C, *in_shape[2:]), mask, relu,
                           kernel[1], *stride, *padding, *dilation)
    return gx
