"""Cases for the foundation ops: arithmetic, math, reductions, shape ops, matmul, basic
activations and constant padding."""
import numpy as np

from ... import _tensor_api  # noqa: F401  the operators some cases use (a + b, a @ b)
from ... import functional as F
from ..opcheck import register


def _n(*shape, low=None):
    """Inputs: standard normal arrays of the given shapes (or positive ones, via ``low``)."""
    def make(rng):
        out = []
        for s in shape:
            a = rng.standard_normal(s)
            out.append(np.abs(a) + low if low is not None else a)
        return out
    return make


def _torch():
    import torch
    return torch


# arithmetic with broadcasting
register("add", "(3,1,4)+(2,4)", _n((3, 1, 4), (2, 4)), lambda a, b: a + b, lambda a, b: a + b)
register("sub", "(2,3)-(3,)", _n((2, 3), (3,)), lambda a, b: a - b, lambda a, b: a - b)
register("mul", "(4,1)*(1,5)", _n((4, 1), (1, 5)), lambda a, b: a * b, lambda a, b: a * b)
register("div", "(3,4)/(4,) b>0.5", lambda r: [r.standard_normal((3, 4)),
                                              np.abs(r.standard_normal(4)) + 0.5],
         lambda a, b: a / b, lambda a, b: a / b)
register("pow", "x**2.5 x>0.1", _n((3, 4), low=0.1), lambda a: a ** 2.5, lambda a: a ** 2.5)
register("pow", "x**y x,y>0.1", _n((3, 4), (4,), low=0.1), lambda a, b: a ** b, lambda a, b: a ** b)
register("neg", "(5,)", _n((5,)), lambda a: -a, lambda a: -a)
register("exp", "(3,4)", _n((3, 4)), F.exp, lambda a: _torch().exp(a))
register("log", "x>0.1", _n((3, 4), low=0.1), F.log, lambda a: _torch().log(a))
register("sqrt", "x>0.1", _n((3, 4), low=0.1), F.sqrt, lambda a: _torch().sqrt(a))
register("abs", "away from 0", _n((3, 4), low=0.1), F.abs, lambda a: _torch().abs(a))
register("clamp", "min=-0.5 max=0.7, kink-free",
         lambda r: [r.choice([-1.3, -0.9, -0.2, 0.1, 0.4, 0.9, 1.6], (4, 5)) + 0.01 * r.random((4, 5))],
         lambda a: F.clamp(a, -0.5, 0.7), lambda a: _torch().clamp(a, -0.5, 0.7))
register("maximum", "(3,4),(4,)", _n((3, 4), (4,)), F.maximum, lambda a, b: _torch().maximum(a, b))
register("where", "mask (3,4)", lambda r: [r.standard_normal((3, 4)), r.standard_normal((3, 4)),
                                           r.standard_normal((3, 4)) > 0],
         lambda a, b, m: F.where(m, a, b), lambda a, b, m: _torch().where(m, a, b))

# reductions
register("sum", "all", _n((3, 4)), lambda a: a.sum(), lambda a: a.sum())
register("sum", "dim=(0,2) keepdim", _n((2, 3, 4)), lambda a: a.sum(dim=(0, 2), keepdim=True),
         lambda a: a.sum(dim=(0, 2), keepdim=True))
register("mean", "dim=1", _n((3, 4, 2)), lambda a: a.mean(dim=1), lambda a: a.mean(dim=1))
register("max", "dim=1 values+indices", _n((3, 5)), lambda a: a.max(dim=1),
         lambda a: tuple(a.max(dim=1)))
register("amax", "dim=(1,2)", _n((2, 3, 4)), lambda a: F.amax(a, dim=(1, 2)),
         lambda a: _torch().amax(a, dim=(1, 2)))
register("min", "all", _n((3, 5)), lambda a: a.min(), lambda a: a.min())
register("var", "dim=0 unbiased", _n((5, 3)), lambda a: a.var(dim=0), lambda a: a.var(dim=0))
register("var", "all biased", _n((5, 3)), lambda a: a.var(correction=0),
         lambda a: a.var(correction=0))

# shape ops and indexing
register("reshape", "(2,3,4)->(4,-1)", _n((2, 3, 4)), lambda a: a.reshape(4, -1),
         lambda a: a.reshape(4, -1))
register("permute", "(2,3,4)->(2,0,1)", _n((2, 3, 4)), lambda a: a.permute(2, 0, 1),
         lambda a: a.permute(2, 0, 1))
register("transpose", "dims 0,2", _n((2, 3, 4)), lambda a: a.transpose(0, 2),
         lambda a: a.transpose(0, 2))
register("getitem", "[:, 1:3]", _n((4, 5)), lambda a: a[:, 1:3], lambda a: a[:, 1:3])
register("getitem", "integer array with repeats", _n((5, 3)), lambda a: a[[0, 2, 2, 4]],
         lambda a: a[[0, 2, 2, 4]])
register("cat", "dim=1", _n((2, 3), (2, 5)), lambda a, b: F.cat([a, b], 1),
         lambda a, b: _torch().cat([a, b], 1))
register("stack", "dim=1", _n((2, 3), (2, 3)), lambda a, b: F.stack([a, b], 1),
         lambda a, b: _torch().stack([a, b], 1))
register("split", "sizes [1,3]", _n((4, 2)), lambda a: F.split(a, [1, 3]),
         lambda a: _torch().split(a, [1, 3]))
register("expand", "(3,1)->(2,3,4)", _n((3, 1)), lambda a: a.expand(2, 3, 4),
         lambda a: a.expand(2, 3, 4))

# matrix products and basic activations
register("matmul", "batched (2,3,4)@(4,5)", _n((2, 3, 4), (4, 5)), lambda a, b: a @ b,
         lambda a, b: a @ b)
register("matmul", "vector (4,)@(4,3)", _n((4,), (4, 3)), lambda a, b: a @ b, lambda a, b: a @ b)
register("linear", "(2,3,4) w(5,4) b", _n((2, 3, 4), (5, 4), (5,)), F.linear,
         lambda x, w, b: _torch().nn.functional.linear(x, w, b))
register("relu", "away from 0", lambda r: [np.sign(r.standard_normal((4, 5))) *
                                           (np.abs(r.standard_normal((4, 5))) + 0.1)],
         F.relu, lambda a: _torch().relu(a))
register("sigmoid", "(4,5) x3", lambda r: [3 * r.standard_normal((4, 5))], F.sigmoid,
         lambda a: _torch().sigmoid(a))
register("tanh", "(4,5)", _n((4, 5)), F.tanh, lambda a: _torch().tanh(a))
register("softmax", "dim=1", _n((3, 6)), lambda a: F.softmax(a, dim=1),
         lambda a: _torch().softmax(a, dim=1))
register("log_softmax", "dim=-1 large logits", lambda r: [50 * r.standard_normal((3, 6))],
         lambda a: F.log_softmax(a, dim=-1), lambda a: _torch().log_softmax(a, dim=-1))
register("pad", "constant (1,2,0,1) value=0.5", _n((2, 3, 4)),
         lambda a: F.pad(a, (1, 2, 0, 1), value=0.5),
         lambda a: _torch().nn.functional.pad(a, (1, 2, 0, 1), value=0.5))
register("pad", "constant negative (crop)", _n((2, 3, 5)), lambda a: F.pad(a, (-1, 2)),
         lambda a: _torch().nn.functional.pad(a, (-1, 2)))
