"""The op-check registry behind ``minicnn gradcheck`` and ``tests/ops/test_opcases.py``.

Each op family registers a few *cases* in ``minicnn/utils/opcases/<family>.py``: a
configuration label, a function that makes the inputs (NumPy arrays, from a seeded
generator), the minicnn call and the torch call. For each case the checker

1. compares forward output and every input gradient with torch in float64 (tight) and
   float32 (loose), with the same random upstream gradient (``compare_with_torch``);
2. runs minicnn's own finite-difference ``gradcheck`` in float64.

Ops without a torch counterpart give ``torch_fn=None`` and a ``reference`` (a plain
NumPy loop) instead; their forward is compared with it and their gradient by finite
differences only.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Callable, Optional

import numpy as np

from ..autograd import Tensor
from .gradcheck import gradcheck

__all__ = ["OpCase", "register", "cases", "run_case", "run_all", "format_table"]


@dataclasses.dataclass
class OpCase:
    op: str                              # public name, e.g. "conv2d"
    label: str                           # the configuration, e.g. "stride=2 pad=1 groups=2"
    make_inputs: Callable                # rng -> list of arrays / values
    fn: Callable                         # minicnn: (*inputs) -> Tensor or tuple
    torch_fn: Optional[Callable] = None  # torch: (*inputs) -> tensor or tuple
    reference: Optional[Callable] = None # NumPy reference for ops with no torch twin
    requires_grad: Optional[list] = None # per input; default: every float array
    grad_check: bool = True              # run finite differences too
    rtol32: float = 1e-4
    atol32: float = 1e-5
    rtol64: float = 1e-7
    atol64: float = 1e-9


_REGISTRY: dict = {}


def register(op, label, make_inputs, fn, torch_fn=None, **options):
    """Add a case for ``op`` (kept in registration order)."""
    case = OpCase(op, label, make_inputs, fn, torch_fn, **options)
    _REGISTRY.setdefault(op, []).append(case)
    return case


def _load_all():
    """Import every case module: the foundation ops first, then the families by name."""
    from . import opcases
    names = sorted(info.name for info in pkgutil.iter_modules(opcases.__path__))
    for name in sorted(names, key=lambda n: n != "core"):
        importlib.import_module(f"{opcases.__name__}.{name}")


def cases(op=None):
    """Every registered case, or those of one op (KeyError names the known ops)."""
    _load_all()
    if op is None:
        return [c for group in _REGISTRY.values() for c in group]
    if op not in _REGISTRY:
        raise KeyError(f"unknown op {op!r}; known: {', '.join(sorted(_REGISTRY))}")
    return list(_REGISTRY[op])


def _torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def run_case(case, use_torch=True, seed=0):
    """Check one case; returns a dict row (op, label, errors, passed, notes)."""
    from .torch_compare import compare_with_torch
    rng = np.random.default_rng(seed)
    inputs = case.make_inputs(rng)
    row = {"op": case.op, "label": case.label, "forward_error": {}, "grad_errors": {},
           "fd_error": None, "passed": True, "notes": []}
    if case.torch_fn is not None and use_torch:
        for dtype, rtol, atol in ((np.float64, case.rtol64, case.atol64),
                                  (np.float32, case.rtol32, case.atol32)):
            rep = compare_with_torch(case.fn, case.torch_fn, inputs, case.requires_grad,
                                     dtype=dtype, rtol=rtol, atol=atol,
                                     name=f"{case.op} {case.label}", check=False)
            tag = np.dtype(dtype).name
            row["forward_error"][tag] = rep.forward_error
            row["grad_errors"][tag] = dict(rep.grad_errors)
            if not rep.passed:
                row["passed"] = False
                row["notes"].append(f"{tag}: " + "; ".join(rep.problems))
    elif case.reference is not None:
        mc_in = [Tensor(v.astype(np.float64)) if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                 else v for v in inputs]
        ref_in = [v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                  else v for v in inputs]
        out = case.fn(*mc_in)
        out = out[0] if isinstance(out, tuple) else out
        ref = np.asarray(case.reference(*ref_in))
        err = float(np.abs(out.numpy() - ref).max()) if ref.size else 0.0
        row["forward_error"]["float64"] = err
        if not err <= case.atol64 + case.rtol64 * float(np.abs(ref).max(initial=0)):
            row["passed"] = False
            row["notes"].append(f"forward differs from the NumPy reference by {err:.3e}")
    if case.grad_check:
        want = case.requires_grad or [isinstance(v, np.ndarray) and v.dtype.kind == "f"
                                      for v in inputs]
        gc_in = [Tensor(v.astype(np.float64), requires_grad=bool(w))
                 if isinstance(v, np.ndarray) and v.dtype.kind == "f" else
                 (Tensor(v) if isinstance(v, np.ndarray) else v)
                 for v, w in zip(inputs, want)]
        if any(isinstance(t, Tensor) and t.requires_grad for t in gc_in):
            rep = gradcheck(case.fn, *gc_in, raise_exception=False,
                            name=f"{case.op} {case.label}")
            row["fd_error"] = rep.max_abs_error
            if not rep.passed:
                row["passed"] = False
                row["notes"].append(str(rep))
    return row


def run_all(op=None, use_torch=None):
    """Run every case (of one op); returns (rows, torch_used)."""
    use_torch = _torch_available() if use_torch is None else use_torch
    return [run_case(c, use_torch) for c in cases(op)], use_torch


def _fmt(value):
    return "-" if value is None else f"{value:.1e}"


def format_table(rows):
    """One line per op: configurations tried, largest forward error and largest gradient
    error per input against torch in float64 and float32, largest finite-difference error,
    pass/fail. ("-": not measured, e.g. an op with no torch twin has no torch gradient.)"""
    by_op = {}
    for r in rows:
        by_op.setdefault(r["op"], []).append(r)
    width = max([len("op")] + [len(r["op"]) for r in rows])
    header = (f"{'op':<{width}} {'configs':>7} {'fwd f64':>8} {'fwd f32':>8}  "
              f"{'grad f64 (per input)':<34} {'grad f32':>8} {'fin.diff':>8}  result")
    lines = [header, "-" * len(header)]
    for op, group in by_op.items():
        def worst(values):
            values = [v for v in values if v is not None]
            return max(values) if values else None
        fwd64 = worst(r["forward_error"].get("float64") for r in group)
        fwd32 = worst(r["forward_error"].get("float32") for r in group)
        g64 = {}
        for r in group:
            for i, e in r["grad_errors"].get("float64", {}).items():
                g64[i] = max(g64.get(i, 0.0), e)
        g32 = worst(e for r in group for e in r["grad_errors"].get("float32", {}).values())
        fd = worst(r["fd_error"] for r in group)
        grad_text = " ".join(f"x{i}:{e:.1e}" for i, e in sorted(g64.items())) or "-"
        ok = all(r["passed"] for r in group)
        lines.append(f"{op:<{width}} {len(group):>7} {_fmt(fwd64):>8} {_fmt(fwd32):>8}  "
                     f"{grad_text:<34} {_fmt(g32):>8} {_fmt(fd):>8}  {'pass' if ok else 'FAIL'}")
    for r in rows:
        if not r["passed"]:
            lines.append(f"FAIL {r['op']} [{r['label']}]: " + " | ".join(r["notes"]))
    return "\n".join(lines)
