"""Run one computation in minicnn and in PyTorch and compare everything.

``compare_with_torch(mc_fn, torch_fn, inputs)`` builds the same inputs in both libraries,
runs both functions, compares the outputs, then back-propagates the *same random*
upstream gradient through both and compares the gradient of every input that requires
one. It is what every op test, and ``minicnn gradcheck``, stands on.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Tensor

__all__ = ["compare_with_torch", "CompareReport", "TOLERANCES", "import_torch"]

# (rtol, atol) per dtype: float64 tight, float32 loose
TOLERANCES = {np.dtype(np.float64): (1e-7, 1e-9), np.dtype(np.float32): (1e-4, 1e-5)}


def import_torch():
    """``torch``, or an ImportError that says how to get the CPU build the tests use."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError("PyTorch is needed to compare with it: pip install torch==2.13.0 "
                          "(or pip install -e '.[test]')") from exc
    return torch


class CompareReport:
    """Largest absolute error of each output and each input gradient."""

    def __init__(self, name, dtype, rtol, atol):
        self.name, self.dtype, self.rtol, self.atol = name, dtype, rtol, atol
        self.forward = []     # (output index, max abs error, passed)
        self.grads = []       # (input index, max abs error, passed)
        self.problems = []

    @property
    def passed(self):
        return not self.problems

    @property
    def forward_error(self):
        return max((e for _, e, _ in self.forward), default=0.0)

    @property
    def grad_errors(self):
        return {i: e for i, e, _ in self.grads}

    def __str__(self):
        head = (f"{self.name} [{self.dtype}] vs torch: {'ok' if self.passed else 'MISMATCH'}; "
                f"forward error {self.forward_error:.2e}; grads "
                + ", ".join(f"input {i}: {e:.2e}" for i, e, _ in self.grads))
        return "\n".join([head] + ["  " + p for p in self.problems])

    __repr__ = __str__


def _close(a, b, rtol, atol):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False, float("inf"), f"shape {a.shape} vs torch {b.shape}"
    if a.size == 0:
        return True, 0.0, ""
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    bad = diff > atol + rtol * np.abs(b)
    err = float(diff.max())
    if bad.any():
        k = int(np.argmax(bad.reshape(-1)))
        idx = tuple(int(v) for v in np.unravel_index(k, a.shape))
        return False, err, (f"max abs error {err:.3e}; first bad element {idx}: minicnn "
                            f"{a.reshape(-1)[k]:.8g}, torch {b.reshape(-1)[k]:.8g}")
    return True, err, ""


def compare_with_torch(mc_fn, torch_fn, inputs, requires_grad=None, dtype=np.float64,
                       rtol=None, atol=None, seed=0, name="op", check=True):
    """Compare ``mc_fn(*mc_inputs)`` with ``torch_fn(*torch_inputs)``.

    ``inputs`` are NumPy arrays (float ones are cast to ``dtype``), other values are
    passed to both functions unchanged (None, numbers). ``requires_grad`` says, per input,
    whether its gradient is compared (default: every float array). Outputs may be a
    tensor or a tuple; integer outputs (indices) must match exactly. Raises
    AssertionError listing every mismatch when ``check`` is true; returns the report.
    """
    torch = import_torch()
    dtype = np.dtype(dtype)
    d_rtol, d_atol = TOLERANCES[dtype]
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    report = CompareReport(name, dtype, rtol, atol)

    def is_float_array(v):
        return isinstance(v, np.ndarray) and v.dtype.kind == "f"

    if requires_grad is None:
        requires_grad = [is_float_array(v) for v in inputs]
    mc_in, th_in = [], []
    for v, rg in zip(inputs, requires_grad):
        if isinstance(v, np.ndarray):
            arr = v.astype(dtype) if v.dtype.kind == "f" else v
            mc_in.append(Tensor(arr.copy(), requires_grad=bool(rg)))
            th_in.append(torch.tensor(arr.copy(), requires_grad=bool(rg)))
        else:
            mc_in.append(v)
            th_in.append(v)

    mc_out = mc_fn(*mc_in)
    th_out = torch_fn(*th_in)
    mc_outs = list(mc_out) if isinstance(mc_out, (tuple, list)) else [mc_out]
    th_outs = list(th_out) if isinstance(th_out, (tuple, list)) else [th_out]
    if len(mc_outs) != len(th_outs):
        report.problems.append(f"minicnn returned {len(mc_outs)} outputs, torch {len(th_outs)}")
        if check:
            raise AssertionError(str(report))
        return report

    rng = np.random.default_rng(seed)
    mc_total, th_total = None, None
    for k, (m, t) in enumerate(zip(mc_outs, th_outs)):
        m_arr = m.numpy() if isinstance(m, Tensor) else np.asarray(m)
        t_arr = t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)
        if m_arr.dtype.kind in "iub" or t_arr.dtype.kind in "iub":
            ok = m_arr.shape == t_arr.shape and np.array_equal(m_arr, t_arr)
            report.forward.append((k, 0.0 if ok else float("inf"), ok))
            if not ok:
                report.problems.append(f"output {k} (integer) differs from torch")
            continue
        ok, err, why = _close(m_arr, t_arr, rtol, atol)
        report.forward.append((k, err, ok))
        if not ok:
            report.problems.append(f"output {k}: {why}")
        if isinstance(m, Tensor) and m.requires_grad and getattr(t, "requires_grad", False):
            upstream = rng.standard_normal(m_arr.shape).astype(dtype)
            mt = (m * Tensor(upstream)).sum()
            tt = (t * torch.tensor(upstream)).sum()
            mc_total = mt if mc_total is None else mc_total + mt
            th_total = tt if th_total is None else th_total + tt
    if mc_total is not None and th_total is not None:
        mc_total.backward()
        th_total.backward()
        for i, (m, t, rg) in enumerate(zip(mc_in, th_in, requires_grad)):
            if not rg or not isinstance(m, Tensor):
                continue
            mg = None if m.grad is None else m.grad.numpy()
            tg = None if t.grad is None else t.grad.numpy()
            if mg is None and tg is None:
                continue
            if mg is None:
                mg = np.zeros_like(tg)
            if tg is None:
                tg = np.zeros_like(mg)
            ok, err, why = _close(mg, tg, rtol, atol)
            report.grads.append((i, err, ok))
            if not ok:
                report.problems.append(f"gradient of input {i}: {why}")
    elif any(requires_grad) and th_total is not None:
        report.problems.append("minicnn output does not require grad but torch's does")
    if check and not report.passed:
        raise AssertionError(str(report))
    return report
