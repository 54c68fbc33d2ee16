"""CPU fast path of Winograd convolution: the input and output transforms compiled with
numba, run on every core; the α² matrix multiplies stay with BLAS.

``kernels/winograd.py`` is the reference (and explains the algorithm); this module
computes the same numbers with the same matrices on float32/float64 NumPy arrays
(``kernels/dispatch.py`` decides). What differs is only how the transforms move through
memory (measured: the reference's strided gathers cost more than its GEMMs):

* Padding is handled by index bounds while a row is copied into a scratch row: no
  padded copy of the input.
* Each padded input row is stored *deinterleaved* by m (``row[p % m, p // m]`` holds
  column p), so that column s of tile tw, at p = tw·m + s, sits at ``[s % m, tw + s // m]``:
  for a fixed s the tiles are consecutive, and every inner loop below runs over the
  tiles tw with unit stride, which LLVM vectorises. The zero entries of Bᵀ and Aᵀ are
  skipped.
* The output transform writes each output row once, with the bias added there.
* The channels are split between threads (one per core, ``kernels/_threads.py``); each
  runs a compiled loop with the GIL released.

Arrays: V (α, α, C, N, tH, tW) and M (α, α, O, N, tH, tW), as in the reference.
"""
from __future__ import annotations

import numpy as np

from kernels import _threads
from kernels._jit import jit
from kernels.im2col import conv_output_size
from kernels.winograd import MATRICES, choose_tile, transform_weight

__all__ = ["conv2d_forward", "conv2d_input_grad", "THREADS"]

#: threads the transforms run on (None: every core, kernels/_threads.py); 1: inline
THREADS = None


# ------------------------------------------------------------------ compiled loops

@jit(cache=True, nogil=True)
def _input_transform(x, BT, V, PH, PW, c0, c1):
    """V[i, j, c, n, th, tw] = (Bᵀ d B)[i, j] for the tiles d of channels c0..c1-1 of
    x (N, C, H, W), zero-padded by PH/PW (a negative pad crops)."""
    N, H, W = x.shape[0], x.shape[2], x.shape[3]
    a, tH, tW = V.shape[0], V.shape[4], V.shape[5]
    m = a - 2
    Hb = tH * m + 2
    q = tW + 1                                      # deinterleaved columns per phase
    row = np.zeros((m, q), x.dtype)                 # one padded row, deinterleaved
    R = np.empty((Hb, a, tW), x.dtype)              # (d B) of every padded row
    for c in range(c0, c1):
        for n in range(N):
            for r in range(Hb):
                i = r - PH
                if i < 0 or i >= H:
                    R[r, :, :] = 0
                    continue
                row[:, :] = 0
                for col in range(max(0, -PW), min(W, tW * m + 2 - PW)):
                    p = col + PW
                    row[p % m, p // m] = x[n, c, i, col]
                # (d B)[r, j] for every tile: Σ_s Bᵀ[j, s]·d[r, tw·m + s]
                for j in range(a):
                    for t in range(tW):
                        R[r, j, t] = 0
                    for s in range(a):
                        coef = BT[j, s]
                        if coef != 0:
                            ph, sh = s % m, s // m
                            for t in range(tW):
                                R[r, j, t] += coef * row[ph, t + sh]
            # Bᵀ (d B): Σ_k Bᵀ[i, k]·R[th·m + k, j], straight into V
            for th in range(tH):
                for i in range(a):
                    for j in range(a):
                        out = V[i, j, c, n, th]
                        for t in range(tW):
                            out[t] = 0
                        for k in range(a):
                            coef = BT[i, k]
                            if coef != 0:
                                src = R[th * m + k, j]
                                for t in range(tW):
                                    out[t] += coef * src[t]


@jit(cache=True, nogil=True)
def _output_transform(M, AT, bias, out, o0, o1):
    """out[n, o, th·m + u, tw·m + v] = (Aᵀ M A)[u, v] + bias[o] for channels o0..o1-1
    (positions past the output's edge are dropped)."""
    a, tH, tW = M.shape[0], M.shape[4], M.shape[5]
    N, OH, OW = out.shape[0], out.shape[2], out.shape[3]
    m = AT.shape[0]
    Z = np.empty((m, a, tW), M.dtype)               # (Aᵀ M)[u, j] of one tile row
    y = np.empty(tW, M.dtype)
    for o in range(o0, o1):
        shift = bias[o]
        for n in range(N):
            for th in range(tH):
                for u in range(m):
                    for j in range(a):
                        z = Z[u, j]
                        for t in range(tW):
                            z[t] = 0
                        for i in range(a):
                            coef = AT[u, i]
                            if coef != 0:
                                src = M[i, j, o, n, th]
                                for t in range(tW):
                                    z[t] += coef * src[t]
                for u in range(m):
                    r = th * m + u
                    if r >= OH:
                        break
                    for v in range(m):
                        for t in range(tW):
                            y[t] = shift
                        for j in range(a):
                            coef = AT[v, j]
                            if coef != 0:
                                z = Z[u, j]
                                for t in range(tW):
                                    y[t] += coef * z[t]
                        for t in range(tW):
                            col = t * m + v
                            if col < OW:
                                out[n, o, r, col] = y[t]


# --------------------------------------------------------------------- the ops

def conv2d_forward(x, w, b=None, padding=(0, 0), m=None):
    """:func:`kernels.winograd.conv2d_forward`, same arguments and result."""
    N, C, H, W = x.shape
    PH, PW = padding
    OH, OW = conv_output_size(H, 3, 1, PH), conv_output_size(W, 3, 1, PW)
    m = choose_tile(OH, OW) if m is None else m
    return _correlate(x, transform_weight(w, m), b, PH, PW, OH, OW, m)


def conv2d_input_grad(g, w, x_shape, padding=(0, 0), m=None):
    """:func:`kernels.winograd.conv2d_input_grad`, same arguments and result."""
    H, W = x_shape[2], x_shape[3]
    PH, PW = padding
    m = choose_tile(H, W) if m is None else m
    w_adj = w[:, :, ::-1, ::-1].swapaxes(0, 1)
    return _correlate(g, transform_weight(w_adj, m), None, 2 - PH, 2 - PW, H, W, m)


def _correlate(x, U, b, PH, PW, OH, OW, m):
    x = np.ascontiguousarray(x)
    N, C = x.shape[:2]
    a, O = m + 2, U.shape[2]
    AT, _, BT = (np.asarray(mat, dtype=x.dtype) for mat in MATRICES[m])
    tH, tW = -(-OH // m), -(-OW // m)
    P = N * tH * tW
    V = np.empty((a, a, C, N, tH, tW), x.dtype)
    _threads.split(C, lambda c0, c1: _input_transform(x, BT, V, PH, PW, c0, c1), THREADS)
    M = np.matmul(U.reshape(a * a, O, C), V.reshape(a * a, C, P))
    out = np.empty((N, O, OH, OW), x.dtype)
    bias = np.zeros(O, x.dtype) if b is None else np.ascontiguousarray(b)
    M = M.reshape(a, a, O, N, tH, tW)
    _threads.split(O, lambda o0, o1: _output_transform(M, AT, bias, out, o0, o1), THREADS)
    return out
