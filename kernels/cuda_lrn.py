"""GPU fast path of LRN's window sum across channels (``kernels/lrn.py``), numba.cuda.

Same contract as :func:`kernels.lrn.channel_window_sum`: for an (N, C, *) array,
``out[n, c] = Σ_{o=0}^{size-1} a[n, c - before + o]`` with channels outside 0..C-1
counting as zeros. The reference makes ``size`` launches (one slice add per offset);
here one thread per element sums its window in registers, in the same order.

Arrays of ``a``'s module (CuPy on a GPU; NumPy in numba's simulator for the tests).
"""
from __future__ import annotations

from kernels import lrn as _reference
from kernels._cuda import kernel, launch

__all__ = ["channel_window_sum"]


def channel_window_sum(a, size, before=None):
    """:func:`kernels.lrn.channel_window_sum`, one thread per element."""
    xp = _reference.array_module(a)
    if before is None:
        before = size // 2
    a3 = xp.ascontiguousarray(a).reshape(a.shape[0], a.shape[1], -1)    # (N, C, L)
    out = xp.empty(a3.shape, dtype=a.dtype)
    launch(_channel_window_sum, out.size, a3, out, size, before)
    return out.reshape(a.shape)


@kernel
def _channel_window_sum(a, out, size, before, total):
    t = cuda.grid(1)                                           # noqa: F821 (bound by _cuda)
    if t >= total:
        return
    N, C, L = a.shape
    l = t % L                        # t = (n*C + c)*L + l
    c = (t // L) % C
    n = t // (L * C)
    acc = a[n, c, l] * 0                                   # a zero of a's dtype
    for o in range(size):
        k = c - before + o
        if 0 <= k < C:
            acc += a[n, k, l]
    out[n, c, l] = acc
