"""Padding: ``pad(x, pad, mode="constant", value=None)`` as ``torch.nn.functional.pad``.

``pad`` lists (before, after) pairs starting from the *last* dimension, as torch does:
``(left, right, top, bottom)`` pads W then H. Negative amounts crop.

Modes, for a row ``a b c d`` padded by 2 on each side:

    constant   0 0 | a b c d | 0 0      (``value``, default 0)
    reflect    c b | a b c d | c b      mirror without repeating the edge
    replicate  a a | a b c d | d d      repeat the edge
    circular   c d | a b c d | a b      wrap around

Every non-constant mode is a *gather*: output position k of a padded dimension of size n
reads input position i(k) (k - before, mirrored, clamped or wrapped into [0, n)). Its
gradient is the matching *scatter*: each input position receives the sum of the upstream
gradients of every output that read it (the edge of a replicate pad collects many).
The gradient of constant padding is the upstream gradient cut back to the input's region.
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function, as_tensor

__all__ = ["pad"]


_MODES = ("constant", "reflect", "replicate", "circular")


def pad(input, pad, mode="constant", value=None):
    """Pad (or, with negative amounts, crop) the trailing dimensions of ``input``.

    Limits, as torch's: the non-constant modes pad 1, 2 or 3 trailing dimensions of an
    input with one or two more dimensions (2-D/3-D input for a 2-amount ``pad``, 3-D/4-D
    for 4 amounts, 4-D/5-D for 6); 'reflect' needs each amount smaller than the size of
    its dimension, 'circular' at most that size (it wraps around once); ``value`` belongs
    to 'constant' only.

    NOTE: for 'circular' with negative amounts minicnn crops the wrapped signal
    (position k reads (k - before) mod n); torch agrees when no amount is positive, but
    gives inconsistent results when a crop on one side meets padding on the other.
    """
    x = as_tensor(input)
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: expected an even number of amounts covering at most "
                         f"{x.ndim} dimensions, got {pad}")
    if mode not in _MODES:
        raise ValueError(f"pad: mode must be one of {_MODES}, got {mode!r}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    for d, (lo, hi) in enumerate(widths):
        if x.shape[d] + lo + hi < 0 or (x.shape[d] + lo + hi == 0 and (lo or hi)):
            raise ValueError(f"pad: padding {(lo, hi)} of dimension {d} (size {x.shape[d]}) "
                             f"leaves no elements")
    if mode == "constant":
        return ConstantPad(tuple(widths), 0.0 if value is None else value)(x)

    if value is not None and value != 0:
        raise ValueError(f"pad: mode {mode!r} takes no value argument (got value={value}); "
                         f"only 'constant' fills with a value")
    k = len(pad) // 2
    if k == 0 or x.ndim not in (k + 1, k + 2):
        raise ValueError(f"pad: mode {mode!r} with {len(pad)} amounts pads the last {k} "
                         f"dimension(s) of a {k + 1}-D or {k + 2}-D input, got a {x.ndim}-D "
                         f"input of shape {tuple(x.shape)}")
    indices = {}
    for d in range(x.ndim - k, x.ndim):
        lo, hi = widths[d]
        n = x.shape[d]
        if mode == "reflect" and (lo >= n or hi >= n):
            raise ValueError(f"pad: 'reflect' padding must be smaller than the size of the "
                             f"dimension it pads, got {(lo, hi)} for dimension {d} of size "
                             f"{n} (input shape {tuple(x.shape)})")
        if mode == "circular" and (lo > n or hi > n):
            raise ValueError(f"pad: 'circular' padding can wrap around at most once, got "
                             f"{(lo, hi)} for dimension {d} of size {n} (input shape "
                             f"{tuple(x.shape)})")
        if n == 0:
            raise ValueError(f"pad: mode {mode!r} cannot pad dimension {d} of size 0")
        if lo or hi:
            indices[d] = source_index(mode, n, lo, hi)
    return IndexPad(indices)(x)


class ConstantPad(Function):
    def __init__(self, widths, value):
        self.widths, self.value = widths, value

    def forward(self, x):
        xp = backend.get_array_module(x)
        out_shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, self.widths))
        out = xp.full(out_shape, self.value, dtype=x.dtype)
        # where the input lands in the output, and which part of it survives a crop
        self.dst = tuple(slice(max(lo, 0), max(lo, 0) + n + min(lo, 0) + min(hi, 0))
                         for n, (lo, hi) in zip(x.shape, self.widths))
        self.src = tuple(slice(-min(lo, 0), n + min(hi, 0))
                         for n, (lo, hi) in zip(x.shape, self.widths))
        self.in_shape = x.shape
        out[self.dst] = x[self.src]
        return out

    def backward(self, g):
        xp = backend.get_array_module(g)
        gx = xp.zeros(self.in_shape, dtype=g.dtype)
        gx[self.src] = g[self.dst]
        return gx


class IndexPad(Function):
    """Reflect, replicate and circular padding: a gather along each padded dimension."""

    def __init__(self, indices):
        self.indices = indices              # {dim: list of source positions}

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.in_shape = x.shape
        if not self.indices:                # nothing to pad: still a new array, as torch
            return x.copy()
        for d, index in self.indices.items():
            x = take(xp, x, index, d)
        return x

    def backward(self, g):
        xp = backend.get_array_module(g)
        for d in reversed(list(self.indices)):
            g = take_backward(xp, g, self.indices[d], self.in_shape[d], d)
        return g


# ------------------------------------------------------------------------ helpers

def source_index(mode, n, before, after):
    """For one padded dimension of size n: the input position each output position reads.

    Output position k corresponds to input position j = k - before, brought into [0, n):
    reflect mirrors about the end elements (-1 -> 1, n -> n - 2), replicate clamps,
    circular wraps. Returns a Python list of length n + before + after.
    """
    out = []
    for k in range(n + before + after):
        j = k - before
        if mode == "reflect":
            if j < 0:
                j = -j
            elif j > n - 1:
                j = 2 * (n - 1) - j
        elif mode == "replicate":
            j = min(max(j, 0), n - 1)
        else:                       # circular
            j %= n
        out.append(j)
    return out


def take(xp, x, index, axis):
    """``xp.take(x, index, axis)`` for a Python list ``index``, done with strided slices.

    The reads are grouped as in :func:`take_backward`; each arithmetic progression of
    (output, input) positions is one slice copy, ``out[0:8:2] = x[1:5]``, which is much
    faster than gathering single elements along an inner axis.
    """
    shape = list(x.shape)
    shape[axis] = len(index)
    out = xp.empty(tuple(shape), dtype=x.dtype)
    lead = (slice(None),) * axis
    for dst, src in _slices(index):
        out[lead + (dst,)] = x[lead + (src,)]
    return out


def take_backward(xp, g, index, size, axis, out=None):
    """The adjoint of ``xp.take(x, index, axis)`` for a dimension of ``size``: position i
    of the result is the sum of g's slices k with index[k] == i (added into ``out`` if
    given).

    ``index`` is a Python list. NOTE: ``grad[idx] += v`` with a repeated position keeps
    only one of its terms, so the reads are first split into rounds in which no position
    repeats (round r holds each position's r-th read: 2 rounds for a reflect pad or a 2x
    nearest upsampling). Each round is then cut into arithmetic progressions, which
    become strided slices: ``grad[1:5] += g[0:8:2]`` for the even outputs of a 2x
    upsampling, with no index arrays and no copies.
    """
    if out is None:
        shape = list(g.shape)
        shape[axis] = size
        out = xp.zeros(tuple(shape), dtype=g.dtype)
    lead = (slice(None),) * axis
    for src, dst in _slices(index):
        out[lead + (dst,)] += g[lead + (src,)]
    return out


def _slices(index):
    """(output slice, input slice) pairs covering ``index`` (output k reads input
    index[k]), such that no input position appears twice in one pair."""
    seen = {}
    rounds = []                              # rounds[r] = [(output k, input i), ...]
    for k, i in enumerate(index):
        r = seen.get(i, 0)
        seen[i] = r + 1
        if r == len(rounds):
            rounds.append([])
        rounds[r].append((k, i))
    for pairs in rounds:
        for (k0, i0), count, (dk, di) in _progressions(pairs):
            stop = i0 + di * (count - 1) + (1 if di > 0 else -1)
            yield (slice(k0, k0 + dk * (count - 1) + 1, dk),
                   slice(i0, stop if stop >= 0 else None, di))


def _progressions(pairs):
    """Cut a list of (k, i) pairs (k increasing, no i repeated) into maximal runs in
    which both k and i advance by a constant step: yields (first pair, length, steps)."""
    start = 0
    while start < len(pairs):
        if start + 1 == len(pairs):
            yield pairs[start], 1, (1, 1)
            return
        dk = pairs[start + 1][0] - pairs[start][0]
        di = pairs[start + 1][1] - pairs[start][1]
        end = start + 2
        while end < len(pairs) and (pairs[end][0] - pairs[end - 1][0],
                                    pairs[end][1] - pairs[end - 1][1]) == (dk, di):
            end += 1
        yield pairs[start], end - start, (dk, di)
        start = end
