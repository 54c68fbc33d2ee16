"""CPU fast path of Winograd convolution: the input and output transforms compiled with
numba, run on every core; the α² matrix multiplies stay with BLAS.

``kernels/winograd.py`` is the reference (and explains the algorithm and the layout);
this module computes the same numbers with the same matrices on float32/float64 NumPy
arrays (``kernels/dispatch.py`` decides), in the same channels-last layout. What differs
is how the transforms move through memory: the reference gathers every tile's rows and
columns into copies and multiplies them by Bᵀ as GEMMs (several passes over arrays
2-4x the input); here each tile is transformed while its α x α input planes are in
cache, the zero entries of Bᵀ and Aᵀ skipped, and the output written straight into
(N, O, OH, OW) with the bias added (no channels-last copy of it).

Measured (the input transform of F(4x4) alone, one thread, shared machine): 8.2 ms here
against 23.3 ms for the reference's gathers and GEMMs and 32.4 ms for ``np.einsum``
over a strided view of the tiles, at N32 C64 32x32; 0.75 / 1.3 / 6.7 ms at N32 C256 8x8.

Every loop innermost runs over a block of the flattened (image, channel) axis, where
the numbers are contiguous: LLVM vectorises it (indices unsigned, as in
``kernels/numba_conv.py``). Threads (``kernels/_threads.py``, one per core) take
contiguous ranges of that axis.

Arrays: xb (rows, cols, N·C), V (α, α, tH, tW, N·C), M and dM (α, α, tH, tW, N·O).
"""
from __future__ import annotations

import numpy as np

from kernels import _threads
from kernels._jit import jit
from kernels.im2col import conv_output_size
from kernels.winograd import MATRICES, _filter_adjoint, choose_tile

__all__ = ["conv2d_forward", "conv2d_input_grad", "conv2d_weight_grad", "THREADS"]

#: threads the transforms and GEMMs run on (None: as many as BLAS would use,
#: kernels/_threads.blas_threads); 1: inline
THREADS = None
# the (image, channel) numbers one pass of the inner loops covers: the scratch tile
# (α² x BLOCK) stays in the first-level caches
BLOCK = 512
OUT_BLOCK = 128         # the output transform's: its scratch row band is m·tW·m x this


# ------------------------------------------------------------------ compiled loops

@jit(cache=True, nogil=True, inline="always")
def _u(i):
    return np.uintp(i)


@jit(cache=True, nogil=True)
def _tile_transform(xb, T, D, m, lo, hi):
    """D[i, j, th, tw, k] = (T d Tᵀ)[i, j], d the e x e tile (th, tw) of xb[:, :, k]
    (e = T.shape[1], tiles every m rows/columns), for the flattened (image, channel) k
    in lo..hi-1: the input transform (T = Bᵀ), or the adjoint of the output transform
    (T = A, on the output gradient)."""
    Wb, L = xb.shape[1], xb.shape[2]
    a, e = T.shape[0], T.shape[1]
    tH, tW = D.shape[2], D.shape[3]
    xf, df = xb.reshape(-1), D.reshape(-1)
    S = np.empty(e * a * BLOCK, xb.dtype)           # (d Tᵀ)[r, j] of one tile and block
    for k0 in range(lo, hi, BLOCK):
        n = min(BLOCK, hi - k0)
        for th in range(tH):
            for tw in range(tW):
                # (d Tᵀ)[r, j] = Σ_s d[r, s]·T[j, s]
                for r in range(e):
                    for j in range(a):
                        s0 = (r * a + j) * BLOCK
                        for k in range(n):
                            S[_u(s0 + k)] = 0
                        for s in range(e):
                            coef = T[j, s]
                            if coef != 0:
                                x0 = ((th * m + r) * Wb + tw * m + s) * L + k0
                                for k in range(n):
                                    S[_u(s0 + k)] += coef * xf[_u(x0 + k)]
                # (T d Tᵀ)[i, j] = Σ_r T[i, r]·(d Tᵀ)[r, j]
                for i in range(a):
                    for j in range(a):
                        d0 = (((i * a + j) * tH + th) * tW + tw) * L + k0
                        for k in range(n):
                            df[_u(d0 + k)] = 0
                        for r in range(e):
                            coef = T[i, r]
                            if coef != 0:
                                s0 = (r * a + j) * BLOCK
                                for k in range(n):
                                    df[_u(d0 + k)] += coef * S[_u(s0 + k)]


@jit(cache=True, nogil=True)
def _output_transform(M, AT, bias, out, lo, hi):
    """out[k, th·m + u, tw·m + v] = (Aᵀ M A)[u, v] + bias[k % O] for every tile (th, tw)
    of M and the flattened (image, channel) k in lo..hi-1 of out (N·O, OH, OW);
    positions past the output's edge dropped.

    A tile row at a time: its outputs go to a scratch row band S (m, tW·m, block) in
    channels-last order, which the vector loops write; then the band is written out
    plane by plane (the transpose back to (N, O, OH, OW) reads S from cache)."""
    a, tH, tW, L = M.shape[0], M.shape[2], M.shape[3], M.shape[4]
    OH, OW = out.shape[1], out.shape[2]
    O = bias.shape[0]
    m = AT.shape[0]
    B = OUT_BLOCK
    mf, of = M.reshape(-1), out.reshape(-1)
    Z = np.empty(m * a * B, M.dtype)                # (Aᵀ M)[u, j] of one tile and block
    S = np.empty(m * tW * m * B, M.dtype)           # the tile row's outputs, [u, col, k]
    for k0 in range(lo, hi, B):
        n = min(B, hi - k0)
        for th in range(tH):
            for tw in range(tW):
                for u in range(m):
                    for j in range(a):
                        z0 = (u * a + j) * B
                        for k in range(n):
                            Z[_u(z0 + k)] = 0
                        for i in range(a):
                            coef = AT[u, i]
                            if coef != 0:
                                m0 = (((i * a + j) * tH + th) * tW + tw) * L + k0
                                for k in range(n):
                                    Z[_u(z0 + k)] += coef * mf[_u(m0 + k)]
                for u in range(m):
                    for v in range(m):
                        s0 = (u * tW * m + tw * m + v) * B
                        for k in range(n):
                            S[_u(s0 + k)] = 0
                        for j in range(a):
                            coef = AT[v, j]
                            if coef != 0:
                                z0 = (u * a + j) * B
                                for k in range(n):
                                    S[_u(s0 + k)] += coef * Z[_u(z0 + k)]
            for k in range(n):
                shift = bias[(k0 + k) % O]
                for u in range(m):
                    row = th * m + u
                    if row >= OH:
                        break
                    d = ((k0 + k) * OH + row) * OW
                    s0 = u * tW * m * B + k
                    for col in range(OW):
                        of[_u(d + col)] = S[_u(s0 + col * B)] + shift


@jit(cache=True, nogil=True)
def _weight_transform(wk, G, U, lo, hi):
    """U[i, j, c, o] = (G f Gᵀ)[i, j] for the 3x3 filters f = wk[c, :, :, o] of the
    input channels c in lo..hi-1: t = G f (α x 3), then t Gᵀ, both with the output
    channel o innermost, where wk, the scratch t and U are contiguous."""
    a = G.shape[0]
    O = U.shape[3]
    wf, uf = wk.reshape(-1), U.reshape(-1)
    C = U.shape[2]
    t = np.empty(a * 3 * O, wk.dtype)                  # t[i, l, o]
    for c in range(lo, hi):
        for i in range(a):
            for l in range(3):
                t0 = (i * 3 + l) * O
                g0, g1, g2 = G[i, 0], G[i, 1], G[i, 2]
                w0 = ((c * 3 + 0) * 3 + l) * O
                w1 = ((c * 3 + 1) * 3 + l) * O
                w2 = ((c * 3 + 2) * 3 + l) * O
                for o in range(O):
                    t[_u(t0 + o)] = (g0 * wf[_u(w0 + o)] + g1 * wf[_u(w1 + o)]
                                     + g2 * wf[_u(w2 + o)])
        for i in range(a):
            for j in range(a):
                h0, h1, h2 = G[j, 0], G[j, 1], G[j, 2]
                t0 = i * 3 * O
                u0 = ((i * a + j) * C + c) * O
                for o in range(O):
                    uf[_u(u0 + o)] = (h0 * t[_u(t0 + o)] + h1 * t[_u(t0 + O + o)]
                                      + h2 * t[_u(t0 + 2 * O + o)])


def _transformed_weight(w, m, adjoint, threads):
    """:func:`kernels.winograd.transform_weight` of w (O, C, 3, 3), or with ``adjoint``
    of the input gradient's filters (w[c, o] turned by 180 degrees: w read as (C, O)),
    compiled and cut over the threads. The filters are first copied to (C, 3, 3, O)."""
    if adjoint:
        wk = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 2, 3, 1))
    else:
        wk = np.ascontiguousarray(w.transpose(1, 2, 3, 0))
    a = m + 2
    C, O = wk.shape[0], wk.shape[3]
    G = np.asarray(MATRICES[m][1], dtype=w.dtype)
    U = np.empty((a, a, C, O), w.dtype)
    _threads.split(C, lambda lo, hi: _weight_transform(wk, G, U, lo, hi), threads)
    return U


# From (N, C, H, W) to channels-last: a transpose of an (N·C, H·W) matrix, done
# GROUP planes at a time so that the reads stay sequential in each of GROUP planes and
# the writes are GROUP contiguous numbers (NumPy's strided copy of the same transpose
# measured 5-10x slower: each write jumped a whole plane ahead in the source).
GROUP = 16


@jit(cache=True, nogil=True)
def _pack(x, xb, PH, PW, lo, hi):
    """xb[i + PH, j + PW, k] = x[k, i, j] for the planes k in lo..hi-1 of x (N·C, H, W);
    rows/columns that fall outside xb are dropped, xb's other entries left as they are."""
    H, W = x.shape[1], x.shape[2]
    Hb, Wb, L = xb.shape[0], xb.shape[1], xb.shape[2]
    xf, bf = x.reshape(-1), xb.reshape(-1)
    i0, i1 = max(0, -PH), min(H, Hb - PH)
    j0, j1 = max(0, -PW), min(W, Wb - PW)
    for k0 in range(lo, hi, GROUP):
        n = min(GROUP, hi - k0)
        for i in range(i0, i1):
            for j in range(j0, j1):
                d = ((i + PH) * Wb + j + PW) * L + k0
                s = (k0 * H + i) * W + j
                for k in range(n):
                    bf[_u(d + k)] = xf[_u(s + k * H * W)]


# --------------------------------------------------------------------- the ops
#
# Threads: every phase (input transform, the α² GEMMs, output transform) is cut over
# this module's threads, and BLAS is held at one thread meanwhile, so each GEMM runs
# on the thread that calls it. (Leaving the GEMMs to BLAS's own threads measured 2x
# slower on the whole op at N32 C256 8x8 than the sum of its phases: BLAS's workers
# spin-wait after each GEMM and take the cores from the transform that follows.)


def conv2d_forward(x, w, b=None, padding=(0, 0), m=None):
    """:func:`kernels.winograd.conv2d_forward`, same arguments and result."""
    N, C, H, W = x.shape
    PH, PW = padding
    OH, OW = conv_output_size(H, 3, 1, PH), conv_output_size(W, 3, 1, PW)
    m = choose_tile(OH, OW) if m is None else m
    threads = _threads.threads_for(THREADS)         # (read before BLAS is held at one)
    with _threads.one_blas_thread():
        return _correlate(x, _transformed_weight(w, m, False, threads), b, PH, PW, OH, OW,
                          m, threads)


def conv2d_input_grad(g, w, x_shape, padding=(0, 0), m=None):
    """:func:`kernels.winograd.conv2d_input_grad`, same arguments and result."""
    H, W = x_shape[2], x_shape[3]
    PH, PW = padding
    m = choose_tile(H, W) if m is None else m
    threads = _threads.threads_for(THREADS)
    with _threads.one_blas_thread():
        # the flipped, channel-swapped filters (winograd.conv2d_input_grad), read in place
        return _correlate(g, _transformed_weight(w, m, True, threads), None, 2 - PH,
                          2 - PW, H, W, m, threads)


def conv2d_weight_grad(x, g, padding=(0, 0), m=None):
    """:func:`kernels.winograd.conv2d_weight_grad`, same arguments and result."""
    N, C = x.shape[:2]
    O, OH, OW = g.shape[1:]
    m = choose_tile(OH, OW) if m is None else m
    a = m + 2
    AT, _, BT = (np.asarray(mat, dtype=x.dtype) for mat in MATRICES[m])
    tH, tW = -(-OH // m), -(-OW // m)
    P = tH * tW * N
    threads = _threads.threads_for(THREADS)
    with _threads.one_blas_thread():
        V = _transformed_tiles(x, BT, padding[0], padding[1], m, tH, tW, threads)
        dM = _transformed_tiles(g, np.ascontiguousarray(AT.T), 0, 0, m, tH, tW, threads)
        dU = _matmuls(V.reshape(a * a, P, C).transpose(0, 2, 1), dM.reshape(a * a, P, O),
                      threads)
        return _filter_adjoint(dU, m)


def _matmuls(A, B, threads):
    """A[i] @ B[i] for every i, the i shared out over the threads (each GEMM on one)."""
    out = np.empty((A.shape[0], A.shape[1], B.shape[2]), A.dtype)
    _threads.split(A.shape[0], lambda lo, hi: np.matmul(A[lo:hi], B[lo:hi], out=out[lo:hi]),
                   threads)
    return out


def _transformed_tiles(x, T, PH, PW, m, tH, tW, threads):
    """(T d Tᵀ) for every tile d of x (N, C, H, W), zero-padded by PH/PW: x copied to
    channels-last, then transformed; (α, α, tH, tW, N·C)."""
    N, C, H, W = x.shape
    x = np.ascontiguousarray(x)
    xb = np.zeros((tH * m + 2, tW * m + 2, N * C), x.dtype)     # padded_channels_last
    D = np.empty((T.shape[0], T.shape[0], tH, tW, N * C), x.dtype)

    def work(lo, hi):
        _pack(x.reshape(N * C, H, W), xb, PH, PW, lo, hi)
        _tile_transform(xb, T, D, m, lo, hi)
    _threads.split(N * C, work, threads)
    return D


def _correlate(x, U, b, PH, PW, OH, OW, m, threads):
    N, C = x.shape[:2]
    a, O = m + 2, U.shape[3]
    AT, _, BT = (np.asarray(mat, dtype=x.dtype) for mat in MATRICES[m])
    tH, tW = -(-OH // m), -(-OW // m)
    P = tH * tW * N
    V = _transformed_tiles(x, BT, PH, PW, m, tH, tW, threads)
    M = _matmuls(V.reshape(a * a, P, C), U.reshape(a * a, C, O), threads)
    M = M.reshape(a, a, tH, tW, N * O)
    bias = np.zeros(O, x.dtype) if b is None else np.ascontiguousarray(b)
    out = np.empty((N, O, OH, OW), x.dtype)
    _threads.split(N * O, lambda lo, hi: _output_transform(
        M, AT, bias, out.reshape(N * O, OH, OW), lo, hi), threads)
    return out
