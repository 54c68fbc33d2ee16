"""``split``: run a compiled loop over a range on every core, with plain Python threads.

The compiled loops of the fast paths release the GIL (``@jit(nogil=True)``), so threads
of this process run them side by side. Plain threads, not numba's ``parallel=True``: its
OpenMP workers spin after each loop and starve the BLAS threads of the matrix multiply
that follows (see ``kernels/numba_conv.py``); these threads sleep on a queue instead.
"""
from __future__ import annotations

import concurrent.futures
import os
import threading

__all__ = ["CORES", "split"]

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
