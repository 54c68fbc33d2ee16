"""Reductions: sum, mean, max/min (values, or values and indices), var, std, argmax.

NumPy's ``axis``/``keepdims`` and torch's ``dim``/``keepdim`` are both accepted. The
backward of a reduction broadcasts the upstream gradient back over the reduced axes:
unchanged for ``sum``, divided by the count for ``mean``, routed to the extreme elements
for ``max``/``min``, and ``2 (x - mean) / (n - correction)`` for ``var``.
"""
from __future__ import annotations

import collections
import math

from .. import backend
from ..autograd import Function, as_tensor, _check_dim
from ._checks import float_input

__all__ = ["sum", "mean", "amax", "amin", "max", "min", "var", "std", "argmax", "argmin"]


MaxResult = collections.namedtuple("MaxResult", ["values", "indices"])


def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=None, dtype=None):
    """Sum over ``axis`` (all axes when None)."""
    x = as_tensor(x)
    if dtype is not None:
        x = x.to(dtype=dtype)
    return Sum(_axes("sum", x, axis, dim), _keep(keepdims, keepdim))(x)


class Sum(Function):
    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        out = x.sum(axis=self.axes, keepdims=self.keepdims)
        xp = backend.get_array_module(x)
        return xp.asarray(out, dtype=x.dtype if x.dtype.kind == "f" else out.dtype)

    def backward(self, g):
        xp = backend.get_array_module(g)
        g = _restore(g, self.in_shape, self.axes, self.keepdims)
        return xp.broadcast_to(g, self.in_shape)


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Arithmetic mean over ``axis``; the gradient is ``g / n`` at every element."""
    x = float_input("mean", x)
    return Mean(_axes("mean", x, axis, dim), _keep(keepdims, keepdim))(x)


class Mean(Function):
    def __init__(self, axes, keepdims):
        self.axes, self.keepdims = axes, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        xp = backend.get_array_module(x)
        return xp.asarray(x.mean(axis=self.axes, keepdims=self.keepdims), dtype=x.dtype)

    def backward(self, g):
        xp = backend.get_array_module(g)
        g = _restore(g, self.in_shape, self.axes, self.keepdims)
        n = _count(self.in_shape, self.axes)
        return xp.broadcast_to(g / n, self.in_shape)


def amax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Largest value over ``axis``; ties share the gradient evenly (as ``torch.amax``)."""
    x = as_tensor(x)
    return Extreme(_axes("amax", x, axis, dim), _keep(keepdims, keepdim), "max")(x)


class Extreme(Function):
    """max or min over axes; the gradient is shared evenly among tied extremes."""

    def __init__(self, axes, keepdims, kind):
        self.axes, self.keepdims, self.kind = axes, keepdims, kind

    def forward(self, x):
        xp = backend.get_array_module(x)
        if x.size == 0:
            raise ValueError(f"{self.kind}: cannot reduce an empty tensor")
        reduce = x.max if self.kind == "max" else x.min
        kept = xp.asarray(reduce(axis=self.axes, keepdims=True))
        self.hits = x == kept           # where the extreme sits (several on a tie)
        self.in_shape = x.shape
        return kept if self.keepdims else xp.asarray(reduce(axis=self.axes))

    def backward(self, g):
        g = _restore(g, self.in_shape, self.axes, self.keepdims)
        share = self.hits / self.hits.sum(axis=self.axes, keepdims=True)
        return (g * share).astype(g.dtype, copy=False)


def amin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Smallest value over ``axis``; ties share the gradient evenly (as ``torch.amin``)."""
    x = as_tensor(x)
    return Extreme(_axes("amin", x, axis, dim), _keep(keepdims, keepdim), "min")(x)


def max(x, *args, axis=None, keepdims=False, dim=None, keepdim=None):
    """``max(x)`` / ``max(x, axis=1)``: the largest values (NumPy style, ties share the
    gradient). ``max(x, 1)`` / ``max(x, dim=1)``: ``(values, indices)`` as in torch, the
    gradient going to the returned index. ``max(a, b)``: elementwise maximum."""
    return _max_or_min("max", x, args, axis, keepdims, dim, keepdim)


class SelectExtreme(Function):
    """``max(x, dim)`` as torch: values and indices; the gradient goes to that index."""

    def __init__(self, dim, keepdims, kind):
        self.dim, self.keepdims, self.kind = dim, keepdims, kind

    def forward(self, x):
        xp = backend.get_array_module(x)
        if x.shape[self.dim] == 0:
            raise ValueError(f"{self.kind}: cannot reduce an empty dimension")
        pick = xp.argmax if self.kind == "max" else xp.argmin
        idx = xp.expand_dims(pick(x, axis=self.dim), self.dim)
        values = xp.take_along_axis(x, idx, axis=self.dim)
        self.idx, self.in_shape = idx, x.shape
        if not self.keepdims:
            values, idx = values.squeeze(self.dim), idx.squeeze(self.dim)
        return values, idx.astype("int64")

    def backward(self, g, g_indices):
        xp = backend.get_array_module(g)
        if not self.keepdims:
            g = xp.expand_dims(g, self.dim)
        # one-hot along dim: position == chosen index
        shape = [1] * len(self.in_shape)
        shape[self.dim] = self.in_shape[self.dim]
        positions = xp.arange(self.in_shape[self.dim]).reshape(shape)
        return (positions == self.idx) * g


def min(x, *args, axis=None, keepdims=False, dim=None, keepdim=None):
    """The mirror of :func:`max`."""
    return _max_or_min("min", x, args, axis, keepdims, dim, keepdim)


def var(x, axis=None, keepdims=False, *, dim=None, keepdim=None, correction=None,
        unbiased=None, ddof=None):
    """Variance ``sum((x - mean)^2) / (n - correction)``.

    As in torch the default is the unbiased estimator (``correction=1``); pass
    ``correction=0`` (or ``unbiased=False``, or NumPy's ``ddof=0``) for the biased one.
    """
    x = float_input("var", x)
    given = [c for c in (correction, ddof) if c is not None]
    if unbiased is not None:
        given.append(1 if unbiased else 0)
    if len(given) > 1:
        raise TypeError("var: give only one of correction, unbiased and ddof")
    corr = given[0] if given else 1
    return Var(_axes("var", x, axis, dim), _keep(keepdims, keepdim), corr)(x)


class Var(Function):
    def __init__(self, axes, keepdims, correction):
        self.axes, self.keepdims, self.correction = axes, keepdims, correction

    def forward(self, x):
        xp = backend.get_array_module(x)
        n = _count(x.shape, self.axes)
        self.centered = x - x.mean(axis=self.axes, keepdims=True)
        self.denom = n - self.correction
        self.in_shape = x.shape
        sq = (self.centered * self.centered).sum(axis=self.axes, keepdims=self.keepdims)
        if self.denom <= 0:   # n <= correction: nan, as torch (which also warns)
            return xp.full(xp.shape(sq), xp.nan, dtype=x.dtype)
        return xp.asarray(sq / self.denom, dtype=x.dtype)

    def backward(self, g):
        g = _restore(g, self.in_shape, self.axes, self.keepdims)
        return (2 / self.denom) * self.centered * g


def std(x, axis=None, keepdims=False, *, dim=None, keepdim=None, correction=None,
        unbiased=None, ddof=None):
    """Standard deviation, the square root of :func:`var` (same arguments)."""
    from .elementwise import sqrt
    return sqrt(var(x, axis, keepdims, dim=dim, keepdim=keepdim, correction=correction,
                    unbiased=unbiased, ddof=ddof))


def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Index of the largest value (over the flattened tensor when no axis is given)."""
    return _arg("argmax", x, axis, keepdims, dim, keepdim)


def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Index of the smallest value."""
    return _arg("argmin", x, axis, keepdims, dim, keepdim)


# ------------------------------------------------------------------------ helpers

def _axes(op, x, axis, dim):
    """Normalise ``axis`` / ``dim`` (an int, a tuple, or None for all) to a sorted tuple."""
    if axis is not None and dim is not None:
        raise TypeError(f"{op}: give axis or dim, not both")
    a = axis if axis is not None else dim
    if a is None:
        return None
    items = a if isinstance(a, (tuple, list)) else (a,)
    axes = sorted({_check_dim(op, i, x.ndim) for i in items})
    return tuple(axes)


def _keep(keepdims, keepdim):
    return bool(keepdims if keepdim is None else keepdim)


def _max_or_min(kind, x, args, axis, keepdims, dim, keepdim):
    x = as_tensor(x)
    if args:
        if len(args) > 2:
            raise TypeError(f"{kind}: too many positional arguments")
        if not isinstance(args[0], (int,)) and hasattr(args[0], "shape"):
            # torch.max(a, b): elementwise
            from .elementwise import maximum, minimum
            return (maximum if kind == "max" else minimum)(x, args[0])
        dim = args[0]
        if len(args) == 2:
            keepdim = args[1]
    if dim is not None:
        # torch convention: a dim gives (values, indices); the gradient goes to the index
        d = _check_dim(kind, dim, x.ndim)
        values, indices = SelectExtreme(d, _keep(keepdims, keepdim), kind)(x)
        return MaxResult(values, indices)
    reducer = amax if kind == "max" else amin
    return reducer(x, axis=axis, keepdims=keepdims)


def _arg(op, x, axis, keepdims, dim, keepdim):
    from ..autograd import Tensor
    x = as_tensor(x)
    axes = _axes(op, x, axis, dim)
    xp = backend.get_array_module(x.array)
    if axes is None:
        out = getattr(xp, op)(x.array)
        return Tensor._wrap(xp.asarray(out, dtype="int64"))
    out = getattr(xp, op)(x.array, axis=axes[0], keepdims=_keep(keepdims, keepdim))
    return Tensor._wrap(out.astype("int64"))


def _restore(g, in_shape, axes, keepdims):
    """Give ``g`` back the reduced axes (size 1) so it broadcasts against the input."""
    if axes is None:
        return g.reshape((1,) * len(in_shape))
    if not keepdims:
        shape = list(g.shape)
        for a in axes:
            shape.insert(a, 1)
        g = g.reshape(shape)
    return g


def _count(shape, axes):
    return math.prod(shape) if axes is None else math.prod(shape[a] for a in axes)
