"""Datasets as in ``torch.utils.data``: an indexable collection of samples.

A dataset is anything with ``__len__`` and ``__getitem__(index) -> sample``; a sample is
usually ``(image, label)``. :class:`Dataset` is the optional base class, and the rest of
this file wraps or splits datasets: :class:`TensorDataset`, :class:`Subset`,
:class:`ConcatDataset`, :func:`random_split`.
"""
from __future__ import annotations

import bisect
import math
import numbers

import numpy as np

from .. import backend
from ..autograd import Tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split"]


class Dataset:
    """Base class: subclasses define ``__getitem__(index)`` and ``__len__()``.

    ``a + b`` concatenates two datasets (as in PyTorch).
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Samples are the ``index``-th rows of each given array or Tensor.

    ``TensorDataset(images, labels)[i] == (images[i], labels[i])``. NumPy arrays are
    returned as arrays and Tensors as Tensors (without a graph); the loader's collate
    turns either into batched Tensors.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: expected at least one array or Tensor")
        arrays = []
        for position, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                t = np.asarray(t)
            if t.ndim == 0:
                raise ValueError(f"TensorDataset: argument {position} is a scalar; every "
                                 "argument needs a first (sample) dimension")
            arrays.append(t)
        lengths = [len(t) for t in arrays]
        if len(set(lengths)) != 1:
            raise ValueError("TensorDataset: size mismatch between tensors: first "
                             f"dimensions are {lengths}; they must all be equal")
        self.tensors = tuple(arrays)

    def __getitem__(self, index):
        return tuple(Tensor._wrap(t.array[index]) if isinstance(t, Tensor) else t[index]
                     for t in self.tensors)

    def __len__(self):
        return len(self.tensors[0])


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        n = len(dataset)
        bad = [i for i in self.indices if not -n <= i < n]
        if bad:
            raise IndexError(f"Subset: index {bad[0]} is out of range for a dataset of "
                             f"{n} samples")

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


class ConcatDataset(Dataset):
    """Several datasets one after the other."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: expected at least one dataset")
        # cumulative_sizes[k] = number of samples in datasets[0..k]
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]))

    def __len__(self):
        return int(self.cumulative_sizes[-1])

    def __getitem__(self, index):
        if index < 0:
            if -index > len(self):
                raise IndexError(f"ConcatDataset: index {index} is out of range for "
                                 f"{len(self)} samples")
            index += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, index)
        if which == len(self.datasets):
            raise IndexError(f"ConcatDataset: index {index} is out of range for "
                             f"{len(self)} samples")
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - start]


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping random :class:`Subset` s of the given lengths.

    ``lengths`` are sample counts summing to ``len(dataset)``, or fractions summing to 1
    (then each part gets ``floor(fraction * n)`` and the remainder is handed out one by
    one, first part first, as in PyTorch). The permutation comes from ``generator`` (a
    ``numpy.random.Generator``), or from minicnn's seeded generator when none is given.
    """
    n = len(dataset)
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split: lengths is empty")
    if all(isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral)
           for x in lengths):
        if any(not 0 <= x <= 1 for x in lengths) or not math.isclose(sum(lengths), 1.0,
                                                                      abs_tol=1e-6):
            raise ValueError(f"random_split: fractions must lie in [0, 1] and sum to 1, "
                             f"got {lengths}")
        counts = [int(math.floor(n * x)) for x in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if any(not isinstance(x, numbers.Integral) or x < 0 for x in lengths):
        raise ValueError(f"random_split: lengths must be non-negative integers or "
                         f"fractions, got {lengths}")
    if sum(lengths) != n:
        raise ValueError(f"random_split: sum of input lengths ({sum(lengths)}) does not "
                         f"equal the length of the input dataset ({n})")
    rng = generator if generator is not None else backend.get_rng(np)
    order = rng.permutation(n).tolist()
    parts, start = [], 0
    for length in lengths:
        parts.append(Subset(dataset, order[start:start + length]))
        start += length
    return parts
