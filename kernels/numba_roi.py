"""CPU fast path of RoI pooling and RoI align, in compiled loops.

``kernels/roi.py`` is the reference and the description: same arguments, same results,
same conventions. The geometry (each RoI's bins, each bin's sample points and their
interpolation weights) is the reference's own :func:`~kernels.roi.roi_pool_bins` and
:func:`~kernels.roi.roi_align_samples`, computed once for all RoIs with array operations
in the input's dtype; the loops here only read the map.

roi_pool is torchvision's loop: each bin scans its cells once, in row-major order, and its
backward adds each bin's gradient at its winner. roi_align keeps the reference's
separable form without its dense matrices: per RoI, the samples of each bin row are
interpolated along y for every column the RoI reads (two map rows per sample), then each
bin's samples interpolate those sums along x (two columns per sample); the backward runs
the two stages transposed. Both stages loop innermost over channels, on a channels-last
copy of the map (or of the gradient), so that they run over contiguous memory. The loops
run on the calling thread (see kernels/numba_conv.py for why).
"""
from __future__ import annotations

import numpy as np

from kernels import roi as _ref
from kernels._jit import jit

__all__ = ["roi_pool_forward", "roi_pool_backward", "roi_align_forward",
           "roi_align_backward"]


@jit(cache=True, nogil=True)
def _roi_pool(x, batch, hstart, hend, wstart, wend, out, argmax, lowest, zero):
    K, C, OH, OW = out.shape
    W = x.shape[3]
    for k in range(K):
        b = batch[k]
        for c in range(C):
            for ph in range(OH):
                h0, h1 = hstart[k, ph], hend[k, ph]
                for pw in range(OW):
                    w0, w1 = wstart[k, pw], wend[k, pw]
                    # an empty bin outputs 0; a full one starts from -FLT_MAX
                    best = zero if (h1 <= h0 or w1 <= w0) else lowest
                    arg = -1
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            v = x[b, c, h, w]
                            if v > best:           # strict: the first maximum stays
                                best = v
                                arg = h * W + w
                    out[k, c, ph, pw] = best
                    argmax[k, c, ph, pw] = arg


@jit(cache=True, nogil=True)
def _roi_pool_backward(grad, argmax, batch, gx):
    # grad and argmax (K, C, OH*OW), gx (N, C, H*W): argmax is a flat position in a plane
    K, C, P = grad.shape
    for k in range(K):
        planes = gx[batch[k]]
        for c in range(C):
            for p in range(P):
                if argmax[k, c, p] >= 0:              # -1: the bin had no winner
                    planes[c, argmax[k, c, p]] += grad[k, c, p]


@jit(cache=True, nogil=True)
def _columns_read(xlo, xhi, wxlo, wxhi, gw, k, OW):
    """The first and last map column RoI k's samples read (c1 < c0: none)."""
    c0, c1 = 1 << 62, -1
    for pw in range(OW):
        for ix in range(gw[k]):
            if wxlo[k, pw, ix] != 0 or wxhi[k, pw, ix] != 0:      # a point on the map
                c0 = min(c0, xlo[k, pw, ix])
                c1 = max(c1, xhi[k, pw, ix])
    return c0, c1


@jit(cache=True, nogil=True)
def _roi_align(x, batch, ylo, yhi, wylo, wyhi, gh, xlo, xhi, wxlo, wxhi, gw, count, out,
               zero):
    # x is channels-last (N, H, W, C): the innermost loops run over contiguous channels
    K, C, OH, OW = out.shape
    acc = np.empty(C, x.dtype)
    for k in range(K):
        b = batch[k]
        c0, c1 = _columns_read(xlo, xhi, wxlo, wxhi, gw, k, OW)
        if c1 < c0:
            out[k] = zero
            continue
        # along y: the samples of bin row ph, interpolated between two map rows and
        # summed, for every column the RoI reads
        rows = np.zeros((OH, c1 - c0 + 1, C), x.dtype)
        for ph in range(OH):
            for iy in range(gh[k]):
                hy, ly = wylo[k, ph, iy], wyhi[k, ph, iy]
                if hy == 0 and ly == 0:
                    continue                                       # off the map
                y0, y1 = ylo[k, ph, iy], yhi[k, ph, iy]
                for j in range(c1 - c0 + 1):
                    for ch in range(C):
                        rows[ph, j, ch] += hy * x[b, y0, c0 + j, ch] + ly * x[b, y1, c0 + j, ch]
        # along x: the samples of bin (ph, pw) read those row sums
        for ph in range(OH):
            for pw in range(OW):
                acc[:] = zero
                for ix in range(gw[k]):
                    hx, lx = wxlo[k, pw, ix], wxhi[k, pw, ix]
                    if hx == 0 and lx == 0:
                        continue
                    j0, j1 = xlo[k, pw, ix] - c0, xhi[k, pw, ix] - c0
                    for ch in range(C):
                        acc[ch] += hx * rows[ph, j0, ch] + lx * rows[ph, j1, ch]
                for ch in range(C):
                    out[k, ch, ph, pw] = acc[ch] / count[k]


@jit(cache=True, nogil=True)
def _roi_align_backward(grad, batch, ylo, yhi, wylo, wyhi, gh, xlo, xhi, wxlo, wxhi, gw,
                        count, gx, zero):
    # gx is channels-last (N, H, W, C); the forward's two stages, transposed, in reverse
    K, C, OH, OW = grad.shape
    g = np.empty(C, gx.dtype)                      # one bin's gradient over the channels
    for k in range(K):
        b = batch[k]
        c0, c1 = _columns_read(xlo, xhi, wxlo, wxhi, gw, k, OW)
        if c1 < c0:
            continue
        rows = np.zeros((OH, c1 - c0 + 1, C), gx.dtype)
        for ph in range(OH):
            for pw in range(OW):
                for ch in range(C):
                    g[ch] = grad[k, ch, ph, pw] / count[k]
                for ix in range(gw[k]):
                    hx, lx = wxlo[k, pw, ix], wxhi[k, pw, ix]
                    if hx == 0 and lx == 0:
                        continue
                    j0, j1 = xlo[k, pw, ix] - c0, xhi[k, pw, ix] - c0
                    for ch in range(C):
                        rows[ph, j0, ch] += g[ch] * hx
                        rows[ph, j1, ch] += g[ch] * lx
        for ph in range(OH):
            for iy in range(gh[k]):
                hy, ly = wylo[k, ph, iy], wyhi[k, ph, iy]
                if hy == 0 and ly == 0:
                    continue
                y0, y1 = ylo[k, ph, iy], yhi[k, ph, iy]
                for j in range(c1 - c0 + 1):
                    for ch in range(C):
                        gx[b, y0, c0 + j, ch] += hy * rows[ph, j, ch]
                        gx[b, y1, c0 + j, ch] += ly * rows[ph, j, ch]


def _batch(rois):
    return np.ascontiguousarray(rois[:, 0]).astype(np.int64)


def roi_pool_forward(x, rois, spatial_scale, out_size, with_argmax=True):
    """:func:`kernels.roi.roi_pool_forward`: same arguments and results
    ``(out, argmax or None)``."""
    hstart, hend, wstart, wend = _ref.roi_pool_bins(rois, spatial_scale, x.shape[2:],
                                                    out_size)
    out = np.empty((rois.shape[0], x.shape[1]) + tuple(out_size), x.dtype)
    argmax = np.empty(out.shape, np.int32)
    _roi_pool(np.ascontiguousarray(x), _batch(rois), hstart, hend, wstart, wend, out, argmax,
              x.dtype.type(_ref.LOWEST), x.dtype.type(0))
    return out, (argmax if with_argmax else None)


def roi_pool_backward(grad, argmax, rois, in_shape):
    """:func:`kernels.roi.roi_pool_backward`: the (N, C, H, W) gradient."""
    N, C, H, W = in_shape
    K = grad.shape[0]
    gx = np.zeros(in_shape, grad.dtype)
    _roi_pool_backward(np.ascontiguousarray(grad).reshape(K, C, -1),
                       np.ascontiguousarray(argmax).reshape(K, C, -1), _batch(rois),
                       gx.reshape(N, C, H * W))
    return gx


def _samples(rois, spatial_scale, in_hw, out_size, sampling_ratio, aligned):
    rows, cols, count = _ref.roi_align_samples(rois, spatial_scale, in_hw, out_size,
                                               sampling_ratio, aligned)
    return (_batch(rois), rows.low, rows.high, rows.w_low, rows.w_high, rows.grid,
            cols.low, cols.high, cols.w_low, cols.w_high, cols.grid, count)


def roi_align_forward(x, rois, spatial_scale, out_size, sampling_ratio, aligned):
    """:func:`kernels.roi.roi_align_forward`: the (K, C, OH, OW) output."""
    out = np.empty((rois.shape[0], x.shape[1]) + tuple(out_size), x.dtype)
    _roi_align(np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
               *_samples(rois, spatial_scale, x.shape[2:], out_size, sampling_ratio, aligned),
               out, x.dtype.type(0))
    return out


def roi_align_backward(grad, rois, in_shape, spatial_scale, out_size, sampling_ratio,
                       aligned):
    """:func:`kernels.roi.roi_align_backward`: the (N, C, H, W) gradient."""
    N, C, H, W = in_shape
    gx = np.zeros((N, H, W, C), grad.dtype)                   # channels last
    _roi_align_backward(np.ascontiguousarray(grad),
                        *_samples(rois, spatial_scale, in_shape[2:], out_size, sampling_ratio,
                                  aligned),
                        gx, grad.dtype.type(0))
    return np.ascontiguousarray(gx.transpose(0, 3, 1, 2))
