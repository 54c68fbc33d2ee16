"""Matrix products: matmul (``@``) and linear (a fully connected layer).

For ``Y = A @ B``: dL/dA = dL/dY @ Bᵀ and dL/dB = Aᵀ @ dL/dY, with batch dimensions
broadcast as NumPy's matmul broadcasts them (and summed back for the gradient).
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function, as_tensor, unbroadcast

__all__ = ["matmul", "linear", "mm", "bmm"]


def matmul(a, b):
    """Matrix product with NumPy's rules: 1-D operands are vectors, leading dimensions
    are batch dimensions that broadcast."""
    a, b = as_tensor(a), as_tensor(b, like=a)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least one dimension, got shapes "
                         f"{a.shape} and {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if ka != kb:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
                         f"({ka} != {kb})")
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: expected both operands of one dtype, got {a.dtype} and "
                        f"{b.dtype}")
    return MatMul()(a, b)


mm = matmul
bmm = matmul


class MatMul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        xp = backend.get_array_module(g)
        a, b = self.a, self.b
        # promote vectors to matrices so one formula covers every case
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = g2 @ xp.swapaxes(b2, -1, -2)
            ga = unbroadcast(ga, a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            gb = xp.swapaxes(a2, -1, -2) @ g2
            gb = unbroadcast(gb, b2.shape).reshape(b.shape)
        return ga, gb


def linear(input, weight, bias=None):
    """y = x weightᵀ + bias, as ``torch.nn.functional.linear``.

    Shapes: input (*, in_features), weight (out_features, in_features), bias
    (out_features,), output (*, out_features).
    Gradients, with g = dL/dy: dL/dx = g weight, dL/dweight = gᵀ x (summed over all
    leading dimensions), dL/dbias = Σ g.
    """
    x, w = as_tensor(input), as_tensor(weight)
    if w.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got "
                         f"shape {w.shape}")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input's last dimension ({x.shape[-1] if x.ndim else 'none'}"
                         f", input shape {x.shape}) must equal in_features = {w.shape[1]} "
                         f"(weight shape {w.shape})")
    if bias is not None:
        bias = as_tensor(bias)
        if bias.shape != (w.shape[0],):
            raise ValueError(f"linear: bias must have shape ({w.shape[0]},), got {bias.shape}")
    if x.dtype != w.dtype:
        raise TypeError(f"linear: input dtype {x.dtype} does not match weight dtype {w.dtype}")
    return Linear()(x, w, bias)


class Linear(Function):
    def forward(self, x, w, b):
        self.x = x if self.needs_input_grad[1] else None
        self.w = w if self.needs_input_grad[0] else None
        out = x @ w.T
        if b is not None:
            out += b
        return out

    def backward(self, g):
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = g @ self.w
        if self.needs_input_grad[1]:
            g2 = g.reshape(-1, g.shape[-1])                  # (M, out)
            x2 = self.x.reshape(-1, self.x.shape[-1])        # (M, in)
            gw = g2.T @ x2                                   # (out, in)
        if self.needs_input_grad[2]:
            gb = g.reshape(-1, g.shape[-1]).sum(axis=0)
        return gx, gw, gb
