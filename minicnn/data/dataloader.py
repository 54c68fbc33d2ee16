"""DataLoader: batches of samples from a dataset, shuffled reproducibly, optionally
prepared in background threads while the training step runs.

Reproducibility. Each loader has one integer ``seed`` (drawn from minicnn's seeded
generator when not given) and counts the passes over the data (``epoch``). Pass ``e``
shuffles with a generator derived from ``(seed, e)``, and batch ``b`` of that pass runs
its random transforms with a generator derived from ``(seed, e, b)``. So the batches of a
run depend only on ``seed`` and ``epoch``, never on how many threads prepared them, and
``state_dict()`` (those two integers) is all a checkpoint needs to resume the sequence.

Prefetching. With ``num_workers=0`` batches are made in the calling thread when asked
for. With ``num_workers >= 1`` a pool of that many threads keeps up to
``num_workers * prefetch_factor`` batches in preparation, so loading and augmenting the
next batch overlaps the current step (NumPy releases the GIL in its heavy routines).
Batches still arrive in order; an exception raised while preparing a batch is raised again
in the main thread when that batch is requested; leaving the loop early (``break``) or
deleting the iterator stops the threads.
"""
from __future__ import annotations

import collections
import collections.abc
import concurrent.futures
import math

import numpy as np

from .. import backend
from ..autograd import Tensor
from . import _random

__all__ = ["DataLoader", "default_collate"]


class DataLoader:
    """Iterate over ``dataset`` in batches (as ``torch.utils.data.DataLoader``).

    Args:
        dataset: anything with ``__len__`` and ``__getitem__``.
        batch_size: samples per batch (a positive integer).
        shuffle: a new random order every pass.
        sampler: an iterable of indices to use instead (then ``shuffle`` must be False).
        num_workers: background threads preparing batches (0: none, work in the caller).
        collate_fn: turns a list of samples into a batch (default: :func:`default_collate`).
        pin_memory: accepted for compatibility; has no effect.
        drop_last: drop the last batch when it is smaller than ``batch_size``.
        timeout: seconds to wait for a batch from the workers (0: forever).
        generator: a ``numpy.random.Generator`` to draw the loader's seed from, once.
        prefetch_factor: batches in preparation per worker (default 2).
        seed: the loader's seed itself (overrides ``generator``).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, *, sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 generator=None, prefetch_factor=None, seed=None):
        if batch_size is None or isinstance(batch_size, bool) or \
                not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size should be a positive integer, got "
                             f"{batch_size!r}")
        if not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers should be a non-negative integer, "
                             f"got {num_workers!r}")
        if prefetch_factor is not None and num_workers == 0:
            raise ValueError("DataLoader: prefetch_factor option could only be specified in "
                             "multiprocessing (num_workers > 0)")
        if prefetch_factor is not None and prefetch_factor < 1:
            raise ValueError(f"DataLoader: prefetch_factor should be at least 1, got "
                             f"{prefetch_factor!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if timeout < 0:
            raise ValueError(f"DataLoader: timeout option should be non-negative, got {timeout}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.sampler = sampler
        self.num_workers = int(num_workers)
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        self.pin_memory = pin_memory
        self.drop_last = bool(drop_last)
        self.timeout = timeout
        self.prefetch_factor = 2 if prefetch_factor is None else int(prefetch_factor)
        if seed is None:
            source = generator if generator is not None else backend.get_rng(np)
            seed = int(source.integers(0, 2 ** 63 - 1))
        self.seed = int(seed)
        self.epoch = 0          # passes started so far; pass `epoch` is the next one

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """The shuffle state as plain data: ``{"seed": int, "epoch": int}``."""
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state):
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def set_epoch(self, epoch):
        """Make the next pass over the data be pass number ``epoch``."""
        self.epoch = int(epoch)

    # -------------------------------------------------------------- iteration
    def __len__(self):
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        batches = self._batch_indices(epoch)
        if self.num_workers == 0:
            return (self._fetch(epoch, b, idx) for b, idx in enumerate(batches))
        return _PrefetchIterator(self._fetch, epoch, batches, self.num_workers,
                                 self.prefetch_factor, self.timeout)

    def _batch_indices(self, epoch):
        """The index lists of every batch of pass ``epoch``."""
        if self.sampler is not None:
            order = [int(i) for i in self.sampler]
        elif self.shuffle:
            order = _random.derived_generator(self.seed, epoch, 0) \
                .permutation(len(self.dataset)).tolist()
        else:
            order = list(range(len(self.dataset)))
        size = self.batch_size
        batches = [order[i:i + size] for i in range(0, len(order), size)]
        if self.drop_last and batches and len(batches[-1]) < size:
            batches.pop()
        return batches

    def _fetch(self, epoch, batch_index, indices):
        """Load and collate one batch, its random transforms seeded by (seed, epoch, batch)."""
        with _random.using_generator(
                _random.derived_generator(self.seed, epoch, 1, batch_index)):
            return self.collate_fn([self.dataset[i] for i in indices])

    def __repr__(self):
        return (f"DataLoader(dataset={type(self.dataset).__name__} of {len(self.dataset)}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"num_workers={self.num_workers}, drop_last={self.drop_last}, seed={self.seed})")


class _PrefetchIterator:
    """Batches of one pass, prepared ahead by a thread pool, delivered in order."""

    def __init__(self, fetch, epoch, batches, num_workers, prefetch_factor, timeout):
        self._fetch, self._epoch, self._timeout = fetch, epoch, timeout
        self._todo = iter(list(enumerate(batches)))
        self._pending = collections.deque()     # futures, in batch order
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=num_workers, thread_name_prefix="minicnn-dataloader")
        for _ in range(num_workers * prefetch_factor):
            self._submit_next()

    def _submit_next(self):
        item = next(self._todo, None)
        if item is not None:
            batch_index, indices = item
            future = self._pool.submit(self._fetch, self._epoch, batch_index, indices)
            self._pending.append((batch_index, future))

    def __iter__(self):
        return self

    def __next__(self):
        if not self._pending:
            self.close()
            raise StopIteration
        batch_index, future = self._pending.popleft()
        self._submit_next()             # keep the pipeline full while the caller works
        try:
            return future.result(timeout=self._timeout or None)
        except concurrent.futures.TimeoutError:
            self.close()
            raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds waiting "
                               f"for batch {batch_index}") from None
        except BaseException as exc:
            self.close()
            if hasattr(exc, "add_note"):       # Python 3.11+
                exc.add_note(f"(raised in a DataLoader worker thread while preparing batch "
                             f"{batch_index} of epoch {self._epoch})")
            raise

    def close(self):
        """Cancel what has not started and wait for the threads to finish."""
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            self.close()


# ------------------------------------------------------------------ collation

def default_collate(batch):
    """Stack a list of samples into a batch, keeping the samples' structure.

    * arrays and Tensors of one shape -> a Tensor with a new first dimension (dtype kept);
    * Python ints -> int64 Tensor, floats -> float64 Tensor, bools -> bool Tensor,
      NumPy scalars -> a Tensor of their dtype (as ``torch.utils.data.default_collate``);
    * strings -> a list of strings;
    * tuples and lists -> a list with each position collated (named tuples keep their
      type), dicts -> a dict with each key collated.
    """
    if len(batch) == 0:
        raise ValueError("default_collate: received an empty batch")
    elem = batch[0]
    if isinstance(elem, Tensor):
        xp = backend.get_array_module(*batch)
        return Tensor._wrap(xp.stack([_same_shape(batch, i, t.array)
                                      for i, t in enumerate(batch)]))
    if isinstance(elem, np.ndarray):
        if elem.dtype.kind in "OUSV":
            raise TypeError(f"default_collate: arrays of dtype {elem.dtype} cannot become "
                            "a Tensor")
        return Tensor._wrap(np.stack([_same_shape(batch, i, a) for i, a in enumerate(batch)]))
    if isinstance(elem, (np.number, np.bool_)):
        return Tensor._wrap(np.array(batch))
    if isinstance(elem, bool):
        return Tensor._wrap(np.array(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return Tensor._wrap(np.array(batch, dtype=np.int64))
    if isinstance(elem, float):
        return Tensor._wrap(np.array(batch, dtype=np.float64))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        keys = list(elem)
        for i, sample in enumerate(batch):
            if list(sample) != keys:
                raise ValueError(f"default_collate: sample 0 has keys {keys} but sample {i} "
                                 f"has keys {list(sample)}")
        return {k: default_collate([s[k] for s in batch]) for k in keys}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):     # a namedtuple
        return type(elem)(*(default_collate(list(field)) for field in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        for i, sample in enumerate(batch):
            if len(sample) != len(elem):
                raise ValueError(f"default_collate: each sample should have the same number "
                                 f"of fields: sample 0 has {len(elem)}, sample {i} has "
                                 f"{len(sample)}")
        return [default_collate(list(field)) for field in zip(*batch)]
    if type(elem).__module__.startswith("PIL."):
        raise TypeError("default_collate: samples are PIL images; add "
                        "minicnn.data.transforms.ToTensor() to the dataset's transform")
    raise TypeError(f"default_collate: samples of type {type(elem).__name__} cannot be "
                    "collated; expected arrays, Tensors, numbers, strings, dicts or "
                    "sequences of these (or pass collate_fn=)")


def _same_shape(batch, i, array):
    first = batch[0].shape
    if array.shape != first:
        raise ValueError(f"default_collate: cannot stack samples of different shapes: "
                         f"sample 0 has shape {tuple(first)} but sample {i} has shape "
                         f"{tuple(array.shape)} (resize them in the transform, or pass "
                         "collate_fn=)")
    return array
