"""GPU fast path of im2col / col2im (``kernels/im2col.py``), written with numba.cuda.

Same arguments, results and layout as the reference: ``cols`` is (N, C, KH, KW, OH, OW)
with ``cols[n, c, kh, kw, oh, ow] = x_pad[n, c, oh*SH + kh*DH, ow*SW + kw*DW]``. The
reference moves one strided slice per kernel offset (KH·KW launches, and a padded copy
of the input); here one launch does all of it, one thread per element:

* im2col: a thread per column entry reads its input pixel, or 0 in the padding;
* col2im: a thread per *input* pixel gathers the column entries that came from it, over
  the kernel offsets whose window row ``(i + PH - kh*DH) / SH`` and column are whole
  numbers inside the output. A gather, not a scatter: no atomic adds, so the sums are
  the same in every run.

Arrays of the module that ``x`` / ``cols`` come from (CuPy on a GPU; NumPy in numba's
simulator, which is how the tests run them). ``kernels/dispatch.py``'s ``use_cuda``
says when an op takes this path.
"""
from __future__ import annotations

from kernels import im2col as _reference
from kernels._cuda import kernel, launch, source_window, unravel4

__all__ = ["im2col", "col2im"]


def im2col(x, KH, KW, SH=1, SW=1, PH=0, PW=0, DH=1, DW=1, out_size=None):
    """:func:`kernels.im2col.im2col`, one thread per column entry."""
    xp = _reference._array_module(x)
    N, C, H, W = x.shape
    OH, OW = _reference.im2col_output_size(x.shape, KH, KW, SH, SW, PH, PW, DH, DW, out_size)
    cols = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    launch(_im2col, cols.size, x, cols.reshape(-1), KH, KW, SH, SW, PH, PW, DH, DW, OH, OW)
    return cols


def col2im(cols, x_shape, SH=1, SW=1, PH=0, PW=0, DH=1, DW=1):
    """:func:`kernels.im2col.col2im`, one thread per input pixel (a contiguous result)."""
    xp = _reference._array_module(cols)
    _reference.check_col2im_shapes(cols.shape, x_shape, SH, SW, PH, PW, DH, DW)
    N, C, KH, KW, OH, OW = cols.shape
    out = xp.empty(tuple(x_shape), dtype=cols.dtype)
    launch(_col2im, out.size, cols, out, SH, SW, PH, PW, DH, DW)
    return out


@kernel
def _im2col(x, cols, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, total):
    t = cuda.grid(1)                                           # noqa: F821 (bound by _cuda)
    if t >= total:
        return
    ow = t % OW                      # t = ((((n*C + c)*KH + kh)*KW + kw)*OH + oh)*OW + ow
    r = t // OW
    oh = r % OH
    r //= OH
    kw = r % KW
    r //= KW
    kh = r % KH
    r //= KH
    c = r % x.shape[1]
    n = r // x.shape[1]
    i = oh * SH + kh * DH - PH
    j = ow * SW + kw * DW - PW
    if 0 <= i < x.shape[2] and 0 <= j < x.shape[3]:
        cols[t] = x[n, c, i, j]
    else:
        cols[t] = 0


@kernel
def _col2im(cols, out, SH, SW, PH, PW, DH, DW, total):
    t = cuda.grid(1)                                           # noqa: F821
    if t >= total:
        return
    N, C, KH, KW, OH, OW = cols.shape
    H, W = out.shape[2], out.shape[3]
    n, c, i, j = unravel4(t, C, H, W)
    acc = cols[n, c, 0, 0, 0, 0] * 0             # a zero of cols' dtype
    for kh in range(KH):
        oh = source_window(i, PH, kh, DH, SH, OH)
        if oh < 0:
            continue
        for kw in range(KW):
            ow = source_window(j, PW, kw, DW, SW, OW)
            if ow >= 0:
                acc += cols[n, c, kh, kw, oh, ow]
    out[n, c, i, j] = acc
