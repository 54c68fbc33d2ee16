"""Philox, the counter-based random generator, written once for NumPy and CuPy.

Philox4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2,
3", SC 2011; the generator of cuRAND, CuPy and torch's CUDA backend) is a keyed bijection
of a 128-bit counter: block b of the stream is ``philox(counter=b, key)``, four 32-bit
words, computed independently of every other block. Its whole state is therefore the
key (the seed) and how many blocks were drawn, and any array module that has unsigned
integer arithmetic computes the same words: this file does, for NumPy and CuPy alike.

One round maps the counter words (x0, x1, x2, x3) and the key (k0, k1) to

    hi0, lo0 = mulhilo(M0, x0)        # the high and low halves of the double-width product
    hi1, lo1 = mulhilo(M1, x2)
    (x0, x1, x2, x3) <- (hi1 ^ x1 ^ k0,  lo1,  hi0 ^ x3 ^ k1,  lo0)

and the key is bumped by the Weyl constants (W0, W1) before every round but the first;
ten rounds. The 4x64 variant (NumPy's ``np.random.Philox``) is the same function with
64-bit words and other constants; it is here too, so that the round function can be
checked word for word against NumPy's implementation.

Counter layout of :func:`random_bits`: block b (a 64-bit index) is the counter
``(b mod 2**32, b div 2**32, 0, 0)``; the words of blocks start, start+1, ... are laid
out block after block.
"""
from __future__ import annotations

import numpy

__all__ = ["philox4x32", "philox4x64", "random_bits", "mulhi64"]

_M32 = (0xD2511F53, 0xCD9E8D57)
_W32 = (0x9E3779B9, 0xBB67AE85)
_M64 = (0xD2E7470EE14C6C93, 0xCA5A826395121157)
_W64 = (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)
_LOW32 = 0xFFFFFFFF


def philox4x32(counter, key, rounds=10):
    """Philox4x32-``rounds`` of ``counter`` (four uint32 arrays of one shape) under ``key``
    (two integers below 2**32); returns four uint32 arrays."""
    return _philox(counter, key, rounds, 32)


def philox4x64(counter, key, rounds=10):
    """Philox4x64-``rounds`` (NumPy's ``np.random.Philox``): four uint64 arrays, a key of
    two integers below 2**64."""
    return _philox(counter, key, rounds, 64)


def random_bits(xp, key, start, nwords):
    """``nwords`` uint32 words of the Philox4x32-10 stream keyed by ``key`` (two integers
    below 2**32), from block ``start`` on: blocks start .. start + ceil(nwords / 4) - 1,
    four words each, in order (module docstring). A 1-D array of module ``xp``."""
    blocks = -(-nwords // 4)
    index = xp.arange(blocks, dtype=numpy.uint64) + numpy.uint64(start)
    counter = ((index & numpy.uint64(_LOW32)).astype(numpy.uint32),
               (index >> numpy.uint64(32)).astype(numpy.uint32),
               xp.zeros(blocks, dtype=numpy.uint32), xp.zeros(blocks, dtype=numpy.uint32))
    words = xp.stack(philox4x32(counter, key), axis=1)        # (blocks, 4)
    return words.reshape(-1)[:nwords]


def mulhi64(a, m):
    """The high 64 bits of ``a * m`` for a uint64 array ``a`` and an integer ``m`` below
    2**64, from 32-bit halves (no array module has a 128-bit product)."""
    low = numpy.uint64(_LOW32)
    a_lo, a_hi = a & low, a >> numpy.uint64(32)
    m_lo, m_hi = numpy.uint64(m & _LOW32), numpy.uint64(m >> 32)
    ll, lh, hl, hh = a_lo * m_lo, a_lo * m_hi, a_hi * m_lo, a_hi * m_hi
    # the middle column, whose carry reaches the high half: below 3 * 2**32, no overflow
    mid = (ll >> numpy.uint64(32)) + (lh & low) + (hl & low)
    return hh + (lh >> numpy.uint64(32)) + (hl >> numpy.uint64(32)) + (mid >> numpy.uint64(32))


def _mulhilo(a, m, width):
    """(high, low) halves of the 2·width-bit product of the word array ``a`` and ``m``."""
    if width == 32:
        product = a.astype(numpy.uint64) * numpy.uint64(m)
        return (product >> numpy.uint64(32)).astype(numpy.uint32), product.astype(numpy.uint32)
    return mulhi64(a, m), a * numpy.uint64(m)              # the low half wraps mod 2**64


def _philox(counter, key, rounds, width):
    word = numpy.uint32 if width == 32 else numpy.uint64
    (m0, m1), (w0, w1) = (_M32, _W32) if width == 32 else (_M64, _W64)
    mask = (1 << width) - 1
    x0, x1, x2, x3 = counter
    k0, k1 = int(key[0]) & mask, int(key[1]) & mask
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + w0) & mask, (k1 + w1) & mask
        hi0, lo0 = _mulhilo(x0, m0, width)
        hi1, lo1 = _mulhilo(x2, m1, width)
        x0, x1, x2, x3 = hi1 ^ x1 ^ word(k0), lo1, hi0 ^ x3 ^ word(k1), lo0
    return x0, x1, x2, x3
