"""Data-parallel training over MPI (``torch.distributed``'s names, on mpi4py; NCCL through
CuPy for GPUs).

    # mpiexec -n 2 python train.py
    from minicnn import distributed as dist
    dist.init_process_group()                      # rank and world size from MPI
    model = dist.DistributedDataParallel(build_model())
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
from .comm import (Communicator, Work, LocalCommunicator, MPICommunicator, NCCLCommunicator,
                   DistributedTimeoutError, default_timeout)
from .process_group import (init_process_group, destroy_process_group, is_initialized,
                            get_rank, get_world_size, barrier, get_communicator, all_reduce,
                            broadcast, is_main_process, launched_world_size)
from .sampler import DistributedSampler
from .parallel import DistributedDataParallel

__all__ = ["init_process_group", "destroy_process_group", "is_initialized", "get_rank",
           "get_world_size", "barrier", "get_communicator", "all_reduce", "broadcast",
           "is_main_process", "launched_world_size", "DistributedSampler",
           "DistributedDataParallel", "Communicator", "Work", "LocalCommunicator",
           "MPICommunicator", "NCCLCommunicator", "DistributedTimeoutError",
           "default_timeout"]
