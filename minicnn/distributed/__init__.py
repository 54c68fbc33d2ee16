"""Data-parallel training over MPI (``torch.distributed``'s names, on mpi4py; NCCL through
CuPy for GPUs).

    # mpiexec -n 2 python train.py
    from minicnn import distributed as dist
    dist.init_process_group()                      # rank and world size from MPI
    model = dist.SyncBatchNorm.convert_sync_batchnorm(build_model())   # optional
    model = dist.DistributedDataParallel(model)
    sampler = dist.DistributedSampler(train_set, seed=0)
    loader = DataLoader(train_set, batch_size=32, sampler=sampler)   # 32 per rank
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()  # gradients averaged over the ranks
            optimizer.step()

Started without ``mpiexec`` the same script runs as rank 0 of 1. ``minicnn train
--distributed`` does all of this for its tasks (see ``minicnn/cli/train.py``).
"""
from . import comm, parallel, process_group, sampler, sync_batchnorm
from .comm import *            # noqa: F403 -- the communicators and their errors
from .parallel import *        # noqa: F403 -- DistributedDataParallel
from .process_group import *   # noqa: F403 -- init_process_group, get_rank, ...
from .sampler import *         # noqa: F403 -- DistributedSampler
from .sync_batchnorm import *  # noqa: F403 -- SyncBatchNorm

__all__ = (process_group.__all__ + sampler.__all__ + parallel.__all__ + sync_batchnorm.__all__
           + comm.__all__)
