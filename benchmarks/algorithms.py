"""``minicnn bench --compare-algorithms``: conv2d's algorithms side by side, and PyTorch.

A 3x3 stride-1 convolution can run as im2col + matrix multiply or by Winograd's minimal
filtering, F(2x2, 3x3) or F(4x4, 3x3) (``minicnn/functional/conv.py``,
``kernels/winograd.py``). For each such conv2d shape of the suite (``--compare-algorithms
all``: the scaling sweeps' shapes too) this times forward + backward (the gradients of
input and weight) with ``conv_algorithm`` forced to each of :data:`ALGORITHMS`, "auto"
being minicnn's default rule, and PyTorch's, all five in one alternating round of the
same harness (``harness.measure``: warm-up, alternation whose order flips every round,
the median). It reports each algorithm's time, the fastest of minicnn's algorithms and
the ratio torch time / that time, and which algorithm "auto" runs there. The workloads
are the suite's (``workloads.conv2d_workload``): the same inputs, gradients and FLOP
counts.
"""
from __future__ import annotations

import dataclasses
import functools
import math

from . import harness, workloads

__all__ = ["ALGORITHMS", "Comparison", "comparisons", "compare", "auto_choice"]

#: minicnn's columns, in table order ("auto": what conv2d does when told nothing).
ALGORITHMS = ("im2col", "winograd_2x2", "winograd_4x4", "auto")


@dataclasses.dataclass
class Comparison:
    """One conv2d shape: a setup per column (each of :data:`ALGORITHMS`, then "torch"),
    each returning the ``run`` that is timed, as a :class:`harness.Workload` has."""
    name: str
    params: dict
    flops: float
    setups: dict
    needs: tuple = ("functional.conv2d",)
    kind: str = "algorithms"

    @property
    def sides(self):
        return tuple(self.setups)

    def setup(self, side):
        return self.setups[side]()


def _comparison(name, p):
    """The Comparison of conv2d with the parameters ``p`` of a suite workload."""
    shape = (p["N"], p["C"], p["H"], p["W"], p["K"], p["kernel"], p["stride"], p["padding"])
    forced = {a: workloads.conv2d_workload(*shape, conv_algorithm=a) for a in ALGORITHMS}
    setups = {a: w.setup_minicnn for a, w in forced.items()}
    setups["torch"] = forced["auto"].setup_torch
    params = {k: p[k] for k in ("op", "N", "C", "H", "W", "K", "kernel", "stride", "padding")}
    return Comparison(name, params, forced["auto"].flops(), setups)


def comparisons(size="full", scaling=False):
    """A :class:`Comparison` per 3x3 stride-1 conv2d of the suite at ``size`` (its op
    rows; with ``scaling`` also the sweeps' shapes), each shape once, in table order."""
    out, seen = [], set()
    for w in workloads.all_workloads(size):
        p = w.params
        if (p.get("op") != "conv2d" or (w.kind == "scaling" and not scaling)
                or (p["kernel"], p["stride"]) != (3, 1)):
            continue
        key = tuple(p[k] for k in ("N", "C", "H", "W", "K", "padding"))
        if key not in seen:
            seen.add(key)
            out.append(_comparison(w.name, p))
    return out


def auto_choice(params):
    """The algorithm "auto" runs for this shape ("im2col", "winograd_4x4", ...), by
    minicnn's stated rule (``minicnn.functional.conv.auto_algorithm``); "?" if the rule
    cannot say."""
    try:
        from minicnn.functional.conv import auto_algorithm
        name, m = auto_algorithm((params["N"], params["C"], params["H"], params["W"]),
                                 (params["K"], params["C"], params["kernel"], params["kernel"]),
                                 (params["stride"],) * 2, (1, 1), 1,
                                 padding=(params["padding"],) * 2)
    except Exception:                  # an older or newer rule with another signature
        return "?"
    return name if m is None else f"{name}_{m}x{m}"


def compare(comparison, warmup, repeats, min_time, budget, pause=0.0):
    """Time every column of ``comparison``; the result row (a dict, also what the JSON
    holds)::

        {"name", "kind": "algorithms", "params", "flops", "status": "ok" | "error",
         "note", "auto_choice", "times": {column: {"median_s", "samples_s", "number",
         "gflops"} or None}, "best": minicnn's fastest algorithm (not "auto", which
         runs one of them) or None, "ratio": torch median / best's median or None}
    """
    setups = {side: functools.partial(comparison.setup, side) for side in comparison.sides}
    timings, errors, notes = harness.set_up_and_measure(setups, warmup, repeats, min_time,
                                                        budget, pause)
    times = {side: None for side in comparison.sides}
    for side, t in timings.items():
        times[side] = {"median_s": t.median, "samples_s": t.samples, "number": t.number,
                       "gflops": comparison.flops / t.median / 1e9}
    # "auto" is one of the others, chosen by a rule: the fastest is an algorithm
    timed = [a for a in ALGORITHMS if a != "auto" and times.get(a)]
    best = min(timed, key=lambda a: times[a]["median_s"]) if timed else None
    ratio = (times["torch"]["median_s"] / times[best]["median_s"]
             if best and times.get("torch") else None)
    return {"name": comparison.name, "kind": comparison.kind, "params": comparison.params,
            "flops": comparison.flops, "status": "error" if errors else "ok",
            "note": "; ".join(notes + [f"{side}: {msg}" for side, msg in errors.items()]),
            "auto_choice": auto_choice(comparison.params), "times": times, "best": best,
            "ratio": ratio}


def geometric_mean_ratio(rows):
    """Geometric mean of torch / minicnn's best over the rows that have both, or None."""
    logs = [math.log(r["ratio"]) for r in rows if r.get("ratio")]
    return math.exp(sum(logs) / len(logs)) if logs else None
