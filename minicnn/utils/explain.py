"""Worked examples of what the convolution and pooling code does, with real numbers
(``minicnn explain conv2d``): each step of the forward (im2col, the matrix multiply, the
reshape) and of the backward (the matrix multiply by the transpose, col2im) as the
kernels compute it, printed and drawn.

The steps call the same kernels as ``F.conv2d`` (``kernels/im2col.py``); the tests check
that the output and the input gradient shown are ``F.conv2d``'s and autograd's.

The defaults are seed 003's examples: the input 0..8 as 3x3 and the kernel [[0, 1],
[2, 3]] give [[19, 25], [37, 43]]; the transposed convolution of [[0, 1], [2, 3]] by
itself at stride 2 gives [[0, 0, 0, 1], [0, 0, 2, 3], [0, 2, 0, 3], [4, 6, 6, 9]].
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from kernels.im2col import col2im, conv_output_size, im2col

__all__ = ["Explanation", "explain", "OPS"]

OPS = ("conv2d", "conv_transpose2d", "max_pool2d")


@dataclass
class Explanation:
    """The steps of one worked example. ``steps``: ``(title, 2-D array, note)`` in
    order; ``input``, ``weight`` (None for pooling), ``output``, ``grad_output`` and
    ``grad_input`` are the example's arrays, ``(C, H, W)``-shaped (weight as the op
    takes it)."""
    op: str
    input: np.ndarray
    weight: np.ndarray | None
    output: np.ndarray
    grad_output: np.ndarray
    grad_input: np.ndarray
    steps: list = field(default_factory=list)

    def text(self):
        """The steps as text, one matrix after another."""
        lines = [f"minicnn explain {self.op}: the forward as im2col + a matrix multiply, "
                 "the backward as a matrix multiply + col2im", ""]
        for title, array, note in self.steps:
            lines.append(f"{title}  {tuple(array.shape)}" + (f"   ({note})" if note else ""))
            lines.append(np.array2string(_tidy(array), max_line_width=100, threshold=400))
            lines.append("")
        return "\n".join(lines)

    def draw(self, path):
        """One panel per step, each matrix drawn as a grid of its numbers; a PNG written
        atomically. Returns False when matplotlib is missing."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            return False
        cols = 3
        rows = -(-len(self.steps) // cols)
        figure = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(rows, cols, squeeze=False).ravel()
        for ax, (title, array, note) in zip(axes, self.steps):
            array = _tidy(array)
            finite = np.where(np.isfinite(array), array, np.nan)
            ax.imshow(finite, cmap="Blues", interpolation="nearest")
            if array.size <= 256:
                middle = (np.nanmin(finite) + np.nanmax(finite)) / 2
                for (i, j), v in np.ndenumerate(array):
                    ax.text(j, i, _number(v), ha="center", va="center", fontsize=8,
                            color="white" if np.isfinite(v) and v > middle else "black")
            ax.set_title(f"{title}\n{tuple(array.shape)}" + (f" {note}" if note else ""),
                         fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[len(self.steps):]:
            ax.set_axis_off()
        figure.suptitle(f"{self.op}: forward = im2col, then a matrix multiply; "
                        "backward = a matrix multiply, then col2im")
        path = os.fspath(path)
        tmp = path + ".tmp.png"
        figure.savefig(tmp, dpi=100)
        os.replace(tmp, path)
        return True


def explain(op="conv2d", size=None, kernel_size=None, stride=None, padding=0,
            in_channels=1, out_channels=1):
    """The worked example of ``op`` (one of :data:`OPS`) on a small input of integers
    ``(in_channels, size, size)``, a ``kernel_size`` kernel (of integers, for the
    convolutions) and an upstream gradient 1, 2, 3, ... Unset sizes take the seed's
    example. Returns an :class:`Explanation`."""
    if op not in OPS:
        raise ValueError(f"explain: op must be one of {', '.join(OPS)}, got {op!r}")
    for name, value in (("size", size), ("kernel_size", kernel_size), ("stride", stride),
                        ("in_channels", in_channels), ("out_channels", out_channels)):
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise ValueError(f"explain {op}: {name} must be a positive int, got {value!r}")
    if not (isinstance(padding, int) and padding >= 0):
        raise ValueError(f"explain {op}: padding must be an int >= 0, got {padding!r}")
    if op == "conv2d":
        return _conv2d(size or 3, kernel_size or 2, stride or 1, padding, in_channels,
                       out_channels)
    if op == "conv_transpose2d":
        return _conv_transpose2d(size or 2, kernel_size or 2, stride or 2, padding,
                                 in_channels, out_channels)
    return _max_pool2d(size or 4, kernel_size or 2, stride or kernel_size or 2, padding,
                       in_channels)


def _conv2d(size, k, s, p, c, o):
    x = (np.arange(c * size * size) % 10).reshape(1, c, size, size).astype(np.float64)
    w = (np.arange(o * c * k * k) % 4).reshape(o, c, k, k).astype(np.float64)
    oh = _output_size("conv2d", size, k, s, p)
    cols = im2col(x, k, k, s, s, p, p)                       # (1, C, K, K, OH, OW)
    cols_matrix = cols.reshape(c * k * k, oh * oh)           # a column per window
    w_matrix = w.reshape(o, c * k * k)                       # a row per filter
    y_matrix = w_matrix @ cols_matrix                        # (O, OH*OW)
    y = y_matrix.reshape(o, oh, oh)
    g = _upstream(y.shape)
    dcols = w_matrix.T @ g.reshape(o, oh * oh)               # (C*K*K, OH*OW)
    dx = col2im(dcols.reshape(cols.shape), x.shape, s, s, p, p)[0]
    steps = [("input x", _flat(x[0]), f"C={c}" if c > 1 else ""),
             ("weight as a matrix W", w_matrix, "a row per filter"),
             ("im2col(x)", cols_matrix, f"a column per {k}x{k} window"
              + (f", padding {p}" if p else "")),
             ("W @ im2col(x)", y_matrix, "a row per output channel"),
             ("output y", _flat(y), "reshaped"),
             ("upstream gradient g", _flat(g), ""),
             ("Wᵀ @ g", dcols, "a column per window"),
             ("grad of x = col2im(Wᵀ @ g)", _flat(dx), "overlaps add")]
    return Explanation("conv2d", x[0], w, y, g, dx, steps)


def _conv_transpose2d(size, k, s, p, c, o):
    x = (np.arange(c * size * size) % 10).reshape(1, c, size, size).astype(np.float64)
    w = (np.arange(c * o * k * k) % 4).reshape(c, o, k, k).astype(np.float64)
    oh = (size - 1) * s - 2 * p + k
    if oh < 1:
        raise ValueError(f"explain conv_transpose2d: padding {p} leaves no output of a "
                         f"{size}x{size} input (kernel {k}, stride {s})")
    w_matrix = w.reshape(c, o * k * k)                       # a row per input channel
    cols_matrix = w_matrix.T @ x.reshape(c, size * size)     # (O*K*K, H*W): scaled kernels
    y = col2im(cols_matrix.reshape(1, o, k, k, size, size), (1, o, oh, oh), s, s, p, p)[0]
    g = _upstream(y.shape)
    gcols = im2col(g[None], k, k, s, s, p, p).reshape(o * k * k, size * size)
    dx = (w_matrix @ gcols).reshape(c, size, size)
    steps = [("input x", _flat(x[0]), f"C={c}" if c > 1 else ""),
             ("weight as a matrix W", w_matrix, "a row per input channel"),
             ("Wᵀ @ x", cols_matrix, "a column per input pixel: the kernel scaled by it"),
             ("output y = col2im(Wᵀ @ x)", _flat(y), f"copies {s} apart, overlaps add"
              + (f", {p} cut from each side" if p else "")),
             ("upstream gradient g", _flat(g), ""),
             ("im2col(g)", gcols, "a column per input pixel"),
             ("grad of x = W @ im2col(g)", _flat(dx), "a convolution of g")]
    return Explanation("conv_transpose2d", x[0], w, y, g, dx, steps)


def _max_pool2d(size, k, s, p, c):
    if p > k // 2:
        raise ValueError(f"explain max_pool2d: padding must be at most half the kernel "
                         f"({k // 2}), got {p}")
    # (7 i) mod n runs over every value once when 7 does not divide n: no ties
    n = c * size * size
    step = 7 if n % 7 else 11
    x = ((np.arange(n) * step) % n).reshape(1, c, size, size).astype(np.float64)
    oh = _output_size("max_pool2d", size, k, s, p)
    # NOTE: max pooling pads with -inf, never zeros (a zero would win over negatives)
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    cols = im2col(padded, k, k, s, s)                        # (1, C, K, K, OH, OW)
    cols_matrix = cols.reshape(c, k * k, oh * oh).transpose(1, 0, 2).reshape(k * k,
                                                                           c * oh * oh)
    winner = cols_matrix.argmax(axis=0)                      # the first maximum, as torch
    y = cols_matrix.max(axis=0).reshape(c, oh, oh)
    g = _upstream(y.shape)
    dcols_matrix = np.zeros_like(cols_matrix)
    dcols_matrix[winner, np.arange(cols_matrix.shape[1])] = g.ravel()
    dcols = dcols_matrix.reshape(k, k, c, oh, oh).transpose(2, 0, 1, 3, 4)[None]
    dx = col2im(np.ascontiguousarray(dcols), padded.shape, s, s)[0]
    dx = dx[:, p:p + size, p:p + size]
    steps = [("input x", _flat(x[0]), f"C={c}" if c > 1 else ""),
             ("im2col(x)", cols_matrix, f"a column per {k}x{k} window"
              + (f", padded with -inf" if p else "")),
             ("max of each column", y.reshape(1, -1), "argmax remembered"),
             ("output y", _flat(y), "reshaped"),
             ("upstream gradient g", _flat(g), ""),
             ("g placed at each argmax", dcols_matrix, "zeros elsewhere"),
             ("grad of x = col2im(...)", _flat(dx), "overlapping windows add")]
    return Explanation("max_pool2d", x[0], None, y, g, dx, steps)


def _output_size(op, size, k, s, p):
    out = conv_output_size(size, k, s, p)
    if out < 1:
        raise ValueError(f"explain {op}: a {k}x{k} kernel does not fit a {size}x{size} input "
                         f"with padding {p}")
    return out


def _upstream(shape):
    """1, 2, 3, ...: an upstream gradient whose entries can be told apart."""
    return np.arange(1, int(np.prod(shape)) + 1, dtype=np.float64).reshape(shape)


def _flat(array):
    """(C, H, W) -> the channels side by side as one (H, C*W) matrix (C = 1: (H, W))."""
    c, h, w = array.shape
    return array.transpose(1, 0, 2).reshape(h, c * w)


def _tidy(array):
    """An integer array when every entry is a whole number, so 19 prints as 19."""
    array = np.asarray(array, dtype=np.float64)
    if np.isfinite(array).all() and (array == np.round(array)).all():
        return array.astype(np.int64)
    return array


def _number(v):
    if not np.isfinite(v):
        return "-∞" if v < 0 else "∞"
    return f"{int(v)}" if float(v).is_integer() else f"{v:.2f}"
