"""The process group: which rank this process is, how many there are, and the communicator
every collective goes through (``torch.distributed``'s default group, on MPI).

Launched by ``mpiexec -n N python script.py``, each of the N processes calls
:func:`init_process_group` once; the rank and world size come from MPI. Started without a
launcher, the same call gives a group of one (rank 0 of 1), so a script written for
several processes runs unchanged in one.

Threads. N ranks on one machine, each with thread pools as wide as the machine, ask for
N times its cores; BLAS pools that spin while they wait then lose most of their time
(LeNet-5's default job took 161 s on 2 ranks that way and 19 s with a thread each, on
the shared 2-core machine). As ``torchrun`` sets ``OMP_NUM_THREADS``, a group of several
ranks therefore limits each rank's BLAS and numba pools to ``cores / local ranks``, unless
the user has set ``OMP_NUM_THREADS`` (or ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``).
"""
from __future__ import annotations

import os

from .comm import LocalCommunicator, MPICommunicator, NCCLCommunicator

__all__ = ["all_reduce", "barrier", "broadcast", "destroy_process_group",
           "get_communicator", "get_rank", "get_world_size", "init_process_group",
           "is_initialized", "is_main_process", "launched_world_size"]

_group = None

BACKENDS = ("mpi", "nccl")


def launched_world_size():
    """How many processes the MPI launcher started, read from its environment (MPICH's
    ``PMI_SIZE``, Open MPI's ``OMPI_COMM_WORLD_SIZE``, ...); 1 when none did."""
    for key in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
        if key in os.environ:
            try:
                return int(os.environ[key])
            except ValueError:
                pass
    return 1


def init_process_group(backend="mpi", timeout=None):
    """Join the group of processes started by ``mpiexec`` (or form a group of one).

    ``backend``: ``"mpi"`` (NumPy arrays, through mpi4py) or ``"nccl"`` (CuPy arrays on
    the GPUs, through ``cupy.cuda.nccl``; MPI still starts the ranks). ``timeout``: seconds
    a collective may wait for the other ranks before :class:`DistributedTimeoutError`
    (default ``MINICNN_DIST_TIMEOUT`` or 1800). Without mpi4py a single process still gets
    a group of one; several launched processes without it are refused.
    Returns the communicator.
    """
    global _group
    if _group is not None:
        raise RuntimeError("init_process_group: the default process group is already "
                           "initialized (call destroy_process_group() first)")
    if backend not in BACKENDS:
        raise ValueError(f"init_process_group: backend must be one of {BACKENDS}, got "
                         f"{backend!r}")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        launched = launched_world_size()
        if launched > 1 or backend == "nccl":
            raise ImportError(
                f"init_process_group: mpi4py is not installed, and it is needed to "
                f"{'start NCCL' if backend == 'nccl' else f'join the {launched} processes mpiexec started'}"
                "; install it with pip install 'minicnn[dist]' (mpi4py and mpich)") from None
        _group = LocalCommunicator(timeout)
        return _group
    comm = MPICommunicator(timeout=timeout)
    _group = NCCLCommunicator(comm) if backend == "nccl" else comm
    if comm.size > 1:
        _share_cores(comm)
    return _group


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _share_cores(comm):
    """Give each rank ``cores / ranks on this machine`` BLAS and numba threads (see the
    module's docstring); returns that number, or None when the user chose already."""
    if any(v in os.environ for v in _THREAD_VARIABLES):
        return None
    local = _local_ranks(comm)
    threads = max(1, (os.cpu_count() or 1) // local)
    import numba
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:                         # after numba, whose threading layer may bring OpenMP
        import threadpoolctl
        threadpoolctl.threadpool_limits(threads)
    except ImportError:          # without it only numba's pool is limited
        pass
    return threads


def _local_ranks(comm):
    """How many ranks run on this machine."""
    for key in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE",
                "PMI_LOCAL_SIZE", "LOCAL_WORLD_SIZE"):
        if key in os.environ:
            try:
                return max(1, int(os.environ[key]))
            except ValueError:
                pass
    import socket
    hosts = comm.allgather_object(socket.gethostname())
    return hosts.count(socket.gethostname())


def destroy_process_group():
    """Leave the group (MPI itself is finalised when the process ends)."""
    global _group
    if _group is not None:
        _group.close()
    _group = None


def is_initialized():
    return _group is not None


def get_communicator():
    """The default group's communicator (raises if :func:`init_process_group` was not
    called)."""
    if _group is None:
        raise RuntimeError("minicnn.distributed: the default process group is not "
                           "initialized; call minicnn.distributed.init_process_group() first")
    return _group


def get_rank():
    """This process's rank (0 when no group is initialized, as a lone process is)."""
    return 0 if _group is None else _group.rank


def get_world_size():
    """How many ranks the group has (1 when no group is initialized)."""
    return 1 if _group is None else _group.size


def is_main_process():
    """True on rank 0: the one that prints, writes files and saves checkpoints."""
    return get_rank() == 0


def barrier():
    """Wait until every rank has reached this call (with the group's deadline)."""
    get_communicator().barrier()


def all_reduce(tensor):
    """Sum ``tensor`` (a minicnn Tensor or an array) over every rank, in place."""
    array = getattr(tensor, "array", tensor)
    get_communicator().allreduce(array)
    return tensor


def broadcast(tensor, src=0):
    """Overwrite ``tensor`` (a Tensor or an array) on every rank with rank ``src``'s."""
    array = getattr(tensor, "array", tensor)
    get_communicator().broadcast(array, root=src)
    return tensor
