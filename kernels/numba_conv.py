"""CPU fast path of convolution: im2col/col2im compiled with numba, and a conv2d that
works through the batch in cache-sized tiles.

The reference (``kernels/im2col.py`` plus the matrix multiplies in
``minicnn/functional/conv.py``) is the description of what is computed; this module
computes the same numbers faster on NumPy arrays. Only float32/float64 NumPy arrays come
here (``kernels/dispatch.py`` decides), never CuPy ones.

Why it is faster (measured on a 2-core AVX-512 machine, 3x3 convolutions):

* The reference builds the whole column matrix, (N, C·KH·KW, OH·OW): nine times the
  input, written to memory, read back by the GEMM, and kept for the weight gradient.
  Here the output positions are cut into *tiles* of a few MB; each tile's columns are
  built into one reused buffer while it is still in cache, multiplied, and dropped.
  The backward pass rebuilds them from the input (cheaper than keeping them: a
  ResNet would otherwise hold several hundred MB of columns between the passes).
* A tile is laid out (C·KH·KW, positions), with the positions of *several images* side
  by side, so one GEMM covers many images: on small feature maps (8x8) the reference's
  per-image GEMMs are too thin for BLAS to run near its peak.
* The column kernels are compiled loops with the padding handled by index bounds (no
  padded copy of the input) and a contiguous, vectorised inner copy when the stride
  is 1.

Threads: the tiles are shared out over as many threads as NumPy's BLAS would use
(``kernels/_threads.py``), each thread building its tiles' columns and multiplying them
with a one-thread GEMM (BLAS held at one thread meanwhile), so both cores work through
the copies and the GEMMs alike. The earlier arrangement, compiled copies on the calling
thread around a two-thread GEMM, left one core idle during every copy; splitting the
batch measured 1.1-1.6x faster on the 3x3 layers of benchmarks/. The backward pass adds
into the input gradient, so its threads take whole images each (a batch of one runs on
one thread, with BLAS's threads). NOTE: numba's ``parallel=True`` was measured and
dropped: its OpenMP workers spin-wait after each loop and starve the BLAS threads of the
GEMM that follows (a 3x3 layer went from 80 ms to 800 ms on 2 cores).

A kernel as large as its input (LeNet-5's C5) is a matrix multiply with no columns at
all (:func:`covers_input`). Layers may keep their columns from the forward pass for the
weight gradient (KEEP_COLUMNS; off by default: measured slower, see there).

Tile layout. Output positions are numbered (n, oh, ow). A tile covers images
n0 .. n0+nimg-1 and, in each, the output rows oh0 .. oh0+nrows-1 (either whole images,
or a band of rows of one image when a single image is too big)::

    cols[(c, kh, kw), a, t, ow] = x_pad[n0 + a, c, (oh0 + t)·SH + kh·DH, ow·SW + kw·DW]

Notation as in ``kernels/im2col.py``: N batch, C channels, H×W input, KH×KW kernel,
SH×SW stride, PH×PW padding, DH×DW dilation, OH×OW output, G groups, O output channels.
"""
from __future__ import annotations

import threading

import numpy as np

from kernels import _threads
from kernels._jit import jit
from kernels.im2col import check_col2im_shapes, conv_output_size, im2col_output_size

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward"]

# Column entries in one tile. Smaller tiles stay in cache, larger ones give BLAS wider
# GEMMs and fewer calls; 1M (4 MB in float32) measured best on the layers of
# benchmarks/ (tile sizes from 64K to 8M were tried).
TILE_ELEMENTS = 1 << 20
# ... but at least this many output positions (GEMM columns) per tile, whatever the
# column entries: with a wide K (256 channels x 3x3 = 2304) 1M entries left one output
# row of a 272-wide map per tile (GEMMs of 272 columns, 3.6 GFLOP/s), and the FPN and RPN
# convolutions of Mask R-CNN at 800x1088 spent most of its time there; 8192 columns ran
# that layer 6-9x faster and no slower on small layers (measured on the shared 2-core
# machine, forward and backward).
MIN_TILE_COLUMNS = 1 << 13
# A layer whose column matrix holds at most this many entries keeps it from the forward
# pass to the backward (conv2d_forward(keep_columns=True)) instead of building it again.
# Off (0): measured on the LeNet-5 step (batch 64, alternating processes, quiet machine),
# keeping the columns of C1 and C3 (2M entries allowed) took 5.5-5.9 ms a step against
# 4.9-5.0 ms rebuilding them: the kept columns are fresh memory every step, while the
# rebuild writes into the warm, reused workspace, and the im2col of these small layers
# is cheap next to their GEMMs. Raise it to try it on other layers.
KEEP_COLUMNS = 0
#: threads a convolution's tiles are shared out over (None: as many as BLAS would use,
#: kernels/_threads.blas_threads; 1: all tiles on the calling thread, around BLAS's own
#: multi-threaded GEMMs, the arrangement before the split)
THREADS = None


# ------------------------------------------------------------------ compiled loops
#
# The loops index flat (1-D) views of C-contiguous arrays. A tile of columns is
# addressed as ``cols[row·row_stride + a·img_stride + t·OW + ow]`` so that one kernel
# serves both the tile layout (row, image, out row, out col) and the reference layout
# (image, row, out row, out col).
#
# NOTE: every index goes through ``_u`` (an unsigned integer). numba checks each signed
# index for a negative value to wrap it around, and that check in the innermost loop
# keeps LLVM from vectorising the copy: measured 2x slower on the 3x3 layers.

@jit(cache=True, nogil=True, inline="always")
def _u(i):
    return np.uintp(i)


@jit(cache=True, nogil=True, inline="always")
def _valid_range(off, S, L, OW):
    """The output columns ow whose input column ow·S + off lies inside 0..L-1."""
    lo = 0 if off >= 0 else (-off + S - 1) // S
    hi = 0 if L - off <= 0 else min(OW, (L - off + S - 1) // S)
    return lo, max(lo, hi)


@jit(cache=True, nogil=True)
def _im2col_tile(x, cols, row_stride, img_stride, n0, nimg, oh0, nrows, OW,
                 KH, KW, SH, SW, PH, PW, DH, DW):
    """Fill the tile of flat ``cols`` from the C-contiguous ``x`` (N, C, H, W)::

        cols[row·row_stride + a·img_stride + t·OW + ow]
            = x[n0 + a, c, (oh0 + t)·SH + kh·DH - PH, ow·SW + kw·DW - PW]   (0 outside)

    for row = (c·KH + kh)·KW + kw.
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    xf = x.reshape(-1)
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                row = (c * KH + kh) * KW + kw
                off = kw * DW - PW
                lo, hi = _valid_range(off, SW, W, OW)
                for a in range(nimg):
                    plane = ((n0 + a) * C + c) * H * W
                    for t in range(nrows):
                        d = row * row_stride + a * img_stride + t * OW
                        i = (oh0 + t) * SH + kh * DH - PH
                        if i < 0 or i >= H:     # the whole window row is padding
                            for ow in range(OW):
                                cols[_u(d + ow)] = 0
                            continue
                        s = plane + i * W + off
                        for ow in range(lo):
                            cols[_u(d + ow)] = 0
                        if SW == 1:             # contiguous: the loop vectorises
                            for ow in range(lo, hi):
                                cols[_u(d + ow)] = xf[_u(s + ow)]
                        else:
                            for ow in range(lo, hi):
                                cols[_u(d + ow)] = xf[_u(s + ow * SW)]
                        for ow in range(hi, OW):
                            cols[_u(d + ow)] = 0


@jit(cache=True, nogil=True)
def _col2im_tile(cols, row_stride, img_stride, gx, n0, nimg, oh0, nrows, OW,
                 KH, KW, SH, SW, PH, PW, DH, DW):
    """Add the tile of flat ``cols`` onto the C-contiguous ``gx`` (N, C, H, W) in place:
    the adjoint of ``_im2col_tile`` (entries that fall in the padding are dropped)."""
    C, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    gf = gx.reshape(-1)
    # image by image, channel by channel: the KH·KW rows of one channel all add onto the
    # same (cache-resident) plane
    for a in range(nimg):
        for c in range(C):
            plane = ((n0 + a) * C + c) * H * W
            for kh in range(KH):
                for kw in range(KW):
                    row = (c * KH + kh) * KW + kw
                    off = kw * DW - PW
                    lo, hi = _valid_range(off, SW, W, OW)
                    for t in range(nrows):
                        i = (oh0 + t) * SH + kh * DH - PH
                        if i < 0 or i >= H:
                            continue
                        s = row * row_stride + a * img_stride + t * OW
                        d = plane + i * W + off
                        if SW == 1:
                            for ow in range(lo, hi):
                                gf[_u(d + ow)] += cols[_u(s + ow)]
                        else:
                            for ow in range(lo, hi):
                                gf[_u(d + ow * SW)] += cols[_u(s + ow)]


@jit(cache=True, nogil=True)
def _scatter_output(y, out, bias, n0, nimg, oh0, nrows):
    """out[n0 + a, o, oh0 + t, :] = y[o, a, t, :] + bias[o]: a tile's GEMM result, flat
    (O, nimg, nrows, OW), put back into the C-contiguous out (N, O, OH, OW)."""
    O, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    of = out.reshape(-1)
    block = nrows * OW                          # the tile's rows of one (image, channel)
    for o in range(O):
        shift = bias[o]
        for a in range(nimg):
            s = (o * nimg + a) * block
            d = (((n0 + a) * O + o) * OH + oh0) * OW
            for q in range(block):
                of[_u(d + q)] = y[_u(s + q)] + shift


# reassoc: lets LLVM split the running sum into vector lanes (a different but equally
# valid summation order); NaN and inf keep their meaning, unlike with fastmath=True
@jit(cache=True, nogil=True, fastmath={"reassoc"})
def _gather_grad(g, gt, n0, nimg, oh0, nrows):
    """gt[o, a, t, :] = g[n0 + a, o, oh0 + t, :]: the upstream gradient of a tile in the
    tile's (O, positions) order (flat ``gt``). Returns the tile's per-channel sums (its
    share of the bias gradient), accumulated in float64."""
    O, OH, OW = g.shape[1], g.shape[2], g.shape[3]
    gf = g.reshape(-1)
    block = nrows * OW
    sums = np.zeros(O, np.float64)
    for o in range(O):
        total = 0.0
        for a in range(nimg):
            s = (((n0 + a) * O + o) * OH + oh0) * OW
            d = (o * nimg + a) * block
            for q in range(block):
                v = gf[_u(s + q)]
                gt[_u(d + q)] = v
                total += v
        sums[o] = total
    return sums


# ----------------------------------------------------- reference-layout im2col/col2im

def im2col(x, KH, KW, SH=1, SW=1, PH=0, PW=0, DH=1, DW=1, out_size=None):
    """:func:`kernels.im2col.im2col`, same arguments and result (N, C, KH, KW, OH, OW)."""
    N, C = x.shape[:2]
    OH, OW = im2col_output_size(x.shape, KH, KW, SH, SW, PH, PW, DH, DW, out_size)
    K = C * KH * KW
    cols = np.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    # the reference layout: row (c, kh, kw) of image a starts at a·K·OH·OW + row·OH·OW
    _im2col_tile(np.ascontiguousarray(x), cols.reshape(-1), OH * OW, K * OH * OW,
                 0, N, 0, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW)
    return cols


def col2im(cols, x_shape, SH=1, SW=1, PH=0, PW=0, DH=1, DW=1):
    """:func:`kernels.im2col.col2im`, same arguments and result (a fresh (N, C, H, W))."""
    N, C, KH, KW, OH, OW = cols.shape
    check_col2im_shapes(cols.shape, x_shape, SH, SW, PH, PW, DH, DW)
    gx = np.zeros(tuple(x_shape), dtype=cols.dtype)
    K = C * KH * KW
    _col2im_tile(np.ascontiguousarray(cols).reshape(-1), OH * OW, K * OH * OW, gx,
                 0, N, 0, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW)
    return gx


# ---------------------------------------------------------------------- conv2d tiles

def _tiles(N, OH, OW, K, parts=1, n_start=0):
    """(n0, nimg, oh0, nrows) tiles covering every output position of images
    n_start .. n_start+N-1, each with at most about TILE_ELEMENTS column entries
    (K·nimg·nrows·OW) or else about MIN_TILE_COLUMNS output positions, and at least one
    output row; at least ``parts`` tiles where the batch and rows allow (so that
    ``parts`` threads each get work), images cut into bands of equal height if needed."""
    rows_fit = max(1, TILE_ELEMENTS // (K * OW), MIN_TILE_COLUMNS // OW)
    if rows_fit >= OH and N >= parts:           # whole images, several per tile
        per = min(N, rows_fit // OH, -(-N // parts))
        return [(n_start + n0, min(per, N - n0), 0, OH) for n0 in range(0, N, per)]
    bands = max(-(-OH // rows_fit), min(OH, -(-parts // N)))
    rows = -(-OH // bands)
    return [(n_start + n, 1, oh0, min(rows, OH - oh0))
            for n in range(N) for oh0 in range(0, OH, rows)]


def _plan(N, OH, OW, K, parts):
    """The tiles of a convolution's N images for ``parts`` threads, as a list of (at
    most) ``parts`` lists, one per thread.

    With N >= parts the batch is cut into ``parts`` runs of images, tiled separately;
    with fewer images than threads (a batch of one at inference) the images are cut
    into bands and the bands dealt out."""
    if N >= parts:
        runs = [(N * k // parts, N * (k + 1) // parts) for k in range(parts)]
        return [_tiles(hi - lo, OH, OW, K, 1, lo) for lo, hi in runs]
    tiles = _tiles(N, OH, OW, K, parts)
    parts = min(parts, len(tiles))
    return [tiles[len(tiles) * k // parts:len(tiles) * (k + 1) // parts]
            for k in range(parts)]



def _run(plan, work, side_by_side=True):
    """``work(k)`` for every part k of a plan: side by side, each on its own thread with
    a one-thread BLAS, when there are several parts (and ``side_by_side``), else in turn
    on this thread with BLAS's own threads."""
    if len(plan) == 1 or not side_by_side:
        for k in range(len(plan)):
            work(k)
        return
    with _threads.one_blas_thread():
        _threads.split(len(plan), lambda lo, hi: [work(k) for k in range(lo, hi)],
                       len(plan))


class _Workspace(threading.local):
    """Scratch buffers reused from call to call (one set per thread)."""

    def __init__(self):
        self.buffers = {}

    def get(self, name, size, dtype):
        """A flat ``dtype`` array of ``size`` elements (contents undefined)."""
        buf = self.buffers.get((name, dtype))
        if buf is None or buf.size < size:
            buf = np.empty(size, dtype)
            self.buffers[(name, dtype)] = buf
        return buf[:size]


_workspace = _Workspace()


def _geometry(x_shape, w_shape, stride, padding, dilation):
    N, C, H, W = x_shape
    O, Cg, KH, KW = w_shape
    (SH, SW), (PH, PW), (DH, DW) = stride, padding, dilation
    OH, OW = conv_output_size(H, KH, SH, PH, DH), conv_output_size(W, KW, SW, PW, DW)
    return OH, OW, (KH, KW, SH, SW, PH, PW, DH, DW)


def covers_input(x_shape, w_shape, padding):
    """True when the kernel is exactly as large as the unpadded input (LeNet-5's C5: a
    16x5x5 input, 5x5 kernels): one output pixel per image, whose window is the whole
    image, so the convolution is a fully connected layer, (N, C·H·W) @ (C·H·W, O) per
    group, and needs no columns at all."""
    return tuple(padding) == (0, 0) and tuple(w_shape[2:]) == tuple(x_shape[2:])


def conv2d_forward(x, w, b, stride, padding, dilation, groups, keep_columns=False):
    """conv2d of x (N, C, H, W) with w (O, C/G, KH, KW) and bias b (O,) or None;
    ``stride``, ``padding``, ``dilation`` are (h, w) pairs. Returns ``(out, columns)``:
    out (N, O, OH, OW), and, with ``keep_columns``, the column tiles built here when all
    of them together hold at most KEEP_COLUMNS entries (small layers, where rebuilding
    them in backward costs more than keeping them), else None. Pass them to
    :func:`conv2d_backward`, which then skips building them again for dL/dw.

    The tiles are shared out over the threads BLAS may use (``_threads.blas_threads``),
    each thread building its tiles' columns and multiplying them with a one-thread GEMM.
    """
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    O, Cg, KH, KW = w.shape
    G = groups
    OH, OW, geo = _geometry(x.shape, w.shape, stride, padding, dilation)
    K = C * KH * KW
    w_mat = np.ascontiguousarray(w).reshape(G, O // G, K // G)
    if covers_input(x.shape, w.shape, padding):
        # (G, N, C/G·H·W) @ (G, C/G·H·W, O/G) -> (G, N, O/G), then to (N, O, 1, 1)
        y = np.matmul(x.reshape(N, G, K // G).transpose(1, 0, 2), w_mat.transpose(0, 2, 1))
        out = np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(N, O, 1, 1)
        if b is not None:
            out += b.reshape(1, O, 1, 1)
        return out, None
    out = np.empty((N, O, OH, OW), dtype=x.dtype)
    bias = b if b is not None else np.zeros(O, x.dtype)
    plan = _plan(N, OH, OW, K, _threads.threads_for(THREADS))
    keep = keep_columns and K * N * OH * OW <= KEEP_COLUMNS
    kept = [[None] * len(tiles) for tiles in plan]

    def work(part):
        for i, (n0, nimg, oh0, nrows) in enumerate(plan[part]):
            m = nimg * nrows * OW               # output positions in this tile
            cols = np.empty(K * m, x.dtype) if keep else _workspace.get("cols", K * m,
                                                                         x.dtype)
            _im2col_tile(x, cols, m, nrows * OW, n0, nimg, oh0, nrows, OW, *geo)
            y = _workspace.get("y", O * m, x.dtype)
            # (G, O/G, Cg·KH·KW) @ (G, Cg·KH·KW, m) -> (G, O/G, m): one GEMM per group
            np.matmul(w_mat, cols.reshape(G, K // G, m), out=y.reshape(G, O // G, m))
            _scatter_output(y, out, bias, n0, nimg, oh0, nrows)
            if keep:
                kept[part][i] = cols
    _run(plan, work)
    return out, ((plan, kept) if keep else None)


def conv2d_backward(g, x, w, x_shape, w_shape, stride, padding, dilation, groups,
                    need_x, need_w, need_b, columns=None):
    """Gradients of :func:`conv2d_forward` given the upstream gradient g (N, O, OH, OW):
    (gx, gw, gb), each None when not wanted, as the reference computes them::

        gx = col2im(wᵀ @ g),   gw = Σ g @ colsᵀ,   gb = Σ g over N, OH, OW

    with w the weight as a (O/G, C/G·KH·KW) matrix per group. ``x`` is needed only for
    gw (and not even then when ``columns``, kept by the forward pass, are given) and
    ``w`` only for gx (either may be None when its gradient is not wanted); ``x_shape``
    and ``w_shape`` give the shapes.

    Threads: as in the forward pass, when the batch has at least as many images as
    threads (each thread then adds into the input gradient of its own images only);
    each thread sums its own share of gw and gb, added up at the end.
    """
    g = np.ascontiguousarray(g)
    N, C = x_shape[:2]
    O, Cg, KH, KW = w_shape
    G = groups
    OH, OW, geo = _geometry(x_shape, w_shape, stride, padding, dilation)
    K = C * KH * KW
    dtype = g.dtype
    if need_x:
        w_mat = np.ascontiguousarray(w).reshape(G, O // G, K // G)
    if need_w and columns is None:
        x = np.ascontiguousarray(x)
    if covers_input(x_shape, w_shape, padding):
        return _covers_input_backward(g, x, w_mat if need_x else None, x_shape, w_shape,
                                      G, need_x, need_w, need_b)
    gx = np.zeros(x_shape, dtype=dtype) if need_x else None
    plan, kept = columns if columns is not None else (
        _plan(N, OH, OW, K, _threads.threads_for(THREADS)), None)
    gw_parts = [np.empty((G, K // G, O // G), dtype=dtype) if need_w else None
                for _ in plan]                     # gwᵀ, per thread: its first tile's sum
    gb_parts = [np.zeros(O, np.float64) for _ in plan]

    def work(part):
        gw_t = gw_parts[part]
        for i, (n0, nimg, oh0, nrows) in enumerate(plan[part]):
            m = nimg * nrows * OW
            gt = _workspace.get("y", O * m, dtype)
            gb_parts[part] += _gather_grad(g, gt, n0, nimg, oh0, nrows)
            gt = gt.reshape(G, O // G, m)
            cols = _workspace.get("cols", K * m, dtype)
            if need_w:
                if kept is not None:
                    cols = kept[part][i]
                else:
                    _im2col_tile(x, cols, m, nrows * OW, n0, nimg, oh0, nrows, OW, *geo)
                # Σ over the tile's positions, as its transpose (G, Cg·KH·KW, m) @
                # (G, m, O/G): BLAS measured faster this way round for thin layers
                # (the first tile writes the thread's sum, later ones add to it)
                part_gw = gw_t if i == 0 else _workspace.get("gw", gw_t.size, dtype).reshape(
                    gw_t.shape)
                np.matmul(cols.reshape(G, K // G, m), gt.transpose(0, 2, 1), out=part_gw)
                if i > 0:
                    gw_t += part_gw
            if need_x:
                # the tile's column gradients, (G, Cg·KH·KW, O/G) @ (G, O/G, m), then
                # added back onto the pixels they came from (in a scratch buffer: the
                # kept columns stay as they are)
                cols = _workspace.get("cols", K * m, dtype)
                np.matmul(w_mat.transpose(0, 2, 1), gt, out=cols.reshape(G, K // G, m))
                _col2im_tile(cols, m, nrows * OW, gx, n0, nimg, oh0, nrows, OW, *geo)
    # threads side by side only where each adds into the input gradient of its own images
    _run(plan, work, side_by_side=not need_x or _whole_images(plan))
    gw = None
    if need_w:
        gw_t = gw_parts[0]
        for part_gw in gw_parts[1:]:
            gw_t += part_gw
        gw = gw_t.transpose(0, 2, 1).reshape(w_shape)
    gb = sum(gb_parts[1:], gb_parts[0]).astype(dtype) if need_b else None
    return gx, gw, gb


def _whole_images(plan):
    """True when no image has tiles in two parts of the plan (so that the threads, each
    adding into the input gradient of its images, never add into the same numbers)."""
    seen = set()
    for tiles in plan:
        images = {n for n0, nimg, _, _ in tiles for n in range(n0, n0 + nimg)}
        if images & seen:
            return False
        seen |= images
    return True


def _covers_input_backward(g, x, w_mat, x_shape, w_shape, G, need_x, need_w, need_b):
    """:func:`conv2d_backward` when the kernel covers the input (:func:`covers_input`):
    a fully connected layer's gradients, gx = g @ w and gw = gᵀ @ x, per group."""
    N = x_shape[0]
    O = w_shape[0]
    K = int(np.prod(x_shape[1:]))
    g_mat = g.reshape(N, G, O // G).transpose(1, 0, 2)                  # (G, N, O/G)
    gx = gw = gb = None
    if need_x:
        # (G, N, O/G) @ (G, O/G, K/G) -> (G, N, K/G), to (N, C, H, W)
        gx = np.ascontiguousarray(np.matmul(g_mat, w_mat).transpose(1, 0, 2)).reshape(x_shape)
    if need_w:
        # (G, O/G, N) @ (G, N, K/G) -> (G, O/G, K/G)
        gw = np.matmul(g_mat.transpose(0, 2, 1),
                       x.reshape(N, G, K // G).transpose(1, 0, 2)).reshape(w_shape)
    if need_b:
        gb = g.reshape(N, O).sum(axis=0, dtype=np.float64).astype(g.dtype)
    return gx, gw, gb
