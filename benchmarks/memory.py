"""Peak memory of one side of one workload, each measured in a fresh process.

``ru_maxrss`` is a process's high-water mark of resident memory and never goes down, so
one workload's peak would hide under an earlier, bigger one's: every measurement gets
its own child process::

    python -m benchmarks.memory --size full --threads 2 "train lenet5 batch 64 1x28x28" minicnn

The child imports what every child imports (NumPy, PyTorch, minicnn and the catalogue),
sets the same threads as the timing run, sets the workload up, calls ``run()`` twice
(the second call sees the steady state: caches, optimizer state) and prints its peak
resident memory (``ru_maxrss``, or on Linux the equivalent ``VmHWM``: see
:func:`_maxrss_mb`). A baseline child does the same imports and nothing else. The
figure reported is workload minus baseline: what the workload's inputs, weights and
computation add on top of having both libraries loaded, including each library's
one-time costs on first use (PyTorch's kernel caches, thread pools).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

__all__ = ["peak_mb", "baseline_mb"]


def _maxrss_mb():
    """This process's peak resident memory in MB.

    NOTE: on Linux, ``ru_maxrss`` survives ``exec``: a child started by a big parent
    reports at least the parent's size at the fork. ``VmHWM`` in /proc/self/status is
    the same high-water mark for the child's own address space, so it is read instead
    where it exists; elsewhere (macOS) ``ru_maxrss`` is used.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2 ** 10          # kB
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10   # bytes / kB


def _run_child(extra_args, size, threads, timeout):
    """Run this module as a child; returns (MB, None) or (None, error message)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "benchmarks.memory", "--size", size,
           "--threads", str(threads)] + extra_args
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"memory child timed out after {timeout} s"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return None, f"memory child failed: {last}"
    return json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_mb"], None


def baseline_mb(size, threads, timeout=300):
    """Peak RSS (MB) of a child that only imports; (MB, None) or (None, error)."""
    return _run_child(["--baseline"], size, threads, timeout)


def peak_mb(name, side, size, threads, timeout=900):
    """Peak RSS (MB) of a child that runs workload ``name`` on ``side``."""
    return _run_child([name, side], size, threads, timeout)


def main(argv=None):
    if sys.platform == "win32":
        raise SystemExit("memory: resource.getrusage is not available on Windows")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory",
                                     description="peak RSS of one workload side (a child "
                                                 "process of `minicnn bench --memory`)")
    parser.add_argument("name", nargs="?")
    parser.add_argument("side", nargs="?", choices=("minicnn", "torch"))
    parser.add_argument("--size", default="full")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--baseline", action="store_true")
    args = parser.parse_args(argv)

    # the same imports in every child, the baseline included
    from . import harness, workloads
    for side in harness.SIDES:
        try:
            workloads._library(side)
        except ImportError:          # a minicnn sub-package not written yet
            pass
    if not args.baseline and (args.name is None or args.side is None):
        parser.error("NAME and SIDE are required unless --baseline")
    with harness.threads(args.threads):
        if not args.baseline:
            run = workloads.find(args.name, args.size).setup(args.side)
            run()
            run()
    print(json.dumps({"maxrss_mb": _maxrss_mb()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
