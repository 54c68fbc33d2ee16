"""Finite-difference gradient checking.

``gradcheck(fn, *inputs)`` compares the gradients minicnn's backward passes compute with
central differences, in float64:

    dL/dx_i ≈ (L(x + ε e_i) - L(x - ε e_i)) / 2ε,   L = Σ fn(x) ⊙ R

R is a *random* upstream gradient (not ones: a sum of ones lets some wrong backward
passes through, e.g. one that forgets a term whose entries sum to zero, as BatchNorm's
mean term does). Every input that requires a gradient is checked, element by element, so
keep shapes small.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Tensor, no_grad

__all__ = ["gradcheck", "GradcheckError", "GradcheckReport"]


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with finite differences."""


class GradcheckReport:
    """Per input that requires a gradient: the largest absolute and relative error."""

    def __init__(self, name, rows, atol, rtol):
        self.name, self.rows, self.atol, self.rtol = name, rows, atol, rtol

    @property
    def passed(self):
        return all(r["passed"] for r in self.rows)

    @property
    def max_abs_error(self):
        return max((r["max_abs_error"] for r in self.rows), default=0.0)

    def __bool__(self):
        return self.passed

    def __str__(self):
        lines = [f"gradcheck of {self.name}: {'passed' if self.passed else 'FAILED'} "
                 f"(atol={self.atol:g}, rtol={self.rtol:g})"]
        for r in self.rows:
            line = (f"  input {r['input']} shape {r['shape']}: max abs error "
                    f"{r['max_abs_error']:.3e}, max rel error {r['max_rel_error']:.3e}")
            if not r["passed"]:
                line += (f"  <- worst at index {r['worst_index']}: analytic "
                         f"{r['analytic']:.6g}, numeric {r['numeric']:.6g}")
            lines.append(line)
        return "\n".join(lines)

    __repr__ = __str__


def _as_float64(value):
    if isinstance(value, Tensor):
        if value.dtype.kind == "f":
            # C order: the finite differences perturb the array through a flat view
            t = Tensor._wrap(value.array.astype(np.float64, order="C"))
            return t.requires_grad_(True) if value.requires_grad else t
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return Tensor._wrap(value.astype(np.float64, order="C"))
    return value


def _outputs(result):
    outs = result if isinstance(result, (tuple, list)) else (result,)
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, raise_exception=True,
              name=None):
    """Check ``fn``'s gradients with respect to each input that requires a gradient.

    ``fn`` takes the inputs (Tensors or other values, passed through) and returns a Tensor
    or a tuple of them. Float inputs are cast to float64 first. Returns a
    :class:`GradcheckReport`; raises :class:`GradcheckError` on failure unless
    ``raise_exception=False``. A gradient passes when |analytic - numeric| <=
    atol + rtol |numeric| at every element.
    """
    name = name or getattr(fn, "__name__", "function")
    inputs = [_as_float64(x) for x in inputs]
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input requires a gradient; mark at least one with "
                         "requires_grad=True")
    rng = np.random.default_rng(seed)

    outputs = _outputs(fn(*inputs))
    if not outputs:
        raise ValueError("gradcheck: the function returned no floating-point tensor")
    xp = backend.get_array_module(outputs[0].array)
    upstream = [xp.asarray(rng.standard_normal(o.shape)) for o in outputs]

    def loss_value():
        with no_grad():
            outs = _outputs(fn(*inputs))
        return float(sum((o.array * r).sum() for o, r in zip(outs, upstream)))

    # analytic: one backward pass with the random upstream gradients
    for i in wrt:
        inputs[i].grad = None
    total = None
    for o, r in zip(outputs, upstream):
        term = (o * Tensor._wrap(r)).sum()
        total = term if total is None else total + term
    total.backward()

    rows = []
    for i in wrt:
        x = inputs[i]
        analytic = backend.to_device(
            x.grad.array if x.grad is not None else xp.zeros(x.shape), "cpu")
        numeric = np.zeros(x.shape)
        flat = x.array.reshape(-1)       # a view: perturbing it perturbs the input
        for k in range(flat.size):
            orig = flat[k].item()
            flat[k] = orig + eps
            plus = loss_value()
            flat[k] = orig - eps
            minus = loss_value()
            flat[k] = orig
            numeric.reshape(-1)[k] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric)
        bound = atol + rtol * np.abs(numeric)
        worst = int(np.argmax(err - bound)) if err.size else 0
        rows.append({
            "input": i, "shape": tuple(x.shape),
            "max_abs_error": float(err.max()) if err.size else 0.0,
            "max_rel_error": float((err / np.maximum(np.abs(numeric), 1e-12)).max()) if err.size else 0.0,
            "passed": bool((err <= bound).all()),
            "worst_index": tuple(int(v) for v in np.unravel_index(worst, x.shape)) if err.size else (),
            "analytic": float(analytic.reshape(-1)[worst]) if err.size else 0.0,
            "numeric": float(numeric.reshape(-1)[worst]) if err.size else 0.0,
        })
    report = GradcheckReport(name, rows, atol, rtol)
    if raise_exception and not report.passed:
        raise GradcheckError(str(report))
    return report
