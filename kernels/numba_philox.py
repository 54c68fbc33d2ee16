"""CPU fast path of the Philox4x32-10 stream (``kernels/philox.py``): one compiled loop.

The reference makes about a hundred passes over quarter-size temporaries per draw (ten
rounds of products, shifts and xors, each an array expression); this loop keeps a
block's four words in registers and writes each once. Same contract and the same words
as :func:`kernels.philox.random_bits` (``tests/kernels/test_philox.py`` holds them equal).
"""
from __future__ import annotations

import numpy as np

from kernels._jit import jit

__all__ = ["random_bits"]


def random_bits(key, start, nwords):
    """``philox.random_bits(numpy, key, start, nwords)``, compiled."""
    out = np.empty(-(-nwords // 4) * 4, dtype=np.uint32)
    _blocks(np.uint32(int(key[0]) & 0xFFFFFFFF), np.uint32(int(key[1]) & 0xFFFFFFFF),
            np.uint64(start), out)
    return out[:nwords]


@jit(cache=True, nogil=True)
def _blocks(k0, k1, start, out):
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    w0, w1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
    low, shift = np.uint64(0xFFFFFFFF), np.uint64(32)
    for b in range(out.size // 4):
        index = start + np.uint64(b)
        x0, x1 = np.uint32(index & low), np.uint32(index >> shift)
        x2, x3 = np.uint32(0), np.uint32(0)
        a0, a1 = k0, k1
        for r in range(10):
            if r:
                a0, a1 = np.uint32(a0 + w0), np.uint32(a1 + w1)
            p0 = np.uint64(x0) * m0
            p1 = np.uint64(x2) * m1
            x0, x1, x2, x3 = (np.uint32(p1 >> shift) ^ x1 ^ a0, np.uint32(p1 & low),
                              np.uint32(p0 >> shift) ^ x3 ^ a1, np.uint32(p0 & low))
        out[4 * b], out[4 * b + 1], out[4 * b + 2], out[4 * b + 3] = x0, x1, x2, x3
