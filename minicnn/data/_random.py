"""Where data augmentation draws its random numbers.

Transforms ask :func:`current_generator` for a NumPy ``Generator``. Outside a data loader
that is minicnn's seeded host generator (``minicnn.manual_seed`` fixes it). Inside a
:class:`~minicnn.data.DataLoader` the loader hands every batch a generator of its own,
derived from (loader seed, epoch, batch index): a batch then gets the same augmentation
whichever thread prepares it, and no background thread touches the generator that the
training step uses for dropout at the same moment.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from .. import backend

_local = threading.local()


def current_generator():
    """The ``numpy.random.Generator`` random transforms should draw from right now."""
    rng = getattr(_local, "rng", None)
    return rng if rng is not None else backend.get_rng(np)


@contextlib.contextmanager
def using_generator(rng):
    """Make ``rng`` the source of :func:`current_generator` in this thread, inside the block."""
    previous = getattr(_local, "rng", None)
    _local.rng = rng
    try:
        yield rng
    finally:
        _local.rng = previous


def derived_generator(seed, *key):
    """A generator for one (seed, key...) pair; different keys give independent streams."""
    sequence = np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in key))
    return np.random.Generator(np.random.PCG64(sequence))
