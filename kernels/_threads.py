"""Threads for the CPU fast paths: ``split`` runs a compiled loop over a range on every
core, and ``blas_threads`` / ``one_blas_thread`` let a caller run several one-thread
matrix multiplies side by side instead of one multi-threaded one.

The compiled loops of the fast paths release the GIL (``@jit(nogil=True)``), and so does
NumPy's matmul, so threads of this process run them side by side. Plain threads, not
numba's ``parallel=True``: its OpenMP workers spin after each loop and starve the BLAS
threads of the matrix multiply that follows (see ``kernels/numba_conv.py``); these
threads sleep on a queue instead.

BLAS. NumPy's matmul runs on OpenBLAS's own threads. A convolution split over the batch
(``kernels/numba_conv.py``) gives each of its threads its own GEMM, so while the split
runs OpenBLAS is set to one thread (two threads each asking OpenBLAS for two would
queue on its one thread pool), and set back after. How many threads the split uses is
the BLAS thread count the user has (``threadpoolctl.threadpool_limits`` or
``OPENBLAS_NUM_THREADS`` set it), so one knob still decides how many cores minicnn takes.
The count is read, and set, through threadpoolctl, which finds the BLAS library NumPy
loaded; without it (or without a BLAS it knows) nothing is split.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading

import numpy  # noqa: F401 (loaded first: threadpoolctl finds the BLAS it brought)

__all__ = ["CORES", "split", "blas_threads", "one_blas_thread", "threads_for"]

#: the cores this process may use (the most threads ``split`` runs on)
CORES = os.cpu_count() or 1

_pool = None
_pool_lock = threading.Lock()


def split(count, work, threads=None):
    """Call ``work(lo, hi)`` on the contiguous chunks of 0..count-1 cut into ``threads``
    parts (default: CORES; never more than ``count``), one per thread, the calling thread
    taking the first; returns when all are done. Inline when there is one part."""
    parts = max(1, min(CORES if threads is None else threads, count))
    if parts == 1:
        work(0, count)
        return
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=CORES,
                                                          thread_name_prefix="minicnn")
    bounds = [count * k // parts for k in range(parts + 1)]
    futures = [_pool.submit(work, bounds[k], bounds[k + 1]) for k in range(1, parts)]
    work(bounds[0], bounds[1])
    for f in futures:
        f.result()


# ------------------------------------------------------------------- BLAS threads

_blas = None                # threadpoolctl's controllers of the loaded BLAS libraries
_blas_lock = threading.Lock()
_blas_users = 0             # one_blas_thread blocks open now (in any thread)
_blas_saved = None          # the thread counts they replaced


def _blas_controllers():
    global _blas
    if _blas is None:
        try:
            import threadpoolctl
            _blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
        except Exception:       # noqa: BLE001 (absent, or a library it cannot read)
            _blas = ()
    return _blas


def blas_threads():
    """The threads NumPy's BLAS runs a matrix multiply on now; 1 when it cannot be read
    (then nothing is split: one thread, BLAS's own)."""
    controllers = _blas_controllers()
    if not controllers or _blas_users:
        return 1
    return max(1, min(lib.num_threads for lib in controllers.lib_controllers))


def threads_for(override):
    """The threads a fast path splits its work over: its module's ``THREADS`` setting
    when not None, else :func:`blas_threads`."""
    return override if override is not None else blas_threads()


@contextlib.contextmanager
def one_blas_thread():
    """Inside the block, each matrix multiply runs on the thread that calls it (BLAS set
    to one thread); the previous count is restored when the last open block closes."""
    global _blas_users, _blas_saved
    controllers = _blas_controllers()
    with _blas_lock:
        if _blas_users == 0 and controllers:
            _blas_saved = [lib.num_threads for lib in controllers.lib_controllers]
            for lib in controllers.lib_controllers:
                lib.set_num_threads(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and controllers:
                for lib, count in zip(controllers.lib_controllers, _blas_saved):
                    lib.set_num_threads(count)
