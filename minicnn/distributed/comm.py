"""Communicators: the one seam between data-parallel training and the library that moves
the bytes.

Everything above this file (the process group, :class:`DistributedDataParallel`, the
Trainer) speaks to a :class:`Communicator`: ``rank``, ``size``, and a handful of
collectives on flat arrays, each reducing or overwriting its argument *in place*:

* ``allreduce_async(array, what)`` starts a sum over all ranks and returns a :class:`Work`
  at once; ``Work.wait()`` waits for it (``Work.test()`` drives it without waiting);
* ``allreduce(array)``, ``broadcast(array, root=0)``, ``barrier()``: blocking;
* ``broadcast_object(obj, root=0)``, ``allgather_object(obj)``: small Python values (a
  seed, a checkpoint's path, a metric's counts).

Three communicators sit behind it:

* :class:`LocalCommunicator`: one process, no library (every collective is the identity),
  so ``init_process_group()`` works without MPI installed;
* :class:`MPICommunicator`: MPI through mpi4py on NumPy arrays (a CuPy array is staged
  through the host), with MPI-3's non-blocking ``Iallreduce``/``Ibcast``/``Ibarrier``;
* :class:`NCCLCommunicator`: NCCL through ``cupy.cuda.nccl`` on CuPy arrays, in place on
  the device, on the current CUDA stream; MPI only hands NCCL's unique id from rank 0 to the
  others at start, as ChainerMN's ``pure_nccl`` communicator does.

Deadlines. A collective finishes only when every rank joins it, so a rank that died (or
took another branch) would leave the others waiting forever. Every wait here polls its
request against a deadline (``timeout`` seconds, from ``init_process_group(timeout=...)``
or the ``MINICNN_DIST_TIMEOUT`` environment variable, 30 minutes by default as PyTorch's)
and raises :class:`DistributedTimeoutError` naming the operation, the rank and the time
waited. MPI cannot recover a communicator after that: the process should end
(``minicnn train`` aborts the MPI job, so the launcher stops every rank).
"""
from __future__ import annotations

import os
import pickle
import time

import numpy as np

from .. import backend

__all__ = ["Communicator", "DistributedTimeoutError", "LocalCommunicator",
           "MPICommunicator", "NCCLCommunicator", "Work", "default_timeout"]

DEFAULT_TIMEOUT = 1800.0          # seconds, PyTorch's default for its CPU process groups


class DistributedTimeoutError(RuntimeError):
    """A collective operation did not complete before its deadline: another rank has
    stopped (died, is stuck, or called a different collective)."""


def default_timeout():
    """Seconds a collective may wait: ``MINICNN_DIST_TIMEOUT`` if set, else 1800."""
    text = os.environ.get("MINICNN_DIST_TIMEOUT")
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"MINICNN_DIST_TIMEOUT must be a positive number of seconds, got "
                         f"{text!r}")
    return value


def _check_timeout(timeout):
    if timeout is None:
        return default_timeout()
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"init_process_group: timeout must be a positive number of seconds, "
                         f"got {timeout!r}")
    return float(timeout)


class Work:
    """A collective under way. ``test()``: True once it has finished (and lets the library
    make progress); ``wait()``: block until it has, or raise
    :class:`DistributedTimeoutError` when the deadline passes."""

    def __init__(self, done, finish, what, rank, size, timeout):
        self._done, self._finish = done, finish
        self.what, self.rank, self.size, self.timeout = what, rank, size, timeout
        self.started = time.monotonic()
        self.completed = False

    def test(self):
        if not self.completed and self._done():
            self.completed = True
            self._finish()
        return self.completed

    def wait(self):
        waiting_since = time.monotonic()
        while not self.test():
            now = time.monotonic()
            waited = now - self.started
            if waited > self.timeout:
                raise DistributedTimeoutError(
                    f"minicnn.distributed: {self.what} on rank {self.rank} of {self.size} did "
                    f"not complete within {self.timeout:g} s: another rank has stopped (it "
                    "died, is stuck, or is waiting in a different collective). Check the "
                    "other ranks' output; if a step is legitimately that slow, raise the "
                    "limit with MINICNN_DIST_TIMEOUT or init_process_group(timeout=...)")
            # NOTE: MPI moves a non-blocking collective on only while it is polled, so
            # poll at once (yielding the core) for the first 50 ms, then each millisecond
            time.sleep(0 if now - waiting_since < 0.05 else 1e-3)


def _done_work(what, rank, size):
    work = Work(lambda: True, lambda: None, what, rank, size, 1.0)
    work.test()
    return work


class Communicator:
    """The interface (see the module's docstring). ``rank``, ``size``, ``timeout``."""

    name = "?"

    def allreduce_async(self, array, what="allreduce"):
        raise NotImplementedError

    def allreduce(self, array, what="allreduce"):
        self.allreduce_async(array, what).wait()
        return array

    def broadcast(self, array, root=0, what="broadcast"):
        raise NotImplementedError

    def barrier(self):
        raise NotImplementedError

    def broadcast_object(self, obj, root=0):
        raise NotImplementedError

    def allgather_object(self, obj):
        raise NotImplementedError

    def abort(self, code=1):
        """End every rank's process (after a failed collective: MPI cannot go on)."""
        os._exit(code)

    def close(self):
        pass

    def __repr__(self):
        return f"<{type(self).__name__} rank {self.rank} of {self.size}>"


class LocalCommunicator(Communicator):
    """One process: each collective is the identity (a sum over one rank)."""

    name = "local"

    def __init__(self, timeout=None):
        self.rank, self.size, self.timeout = 0, 1, _check_timeout(timeout)

    def allreduce_async(self, array, what="allreduce"):
        return _done_work(what, 0, 1)

    def broadcast(self, array, root=0, what="broadcast"):
        _check_root(root, 1)
        return array

    def barrier(self):
        pass

    def broadcast_object(self, obj, root=0):
        _check_root(root, 1)
        return obj

    def allgather_object(self, obj):
        return [obj]


def _check_root(root, size):
    if not (isinstance(root, (int, np.integer)) and 0 <= root < size):
        raise ValueError(f"broadcast: root must be a rank in [0, {size - 1}], got {root!r}")


class MPICommunicator(Communicator):
    """MPI (mpi4py) on NumPy arrays: a sum is ``MPI_Iallreduce`` in place, a broadcast
    ``MPI_Ibcast``, each polled against the deadline. A CuPy array is copied to the host,
    reduced there and copied back (CUDA-aware MPI is not assumed)."""

    name = "mpi"

    def __init__(self, comm=None, timeout=None):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = _check_timeout(timeout)

    def _work(self, request, what, finish=lambda: None):
        return Work(request.Test, finish, what, self.rank, self.size, self.timeout)

    def allreduce_async(self, array, what="allreduce"):
        host, finish = _host_buffer(array)
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        return self._work(request, what, finish)

    def broadcast(self, array, root=0, what="broadcast"):
        _check_root(root, self.size)
        host, finish = _host_buffer(array)
        self._work(self.comm.Ibcast(host, root=root), what, finish).wait()
        return array

    def barrier(self):
        self._work(self.comm.Ibarrier(), "barrier").wait()

    def broadcast_object(self, obj, root=0):
        _check_root(root, self.size)
        data = pickle.dumps(obj) if self.rank == root else b""
        length = np.array([len(data)], dtype=np.int64)
        self.broadcast(length, root, "broadcast of an object's size")
        buffer = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == root \
            else np.empty(int(length[0]), dtype=np.uint8)
        self.broadcast(buffer, root, "broadcast of an object")
        return obj if self.rank == root else pickle.loads(buffer.tobytes())

    def allgather_object(self, obj):
        return [self.broadcast_object(obj if r == self.rank else None, root=r)
                for r in range(self.size)]

    def abort(self, code=1):
        self.comm.Abort(code)


def _host_buffer(array):
    """``(host array, finish)``: the array itself when it is a contiguous NumPy array,
    else a host copy and a ``finish()`` that writes the result back."""
    if not backend._is_cupy_array(array):
        if not array.flags.c_contiguous:
            raise ValueError("minicnn.distributed: collectives need contiguous arrays")
        return array, (lambda: None)
    host = np.ascontiguousarray(backend.to_device(array, "cpu"))

    def finish():
        array[...] = backend.to_device(host, backend.device_of(array))
    return host, finish


class NCCLCommunicator(Communicator):
    """NCCL (``cupy.cuda.nccl``) on CuPy arrays, in place on the device.

    ``init`` is an :class:`MPICommunicator` (or any communicator) used once, to hand NCCL's
    unique id from rank 0 to every rank. Each rank uses the GPU of its local rank (ranks on
    one machine take devices 0, 1, ...). A sum is ``ncclAllReduce`` on the current stream,
    followed by a CUDA event that :class:`Work` polls against the deadline; on timeout the
    NCCL communicator is aborted so that no kernel waits forever for the dead peer.
    ``nccl``/``cupy``: the modules to use (tests pass fakes).
    """

    name = "nccl"

    def __init__(self, init, timeout=None, nccl=None, cupy=None, device=None):
        if cupy is None:
            cupy = backend.cupy()
        if nccl is None:
            from cupy.cuda import nccl
            if not getattr(nccl, "available", True):
                raise RuntimeError("init_process_group(backend='nccl'): CuPy was built "
                                   "without NCCL (pip install nvidia-nccl-cu12)")
        self.init, self.nccl, self.cupy = init, nccl, cupy
        self.rank, self.size = init.rank, init.size
        self.timeout = _check_timeout(timeout if timeout is not None else init.timeout)
        self.device = _local_rank(init) if device is None else device
        cupy.cuda.Device(self.device).use()
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = init.broadcast_object(uid, root=0)
        self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)

    def _dtype(self, array):
        types = {np.dtype(np.float32): self.nccl.NCCL_FLOAT32,
                 np.dtype(np.float64): self.nccl.NCCL_FLOAT64,
                 np.dtype(np.float16): self.nccl.NCCL_FLOAT16,
                 np.dtype(np.int32): self.nccl.NCCL_INT32,
                 np.dtype(np.int64): self.nccl.NCCL_INT64,
                 np.dtype(np.uint8): self.nccl.NCCL_UINT8}
        if array.dtype not in types:
            raise TypeError(f"NCCLCommunicator: arrays of dtype {array.dtype} are not "
                            "supported")
        if not backend._is_cupy_array(array):
            raise TypeError(f"NCCLCommunicator: expected a CuPy array, got "
                            f"{type(array).__name__} (the NCCL backend works on the GPU)")
        return types[array.dtype]

    def _after(self, what):
        """A Work that completes when the stream reaches this point."""
        stream = self.cupy.cuda.get_current_stream()
        event = self.cupy.cuda.Event(block=False, disable_timing=True)
        event.record(stream)

        def done():
            self.comm.check_async_error()       # a failed peer surfaces here
            return event.done
        work = Work(done, lambda: None, what, self.rank, self.size, self.timeout)
        plain_wait = work.wait

        def wait():
            try:
                plain_wait()
            except DistributedTimeoutError:
                self.comm.abort()               # free the stream from the dead peer
                raise
        work.wait = wait
        return work

    def allreduce_async(self, array, what="allreduce"):
        datatype = self._dtype(array)
        stream = self.cupy.cuda.get_current_stream()
        self.comm.allReduce(_device_pointer(array), _device_pointer(array), array.size,
                            datatype, self.nccl.NCCL_SUM, stream.ptr)
        return self._after(what)

    def broadcast(self, array, root=0, what="broadcast"):
        _check_root(root, self.size)
        datatype = self._dtype(array)
        stream = self.cupy.cuda.get_current_stream()
        self.comm.bcast(_device_pointer(array), array.size, datatype, root, stream.ptr)
        self._after(what).wait()
        return array

    def barrier(self):
        self.init.barrier()

    def broadcast_object(self, obj, root=0):
        return self.init.broadcast_object(obj, root)

    def allgather_object(self, obj):
        return self.init.allgather_object(obj)

    def abort(self, code=1):
        self.comm.abort()
        self.init.abort(code)

    def close(self):
        self.comm.destroy()


def _device_pointer(array):
    """The device address of a contiguous CuPy array's first element."""
    if not array.flags.c_contiguous:
        raise ValueError("NCCLCommunicator: collectives need contiguous arrays")
    return array.data.ptr


def _local_rank(comm):
    """This rank's index among the ranks on its machine (its GPU)."""
    for key in ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK",
                "PMI_LOCAL_RANK", "LOCAL_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    import socket
    hosts = comm.allgather_object(socket.gethostname())
    return hosts[:comm.rank].count(hosts[comm.rank])
