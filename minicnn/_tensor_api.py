"""Operators and methods of :class:`minicnn.Tensor`, attached here.

``autograd.py`` defines the engine; the ops live in ``functional/``. Tensor methods are
thin forwards to those functions (``x.sum(1)`` is ``F.sum(x, 1)``), attached once when
minicnn is imported, so the engine file does not need to import every op family.
"""
from __future__ import annotations

from .autograd import Tensor, as_tensor
from .functional import activation as A
from .functional import elementwise as E
from .functional import linalg as L
from .functional import reduction as R
from .functional import shape as S


def _swap(fn):
    return lambda self, other: fn(other, self)


def _compare(op):
    def method(self, other):
        other = as_tensor(other, like=self)
        return Tensor._wrap(getattr(self.array, op)(other.array))
    method.__name__ = op
    return method


def _view(self, *shape):
    return S.reshape(self, *shape)


def _expand_as(self, other):
    return S.expand(self, other.shape)


def _view_as(self, other):
    return S.reshape(self, other.shape)


def _repeat(self, *sizes):
    """Tile the tensor (as ``torch.Tensor.repeat``): a copy made through cat."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    x = self
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: expected at least {x.ndim} sizes, got {sizes}")
    x = S.reshape(x, (1,) * (len(sizes) - x.ndim) + tuple(x.shape))
    for d, n in enumerate(sizes):
        if n != 1:
            x = S.cat([x] * n, d)
    return x


_METHODS = {
    "__add__": E.add, "__radd__": _swap(E.add),
    "__sub__": E.sub, "__rsub__": _swap(E.sub),
    "__mul__": E.mul, "__rmul__": _swap(E.mul),
    "__truediv__": E.div, "__rtruediv__": _swap(E.div),
    "__pow__": E.pow, "__rpow__": _swap(E.pow),
    "__matmul__": L.matmul, "__rmatmul__": _swap(L.matmul),
    "__neg__": E.neg, "__pos__": lambda self: self, "__abs__": E.abs,
    "__getitem__": S.getitem,
    "__lt__": _compare("__lt__"), "__le__": _compare("__le__"),
    "__gt__": _compare("__gt__"), "__ge__": _compare("__ge__"),
    "__eq__": _compare("__eq__"), "__ne__": _compare("__ne__"),
    "add": E.add, "sub": E.sub, "mul": E.mul, "div": E.div, "pow": E.pow,
    "matmul": L.matmul, "mm": L.matmul, "neg": E.neg,
    "exp": E.exp, "log": E.log, "sqrt": E.sqrt, "abs": E.abs, "square": E.square,
    "clamp": E.clamp, "clip": E.clamp, "maximum": E.maximum, "minimum": E.minimum,
    "sum": R.sum, "mean": R.mean, "max": R.max, "min": R.min, "amax": R.amax, "amin": R.amin,
    "var": R.var, "std": R.std, "argmax": R.argmax, "argmin": R.argmin,
    "reshape": _view, "view": _view, "view_as": _view_as, "flatten": S.flatten,
    "squeeze": S.squeeze, "unsqueeze": S.unsqueeze, "permute": S.permute,
    "transpose": S.transpose, "expand": S.expand, "expand_as": _expand_as,
    "split": S.split, "chunk": S.chunk, "repeat": _repeat,
    "relu": A.relu, "sigmoid": A.sigmoid, "tanh": A.tanh,
    "softmax": A.softmax, "log_softmax": A.log_softmax,
}

# Comparisons return new tensors, so Tensor stays hashable by identity (set in autograd).
for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)
Tensor.__hash__ = object.__hash__
