"""Pooling windows: the raw array routines behind max, average and adaptive pooling and
max unpooling (no autograd; ``minicnn/functional/pooling.py`` wraps them).

Notation: N batch, C channels, H×W input, KH×KW kernel, SH×SW stride, PH×PW padding
(each side), DH×DW dilation, OH×OW output. Every routine takes and returns (N, C, ., .)
arrays; the caller adds or removes the batch axis of unbatched input.

Fixed windows: the *tap* view
-----------------------------
Output (oh, ow) of a pooling window reads the input at ``(oh*SH - PH + kh*DH,
ow*SW - PW + kw*DW)`` for each kernel offset (kh, kw). For one fixed offset those
positions, over all outputs, form a strided slice of the input, so a pooling pass is a
loop over the KH*KW offsets ("taps") with one whole-array operation each, never a loop
over pixels. Taps that fall into the padding are not read at all: :func:`window_taps`
gives, per offset, the range of outputs whose tap lands inside the input and the input
slice it reads. Skipping a padded tap is the same as padding with -inf for a max (the
pad never wins) and with 0 for a sum, without building a padded copy of the input, and
the backward passes write straight into an input-sized gradient, with no crop.

Adaptive windows
----------------
Output i of an adaptive pool along an axis of length L with O outputs covers
``[floor(i*L/O), ceil((i+1)*L/O))`` (torch's bounds; windows overlap by one when O does
not divide L). A rectangle's sum is a sum of column sums and its max a max of row
maxima, so adaptive pooling reduces one axis, then the other (for max, W first: see
:func:`adaptive_max_pool2d_forward`). Along an axis it loops over the offsets t within
the windows, reading position start + t of every window in one array operation (a
strided slice when O divides L); windows shorter than t are masked or harmless. The
backward passes scatter the same way, in interleaved groups of windows when O > L so
that no two writes of one step hit the same position.

Ties and NaN follow torch's CPU kernels: within a window the taps are visited in
row-major order and a tap replaces the current maximum when it is *greater*, or when it
is NaN. So the first of several equal maxima wins, a NaN always propagates, and the last
NaN wins. A window whose every value is -inf reports its first tap inside the input.

Nothing here imports CuPy: the array module is found from the array's type.
"""
import sys

import numpy

__all__ = [
    "pool_output_size", "window_taps", "max_pool2d_forward", "max_pool2d_indices",
    "max_pool2d_backward", "avg_pool2d_divisor", "avg_pool2d_forward", "avg_pool2d_backward",
    "adaptive_bounds", "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_forward", "adaptive_max_pool2d_indices",
    "adaptive_max_pool2d_backward", "unpool_output_size", "max_unpool2d_forward",
    "max_unpool2d_backward",
]


def _array_module(a):
    """numpy or cupy, from the module that defines ``type(a)`` (already imported when an
    array of that type exists, so this never imports cupy itself)."""
    if type(a).__module__.split(".")[0] == "cupy":
        return sys.modules["cupy"]
    return numpy


def _offset_dtype(count):
    """The smallest integer type that numbers ``count`` window offsets: what backward
    keeps per output (one byte for every kernel up to 16x16)."""
    return numpy.uint8 if count <= 256 else numpy.int32


# ------------------------------------------------------------------ output sizes

def pool_output_size(size, kernel, stride, padding=0, dilation=1, ceil_mode=False):
    """Number of windows along one axis, torch's formula exactly::

        OH = floor((H + 2*PH - DH*(KH - 1) - 1 [+ SH - 1 if ceil_mode]) / SH) + 1

    and, with ``ceil_mode``, one less when the last window would start at or past
    ``H + PH`` (in padded coordinates), i.e. in the right padding: every window must
    start inside the input or in the left padding. Division rounds toward -inf, so an
    input smaller than the kernel gives 0 or less (the caller reports it).
    """
    extent = dilation * (kernel - 1) + 1
    span = size + 2 * padding - extent + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def unpool_output_size(size, kernel, stride, padding=0):
    """Default output length of max unpooling (the input length of the max pool it
    inverts): ``(H - 1)*SH - 2*PH + KH``."""
    return (size - 1) * stride - 2 * padding + kernel


# --------------------------------------------------------------- fixed windows

def window_taps(size, out_size, kernel, stride, padding=0, dilation=1):
    """For each kernel offset k along one axis, where its taps land inside the input.

    Returns a list of ``(k, out_slice, in_slice)``: output positions ``o`` in
    ``out_slice`` read input position ``o*stride - padding + k*dilation``, and those
    positions, in order, are ``in_slice``. Offsets that only ever land in the padding
    (or past the input, in ceil mode) are left out, as are the outputs for which offset
    k is outside.
    """
    taps = []
    for k in range(kernel):
        first = k * dilation - padding            # input position of tap k for output 0
        lo = max(0, -(first // stride))           # first o with o*stride + first >= 0
        hi = min(out_size, (size - 1 - first) // stride + 1)   # past the last one < size
        if lo < hi:
            start = lo * stride + first
            taps.append((k, slice(lo, hi), slice(start, start + (hi - lo - 1) * stride + 1,
                                                 stride)))
    return taps


def _taps2d(in_hw, out_hw, kernel, stride, padding, dilation):
    """Pairs of row and column taps: (kh*KW + kw, output index, input index)."""
    rows = window_taps(in_hw[0], out_hw[0], kernel[0], stride[0], padding[0], dilation[0])
    cols = window_taps(in_hw[1], out_hw[1], kernel[1], stride[1], padding[1], dilation[1])
    return [(kh * kernel[1] + kw, (Ellipsis, oh, ow), (Ellipsis, ih, iw))
            for kh, oh, ih in rows for kw, ow, iw in cols]


def _first_inside(out_size, stride, padding, dilation, xp):
    """Per output position, the first kernel offset whose tap is inside the input:
    the smallest k >= 0 with o*stride - padding + k*dilation >= 0."""
    o = xp.arange(out_size)
    return xp.maximum(0, -((o * stride - padding) // dilation))


def _lowest(dtype):
    """What a maximum starts from: -inf, or the smallest integer of an integer type."""
    return -numpy.inf if dtype.kind == "f" else numpy.iinfo(dtype).min


def _max_scan(x, steps, out_shape, argmax=None):
    """Maxima of ``x`` over windows, visited as a list of ``steps``.

    Each step ``(k, out_index, in_index)`` offers ``x[in_index]`` as window offset k to
    the outputs ``out[out_index]``; k must grow along the list (row-major window order).
    Returns ``(out, argmax)``. When an ``argmax`` array is given (filled with each
    window's starting offset) it ends up holding torch's winner: the offset of the first
    maximum, or of the last NaN when the window has one; without it only values are
    computed.

    Because k grows, "record k where the candidate is greater" is ``argmax =
    max(argmax, k * greater)``: two branch-free array operations, which measured
    about 1.5 times faster than one masked write (``copyto(..., where=)``).
    """
    xp = _array_module(x)
    out = xp.full(out_shape, _lowest(x.dtype), dtype=x.dtype)
    if argmax is None:
        for _, o, i in steps:
            top = out[o]
            xp.maximum(top, x[i], out=top)
        return out, None
    better = xp.empty(out_shape, dtype=bool)
    stamp = xp.empty(out_shape, dtype=argmax.dtype)
    # NOTE: NaN > x is False, and once a window's maximum is NaN nothing is greater. torch
    # points at the window's last NaN, so a NaN candidate counts as better too (k grows,
    # so the last one stays). Asking "is there a NaN anywhere?" first would cost a wait
    # for the device on a GPU at every call; two more array operations per tap do not.
    is_nan = xp.empty(out_shape, dtype=bool) if x.dtype.kind == "f" else None
    for k, o, i in steps:
        cand, top = x[i], out[o]
        xp.greater(cand, top, out=better[o])
        if is_nan is not None:
            # NaN is the one value unequal to itself. NOTE: not isnan(..., out=view):
            # NumPy 2.4 writes wrong answers when both its input and output are strided.
            xp.not_equal(cand, cand, out=is_nan[o])
            xp.logical_or(better[o], is_nan[o], out=better[o])
        _record(argmax[o], better[o], k, stamp[o])
        xp.maximum(top, cand, out=top)         # propagates NaN, as torch does
    return out, argmax


def _record(argmax, mask, k, scratch):
    """argmax = k where mask, given that argmax <= k everywhere (in place)."""
    xp = _array_module(argmax)
    xp.multiply(mask, argmax.dtype.type(k), out=scratch)
    xp.maximum(argmax, scratch, out=argmax)


def max_pool2d_forward(x, kernel, stride, padding, dilation, out_size, with_argmax=True,
                       relu=False):
    """Max over every (dilated) window of ``x`` (N, C, H, W), padding counting as -inf.

    ``kernel``, ``stride``, ``padding``, ``dilation`` and ``out_size`` are (row, column)
    pairs; ``out_size`` comes from :func:`pool_output_size`. Returns ``(out, argmax)``:
    ``out`` (N, C, OH, OW) in ``x``'s dtype and, when ``with_argmax``, ``argmax`` of the
    same shape holding the winning kernel offset ``kh*KW + kw`` of each window (a small
    integer type; :func:`max_pool2d_indices` turns it into torch's flat indices).
    Ties go to the first maximum in row-major order, NaN wins (module docstring).

    ``relu=True`` gives max pooling of relu(x) instead: the maxima clamped at 0 (a NaN
    stays NaN), since ``max(relu(a), relu(b), ...) = relu(max(a, b, ...))``; the argmax
    is max pooling's. Where the output is 0 the window's winner is unused: relu's
    gradient is 0 there whichever tap wins (see :func:`max_pool2d_backward`).
    """
    xp = _array_module(x)
    N, C, H, W = x.shape
    OH, OW = out_size
    taps = _taps2d((H, W), out_size, kernel, stride, padding, dilation)
    argmax = None
    if with_argmax:
        # Each window starts at its first tap inside the input, as in torch, so a window
        # of nothing but -inf still reports a real input position.
        argmax = xp.empty((N, C, OH, OW), dtype=_offset_dtype(kernel[0] * kernel[1]))
        first_row = _first_inside(OH, stride[0], padding[0], dilation[0], xp)
        first_col = _first_inside(OW, stride[1], padding[1], dilation[1], xp)
        argmax[...] = first_row[:, None] * kernel[1] + first_col[None, :]   # (OH, OW)
    out, argmax = _max_scan(x, taps, (N, C, OH, OW), argmax)
    if relu:
        xp.maximum(out, 0, out=out)             # on the output only: no pass over x
    return out, argmax


def max_pool2d_indices(argmax, in_hw, kernel, stride, padding, dilation):
    """torch's indices from :func:`max_pool2d_forward`'s kernel offsets: the flat position
    ``h*W + w`` of each window's maximum inside its (n, c) plane of the *unpadded* input,
    with h = oh*SH - PH + kh*DH and w = ow*SW - PW + kw*DW. Returns int64 (N, C, OH, OW).
    """
    xp = _array_module(argmax)
    OH, OW = argmax.shape[-2:]
    offsets = argmax.astype(numpy.int64)
    kh, kw = offsets // kernel[1], offsets % kernel[1]
    h = (xp.arange(OH) * stride[0] - padding[0])[:, None] + kh * dilation[0]
    w = (xp.arange(OW) * stride[1] - padding[1]) + kw * dilation[1]
    return h * in_hw[1] + w


def max_pool2d_backward(grad, argmax, in_shape, kernel, stride, padding, dilation,
                        relu_out=None):
    """Send each output's gradient to the input position that won its window.

    ``grad`` and ``argmax`` are (N, C, OH, OW); returns the (N, C, H, W) gradient. An
    input that wins several overlapping windows receives the sum; padded taps never
    win, so nothing is cropped.

    ``relu_out``: the output of a ``relu=True`` forward. Only outputs > 0 pass their
    gradient on: there the winner is > 0 too, where relu's derivative is 1; an output
    of 0 (every tap <= 0) or NaN has a winner where minicnn's relu' = [x > 0] is 0.
    (torch's relu passes the gradient of a NaN on; minicnn's relu does not.)
    """
    xp = _array_module(grad)
    if relu_out is not None:
        grad = xp.where(relu_out > 0, grad, 0)
    gx = xp.zeros(in_shape, dtype=grad.dtype)
    for k, o, i in _taps2d(in_shape[2:], grad.shape[2:], kernel, stride, padding, dilation):
        # Within one offset the input positions are distinct, so += is exact; where()
        # rather than a multiply by the mask keeps an inf or NaN in one output's
        # gradient from turning the others' zeros into NaN.
        gx[i] += xp.where(argmax[o] == k, grad[o], 0)
    return gx


# ------------------------------------------------------------------ average

def _avg_counts(size, out_size, kernel, stride, padding, xp):
    """Per output position along one axis: the window length clipped to the padded
    input (torch's ``pool_size`` term), and the part of it inside the input."""
    start = xp.arange(out_size) * stride - padding
    end = xp.minimum(start + kernel, size + padding)
    inside = xp.minimum(end, size) - xp.maximum(start, 0)
    return end - start, inside


def avg_pool2d_divisor(in_hw, out_size, kernel, stride, padding, count_include_pad,
                       divisor_override, dtype, xp):
    """What each window's sum is divided by, exactly as torch computes it.

    ``divisor_override`` when given (a number). Otherwise, per window, with the window
    ``[o*S - P, o*S - P + K)`` along each axis first clipped at the far edge of the
    *padded* input (a ceil-mode window hanging past it never counts that part):

    * ``count_include_pad=True``: its clipped area, padding included;
    * ``count_include_pad=False``: the area of its part inside the input.

    Returns an (OH, OW) array of ``dtype`` (or the override itself).
    """
    if divisor_override is not None:
        return divisor_override
    rows_pad, rows_in = _avg_counts(in_hw[0], out_size[0], kernel[0], stride[0], padding[0], xp)
    cols_pad, cols_in = _avg_counts(in_hw[1], out_size[1], kernel[1], stride[1], padding[1], xp)
    rows, cols = (rows_pad, cols_pad) if count_include_pad else (rows_in, cols_in)
    return (rows[:, None] * cols[None, :]).astype(dtype)


def avg_pool2d_forward(x, kernel, stride, padding, out_size, divisor):
    """Window sums of ``x`` (N, C, H, W), zero padding, divided by ``divisor`` (from
    :func:`avg_pool2d_divisor`). Returns (N, C, OH, OW) in ``x``'s dtype."""
    xp = _array_module(x)
    N, C = x.shape[:2]
    acc = xp.zeros((N, C) + tuple(out_size), dtype=x.dtype)
    for _, o, i in _taps2d(x.shape[2:], out_size, kernel, stride, padding, (1, 1)):
        acc[o] += x[i]
    acc /= divisor
    return acc


def avg_pool2d_backward(grad, in_shape, kernel, stride, padding, divisor):
    """The transpose of :func:`avg_pool2d_forward`: each input position receives
    grad / divisor from every window that covers it."""
    xp = _array_module(grad)
    scaled = grad / divisor
    gx = xp.zeros(in_shape, dtype=grad.dtype)
    for _, o, i in _taps2d(in_shape[2:], grad.shape[2:], kernel, stride, padding, (1, 1)):
        gx[i] += scaled[o]
    return gx


# ----------------------------------------------------------------- adaptive

def adaptive_bounds(size, out_size):
    """torch's adaptive windows along one axis: lists ``starts``, ``ends`` with
    ``starts[i] = floor(i*L/O)`` and ``ends[i] = ceil((i+1)*L/O)`` (L = size, O =
    out_size). Consecutive windows overlap by one position when O does not divide L."""
    starts = [i * size // out_size for i in range(out_size)]
    ends = [-(-(i + 1) * size // out_size) for i in range(out_size)]
    return starts, ends


def _at(axis, index, ndim=4):
    """An index tuple selecting ``index`` along ``axis`` and everything elsewhere."""
    key = [slice(None)] * ndim
    key[axis] = index
    return tuple(key)


def _as_index(positions, xp):
    """A slice when ``positions`` is an increasing arithmetic progression (a view, no
    copy), else an integer array (a gather)."""
    if len(positions) == 1:
        return slice(positions[0], positions[0] + 1)
    step = positions[1] - positions[0]
    if step > 0 and all(b - a == step for a, b in zip(positions, positions[1:])):
        return slice(positions[0], positions[-1] + 1, step)
    return xp.asarray(positions)


def _window_steps(starts, ends, axis, xp, disjoint=False):
    """Visit variable-length windows along ``axis`` one offset t at a time.

    Yields ``(t, windows, index, short)``: ``windows`` selects a set of windows along
    ``axis`` (a slice), ``index`` selects, for each of them, position ``min(starts[i] +
    t, ends[i] - 1)`` (a strided slice when those are evenly spaced, as when O divides
    L, else an integer array), and ``short`` is None when all those windows are longer
    than t, else a boolean mask, shaped to broadcast along ``axis``, of the ones that
    are not (they re-read their last position, which a sum must skip).

    ``disjoint=True`` is for scattering (``out[index] += ...``), where two windows of
    one step must not name the same position: windows are then visited in
    ``m = ceil(O/L)`` interleaved groups (i, i+m, i+2m, ...). Within a group both starts
    and ends grow strictly (they advance by m*L/O >= 1 per window), so the positions
    of one step are distinct. m is 1 unless the output is larger than the input.
    """
    groups = 1
    if disjoint and starts:
        groups = -(-len(starts) // ends[-1])          # ceil(O / L); ends[-1] == L
    for g in range(groups):
        group_starts, group_ends = starts[g::groups], ends[g::groups]
        lengths = [e - s for s, e in zip(group_starts, group_ends)]
        for t in range(max(lengths, default=0)):
            positions = [min(s + t, e - 1) for s, e in zip(group_starts, group_ends)]
            short = None
            if min(lengths) <= t:
                short = xp.asarray([n <= t for n in lengths]).reshape(
                    (-1,) + (1,) * (-axis - 1))
            yield (t, _at(axis, slice(g, None, groups)),
                   _at(axis, _as_index(positions, xp)), short)


def _window_sums(x, axis, starts, ends):
    """Sums of ``x`` over the windows ``[starts[i], ends[i])`` along ``axis``: one
    whole-array addition per offset within the windows, never a loop over windows
    (short reductions along the last axis measured up to 30 times slower)."""
    xp = _array_module(x)
    shape = list(x.shape)
    shape[axis] = len(starts)
    acc = xp.zeros(shape, dtype=x.dtype)
    for _, _, index, short in _window_steps(starts, ends, axis, xp):
        acc += x[index] if short is None else xp.where(short, 0, x[index])
    return acc


def _spread(grad, axis, starts, ends, size):
    """Transpose of :func:`_window_sums`: every position of window i receives
    grad[i]; overlapping windows add up."""
    xp = _array_module(grad)
    shape = list(grad.shape)
    shape[axis] = size
    gx = xp.zeros(shape, dtype=grad.dtype)
    for _, windows, index, short in _window_steps(starts, ends, axis, xp, disjoint=True):
        gx[index] += grad[windows] if short is None else xp.where(short, 0, grad[windows])
    return gx


def _adaptive_area(in_hw, out_size, dtype, xp):
    """(OH, OW) array of window areas (window height times width)."""
    heights = [e - s for s, e in zip(*adaptive_bounds(in_hw[0], out_size[0]))]
    widths = [e - s for s, e in zip(*adaptive_bounds(in_hw[1], out_size[1]))]
    return xp.asarray(heights, dtype=dtype)[:, None] * xp.asarray(widths, dtype=dtype)


def adaptive_avg_pool2d_forward(x, out_size):
    """Mean of ``x`` (N, C, H, W) over each adaptive window: sums over the H windows,
    then sums of those over the W windows, divided by the window area.
    Returns (N, C, OH, OW)."""
    xp = _array_module(x)
    H, W = x.shape[2:]
    sums = _window_sums(x, -2, *adaptive_bounds(H, out_size[0]))       # (N, C, OH, W)
    sums = _window_sums(sums, -1, *adaptive_bounds(W, out_size[1]))    # (N, C, OH, OW)
    sums /= _adaptive_area((H, W), out_size, x.dtype, xp)
    return sums


def adaptive_avg_pool2d_backward(grad, in_shape):
    """Each input position receives grad / area from every window that covers it."""
    xp = _array_module(grad)
    H, W = in_shape[2:]
    scaled = grad / _adaptive_area((H, W), grad.shape[2:], grad.dtype, xp)
    g = _spread(scaled, -1, *adaptive_bounds(W, grad.shape[3]), W)      # (N, C, OH, W)
    return _spread(g, -2, *adaptive_bounds(H, grad.shape[2]), H)        # (N, C, H, W)


def _window_max(x, axis, starts, ends, with_argmax):
    """Max over the windows ``[starts[i], ends[i])`` along ``axis``, with torch's
    tie and NaN rule, one offset t within the windows at a time.

    A window shorter than t re-reads its last position, which never changes its
    maximum (only a NaN re-wins, at the same position). Returns ``(values, offsets)``,
    offsets (the winner's position minus the window start) or None.
    """
    xp = _array_module(x)
    shape = list(x.shape)
    shape[axis] = len(starts)
    lengths = [e - s for s, e in zip(starts, ends)]
    steps = [(t, Ellipsis, index) for t, _, index, _ in _window_steps(starts, ends, axis, xp)]
    argmax = None
    if with_argmax:
        argmax = xp.zeros(shape, dtype=_offset_dtype(max(lengths, default=0)))
    best, argmax = _max_scan(x, steps, tuple(shape), argmax)
    if with_argmax:
        # a NaN re-read past a short window's end recorded t >= its length: point it back
        last = xp.asarray(lengths, dtype=argmax.dtype) - 1
        xp.minimum(argmax, last.reshape((-1,) + (1,) * (-axis - 1)), out=argmax)
    return best, argmax


def _route(grad, argmax, axis, starts, ends, size):
    """Transpose of :func:`_window_max`: window i's gradient goes to position
    ``starts[i] + argmax[i]``; a position that won several windows receives the sum."""
    xp = _array_module(grad)
    shape = list(grad.shape)
    shape[axis] = size
    gx = xp.zeros(shape, dtype=grad.dtype)
    for t, windows, index, _ in _window_steps(starts, ends, axis, xp, disjoint=True):
        # offsets stop below each window's length, so a short window never matches t
        gx[index] += xp.where(argmax[windows] == t, grad[windows], 0)
    return gx


def adaptive_max_pool2d_forward(x, out_size, with_argmax=True):
    """Max of ``x`` (N, C, H, W) over each adaptive window: the max over the W windows
    of each row first, then over the H windows of those row maxima.

    NOTE: the order is what makes ties come out as torch's: reducing W first picks,
    per row, the first maximal column; reducing H then picks the first row holding the
    overall maximum, so the winner is the first maximum in row-major order (H first
    would prefer the leftmost column instead).

    Returns ``(out, saved)``: ``out`` (N, C, OH, OW) and, when ``with_argmax``, ``saved``
    = (column offsets (N, C, H, OW), row offsets (N, C, OH, OW)) for the backward pass
    and :func:`adaptive_max_pool2d_indices`; else None.
    """
    H, W = x.shape[2:]
    rows, col_arg = _window_max(x, -1, *adaptive_bounds(W, out_size[1]), with_argmax)
    out, row_arg = _window_max(rows, -2, *adaptive_bounds(H, out_size[0]), with_argmax)
    return out, ((col_arg, row_arg) if with_argmax else None)


def adaptive_max_pool2d_indices(saved, in_hw):
    """torch's flat indices ``h*W + w`` of each window's maximum (int64, (N, C, OH, OW))."""
    col_arg, row_arg = saved
    xp = _array_module(row_arg)
    OH, OW = row_arg.shape[2:]
    row_starts = xp.asarray(adaptive_bounds(in_hw[0], OH)[0], dtype=numpy.int64)
    col_starts = xp.asarray(adaptive_bounds(in_hw[1], OW)[0], dtype=numpy.int64)
    h = row_arg.astype(numpy.int64) + row_starts[:, None]                   # (N, C, OH, OW)
    # the column that won row h of window column ow
    w = xp.take_along_axis(col_arg, h, axis=2).astype(numpy.int64) + col_starts
    return h * in_hw[1] + w


def adaptive_max_pool2d_backward(grad, saved, in_shape):
    """Route each output's gradient back through the H stage, then the W stage."""
    col_arg, row_arg = saved
    H, W = in_shape[2:]
    g = _route(grad, row_arg, -2, *adaptive_bounds(H, grad.shape[2]), H)   # (N, C, H, OW)
    return _route(g, col_arg, -1, *adaptive_bounds(W, grad.shape[3]), W)   # (N, C, H, W)


# ------------------------------------------------------------------ unpool

def max_unpool2d_forward(x, indices, out_size):
    """Place each value of ``x`` (N, C, H, W) at flat position ``indices`` (same shape,
    values in [0, OH*OW)) of a zero (N, C, OH, OW) output plane.

    NOTE: when two values share an index the later one (in row-major order) is kept,
    as torch's CPU kernel does; NumPy assigns in order, CuPy's order is unspecified.
    """
    xp = _array_module(x)
    N, C, H, W = x.shape
    OH, OW = out_size
    out = xp.zeros((N * C, OH * OW), dtype=x.dtype)
    planes = xp.arange(N * C)[:, None]
    out[planes, indices.reshape(N * C, H * W)] = x.reshape(N * C, H * W)
    return out.reshape(N, C, OH, OW)


def max_unpool2d_backward(grad, indices):
    """Gather: the gradient of x[n, c, h, w] is grad's plane (n, c) at indices[n, c, h, w]
    (for every duplicate, as torch's backward does)."""
    xp = _array_module(grad)
    N, C, OH, OW = grad.shape
    H, W = indices.shape[2:]
    picked = xp.take_along_axis(grad.reshape(N * C, OH * OW),
                                indices.reshape(N * C, H * W), axis=1)
    return picked.reshape(N, C, H, W)
