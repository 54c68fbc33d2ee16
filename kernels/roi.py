"""RoI pooling and RoI align windows: the raw array routines behind ``minicnn.ops.roi_pool``
and ``minicnn.ops.roi_align`` (no autograd; ``minicnn/ops/roi.py`` wraps them).

Notation: N images, C channels, H×W feature map, K regions of interest (RoIs), OH×OW
output bins per RoI. ``rois`` is a (K, 5) array ``[batch_index, x1, y1, x2, y2]`` in the
input's dtype, box corners in image coordinates; ``spatial_scale`` maps them onto the map.
The caller has checked every batch index (a whole number in [0, N)) and that the boxes
are finite. Every quantity below is computed in the input's dtype T, in the order
torchvision's CPU kernels compute it, so float32 bins and sample points land where its
do.

RoI pooling (Fast R-CNN; ``torchvision.ops.roi_pool``)
------------------------------------------------------
The box is snapped to the map's grid, ``x1' = round(x1 * scale)`` (C's ``round``: halves
away from zero), and so on; its size in cells is ``max(x2' - x1' + 1, 1)`` (a box of
nothing is one cell). Bin (ph, pw) covers rows ``[floor(ph·bh), ceil((ph+1)·bh))`` with
``bh = roi_height / OH`` (columns likewise), shifted by the box's corner and clamped to
the map; neighbouring bins may share a row. The output is the bin's maximum, scanned in
row-major order with a strict ``>`` starting from -FLT_MAX: the first of equal maxima
wins, NaN never wins, and a bin of values all <= -FLT_MAX (-inf) reports -FLT_MAX with no
winner. A bin clamped to nothing (a box off the map) outputs 0. The reference visits the
bins of every RoI at once, one window offset (t, s) at a time, like the taps of
``kernels/pooling.py``: as many steps as the largest bin has cells.

RoI align (Mask R-CNN; ``torchvision.ops.roi_align``)
-----------------------------------------------------
No snapping: the box is ``x1 * scale - offset`` ... (offset 0.5 with ``aligned``, so that
a box edge on a pixel's border samples at that pixel's centre; 0 without, and then a box
smaller than one cell is widened to one cell). Bin (ph, pw) is averaged over a grid of
``gh × gw`` sample points (``sampling_ratio``, or ``ceil(roi_height / OH)`` when it is
<= 0), at ``y = y1 + ph·bh + (iy + 0.5)·bh / gh``; each point reads the map by bilinear
interpolation with torchvision's edge rules (:func:`_bilinear`), and the sum is divided
by ``max(gh·gw, 1)``, points off the map counting as zeros.

Bilinear interpolation is separable, and so is its average over a grid of points: the
weight a bin gives to cell (h, w) is ``A[ph, h] · B[pw, w]``, with ``A[ph, h]`` the sum over
the bin's sample rows of their two interpolation weights on row h (and B for columns).
So the reference computes each RoI's output as two small matrix products,

    out[k] = A_k · X[b_k] · B_kᵀ / count_k          (C, OH, OW)

on the part of the map the RoI touches, and its gradient with the transposes,

    dX[b_k] += A_kᵀ · dout[k] · B_k / count_k

(the scatter of the bilinear weights, in matrix form). NOTE: this sums the same products
as torchvision in another order, so results agree to rounding, not bit for bit.

Nothing here imports CuPy: the array module is found from the array's type. The
reference reads a few small integer tables to the host (the largest bin, the largest
sampling grid, each RoI's crop), explicitly, with ``.tolist()`` or ``int()``.
"""
import collections
import sys

import numpy

__all__ = ["roi_pool_bins", "roi_pool_forward", "roi_pool_backward", "AxisSamples",
           "roi_align_samples", "roi_align_forward", "roi_align_backward"]

# torchvision's starting value for a bin's maximum, whatever the dtype (C's FLT_MAX)
LOWEST = -float(numpy.finfo(numpy.float32).max)


def _array_module(a):
    """numpy or cupy, from the module that defines ``type(a)`` (never imports cupy)."""
    if type(a).__module__.split(".")[0] == "cupy":
        return sys.modules["cupy"]
    return numpy


def _round_half_away(v, xp):
    """C's ``round``: to the nearest integer, halves away from zero (NumPy's ``round``
    sends halves to even). ``v - trunc(v)`` is exact, so the test of the half is too."""
    whole = xp.trunc(v)
    return whole + xp.where(xp.abs(v - whole) >= 0.5, xp.sign(v), 0)


# ------------------------------------------------------------------- roi_pool

def roi_pool_bins(rois, spatial_scale, in_hw, out_size):
    """The bins of every RoI, torchvision's ``roi_pool`` arithmetic in the rois' dtype.

    Returns int64 arrays ``(hstart, hend)`` of shape (K, OH) and ``(wstart, wend)`` of
    shape (K, OW): bin (ph, pw) of RoI k covers rows ``hstart[k, ph] <= h < hend[k, ph]``
    and columns ``wstart[k, pw] <= w < wend[k, pw]``, each clamped to the map (a bin may
    be empty).
    """
    xp = _array_module(rois)
    T = rois.dtype.type
    corners = _round_half_away(rois[:, 1:5] * T(spatial_scale), xp).astype(numpy.int64)
    x1, y1, x2, y2 = corners[:, 0], corners[:, 1], corners[:, 2], corners[:, 3]
    rows = _snapped_bins(y1, xp.maximum(y2 - y1 + 1, 1), out_size[0], in_hw[0], T, xp)
    cols = _snapped_bins(x1, xp.maximum(x2 - x1 + 1, 1), out_size[1], in_hw[1], T, xp)
    return rows + cols


def _snapped_bins(start, length, bins, size, T, xp):
    """Along one axis: bin i of a box of ``length`` cells from ``start`` covers
    ``[floor(i·b), ceil((i+1)·b)) + start`` with ``b = length / bins`` (in T), clamped to
    ``[0, size]``. Returns (starts, ends), each (K, bins)."""
    bin_size = length.astype(T) / T(bins)                        # (K,)
    i = xp.arange(bins + 1, dtype=T)
    edges = i * bin_size[:, None]                                # (K, bins + 1)
    lo = xp.floor(edges[:, :-1]).astype(numpy.int64) + start[:, None]
    hi = xp.ceil(edges[:, 1:]).astype(numpy.int64) + start[:, None]
    return xp.clip(lo, 0, size), xp.clip(hi, 0, size)


def roi_pool_forward(x, rois, spatial_scale, out_size, with_argmax=True):
    """The maximum of each bin of each RoI (see the module docstring for the rules).

    ``x`` (N, C, H, W), ``rois`` (K, 5) in x's dtype, ``out_size`` (OH, OW). Returns
    ``(out, argmax)``: ``out`` (K, C, OH, OW) in x's dtype, and when ``with_argmax`` the
    int32 flat position ``h·W + w`` of each bin's winner in its (n, c) plane, -1 where
    nothing won (an empty bin, or one of values <= -FLT_MAX); else None.
    """
    xp = _array_module(x)
    C, H, W = x.shape[1:]
    K = rois.shape[0]
    OH, OW = out_size
    if K == 0:
        out = xp.zeros((0, C, OH, OW), dtype=x.dtype)
        return out, (xp.zeros(out.shape, dtype=numpy.int32) if with_argmax else None)
    hstart, hend, wstart, wend = roi_pool_bins(rois, spatial_scale, (H, W), out_size)
    batch = rois[:, 0].astype(numpy.int64)[:, None, None]              # (K, 1, 1)
    empty = (hend <= hstart)[:, :, None] | (wend <= wstart)[:, None, :]   # (K, OH, OW)
    # channels last while scanning: x[batch, :, rows, cols] puts the indexed axes first
    best = xp.where(empty, x.dtype.type(0), x.dtype.type(LOWEST))[..., None]
    best = xp.repeat(best, C, axis=3)                                  # (K, OH, OW, C)
    winner = xp.full(best.shape, -1, dtype=numpy.int32)
    tallest = int((hend - hstart).max())
    widest = int((wend - wstart).max())
    for t in range(tallest):                    # row-major order inside every bin
        rows = hstart + t
        row_in = (rows < hend)[:, :, None, None]
        rows = xp.minimum(rows, H - 1)[:, :, None]                     # (K, OH, 1)
        for s in range(widest):
            cols = wstart + s
            col_in = (cols < wend)[:, None, :, None]
            cols = xp.minimum(cols, W - 1)[:, None, :]                 # (K, 1, OW)
            v = x[batch, :, rows, cols]                                # (K, OH, OW, C)
            better = row_in & col_in & (v > best)      # strict: the first maximum stays
            best = xp.where(better, v, best)
            if with_argmax:
                winner = xp.where(better, (rows * W + cols)[..., None].astype(numpy.int32),
                                  winner)
    out = xp.ascontiguousarray(best.transpose(0, 3, 1, 2))
    return out, (xp.ascontiguousarray(winner.transpose(0, 3, 1, 2)) if with_argmax else None)


def roi_pool_backward(grad, argmax, rois, in_shape):
    """Each bin's gradient to its winner: ``dx[b_k, c].flat[argmax[k, c, ph, pw]] +=
    grad[k, c, ph, pw]``, summed where one position wins several bins or RoIs; bins
    without a winner (argmax -1) send nothing. Returns the (N, C, H, W) gradient."""
    xp = _array_module(grad)
    N, C, H, W = in_shape
    K = rois.shape[0]
    if K == 0:
        return xp.zeros(in_shape, dtype=grad.dtype)
    batch = rois[:, 0].astype(numpy.int64)
    planes = (batch[:, None] * C + xp.arange(C)) * (H * W)             # (K, C)
    won = argmax >= 0
    where = xp.where(won, planes[:, :, None, None] + argmax, 0)
    # bincount is the portable scatter-add (np.add.at / cupyx.scatter_add differ);
    # a bin without a winner adds 0 at position 0
    gx = xp.bincount(where.ravel(), weights=xp.where(won, grad, 0).ravel(),
                     minlength=N * C * H * W)
    return gx.astype(grad.dtype, copy=False).reshape(in_shape)


# ------------------------------------------------------------------ roi_align

AxisSamples = collections.namedtuple("AxisSamples", "low high w_low w_high grid")
AxisSamples.__doc__ = """RoI align's sample points along one axis, as interpolation taps.

``low``, ``high`` (K, O, G) int64 and ``w_low``, ``w_high`` (K, O, G) in T: sample g of
bin o of RoI k reads cell ``low`` with weight ``w_low`` and cell ``high`` with weight
``w_high`` (G = the largest grid; both weights 0 for g >= ``grid[k]`` and for a point off
the map). ``grid`` (K,) int64: each RoI's number of sample points per bin along the axis
(0 or less: none)."""


def roi_align_samples(rois, spatial_scale, in_hw, out_size, sampling_ratio, aligned):
    """The sample points of every RoI, torchvision's ``roi_align`` arithmetic in the rois'
    dtype. Returns ``(rows, cols, count)``: two :class:`AxisSamples` and ``count`` (K,)
    in T, the divisor ``max(gh·gw, 1)`` of each RoI's bins.

    NOTE: a point counts as off the map when its row is outside [-1, H] *or* its column
    outside [-1, W]; zeroing the row weights for the first and the column weights for the
    second zeroes exactly the products of such points, so the two axes stay separate.
    """
    T = rois.dtype.type
    offset = T(0.5) if aligned else T(0)
    scale = T(spatial_scale)
    x1, y1, x2, y2 = (rois[:, i] * scale - offset for i in range(1, 5))
    rows = _axis_samples(y1, y2 - y1, out_size[0], in_hw[0], sampling_ratio, aligned, T)
    cols = _axis_samples(x1, x2 - x1, out_size[1], in_hw[1], sampling_ratio, aligned, T)
    xp = _array_module(rois)
    count = xp.maximum(rows.grid * cols.grid, 1).astype(T)
    return rows, cols, count


def _axis_samples(start, length, bins, size, sampling_ratio, aligned, T):
    """:class:`AxisSamples` along one axis for boxes from ``start`` of ``length`` (K,)."""
    xp = _array_module(start)
    if not aligned:
        length = xp.maximum(length, T(1))        # a box thinner than a cell is one cell
    bin_size = length / T(bins)                                        # (K,)
    if sampling_ratio > 0:
        grid = xp.full(start.shape, sampling_ratio, dtype=numpy.int64)
    else:
        grid = xp.ceil(length / T(bins)).astype(numpy.int64)
    G = max(int(grid.max()), 0) if grid.size else 0
    # position of sample g in bin o: (start + o·b) + ((g + 0.5)·b) / grid, in that order
    o = xp.arange(bins, dtype=T)[None, :, None]
    g = (xp.arange(G, dtype=T) + T(0.5))[None, None, :]
    b = bin_size[:, None, None]
    divisor = xp.maximum(grid, 1).astype(T)[:, None, None]   # grid <= 0 samples nothing
    pos = (start[:, None, None] + o * b) + (g * b) / divisor         # (K, O, G)
    used = xp.arange(G)[None, None, :] < grid[:, None, None]
    low, high, w_low, w_high = _bilinear(pos, size, used)
    return AxisSamples(low, high, w_low, w_high, grid)


def _bilinear(pos, size, used):
    """torchvision's ``bilinear_interpolate`` along one axis of ``size`` cells.

    A point outside [-1, size] (or NaN, or not ``used``) reads nothing. Otherwise a point
    in [-1, 0] reads cell 0; ``low = floor(pos)``, ``high = low + 1``, weights
    ``1 - frac`` and ``frac``; and a point at or past cell ``size - 1`` reads that last
    cell with weight 1 (the high-edge rule: ``high = low = size - 1``).
    """
    xp = _array_module(pos)
    T = pos.dtype.type
    inside = used & (pos >= -1) & (pos <= size)           # NaN compares False: outside
    p = xp.where(inside, xp.maximum(pos, T(0)), T(0))
    low = p.astype(numpy.int64)                           # p >= 0: truncation is floor
    edge = low >= size - 1
    low = xp.where(edge, size - 1, low)
    high = xp.where(edge, size - 1, low + 1)
    p = xp.where(edge, low.astype(T), p)
    w_high = p - low.astype(T)
    w_low = 1 - w_high           # a Python 1 keeps T (a NumPy scalar first would not
                                 # defer to a CuPy array)
    zero = T(0)
    return low, high, xp.where(inside, w_low, zero), xp.where(inside, w_high, zero)


def _weight_matrix(axis, size, count=None):
    """(K, O, size): the summed interpolation weight each bin gives each cell along one
    axis, ``A[k, o, h] = Σ_g w_low·[low = h] + w_high·[high = h]`` (divided by ``count``
    when given). One step per sample of the largest grid, no scatter needed."""
    xp = _array_module(axis.w_low)
    K, O, G = axis.low.shape
    cells = xp.arange(size)
    A = xp.zeros((K, O, size), dtype=axis.w_low.dtype)
    for g in range(G):
        A += (axis.low[:, :, g, None] == cells) * axis.w_low[:, :, g, None]
        A += (axis.high[:, :, g, None] == cells) * axis.w_high[:, :, g, None]
    if count is not None:
        A /= count[:, None, None]
    return A


def _crops(rois, A, B):
    """Per RoI, ``(batch, r0, r1, c0, c1)`` as Python ints: the rows [r0, r1) and columns
    [c0, c1) its weights touch (an empty range when it touches nothing)."""
    xp = _array_module(A)
    H, W = A.shape[2], B.shape[2]
    rows, cols = (A != 0).any(axis=1), (B != 0).any(axis=1)            # (K, H), (K, W)
    r0, c0 = xp.argmax(rows, axis=1), xp.argmax(cols, axis=1)
    r1 = xp.where(rows.any(axis=1), H - xp.argmax(rows[:, ::-1], axis=1), r0)
    c1 = xp.where(cols.any(axis=1), W - xp.argmax(cols[:, ::-1], axis=1), c0)
    table = xp.stack([rois[:, 0].astype(numpy.int64), r0, r1, c0, c1], axis=1)
    return table.tolist()                      # one small device-to-host copy


def _interpolation(rois, spatial_scale, in_hw, out_size, sampling_ratio, aligned):
    """The matrices A (K, OH, H), already divided by the counts, B (K, OW, W), and the
    crop table of :func:`_crops`."""
    rows, cols, count = roi_align_samples(rois, spatial_scale, in_hw, out_size,
                                          sampling_ratio, aligned)
    A = _weight_matrix(rows, in_hw[0], count)
    B = _weight_matrix(cols, in_hw[1])
    return A, B, _crops(rois, A, B)


def roi_align_forward(x, rois, spatial_scale, out_size, sampling_ratio, aligned):
    """The average of bilinear samples over each bin of each RoI (module docstring):
    ``out[k] = A_k · x[b_k] · B_kᵀ`` on the cells the RoI touches.

    ``x`` (N, C, H, W), ``rois`` (K, 5) in x's dtype. Returns (K, C, OH, OW).
    """
    xp = _array_module(x)
    K, (OH, OW) = rois.shape[0], out_size
    out = xp.zeros((K, x.shape[1], OH, OW), dtype=x.dtype)
    if K == 0:
        return out
    A, B, crops = _interpolation(rois, spatial_scale, x.shape[2:], out_size,
                                 sampling_ratio, aligned)
    for k, (b, r0, r1, c0, c1) in enumerate(crops):
        if r0 < r1 and c0 < c1:
            # (OH, h) @ (C, h, w) @ (w, OW) -> (C, OH, OW)
            out[k] = A[k, :, r0:r1] @ x[b, :, r0:r1, c0:c1] @ B[k, :, c0:c1].T
    return out


def roi_align_backward(grad, rois, in_shape, spatial_scale, out_size, sampling_ratio,
                       aligned):
    """The transpose of :func:`roi_align_forward`: ``dx[b_k] += A_kᵀ · grad[k] · B_k``,
    RoIs of one image adding up. ``grad`` (K, C, OH, OW); returns (N, C, H, W)."""
    xp = _array_module(grad)
    gx = xp.zeros(in_shape, dtype=grad.dtype)
    if rois.shape[0] == 0:
        return gx
    A, B, crops = _interpolation(rois, spatial_scale, in_shape[2:], out_size,
                                 sampling_ratio, aligned)
    for k, (b, r0, r1, c0, c1) in enumerate(crops):
        if r0 < r1 and c0 < c1:
            # (h, OH) @ (C, OH, OW) @ (OW, w) -> (C, h, w)
            gx[b, :, r0:r1, c0:c1] += A[k, :, r0:r1].T @ grad[k] @ B[k, :, c0:c1]
    return gx
