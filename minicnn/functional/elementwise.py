"""Elementwise arithmetic and math: add, sub, mul, div, pow, neg, exp, log, sqrt, abs,
clamp, where, maximum, minimum, clone.

Binary ops broadcast as NumPy does; the gradient for each input is the upstream gradient
times the local derivative, summed back over the broadcast axes (``unbroadcast``).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, as_tensor, unbroadcast

__all__ = ["add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "abs",
           "clamp", "clip", "where", "maximum", "minimum", "clone", "square",
           "true_divide"]


def add(a, b):
    """a + b, broadcast."""
    return Add()(*_operands("add", a, b))


class Add(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a + b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(g, self.shapes[1])


def sub(a, b):
    """a - b, broadcast."""
    return Sub()(*_operands("sub", a, b))


class Sub(Function):
    def forward(self, a, b):
        self.shapes = a.shape, b.shape
        return a - b

    def backward(self, g):
        return unbroadcast(g, self.shapes[0]), unbroadcast(-g, self.shapes[1])


def mul(a, b):
    """a * b, broadcast."""
    return Mul()(*_operands("mul", a, b))


class Mul(Function):
    def forward(self, a, b):
        # keep only the factor each gradient needs: d(ab)/da = b, d(ab)/db = a
        self.a = a if self.needs_input_grad[1] else None
        self.b = b if self.needs_input_grad[0] else None
        self.shapes = a.shape, b.shape
        return a * b

    def backward(self, g):
        ga = unbroadcast(g * self.b, self.shapes[0]) if self.needs_input_grad[0] else None
        gb = unbroadcast(g * self.a, self.shapes[1]) if self.needs_input_grad[1] else None
        return ga, gb


def div(a, b):
    """a / b, broadcast (true division; integer inputs give a float result)."""
    a, b = _operands("div", a, b)
    if a.dtype.kind != "f":
        a, b = a.to(dtype=backend.get_default_dtype()), b.to(dtype=backend.get_default_dtype())
    return Div()(a, b)


true_divide = div


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        a, b = self.a, self.b
        ga = unbroadcast(g / b, a.shape) if self.needs_input_grad[0] else None
        gb = unbroadcast(-g * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return ga, gb


def pow(a, b):
    """a ** b. d/da = b a^(b-1); d/db = a^b log a (only where a > 0)."""
    a, b = _operands("pow", a, b)
    return Pow()(a, b)


class Pow(Function):
    def forward(self, a, b):
        xp = backend.get_array_module(a)
        self.a, self.b = a, b
        self.out = xp.power(a, b)
        return self.out

    def backward(self, g):
        xp = backend.get_array_module(g)
        a, b = self.a, self.b
        ga = gb = None
        if self.needs_input_grad[0]:
            # b * a^(b-1), written so that 0 ** 0 style corners give torch's answer (b=0 -> 0)
            local = xp.where(b == 0, 0, b * xp.power(a, b - 1))
            ga = unbroadcast(g * local, a.shape)
        if self.needs_input_grad[1]:
            # NOTE: log a is undefined for a <= 0; torch reports 0 there when a == 0.
            safe = xp.where(a > 0, a, 1)
            gb = unbroadcast(g * self.out * xp.log(safe) * (a > 0), b.shape)
        return ga, gb


def neg(x):
    """-x; the gradient is -g."""
    return Neg()(as_tensor(x))


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


def exp(x):
    """e^x; its derivative is itself."""
    return Exp()(as_tensor(x))


class Exp(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        self.out = xp.exp(x)
        return self.out

    def backward(self, g):
        return g * self.out


def log(x):
    """Natural log; d/dx = 1/x."""
    return Log()(as_tensor(x))


class Log(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        self.x = x
        return xp.log(x)

    def backward(self, g):
        return g / self.x


def sqrt(x):
    """√x; d/dx = 1 / (2√x)."""
    return Sqrt()(as_tensor(x))


class Sqrt(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        self.out = xp.sqrt(x)
        return self.out

    def backward(self, g):
        return g / (2 * self.out)


def square(x):
    """x², as x · x (its gradient, 2x · g, is mul's)."""
    return mul(x, x)


def abs(x):
    """|x|; the gradient is sign(x), 0 at 0 (as torch)."""
    return Abs()(as_tensor(x))


class Abs(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        self.sign = xp.sign(x)
        return xp.abs(x)

    def backward(self, g):
        return g * self.sign


def clamp(x, min=None, max=None):
    """Limit x to [min, max]; the gradient passes where min <= x <= max (torch's rule:
    at the boundary the gradient is kept)."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if min is not None and max is not None and min > max:
        raise ValueError(f"clamp: min ({min}) must not exceed max ({max})")
    return Clamp(min, max)(as_tensor(x))


clip = clamp


class Clamp(Function):
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        xp = backend.get_array_module(x)
        keep = xp.ones(x.shape, dtype=bool)
        if self.lo is not None:
            keep &= x >= self.lo
        if self.hi is not None:
            keep &= x <= self.hi
        self.keep = keep
        return xp.clip(x, self.lo, self.hi).astype(x.dtype, copy=False)

    def backward(self, g):
        return g * self.keep


def maximum(a, b):
    """Elementwise max; on ties the gradient is split half and half (as torch)."""
    return Maximum()(*_operands("maximum", a, b))


class Maximum(Function):
    def __init__(self, take_min=False):
        self.take_min = take_min

    def forward(self, a, b):
        xp = backend.get_array_module(a)
        self.shapes = a.shape, b.shape
        # share of the gradient each side receives: 1, 0, or 1/2 on a tie
        wins = (a < b) if self.take_min else (a > b)
        self.share_a = (wins + 0.5 * (a == b)).astype(a.dtype)
        return xp.minimum(a, b) if self.take_min else xp.maximum(a, b)

    def backward(self, g):
        ga = g * self.share_a
        return unbroadcast(ga, self.shapes[0]), unbroadcast(g - ga, self.shapes[1])


def minimum(a, b):
    """Elementwise min; on ties the gradient is split half and half (as torch)."""
    return Maximum(take_min=True)(*_operands("minimum", a, b))


def where(condition, a, b):
    """Pick from ``a`` where ``condition`` is true, from ``b`` elsewhere (broadcast)."""
    a, b = _operands("where", a, b)
    cond = as_tensor(condition).array
    if cond.dtype != np.bool_:
        cond = cond.astype(np.bool_)
    broadcast_shape("where", cond.shape, a.shape, b.shape)
    return Where(cond)(a, b)


class Where(Function):
    def __init__(self, condition):
        self.condition = condition

    def forward(self, a, b):
        xp = backend.get_array_module(a)
        self.shapes = a.shape, b.shape
        return xp.where(self.condition, a, b)

    def backward(self, g):
        ga = g * self.condition if self.needs_input_grad[0] else None
        gb = g * ~self.condition if self.needs_input_grad[1] else None
        return (None if ga is None else unbroadcast(ga, self.shapes[0]),
                None if gb is None else unbroadcast(gb, self.shapes[1]))


def clone(x):
    """A copy that stays in the graph (the gradient passes unchanged)."""
    return Clone()(as_tensor(x))


class Clone(Function):
    def forward(self, x):
        return x.copy()

    def backward(self, g):
        return g


# ------------------------------------------------------------------------ helpers

def _operands(op, a, b):
    """Two Tensors with torch's promotion: a Python number takes the tensor's dtype, an
    integer tensor meeting a float tensor takes the float's dtype."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = as_tensor(a)
    if isinstance(a, Tensor):
        b = as_tensor(b, like=a)
    else:
        a = as_tensor(a, like=b)
    if a.dtype != b.dtype:
        fa, fb = a.dtype.kind == "f", b.dtype.kind == "f"
        if fa and not fb:
            b = b.to(dtype=a.dtype)
        elif fb and not fa:
            a = a.to(dtype=b.dtype)
    if a.device != b.device:
        raise RuntimeError(f"{op}: expected both operands on the same device, got "
                           f"{a.device} and {b.device}")
    broadcast_shape(op, a.shape, b.shape)
    return a, b


def broadcast_shape(op, *shapes):
    """The shape NumPy's broadcasting gives ``shapes``, or a ValueError naming ``op``:
    aligned from the right, each dimension must match or be 1."""
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(1, ndim + 1):
        sizes = {s[-i] for s in shapes if len(s) >= i} - {1}
        if len(sizes) > 1:
            raise ValueError(f"{op}: shapes {', '.join(str(tuple(s)) for s in shapes)} cannot "
                             f"be broadcast together (dimension -{i} has sizes "
                             f"{sorted(sizes)})")
        out.append(sizes.pop() if sizes else 1)
    return tuple(reversed(out))
