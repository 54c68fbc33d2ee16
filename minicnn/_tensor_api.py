"""The tensor API beyond the engine: operators, ops as methods, conversions, in-place ops.

``autograd.py`` holds the engine alone (``Tensor``'s data, gradient and hooks, ``Function``,
the backward walk, ``no_grad``). Everything else a user calls on a tensor runs an op of
``functional/`` and is written here, in :class:`TensorMethods`, as ordinary methods:
``x.sum(1)`` is ``F.sum(x, 1)``, ``x.to(float64)`` is ``conversion.cast``, ``x[0] = 1`` is
``shape.index_put``. Importing minicnn attaches them to ``Tensor`` (the loop at the bottom),
so the engine never imports an op family, and a reader finds each method here.
"""
from __future__ import annotations

import types

import numpy as np

from . import backend
from .autograd import Tensor, as_tensor, is_grad_enabled
from .functional import activation as A
from .functional import conversion as C
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


# Methods that are an op with the tensor as first argument, by name.
_OPS = {
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
    "matmul": L.matmul, "mm": L.matmul, "neg": E.neg, "clone": E.clone,
    "exp": E.exp, "log": E.log, "sqrt": E.sqrt, "abs": E.abs, "square": E.square,
    "clamp": E.clamp, "clip": E.clamp, "maximum": E.maximum, "minimum": E.minimum,
    "sum": R.sum, "mean": R.mean, "max": R.max, "min": R.min, "amax": R.amax, "amin": R.amin,
    "var": R.var, "std": R.std, "argmax": R.argmax, "argmin": R.argmin,
    "flatten": S.flatten, "squeeze": S.squeeze, "unsqueeze": S.unsqueeze,
    "permute": S.permute, "transpose": S.transpose, "expand": S.expand,
    "split": S.split, "chunk": S.chunk,
    "relu": A.relu, "sigmoid": A.sigmoid, "tanh": A.tanh,
    "softmax": A.softmax, "log_softmax": A.log_softmax,
}


class TensorMethods:
    """The methods of ``Tensor`` that are more than the engine (attached below)."""

    # ------------------------------------------------------------------ shape
    @property
    def T(self):
        """The dimensions reversed (``x.T`` of a matrix is its transpose)."""
        return S.permute(self, *reversed(range(self.ndim)))

    def view(self, *shape):
        return S.reshape(self, *shape)

    reshape = view

    def view_as(self, other):
        return S.reshape(self, other.shape)

    def expand_as(self, other):
        return S.expand(self, other.shape)

    def repeat(self, *sizes):
        """Tile the tensor (as ``torch.Tensor.repeat``): a copy made through cat."""
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        if len(sizes) < self.ndim:
            raise ValueError(f"repeat: expected at least {self.ndim} sizes, got {sizes}")
        x = S.reshape(self, (1,) * (len(sizes) - self.ndim) + tuple(self.shape))
        for d, n in enumerate(sizes):
            if n != 1:
                x = S.cat([x] * n, d)
        return x

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def contiguous(self):
        return self          # every array minicnn makes can be used as it is

    # ------------------------------------------------------------ conversions
    def to(self, *args, dtype=None, device=None, copy=False):
        """``t.to("cuda")``, ``t.to(minicnn.float64)``, ``t.to(other_tensor)``; stays in
        the graph (the gradient goes back to the source dtype and device)."""
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, (str, backend.Device)):
                device = a
            else:
                dtype = a
        out = self
        if device is not None and backend.Device(device) != self.device:
            out = C.to_device(out, device)
        if dtype is not None and np.dtype(dtype) != out.dtype:
            out = C.cast(out, dtype)
        if copy and out is self:
            out = E.clone(self)
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=0):
        return self.to(f"cuda:{index}")

    def type(self, dtype=None):
        if dtype is None:
            return str(self.dtype)
        return self.to(dtype=dtype)

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def half(self):
        return self.to(dtype=np.float16)

    def long(self):
        return self.to(dtype=np.int64)

    def int(self):
        return self.to(dtype=np.int32)

    def bool(self):
        return self.to(dtype=np.bool_)

    def type_as(self, other):
        return self.to(dtype=other.dtype, device=other.device)

    # -------------------------------------------------------- in-place updates
    def _become(self, result):
        """Make this tensor hold ``result``: how in-place ops work on graph tensors.

        Without a graph the array is updated in place, so aliases see the change (as in
        torch). With one, this tensor becomes the output of ``result``'s node; uses of its
        old value already recorded keep pointing at the old node, so gradients stay right.
        """
        if result.requires_grad:
            if self.requires_grad and self.is_leaf:
                raise RuntimeError("a leaf tensor that requires grad is being used in an "
                                   "in-place operation (wrap it in minicnn.no_grad())")
            self.array, self.grad_fn = result.array, result.grad_fn
            self.output_index, self.requires_grad = result.output_index, True
        else:
            if result.shape != self.shape:
                raise RuntimeError(f"in-place operation: result of shape {result.shape} "
                                   f"cannot be stored in a tensor of shape {self.shape}")
            self.array[...] = result.array.astype(self.dtype, copy=False)
        return self

    def __iadd__(self, other):
        return self._become(E.add(self, other))

    def __isub__(self, other):
        return self._become(E.sub(self, other))

    def __imul__(self, other):
        return self._become(E.mul(self, other))

    def __itruediv__(self, other):
        return self._become(E.div(self, other))

    def add_(self, other, alpha=1):
        return self._become(E.add(self, E.mul(other, alpha) if alpha != 1 else other))

    def sub_(self, other, alpha=1):
        return self._become(E.sub(self, E.mul(other, alpha) if alpha != 1 else other))

    def mul_(self, other):
        return self._become(E.mul(self, other))

    def div_(self, other):
        return self._become(E.div(self, other))

    def clamp_(self, min=None, max=None):
        return self._become(E.clamp(self, min, max))

    def relu_(self):
        return self._become(A.relu(self))

    def zero_(self):
        self.array[...] = 0
        return self

    def fill_(self, value):
        self.array[...] = value
        return self

    def copy_(self, src):
        """Copy ``src`` into this tensor in place (shape-broadcast, dtype-cast)."""
        src = as_tensor(src)
        if self.requires_grad and self.is_leaf and is_grad_enabled():
            raise RuntimeError("copy_: a leaf tensor that requires grad is being used in an "
                               "in-place operation (wrap it in minicnn.no_grad())")
        xp = backend.get_array_module(self.array)
        self.array[...] = xp.asarray(backend.to_device(src.array, self.device))
        return self

    def __setitem__(self, index, value):
        """``x[index] = value``: in place on the array, or, in a graph, through
        ``index_put`` so the gradient reaches both ``x``'s old value and ``value``."""
        index = S._index_for(self, index)
        S._check_bounds("setitem", index, self.shape)    # CuPy would wrap, not raise
        value = as_tensor(value, like=self)
        if (self.requires_grad or value.requires_grad) and is_grad_enabled():
            self._become(S.index_put(self, index, value))
        else:
            xp = backend.get_array_module(self.array)
            self.array[index] = xp.asarray(value.array).astype(self.dtype, copy=False)


for _name, _fn in _OPS.items():
    setattr(Tensor, _name, _fn)
for _name, _member in vars(TensorMethods).items():
    if isinstance(_member, (types.FunctionType, property)):     # not __doc__, __module__
        setattr(Tensor, _name, _member)
# Comparisons return new tensors, so a Tensor stays hashable by identity.
Tensor.__hash__ = object.__hash__
