"""GPU fast path of batch-norm statistics, written with numba.cuda.

Batch norm in training normalises each channel c of x (N, C, *) with its mean and
*biased* variance over the M = N·L values of the channel (L the spatial size):

    μ_c = Σ x / M,    σ²_c = Σ (x - μ_c)² / M,    inv_std_c = 1 / sqrt(σ²_c + eps)

— what ``_standardize`` in ``minicnn/functional/normalization.py`` computes with two
array reductions. Here one block per channel does both passes (the second over x - μ:
no cancellation), its threads striding over the channel and adding up in float64, then
a tree reduction in shared memory.

Returns ``(inv_std, mean, var)``, each shaped (1, C, 1, ...) to broadcast against x, in
x's dtype (as the reference's). Arrays of ``x``'s module (CuPy on a GPU; NumPy in
numba's simulator for the tests).
"""
from __future__ import annotations

from kernels import lrn as _lrn
from kernels._cuda import device, kernel

__all__ = ["batch_norm_statistics"]

_THREADS = 128          # threads per channel block; a power of two for the tree


def batch_norm_statistics(x, eps):
    """Per-channel (inv_std, mean, biased var) of x (N, C, *), kept dims, x's dtype."""
    xp = _lrn.array_module(x)
    N, C = x.shape[:2]
    x3 = xp.ascontiguousarray(x).reshape(N, C, -1)                       # (N, C, L)
    mean, var = xp.empty(C, dtype="f8"), xp.empty(C, dtype="f8")
    _statistics[C, _THREADS](x3, mean, var)
    inv_std = 1 / xp.sqrt(var + eps)
    shape = (1, C) + (1,) * (x.ndim - 2)
    return tuple(v.astype(x.dtype).reshape(shape) for v in (inv_std, mean, var))


@kernel
def _statistics(x, mean, var):
    c = cuda.blockIdx.x                                        # noqa: F821 (bound by _cuda)
    tid = cuda.threadIdx.x                                     # noqa: F821
    N, C, L = x.shape
    M = N * L
    partial = cuda.shared.array(_THREADS, dtype=types.float64)  # noqa: F821
    total = 0.0
    for m in range(tid, M, _THREADS):
        total += x[m // L, c, m % L]
    mu = _block_sum(partial, tid, total) / M
    total = 0.0
    for m in range(tid, M, _THREADS):
        d = x[m // L, c, m % L] - mu
        total += d * d
    sum_sq = _block_sum(partial, tid, total)
    if tid == 0:
        mean[c] = mu
        var[c] = sum_sq / M


@device
def _block_sum(partial, tid, value):
    """The sum of ``value`` over the block's threads (a tree in shared memory), in every
    thread."""
    partial[tid] = value
    cuda.syncthreads()                                         # noqa: F821
    step = _THREADS // 2
    while step > 0:
        if tid < step:
            partial[tid] += partial[tid + step]
        cuda.syncthreads()                                     # noqa: F821
        step //= 2
    result = partial[0]
    cuda.syncthreads()          # everyone has read it before the next use overwrites it
    return result
