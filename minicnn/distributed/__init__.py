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
from .comm import (
                   Communicator,
                   DistributedTimeoutError,
                   LocalCommunicator,
                   MPICommunicator,
                   NCCLCommunicator,
                   Work,
                   default_timeout,
)
from .parallel import DistributedDataParallel
from .process_group import (
                   all_reduce,
                   barrier,
                   broadcast,
                   destroy_process_group,
                   get_communicator,
                   get_rank,
                   get_world_size,
                   init_process_group,
                   is_initialized,
                   is_main_process,
                   launched_world_size,
)
from .sampler import DistributedSampler

__all__ = [
                   "Communicator",
                   "DistributedDataParallel",
                   "DistributedSampler",
                   "DistributedTimeoutError",
                   "LocalCommunicator",
                   "MPICommunicator",
                   "NCCLCommunicator",
                   "Work",
                   "all_reduce",
                   "barrier",
                   "broadcast",
                   "default_timeout",
                   "destroy_process_group",
                   "get_communicator",
                   "get_rank",
                   "get_world_size",
                   "init_process_group",
                   "is_initialized",
                   "is_main_process",
                   "launched_world_size",
]
