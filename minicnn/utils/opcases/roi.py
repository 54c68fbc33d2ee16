"""Cases for RoI pooling and RoI align (``minicnn.ops.roi_pool``, ``roi_align``): boxes
partly off the map, tiny and reversed boxes, both box formats, several images, spatial
scales, ``aligned`` and the adaptive ``sampling_ratio``.

torchvision, the torch home of these ops, cannot be imported beside the CPU build of torch
(SEEDS-SPEC §12 X5), so the forward is compared with a NumPy reference written here from
torchvision's definition, in another form than the kernels' (a reduction over each bin's
window; bilinear samples of a whole bin at once, clamped to the map), and the gradient is
checked by finite differences. tests/ops/test_roi.py holds the torch twins of the kernels.

NOTE: roi_pool's map is tie-free (distinct values 0.01 apart): with a tie, a bin's winner
would flip under the finite-difference step.
"""
import decimal

import numpy as np

from ... import ops
from ..opcheck import register

_FLT_MAX = float(np.finfo(np.float32).max)


def _roi_pool_reference(x, rois, output_size, spatial_scale):
    """Each bin's window of the snapped box, reduced with max (0 for an empty window)."""
    C, H, W = x.shape[1:]
    OH, OW = output_size
    out = np.zeros((len(rois), C, OH, OW))
    for k, (b, *box) in enumerate(rois):
        x1, y1, x2, y2 = (_round_half_away(v * spatial_scale) for v in box)
        rows = _pool_windows(y1, max(y2 - y1 + 1, 1), OH, H)
        cols = _pool_windows(x1, max(x2 - x1 + 1, 1), OW, W)
        for i, (h0, h1) in enumerate(rows):
            for j, (w0, w1) in enumerate(cols):
                window = x[int(b), :, h0:h1, w0:w1].reshape(C, -1)
                if window.size:
                    out[k, :, i, j] = np.maximum(window.max(axis=1), -_FLT_MAX)
    return out


def _round_half_away(v):
    """C's round(), exactly: Decimal holds the float's exact value."""
    return int(decimal.Decimal(v).quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP))


def _pool_windows(start, length, bins, size):
    size_of_bin = length / bins
    return [(min(max(int(np.floor(i * size_of_bin)) + start, 0), size),
             min(max(int(np.ceil((i + 1) * size_of_bin)) + start, 0), size))
            for i in range(bins)]


def _roi_align_reference(x, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """Each bin's grid of sample points read at once by bilinear interpolation, summed and
    divided by max(number of points, 1)."""
    C = x.shape[1]
    OH, OW = output_size
    offset = 0.5 if aligned else 0.0
    out = np.zeros((len(rois), C, OH, OW))
    for k, (b, *box) in enumerate(rois):
        x1, y1, x2, y2 = (v * spatial_scale - offset for v in box)
        height, width = y2 - y1, x2 - x1
        if not aligned:
            height, width = max(height, 1.0), max(width, 1.0)
        gh = sampling_ratio if sampling_ratio > 0 else int(np.ceil(height / OH))
        gw = sampling_ratio if sampling_ratio > 0 else int(np.ceil(width / OW))
        for i in range(OH):
            ys = y1 + i * (height / OH) + (np.arange(max(gh, 0)) + 0.5) * (height / OH) / gh
            for j in range(OW):
                xs = x1 + j * (width / OW) + (np.arange(max(gw, 0)) + 0.5) * (width / OW) / gw
                yy, xx = np.repeat(ys, len(xs)), np.tile(xs, len(ys))
                samples = _bilinear_points(x[int(b)], yy, xx)              # (C, points)
                out[k, :, i, j] = samples.sum(axis=1) / max(gh * gw, 1)
    return out


def _bilinear_points(plane, ys, xs):
    """plane (C, H, W) at the points (ys, xs): 0 outside [-1, H] × [-1, W]; otherwise
    coordinates clamped to [0, H-1] × [0, W-1] (the same as torchvision's rule for the
    last row and column: a point past it reads it alone) and interpolated."""
    H, W = plane.shape[1:]
    inside = (ys >= -1) & (ys <= H) & (xs >= -1) & (xs <= W)
    y, x = np.clip(ys, 0, H - 1), np.clip(xs, 0, W - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, H - 1), np.minimum(x0 + 1, W - 1)
    fy, fx = y - y0, x - x0
    value = (plane[:, y0, x0] * (1 - fy) * (1 - fx) + plane[:, y0, x1] * (1 - fy) * fx
             + plane[:, y1, x0] * fy * (1 - fx) + plane[:, y1, x1] * fy * fx)
    return np.where(inside, value, 0.0)


def _distinct(*shape):
    def make(rng):
        return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 1.0
    return make


def _normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def _with(make_map, rois):
    """Inputs: the map, then the (K, 5) boxes (no gradient: requires_grad=[True, False])."""
    return lambda rng: [make_map(rng), np.array(rois, dtype=float)]


# boxes on two images of 16x14 pixels: inside, partly off the map, wholly off, tiny,
# reversed (x2 < x1), on half pixels (halves under scale 0.5 round away from zero)
_BOXES = [[0, 1, 1, 12, 9], [1, -5, 3, 7, 20], [0, 14, 12, 30, 30], [1, 6, 6, 6.4, 6.2],
          [0, 9, 8, 3, 5], [1, 1.5, 2.5, 10.5, 13]]
_FIXED = [True, False]


register("roi_pool", "2x2, boxes off the map, tiny, reversed, 2 images",
         _with(_distinct(2, 3, 16, 14), _BOXES),
         lambda x, b: ops.roi_pool(x, b, 2), None, requires_grad=_FIXED,
         reference=lambda x, b: _roi_pool_reference(x, b, (2, 2), 1.0))
register("roi_pool", "(3, 2) spatial_scale=0.5, halves round away from 0",
         _with(_distinct(2, 2, 8, 7), _BOXES),
         lambda x, b: ops.roi_pool(x, b, (3, 2), 0.5), None, requires_grad=_FIXED,
         reference=lambda x, b: _roi_pool_reference(x, b, (3, 2), 0.5))
register("roi_pool", "boxes as a list per image",
         _with(_distinct(2, 2, 8, 7), _BOXES[:2]),
         lambda x, b: ops.roi_pool(x, [b[:1, 1:], b[1:, 1:]], 3, 0.5), None,
         requires_grad=_FIXED, reference=lambda x, b: _roi_pool_reference(x, b, (3, 3), 0.5))

register("roi_align", "2x2 aligned sampling_ratio=2",
         _with(_normal(2, 3, 16, 14), _BOXES),
         lambda x, b: ops.roi_align(x, b, 2, 1.0, 2, True), None, requires_grad=_FIXED,
         reference=lambda x, b: _roi_align_reference(x, b, (2, 2), 1.0, 2, True))
register("roi_align", "(3, 2) adaptive sampling, unaligned, spatial_scale=0.5",
         _with(_normal(2, 2, 8, 7), _BOXES),
         lambda x, b: ops.roi_align(x, b, (3, 2), 0.5), None, requires_grad=_FIXED,
         reference=lambda x, b: _roi_align_reference(x, b, (3, 2), 0.5, -1, False))
register("roi_align", "adaptive aligned spatial_scale=0.25, boxes as a list",
         _with(_normal(2, 2, 4, 4), _BOXES[:2]),
         lambda x, b: ops.roi_align(x, [b[:1, 1:], b[1:, 1:]], 3, 0.25, -1, True), None,
         requires_grad=_FIXED,
         reference=lambda x, b: _roi_align_reference(x, b, (3, 3), 0.25, -1, True))
