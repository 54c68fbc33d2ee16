"""The timing harness: what a workload is, exactly what is timed, threads, the ceiling.

A :class:`Workload` holds one setup function per framework. A setup builds everything
the work needs (inputs, model, optimizer, upstream gradient) *outside* the clock and
returns ``run``: a function of no arguments doing exactly the work that is timed, e.g.
one forward + backward of an op, or one whole training step.

:func:`measure` then times both sides the same way:

1. ``run()`` once per side, untimed: first calls allocate, fill caches, compile (numba).
   A side whose first call raises is dropped and its error reported;
2. ``warmup`` more untimed calls per side (none when a call takes over a second: the
   first call has done the warming up, and a long call dwarfs what is left of it);
3. ``repeats`` samples per side, alternating minicnn and torch and swapping which one
   goes first every round, so that a slow moment of the machine (another process, a
   frequency change) falls on both sides rather than on one. With a ``budget``, slow
   workloads take fewer rounds: about ``budget`` seconds of samples for the slower
   side, but never fewer than 3 rounds;
4. the median over the samples (robust to the odd slow sample).

NOTE: before each sample the harness sleeps ``pause`` seconds. After a call, each
library's idle worker threads (OpenMP's, OpenBLAS's) spin-wait for a while before they
sleep; a sample started at once would share the two cores with the *other* library's
spinning threads. Measured here: PyTorch's 3x3 convolution took 89 ms when timed right
after a minicnn call and 48 ms after a pause, so without it the side timed second is
penalised.

A sample is ``number`` back-to-back calls divided by ``number``; ``number`` is chosen
per side so that a sample lasts at least ``min_time`` seconds (as ``timeit`` does),
which keeps ``time.perf_counter``'s resolution and the loop overhead negligible for
the fast workloads. ``gc.collect()`` runs once before a workload, outside the clock;
during the timing the garbage collector stays on, as in a real training loop, so a
framework whose graphs need it pays for it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import importlib
import math
import os
import statistics
import time
from typing import Callable

__all__ = ["Workload", "Timing", "SIDES", "Unavailable", "measure", "missing_pieces",
           "set_up_and_measure", "threads", "thread_report", "numpy_blas_pools", "matmul_gflops"]

#: The two frameworks, in the order they are run within a round.
SIDES = ("minicnn", "torch")


class Unavailable(Exception):
    """Raised by a setup whose side cannot run here for a reason that is not a fault
    (e.g. torchvision not installed): the other side is timed alone, the row stays "ok"
    and carries the message as its note."""


@dataclasses.dataclass
class Workload:
    """One benchmark: a name, its nominal FLOPs, and how to set up each side.

    ``setup_minicnn()`` / ``setup_torch()`` return ``run``, the function that is timed.
    ``needs`` lists the minicnn pieces the minicnn side uses ("functional.conv2d",
    "models.vgg16", ...): while one is missing the workload is skipped with a note.
    """
    name: str
    kind: str                                  # "op", "train", "inference" or "scaling"
    flops: Callable[[], float]                 # nominal FLOPs of one run() (workloads.py)
    setup_minicnn: Callable[[], Callable[[], object]]
    setup_torch: Callable[[], Callable[[], object]]
    needs: tuple = ()
    params: dict = dataclasses.field(default_factory=dict)   # shapes, for JSON and plots

    @property
    def sides(self):
        return SIDES

    def setup(self, side):
        return {"minicnn": self.setup_minicnn, "torch": self.setup_torch}[side]()


@dataclasses.dataclass
class Timing:
    """Seconds per ``run()`` call of one side: the median, and every sample."""
    median: float
    samples: list
    number: int                                # calls per sample


def missing_pieces(needs):
    """The entries of ``needs`` that ``minicnn`` cannot provide yet (import or attribute)."""
    missing = []
    for need in needs:
        module_path, _, attr = ("minicnn." + need).rpartition(".")
        try:
            module = importlib.import_module(module_path)
        except ImportError:
            missing.append(need)
            continue
        if not hasattr(module, attr):
            missing.append(need)
    return missing


def _time_calls(run, number, clock):
    start = clock()
    for _ in range(number):
        run()
    return clock() - start


def measure(runs, warmup=1, repeats=7, min_time=0.05, budget=None, clock=time.perf_counter,
            pause=0.0):
    """Time each ``runs[side]()`` as the module docstring says.

    ``runs`` maps a side's name to its ``run`` function; the first round's order is the
    dict's order. Returns ``({side: Timing}, {side: error message})``: a side whose first
    call raises is left out of the timings and appears in the errors.
    """
    sides, last, errors = list(runs), {}, {}
    gc.collect()                                           # the previous workload's garbage
    for side in list(sides):                               # the first call
        try:
            last[side] = _time_calls(runs[side], 1, clock)
        except Exception as exc:                           # report it, time the other side
            errors[side] = f"{type(exc).__name__}: {exc}"
            sides.remove(side)
    slowest = max(last.values(), default=0.0)
    if slowest > 1.0:
        warmup = 0
    if budget is not None and slowest > 0:
        repeats = min(repeats, max(3, int(budget // slowest)))
    for round_ in range(1, 1 + warmup):                    # warm-up
        for side in _round_order(sides, round_):
            last[side] = _time_calls(runs[side], 1, clock)
    number = {s: max(1, math.ceil(min_time / max(last[s], 1e-9))) for s in sides}
    samples = {s: [] for s in sides}
    for round_ in range(repeats):
        for side in _round_order(sides, round_):
            if pause:
                time.sleep(pause)                          # let idle threads go to sleep
            samples[side].append(_time_calls(runs[side], number[side], clock) / number[side])
    timings = {s: Timing(statistics.median(samples[s]), samples[s], number[s]) for s in sides}
    return timings, errors


def set_up_and_measure(setups, warmup, repeats, min_time, budget, pause=0.0):
    """Call each ``setups[side]()`` (outside the clock) for its ``run``, then
    :func:`measure` the runs. Returns ``({side: Timing}, {side: error}, notes)``: a setup
    raising :class:`Unavailable` adds its message to the notes and that side is left out;
    any other exception is the side's error."""
    runs, errors, notes = {}, {}, []
    for side, setup in setups.items():
        try:
            runs[side] = setup()
        except Unavailable as exc:
            notes.append(str(exc))
        except Exception as exc:
            errors[side] = f"setup: {type(exc).__name__}: {exc}"
    timings, run_errors = measure(runs, warmup, repeats, min_time, budget, pause=pause)
    errors.update(run_errors)
    del runs
    gc.collect()                                           # this workload's inputs
    return timings, errors, notes


def _round_order(sides, round_):
    """minicnn, torch on even rounds; torch, minicnn on odd ones."""
    return sides if round_ % 2 == 0 else sides[::-1]


# --------------------------------------------------------------------------- threads

@contextlib.contextmanager
def threads(n):
    """Inside this block both frameworks use ``n`` threads: PyTorch's intra-op pool, the
    BLAS that NumPy (hence minicnn) calls, and numba's pool when numba is installed.
    The previous settings come back on exit.

    The BLAS limit needs ``threadpoolctl``; without it NumPy keeps its own default
    (usually all cores, or OPENBLAS_NUM_THREADS / OMP_NUM_THREADS) and the header says
    "unknown".
    """
    import torch
    undo = []
    try:
        import numba
    except ImportError:
        pass
    else:
        # NOTE: numba first. Its first set_num_threads starts its OpenMP pool, which resets
        # the OpenMP thread count that torch reads: torch.set_num_threads must come after.
        undo.append(functools.partial(numba.set_num_threads, numba.get_num_threads()))
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        import threadpoolctl
    except ImportError:
        pass
    else:
        undo.append(threadpoolctl.threadpool_limits(limits=n, user_api="blas")
                    .restore_original_limits)
    undo.append(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    torch.set_num_threads(n)
    try:
        yield
    finally:
        for step in reversed(undo):
            step()


def thread_report():
    """{"torch": n, "numpy_blas": "n (openblas)" or "unknown", "numba": n or None}."""
    import torch
    report = {"torch": torch.get_num_threads(), "numpy_blas": "unknown", "numba": None}
    mine = numpy_blas_pools()
    if mine:
        report["numpy_blas"] = ", ".join(f"{d['num_threads']} ({d['internal_api']})"
                                         for d in mine)
    try:
        import numba
        report["numba"] = numba.get_num_threads()
    except ImportError:
        pass
    return report


def numpy_blas_pools():
    """threadpoolctl's descriptions (dicts) of the BLAS NumPy calls; [] without
    threadpoolctl. NumPy's own BLAS sits in numpy's folder (numpy.libs); torch may bring
    another, listed only when none is NumPy's."""
    try:
        import numpy as np
        import threadpoolctl
    except ImportError:
        return []
    info = [d for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]
    numpy_dir = os.path.dirname(np.__file__)      # .../numpy, a prefix of .../numpy.libs
    return [d for d in info if d["filepath"].startswith(numpy_dir)] or info


# --------------------------------------------------------------------------- ceiling

def matmul_gflops(n=2048, repeats=5, sides=("numpy", "torch")):
    """float32 (n x n) @ (n x n) GFLOP/s of NumPy's BLAS and of PyTorch (``sides``),
    measured now, as {side: GFLOP/s}.

    2·n³ FLOPs per product. This is the practical ceiling of a convolution on this
    machine and thread count: minicnn's conv is im2col + this very matrix multiply.
    """
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    runs = {"numpy": lambda: a @ b}
    if "torch" in sides:
        import torch
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        runs["torch"] = lambda: ta @ tb
    times, _ = measure({side: runs[side] for side in sides}, warmup=1, repeats=repeats,
                       min_time=0.0)
    return {side: 2 * n ** 3 / t.median / 1e9 for side, t in times.items()}
