"""DistributedSampler against torch.utils.data.DistributedSampler."""
import pytest

import minicnn
from minicnn import distributed as dist
from minicnn.data import DataLoader, TensorDataset

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
from torch.utils.data import DistributedSampler as TorchSampler


def _shards(cls, n, replicas, **kwargs):
    return [list(cls(range(n), num_replicas=replicas, rank=r, **kwargs))
            for r in range(replicas)]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 10, 12, 13])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_unshuffled_shards_equal_torch(n, replicas, drop_last):
    ours = _shards(dist.DistributedSampler, n, replicas, shuffle=False, drop_last=drop_last)
    theirs = _shards(TorchSampler, n, replicas, shuffle=False, drop_last=drop_last)
    assert ours == theirs
    assert [len(s) for s in ours] == [len(TorchSampler(range(n), replicas, r, shuffle=False,
                                                       drop_last=drop_last))
                                      for r in range(replicas)]


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True),
                                                     (2, 5, False), (64, 2, False)])
def test_shuffled_shards_follow_torchs_rule_on_our_permutation(monkeypatch, n, replicas,
                                                               drop_last):
    """Torch shuffles with its own generator; given our permutation (torch.randperm
    replaced by it), torch's sampler must cut exactly our shards."""
    for epoch in (0, 3):
        ours = [dist.DistributedSampler(range(n), replicas, r, seed=7, drop_last=drop_last)
                for r in range(replicas)]
        for s in ours:
            s.set_epoch(epoch)
        permutation = minicnn.data._random.derived_generator(7, epoch, 0).permutation(n)
        monkeypatch.setattr(torch, "randperm",
                            lambda k, generator=None, p=permutation: torch.tensor(p))
        theirs = [TorchSampler(range(n), replicas, r, seed=7, drop_last=drop_last)
                  for r in range(replicas)]
        assert [list(s) for s in ours] == [list(s) for s in theirs]


def test_shards_are_disjoint_cover_the_data_and_reshuffle_per_epoch():
    n, replicas = 50, 3
    samplers = [dist.DistributedSampler(range(n), replicas, r, seed=1) for r in range(replicas)]
    orders = []
    for epoch in range(2):
        for s in samplers:
            s.set_epoch(epoch)
        shards = [list(s) for s in samplers]
        flat = sum(shards, [])
        assert len(flat) == 51 and set(flat) == set(range(n))       # one repeated to pad
        orders.append(flat)
    assert orders[0] != orders[1]
    # without set_epoch, a pass repeats the last one
    assert sum((list(s) for s in samplers), []) == orders[1]


def test_rank_batches_together_are_the_one_process_batch():
    """With the loader's seed, batch b of each rank together is batch b of a one-process
    DataLoader(shuffle=True) of the global batch size: what lets a run change its number
    of ranks."""
    data = TensorDataset(minicnn.arange(40))
    single = DataLoader(data, batch_size=8, shuffle=True, seed=11)
    single.set_epoch(2)
    expected = [sorted(b[0].tolist()) for b in single]
    ranks = []
    for r in range(4):
        sampler = dist.DistributedSampler(data, 4, r, seed=11)
        sampler.set_epoch(2)
        ranks.append([b[0].tolist() for b in DataLoader(data, batch_size=2, sampler=sampler)])
    together = [sorted(sum((ranks[r][b] for r in range(4)), [])) for b in range(5)]
    assert together == expected


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"invalid rank 2, rank should be in the interval \[0, 1\]"):
        dist.DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be a positive integer"):
        dist.DistributedSampler(range(4), num_replicas=0, rank=0)
    if not dist.is_initialized():
        with pytest.raises(RuntimeError, match="init_process_group"):
            dist.DistributedSampler(range(4))
