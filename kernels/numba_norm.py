"""CPU fast path of batch normalisation: one compiled pass per step instead of a chain of
NumPy array expressions.

The reference (``BatchNorm`` in ``minicnn/functional/normalization.py``) is the
description; these loops compute the same numbers for float32/float64 NumPy arrays
(``kernels/dispatch.py`` decides). Per channel c, over its M = N·L values (L = the
spatial size), with x̂ = (x - μ)·r, r = 1/sqrt(σ² + eps):

    forward:   y = γ x̂ + β  =  x·(γr) + (β - μγr)
    backward:  dγ = Σ dy·x̂,   dβ = Σ dy,
               dx = γr · (dy - Σdy/M - x̂ · Σ(dy·x̂)/M)          (training)
               dx = γr · dy                                      (evaluation)

Why it is faster: the reference makes about ten passes over the activations per
direction, each through a temporary as large as the input (x - μ, its square, x̂, γx̂,
...); here the statistics take two passes over one channel (in cache) and the output one
more, with no temporaries. It also keeps the input rather than x̂ for backward, so no
extra activation-sized array lives between the passes. Sums are accumulated in float64.

``relu=True`` (``F.batch_norm_relu``) clamps y at 0 as it is written, and the backward
reads the upstream gradient masked by y > 0 as it reads it: a ReLU after the batch norm
costs no pass of its own in either direction.

Arrays come in as (N, C, L) C-contiguous views. The loops run on the calling thread
(see kernels/numba_conv.py for why not numba's parallel=True).
"""
from __future__ import annotations

import numpy as np

from kernels._jit import jit

__all__ = ["batch_norm_train", "batch_norm_eval", "batch_norm_backward"]


@jit(cache=True, nogil=True, inline="always")
def _u(i):
    # NOTE: unsigned indices: numba checks signed ones for negative values, which stops
    # LLVM from vectorising the inner loops (see kernels/numba_conv.py)
    return np.uintp(i)


# reassoc: lets LLVM split the running sums into vector lanes (another valid summation
# order); NaN and inf keep their meaning, unlike with fastmath=True
@jit(cache=True, nogil=True, fastmath={"reassoc"})
def _statistics(x, eps, mean, inv_std, var):
    """Per channel of x (N, C, L): mean, 1/sqrt(biased var + eps), biased var."""
    N, C, L = x.shape
    xf = x.reshape(-1)
    M = N * L
    for c in range(C):
        total = 0.0
        for n in range(N):
            base = (n * C + c) * L
            for j in range(L):
                total += xf[_u(base + j)]
        mu = total / M
        # second pass on the centred values: no cancellation as in E[x²] - E[x]²
        sq = 0.0
        for n in range(N):
            base = (n * C + c) * L
            for j in range(L):
                d = xf[_u(base + j)] - mu
                sq += d * d
        mean[c] = mu
        var[c] = sq / M
        inv_std[c] = 1.0 / np.sqrt(sq / M + eps)


@jit(cache=True, nogil=True)
def _affine(x, scale, shift, y, relu):
    """y[n, c, :] = x[n, c, :]·scale[c] + shift[c] (scale, shift in float64), then
    clamped at 0 when ``relu`` (a NaN stays NaN, as relu's maximum(v, 0))."""
    N, C, L = x.shape
    xf, yf = x.reshape(-1), y.reshape(-1)
    for n in range(N):
        for c in range(C):
            a, b = scale[c], shift[c]
            base = (n * C + c) * L
            if relu:
                for j in range(L):
                    v = xf[_u(base + j)] * a + b
                    yf[_u(base + j)] = 0 if v < 0 else v
            else:
                for j in range(L):
                    yf[_u(base + j)] = xf[_u(base + j)] * a + b


@jit(cache=True, nogil=True, fastmath={"reassoc"})
def _grad_sums(g, x, mean, sum_g, sum_gc, y, relu):
    """Per channel: Σ g and Σ g·(x - μ); with ``relu``, g counts only where the output
    y > 0 (relu's gradient)."""
    N, C, L = x.shape
    gf, xf, yf = g.reshape(-1), x.reshape(-1), y.reshape(-1)
    for c in range(C):
        sg = 0.0
        sgc = 0.0
        mu = mean[c]
        for n in range(N):
            base = (n * C + c) * L
            if relu:
                for j in range(L):
                    gv = gf[_u(base + j)] * (yf[_u(base + j)] > 0)
                    sg += gv
                    sgc += gv * (xf[_u(base + j)] - mu)
            else:
                for j in range(L):
                    gv = gf[_u(base + j)]
                    sg += gv
                    sgc += gv * (xf[_u(base + j)] - mu)
        sum_g[c] = sg
        sum_gc[c] = sgc


@jit(cache=True, nogil=True)
def _input_grad(g, x, a, b, mean, k, gx, y, relu):
    """gx = a·(g - b - (x - μ)·k) per channel: the training-mode dx with
    a = γr, b = Σdy/M, k = r²·Σ(dy·(x - μ))/M (g masked by y > 0 when ``relu``)."""
    N, C, L = x.shape
    gf, xf, of, yf = g.reshape(-1), x.reshape(-1), gx.reshape(-1), y.reshape(-1)
    for n in range(N):
        for c in range(C):
            ac, bc, kc, mu = a[c], b[c], k[c], mean[c]
            base = (n * C + c) * L
            if relu:
                for j in range(L):
                    i = _u(base + j)
                    gv = gf[i] * (yf[i] > 0)
                    of[i] = ac * (gv - bc - (xf[i] - mu) * kc)
            else:
                for j in range(L):
                    i = _u(base + j)
                    of[i] = ac * (gf[i] - bc - (xf[i] - mu) * kc)


def _as_ncl(a):
    """(N, C, *) -> a C-contiguous (N, C, L) view (a copy only if not contiguous)."""
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[0], a.shape[1], -1)


def _scale_shift(inv_std, mean, weight, bias):
    scale = inv_std if weight is None else inv_std * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    return scale, shift


def batch_norm_train(x, weight, bias, eps, relu=False):
    """Training-mode batch norm of x (N, C, *) with the batch's statistics (then relu,
    in the same pass, when ``relu``).

    Returns (y, mean, inv_std, var): y like x; the others (C,) float64, var biased."""
    x3 = _as_ncl(x)
    C = x3.shape[1]
    mean, inv_std, var = np.empty(C), np.empty(C), np.empty(C)
    _statistics(x3, eps, mean, inv_std, var)
    scale, shift = _scale_shift(inv_std, mean, weight, bias)
    y = np.empty(x3.shape, x.dtype)
    _affine(x3, scale, shift, y, bool(relu))
    return y.reshape(x.shape), mean, inv_std, var


def batch_norm_eval(x, mean, inv_std, weight, bias, relu=False):
    """Evaluation-mode batch norm: y = (x - mean)·inv_std·γ + β with given (C,) float64
    statistics (then relu, in the same pass, when ``relu``)."""
    x3 = _as_ncl(x)
    scale, shift = _scale_shift(inv_std, mean, weight, bias)
    y = np.empty(x3.shape, x.dtype)
    _affine(x3, scale, shift, y, bool(relu))
    return y.reshape(x.shape)


def batch_norm_backward(g, x, mean, inv_std, weight, training, need_x, need_w, need_b,
                        relu_out=None):
    """(dL/dx, dL/dγ, dL/dβ) (None where not needed) of batch norm given the upstream
    gradient g, the forward's input x, and the (C,) float64 mean and inv_std it used.
    ``relu_out``: the output of a ``relu=True`` forward; g then counts only where it is
    > 0 (relu's gradient, applied as g is read)."""
    g3, x3 = _as_ncl(g), _as_ncl(x)
    N, C, L = x3.shape
    M = N * L
    relu = relu_out is not None
    # without relu the mask is never read: x stands in, so one compiled version serves
    y3 = _as_ncl(relu_out) if relu else x3
    sum_g, sum_gc = np.empty(C), np.empty(C)
    _grad_sums(g3, x3, mean, sum_g, sum_gc, y3, relu)
    gx = gw = gb = None
    if need_x:
        a = inv_std if weight is None else inv_std * weight
        if training:
            b, k = sum_g / M, inv_std * inv_std * sum_gc / M
        else:                                   # the statistics are constants
            b, k = np.zeros(C), np.zeros(C)
        gx = np.empty(x3.shape, x.dtype)
        _input_grad(g3, x3, a, b, mean, k, gx, y3, relu)
        gx = gx.reshape(x.shape)
    if need_w:
        gw = (sum_gc * inv_std).astype(x.dtype)     # Σ dy·x̂
    if need_b:
        gb = sum_g.astype(x.dtype)
    return gx, gw, gb
