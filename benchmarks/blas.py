"""Which BLAS kernels NumPy (hence minicnn) ran, and what an ``OPENBLAS_CORETYPE`` pin costs.

OpenBLAS picks its kernels for the CPU when it loads, unless the environment variable
``OPENBLAS_CORETYPE`` names a core type: then it takes that one's kernels. A pin to an
older core (``Haswell``: AVX2) on a newer CPU (one with AVX-512, whose kernels OpenBLAS
calls ``SkylakeX``) leaves speed behind: measured here, float32 matmul at 2048^3 ran at
about 240 GFLOP/s pinned and 450-470 unpinned. PyTorch's convolutions (oneDNN) choose
their instructions themselves, so the pin slows the NumPy side only.

``minicnn bench`` never changes the environment it was given: the suite runs as it
stands, and the header says which kernels that was (:func:`blas_info`). Where
``OPENBLAS_CORETYPE`` is set, the ceiling is measured once more in a child process
started without it (:func:`unpinned_ceiling`; OpenBLAS reads the variable only as it
loads, so only a fresh process can show the difference), and reported beside.

The core type comes from ``threadpoolctl`` (``threadpool_info()``'s ``architecture``);
without it the header says "core type unknown".

    python -m benchmarks.blas --n 2048 --repeats 5 --threads 2     (the child; prints JSON)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

__all__ = ["CORETYPE_VARIABLE", "blas_info", "unpinned_ceiling", "describe", "main"]

CORETYPE_VARIABLE = "OPENBLAS_CORETYPE"
_NAMES = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}


def blas_info(environ=None, pools=None):
    """What NumPy's BLAS is: a dict with ``library`` ("OpenBLAS", "MKL", ... or None when
    unknown), ``version``, ``core_type`` (OpenBLAS's kernels, e.g. "Haswell", or None),
    ``threads``, ``coretype_env`` (the value of OPENBLAS_CORETYPE, None when unset or
    empty) and ``pinned`` (True when that variable chose OpenBLAS's kernels; None when
    the library is unknown and the variable is set).

    ``pools`` stands for ``harness.numpy_blas_pools()``, threadpoolctl's descriptions
    (tests pass their own); None asks threadpoolctl, and without it everything but the
    variable is None.
    """
    environ = os.environ if environ is None else environ
    pinned_to = environ.get(CORETYPE_VARIABLE) or None
    info = {"library": None, "version": None, "core_type": None, "threads": None,
            "coretype_env": pinned_to, "pinned": None if pinned_to else False}
    if pools is None:
        from .harness import numpy_blas_pools
        pools = numpy_blas_pools()
    blas = [p for p in pools if p.get("user_api") == "blas"]
    if not blas:
        return info
    mine = blas[0]
    api = mine.get("internal_api")
    info.update(library=_NAMES.get(api, api), version=mine.get("version"),
                core_type=mine.get("architecture"), threads=mine.get("num_threads"))
    if pinned_to:
        info["pinned"] = api == "openblas"
    return info


def unpinned_ceiling(n, repeats, threads, timeout=300, environ=None):
    """NumPy's float32 matmul GFLOP/s at ``n``^3 in a child process whose environment is
    this one without OPENBLAS_CORETYPE, with ``threads`` BLAS threads.

    Returns ``{"numpy": GFLOP/s, "core_type": kernels the child's OpenBLAS chose (or
    None), "error": None}``, or the same with None figures and ``error`` saying what went
    wrong (the suite goes on without the figure).
    """
    env = dict(os.environ if environ is None else environ)
    env.pop(CORETYPE_VARIABLE, None)
    # the child reads the threads from its command line (threadpoolctl) and, without
    # threadpoolctl, from these; other settings of the user stay as they are
    env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "benchmarks.blas", "--n", str(n), "--repeats",
           str(repeats), "--threads", str(threads)]
    failed = {"numpy": None, "core_type": None}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(failed, error=f"the unpinned child timed out after {timeout} s")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return dict(failed, error=f"the unpinned child failed: {last}")
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
        return {"numpy": float(answer["numpy"]), "core_type": answer["blas"]["core_type"],
                "error": None}
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        return dict(failed, error=f"the unpinned child's answer is unreadable "
                                  f"({type(exc).__name__}: {proc.stdout[-200:]!r})")


def _short_version(version):
    """'0.3.31.188.0' -> '0.3.31' (the wheel's build number adds nothing to a header)."""
    return ".".join(str(version).split(".")[:3]) if version else None


def describe(blas, unpinned=None):
    """The header's words for the BLAS: ``"OpenBLAS 0.3.31 Haswell kernels, pinned by
    OPENBLAS_CORETYPE=Haswell; 461.0 GFLOP/s unpinned, SkylakeX kernels"``.

    ``blas`` is :func:`blas_info`'s dict, ``unpinned`` :func:`unpinned_ceiling`'s (or
    None when there was no pin to measure without).
    """
    name = (" ".join(p for p in (blas["library"], _short_version(blas.get("version"))) if p)
            if blas.get("library") else "BLAS library unknown")
    words = name + (f" {blas['core_type']} kernels" if blas.get("core_type")
                    else ", core type unknown")
    variable = f"{CORETYPE_VARIABLE}={blas['coretype_env']}"
    if blas.get("pinned"):
        words += f", pinned by {variable}"
    elif blas.get("coretype_env") and blas.get("pinned") is None:
        words += f", {variable} set (pins OpenBLAS only)"
    elif blas.get("coretype_env"):
        words += f", {variable} set but not read (not OpenBLAS)"
    if unpinned:
        if unpinned.get("error"):
            words += f"; unpinned figure missing: {unpinned['error']}"
        else:
            kernels = (f"{unpinned['core_type']} kernels" if unpinned.get("core_type")
                       else "core type unknown")
            words += f"; {unpinned['numpy']:.1f} GFLOP/s unpinned, {kernels}"
    return words


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blas",
                                     description="NumPy's float32 matmul GFLOP/s and its "
                                                 "BLAS, as JSON (the child process of the "
                                                 "bench header's unpinned ceiling)")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    import numpy  # noqa: F401  loaded first: threadpoolctl limits the libraries it sees
    from . import harness
    try:
        import threadpoolctl
    except ImportError:
        limit = None
    else:
        limit = threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas")
    try:
        gflops = harness.matmul_gflops(args.n, args.repeats, sides=("numpy",))["numpy"]
        blas = blas_info()
    finally:
        if limit is not None:
            limit.restore_original_limits()
    print(json.dumps({"numpy": gflops, "blas": blas}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
