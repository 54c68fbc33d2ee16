"""Winograd's minimal filtering: 3x3 stride-1 convolutions with fewer multiplications.

A 3x3 convolution done directly (or by im2col + GEMM) spends 9 multiplications per
output pixel and channel pair. Winograd's algorithm F(m x m, 3x3) computes an m x m block
of outputs from an (m+2) x (m+2) block ("tile") of inputs with (m+2)² multiplications:

    F(2x2, 3x3): 16 products for 4 outputs   -> 4    per output (2.25x fewer than 9)
    F(4x4, 3x3): 36 products for 16 outputs  -> 2.25 per output (4x fewer than 9)

paid for with cheap additions before and after (the *transforms*). Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks" (CVPR 2016, arXiv 1509.09308, 2015),
brought it to CNNs; the matrices below are theirs.

One dimension first: F(m, 3)
----------------------------
The correlation y[i] = Σ_k d[i+k]·g[k] (i < m, k < 3) of a tile d of m+2 inputs with a
3-tap filter g is computed as

    y = Aᵀ [ (G g) ⊙ (Bᵀ d) ]            (⊙: elementwise, m+2 products)

Where the matrices come from: polynomial multiplication. The product of a polynomial of
degree 2 (coefficients g) and one of degree m-1 has m+2 coefficients, so it is fixed by
its values at m+2 points. Evaluate both factors at the points (a matrix each), multiply
the m+2 values pairwise, and interpolate back (Lagrange: a third matrix): that is a
linear convolution with m+2 multiplications (Toom-Cook). A correlation is the
*transpose* of a convolution (same bilinear form, inputs and output swapped), so
transposing that algorithm gives F(m, 3): the interpolation matrix, transposed, becomes
Bᵀ (applied to the data), the evaluation of the filter stays G, and the evaluation of the
other factor, transposed, becomes Aᵀ. The "point at infinity" stands for the leading
coefficient (a polynomial's value at ∞, scaled), which saves a real point with large
values. Lavin & Gray moved the Lagrange denominators into G, so that Bᵀ and Aᵀ hold
small integers (exact in floating point) and only the filter transform, done once per
weight, carries fractions.

* F(2, 3): points 0, 1, -1, ∞.
* F(4, 3): points 0, 1, -1, 2, -2, ∞. Values such as 2³ = 8 in Aᵀ and 1/24 in G are why
  F(4x4) loses more accuracy than F(2x2). Measured in float32 (largest error over the
  largest output, 3x3 layers of 64 and 256 input channels, against float64): F(2x2)
  3e-7 to 6e-7, as im2col (4e-7 to 6e-7); F(4x4) 6e-6 to 1e-5. In float64 both stay
  near 1e-15.

Two dimensions: F(m x m, 3x3) nests the 1-D algorithm, one along rows and one along
columns:  Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A,  with g the 3x3 filter and d the tile.

A whole layer
-------------
Output positions are cut into tH x tW tiles of m x m (the last ones may stick out past
the output; they are computed on zero padding and cropped). Tile (th, tw) reads the
input block starting at (th·m, tw·m), (m+2) x (m+2) wide: neighbouring tiles overlap by
2 rows/columns. With α = m + 2, for every position (i, j) of the α x α transformed tile:

    U[i, j] = (G w Gᵀ)[i, j]ᵀ     (C, O)      the filter transform, per (o, c)
    V[i, j] = (Bᵀ d B)[i, j]      (P, C)      the input transform, P = tH·tW·N tiles
    M[i, j] = V[i, j] @ U[i, j]   (P, O)      α² independent matrix multiplies
    Y = Aᵀ M A                                 the output transform, per (tile, o)

The channel sum rides inside the matrix multiplies, which is where the arithmetic is,
so α² GEMMs of (P, C) @ (C, O) replace the (O, 9C) @ (9C, N·OH·OW) GEMM of im2col.

Layout: pixels outermost, (image, channel) innermost. The input is first copied,
zero-padded, to xb[row, col, n, c]; then every transform combines whole (N, C) planes
(Bᵀ and Aᵀ act on tile positions, the same for every image and channel), so its
inner loops run over N·C contiguous numbers, and V[i, j] comes out as the (P, C)
matrix the GEMM reads. (Channels first, the inner loops ran over the few tiles of one
row of one channel: on 8x8 maps two tiles, and the transforms cost more than the
GEMMs.) One transposing copy at each end converts from and to (N, C, H, W).

The input gradient of a 3x3 stride-1 convolution is itself one (see
:func:`conv2d_input_grad`), so it goes through the same routine; the weight gradient
is the adjoint of the GEMMs and the filter transform (:func:`conv2d_weight_grad`).

Only 3x3 kernels, stride 1, dilation 1, groups 1 (any padding, any batch and channels).
This module is written against the NumPy/CuPy array API (the array module comes from
the input), and is the reference; notation as in ``kernels/im2col.py``.
"""
from __future__ import annotations

from kernels.im2col import _array_module, conv_output_size

__all__ = ["F2_AT", "F2_G", "F2_BT", "F4_AT", "F4_G", "F4_BT", "MATRICES", "unsupported",
           "choose_tile", "conv2d_forward", "conv2d_input_grad", "conv2d_weight_grad",
           "transform_weight",
           "padded_channels_last"]

# ----------------------------------------------------------------- the matrices
# Written as tuples (``xp.asarray(F4_BT, dtype)`` makes an array on any device). Rows of
# Bᵀ and G, and columns of Aᵀ, follow the points in the order listed: row t of G is
# (1, p, p²) for point p, scaled (the Lagrange denominator); column t of Aᵀ is
# (1, p, p², ..., p^(m-1)). The point ∞ gives (0, ..., 0, 1) in both (-1 in F(2, 3)'s
# Aᵀ, a sign its Bᵀ balances).

# F(2, 3), points 0, 1, -1, ∞
F2_BT = ((1, 0, -1, 0),
         (0, 1, 1, 0),
         (0, -1, 1, 0),
         (0, 1, 0, -1))
F2_G = ((1, 0, 0),
        (1 / 2, 1 / 2, 1 / 2),
        (1 / 2, -1 / 2, 1 / 2),
        (0, 0, 1))
F2_AT = ((1, 1, 1, 0),
         (0, 1, -1, -1))

# F(4, 3), points 0, 1, -1, 2, -2, ∞
F4_BT = ((4, 0, -5, 0, 1, 0),
         (0, -4, -4, 1, 1, 0),
         (0, 4, -4, -1, 1, 0),
         (0, -2, -1, 2, 1, 0),
         (0, 2, -1, -2, 1, 0),
         (0, 4, 0, -5, 0, 1))
F4_G = ((1 / 4, 0, 0),
        (-1 / 6, -1 / 6, -1 / 6),
        (-1 / 6, 1 / 6, -1 / 6),
        (1 / 24, 1 / 12, 1 / 6),
        (1 / 24, -1 / 12, 1 / 6),
        (0, 0, 1))
F4_AT = ((1, 1, 1, 1, 1, 0),
         (0, 1, -1, 2, -2, 0),
         (0, 1, 1, 4, 4, 0),
         (0, 1, -1, 8, -8, 1))

#: output tile size m -> (Aᵀ, G, Bᵀ)
MATRICES = {2: (F2_AT, F2_G, F2_BT), 4: (F4_AT, F4_G, F4_BT)}


# ------------------------------------------------------------ what it supports

def unsupported(w_shape, stride, dilation, groups):
    """None when Winograd can compute this conv2d, else the reason, as a phrase."""
    reasons = []
    if tuple(w_shape[2:]) != (3, 3):
        reasons.append(f"kernel {w_shape[2]}x{w_shape[3]}")
    if tuple(stride) != (1, 1):
        reasons.append(f"stride {tuple(stride)}")
    if tuple(dilation) != (1, 1):
        reasons.append(f"dilation {tuple(dilation)}")
    if groups != 1:
        reasons.append(f"groups={groups}")
    return ", ".join(reasons) or None


def choose_tile(OH, OW):
    """The output tile size m (2 or 4) for an OH x OW output: the one that multiplies
    less, counting the tiles that stick out past the output (ceil(OH/m)·ceil(OW/m)
    tiles of (m+2)² products each); a tie goes to F(2x2), the more accurate."""
    def products(m):
        return (-(-OH // m)) * (-(-OW // m)) * (m + 2) ** 2
    return 4 if products(4) < products(2) else 2


# --------------------------------------------------------------------- the ops

def conv2d_forward(x, w, b=None, padding=(0, 0), m=None):
    """conv2d of x (N, C, H, W) with a 3x3 w (O, C, 3, 3) and bias b (O,) or None,
    stride 1, zero padding ``padding`` = (PH, PW), by F(m x m, 3x3) (m = 2 or 4; None:
    :func:`choose_tile`). Returns (N, O, OH, OW), OH = H + 2·PH - 2, OW = W + 2·PW - 2."""
    N, C, H, W = x.shape
    PH, PW = padding
    OH, OW = conv_output_size(H, 3, 1, PH), conv_output_size(W, 3, 1, PW)
    m = choose_tile(OH, OW) if m is None else m
    out = _correlate(x, transform_weight(w, m), PH, PW, OH, OW, m)
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def conv2d_input_grad(g, w, x_shape, padding=(0, 0), m=None):
    """dL/dx of :func:`conv2d_forward` given g = dL/dy (N, O, OH, OW).

    From y[i] = Σ_k x[i + k - P]·w[k] (one axis shown), each x[j] receives g[i]·w[k]
    wherever i + k - P = j, so with k' = 2 - k::

        dL/dx[j] = Σ_k' g[j + k' - (2 - P)] · w[2 - k']

    a 3x3 stride-1 correlation of g, zero-padded by 2 - P, with the kernel flipped in
    both axes and its channel axes swapped (w[o, c] read as (c, o)). For P > 2 the
    "padding" is negative: the outer P - 2 rows/columns of g are dropped (they came
    from windows that saw only padding). The result has x's size H x W.
    """
    H, W = x_shape[2], x_shape[3]
    PH, PW = padding
    m = choose_tile(H, W) if m is None else m
    w_adj = w[:, :, ::-1, ::-1].swapaxes(0, 1)          # (C, O, 3, 3), flipped
    return _correlate(g, transform_weight(w_adj, m), 2 - PH, 2 - PW, H, W, m)


def conv2d_weight_grad(x, g, padding=(0, 0), m=None):
    """dL/dw (O, C, 3, 3) of :func:`conv2d_forward` given its input x (N, C, H, W) and
    g = dL/dy (N, O, OH, OW), through the same tiles: the exact adjoint of the forward
    pass with respect to U, then of the filter transform.

    Forward, per tile: M[i, j] = V[i, j] @ U[i, j] and y = Aᵀ M A. So with the output
    gradient's m x m tile ĝ (zero past the output's edge)::

        dL/dM[i, j] = (A ĝ Aᵀ)[i, j]                       (α x α, per (tile, o))
        dL/dU[i, j] = Σ_tiles V[i, j]ᵀ @ dL/dM[i, j]        (C, O): α² GEMMs, the
                                                           sum over tiles inside them
        dL/dw[o, c] = Gᵀ dL/dU[:, :, c, o] G                (3 x 3)

    α² GEMMs of (C, P) @ (P, O) in place of im2col's (O, N·OH·OW) @ (N·OH·OW, 9C).
    """
    xp = _array_module(x)
    N, C = x.shape[:2]
    O, OH, OW = g.shape[1:]
    PH, PW = padding
    m = choose_tile(OH, OW) if m is None else m
    a = m + 2
    AT, G, BT = (xp.asarray(mat, dtype=x.dtype) for mat in MATRICES[m])
    tH, tW = -(-OH // m), -(-OW // m)
    P = tH * tW * N
    V = _tile_transform(xp, padded_channels_last(x, PH, PW, m, OH, OW), BT, m, tH, tW)
    dM = _tile_transform(xp, padded_channels_last(g, 0, 0, m, OH, OW), AT.T, m, tH, tW)
    dU = xp.matmul(V.reshape(a * a, P, C).swapaxes(1, 2), dM.reshape(a * a, P, O))
    return _filter_adjoint(dU, m)


def transform_weight(w, m):
    """U[i, j, c, o] = (G w[o, c] Gᵀ)[i, j]: the filter transform, (α, α, C, O) with
    α = m + 2 (each U[i, j] is the right factor of a GEMM), in w's dtype.

    As one GEMM: (G w Gᵀ)[i, j] = Σ_{k, l} G[i, k]·G[j, l]·w[k, l], so with the filters
    as the columns of a (9, C·O) matrix, U is (G ⊗ G) @ that, G ⊗ G the (α², 9)
    Kronecker product (computed in float64, then rounded to w's dtype)."""
    xp = _array_module(w)
    O, C = w.shape[:2]
    a = m + 2
    G = xp.asarray(MATRICES[m][1], dtype=xp.float64)
    GG = xp.kron(G, G).astype(w.dtype)                           # [(i, j), (k, l)]
    w9 = xp.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(9, C * O)   # [(k, l), (c, o)]
    return xp.matmul(GG, w9).reshape(a, a, C, O)


# ----------------------------------------------------------------------- helpers

def _filter_adjoint(dU, m):
    """dL/dw (O, C, 3, 3) from dL/dU (α², C, O): the adjoint of transform_weight,
    (G ⊗ G)ᵀ @ dU as a (9, C·O) result."""
    xp = _array_module(dU)
    aa, C, O = dU.shape
    G = xp.asarray(MATRICES[m][1], dtype=xp.float64)
    GG = xp.kron(G, G).astype(dU.dtype)                          # [(i, j), (k, l)]
    dw9 = xp.matmul(GG.T, dU.reshape(aa, C * O))                 # [(k, l), (c, o)]
    return xp.ascontiguousarray(dw9.reshape(3, 3, C, O).transpose(3, 2, 0, 1))



def padded_channels_last(x, PH, PW, m, OH, OW):
    """xb[row, col, n, c] = x[n, c, row - PH, col - PW] (0 outside x): the input,
    zero-padded (a negative pad crops) to the (tH·m + 2) x (tW·m + 2) that the tiles of
    an OH x OW output read."""
    xp = _array_module(x)
    N, C, H, W = x.shape
    tH, tW = -(-OH // m), -(-OW // m)
    Hb, Wb = tH * m + 2, tW * m + 2
    xb = xp.zeros((Hb, Wb, N, C), dtype=x.dtype)
    r0, r1 = max(0, PH), min(Hb, H + PH)        # buffer rows that hold input rows
    c0, c1 = max(0, PW), min(Wb, W + PW)
    if r1 > r0 and c1 > c0:
        xb[r0:r1, c0:c1] = x[:, :, r0 - PH:r1 - PH, c0 - PW:c1 - PW].transpose(2, 3, 0, 1)
    return xb


def _correlate(x, U, PH, PW, OH, OW, m):
    """The OH x OW correlation of x (N, C, H, W), zero-padded by PH/PW on each side
    (a negative pad crops), with the filters whose transform is U (α, α, C, O)."""
    xp = _array_module(x)
    N, C = x.shape[:2]
    O = U.shape[3]
    AT, _, BT = (xp.asarray(mat, dtype=x.dtype) for mat in MATRICES[m])
    a = m + 2
    tH, tW = -(-OH // m), -(-OW // m)
    P = tH * tW * N
    xb = padded_channels_last(x, PH, PW, m, OH, OW)
    V = _tile_transform(xp, xb, BT, m, tH, tW)                  # (α, α, tH, tW, N, C)
    # α² GEMMs: (α², P, C) @ (α², C, O) -> (α², P, O)
    M = xp.matmul(V.reshape(a * a, P, C), U.reshape(a * a, C, O))
    Y = _output_transform(xp, M.reshape(a, a, P * O), AT)       # (m, m, P·O)
    # Y[u, v, th, tw, n, o] is out[n, o, th·m + u, tw·m + v]
    Y = Y.reshape(m, m, tH, tW, N, O).transpose(4, 5, 2, 0, 3, 1)
    out = Y.reshape(N, O, tH * m, tW * m)
    if tH * m != OH or tW * m != OW:
        out = out[:, :, :OH, :OW]
    return xp.ascontiguousarray(out)


def _tile_transform(xp, xb, T, m, tH, tW):
    """D[i, j, th, tw] = (T d Tᵀ)[i, j] for every tile d of xb (rows, cols, N, C), each
    entry an (N, C) plane; the tiles are e x e (e = T.shape[1]) and start every m
    rows/columns. With T = Bᵀ (e = α) this is the input transform; with T = A (e = m,
    on the output gradient's m x m tiles) the adjoint of the output transform.

    Columns, then rows: gather column s of every tile (strided slices of whole planes,
    one copy), multiply by T as one (α, e) @ (e, rest) GEMM, which gives d Tᵀ; then the
    same along rows gives T (d Tᵀ)."""
    Hb, Wb, N, C = xb.shape
    a, e = T.shape
    # cols[s, :, tw] = xb[:, tw·m + s]: column s of every tile column
    cols = xp.empty((e, Hb, tW, N, C), dtype=xb.dtype)
    for s in range(e):
        cols[s] = xb[:, s:s + (tW - 1) * m + 1:m]
    # (d Tᵀ)[:, j] = Σ_s d[:, s]·T[j, s]
    dT = xp.matmul(T, cols.reshape(e, -1)).reshape(a, Hb, tW, N, C)
    # rows[r, j, th] = (d Tᵀ)[th·m + r, j]: row r of every tile
    rows = xp.empty((e, a, tH, tW, N, C), dtype=xb.dtype)
    for r in range(e):
        rows[r] = dT[:, r:r + (tH - 1) * m + 1:m]
    # (T d Tᵀ)[i, j] = Σ_r T[i, r]·(d Tᵀ)[r, j]
    return xp.matmul(T, rows.reshape(e, -1)).reshape(a, a, tH, tW, N, C)


def _output_transform(xp, M, AT):
    """Y[u, v] = (Aᵀ M A)[u, v] for M (α, α, R): (m, m, R)."""
    a, _, R = M.shape
    m = AT.shape[0]
    Z = xp.matmul(AT, M.reshape(a, a * R)).reshape(m, a, R)      # (Aᵀ M)[u, j]
    # (Aᵀ M A)[u, v] = Σ_j Aᵀ[v, j]·(Aᵀ M)[u, j]: Aᵀ @ Z[u] for each u
    return xp.matmul(AT, Z)
