"""DistributedSampler: each rank's share of a data set (``torch.utils.data.distributed``)."""
from __future__ import annotations

import math

import numpy as np

from ..data import _random
from .process_group import get_rank, get_world_size, is_initialized

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """The indices of one rank's shard of ``dataset``, for a ``DataLoader(sampler=...)``.

    As PyTorch's: every rank orders the whole data set the same way (shuffled from
    ``seed`` and the epoch when ``shuffle``), the order is made a multiple of
    ``num_replicas`` long -- by repeating its start (``drop_last=False``) or by cutting its
    tail (``drop_last=True``) -- and rank ``r`` takes every ``num_replicas``-th index from
    position ``r``. So the shards are disjoint (apart from the repeated padding) and of
    equal length ``num_samples``, and together they cover the data set.

    Call :meth:`set_epoch` before each pass (the Trainer does), or every pass repeats the
    first one's order.

    The shuffled order is the one a ``DataLoader(shuffle=True, seed=seed)`` draws for the
    same epoch (minicnn's generator, not torch's ``randperm``): with the loader's seed, the
    ranks' batches ``b`` together hold exactly the one-process batch ``b`` of the global
    batch size, which is how ``minicnn train --distributed`` resumes a run on another
    number of ranks.

    Args:
        dataset: anything with ``__len__``.
        num_replicas: the number of ranks (default: the process group's world size).
        rank: this rank (default: the process group's).
        shuffle: a new order every epoch (default True).
        seed: the shuffle's seed; it must be the same on every rank.
        drop_last: cut the data to a multiple of ``num_replicas`` instead of padding.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        if (num_replicas is None or rank is None) and not is_initialized():
            raise RuntimeError("DistributedSampler: give num_replicas and rank, or call "
                                   "minicnn.distributed.init_process_group() first")
        num_replicas = get_world_size() if num_replicas is None else num_replicas
        rank = get_rank() if rank is None else rank
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, (int, np.integer)) \
                or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive integer, "
                             f"got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or \
                not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank!r}, rank should be in "
                             f"the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        n = len(dataset)
        if self.drop_last and n % self.num_replicas:
            # the largest multiple of num_replicas that fits: every rank gets as many
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            order = _random.derived_generator(self.seed, self.epoch, 0).permutation(n).tolist()
        else:
            order = list(range(n))
        if self.drop_last:
            order = order[:self.total_size]
        else:
            missing = self.total_size - len(order)
            if missing and order:
                # repeat the start of the order (all of it, as often as needed, when the
                # data set is smaller than the number of ranks)
                order += (order * math.ceil(missing / len(order)))[:missing]
        shard = order[self.rank:self.total_size:self.num_replicas]
        assert len(shard) == self.num_samples
        return iter(shard)

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """Make the next pass shuffle as epoch ``epoch`` (the same on every rank)."""
        self.epoch = int(epoch)

    def __repr__(self):
        return (f"DistributedSampler(rank {self.rank} of {self.num_replicas}, "
                f"{self.num_samples} of {len(self.dataset)} samples, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last})")
