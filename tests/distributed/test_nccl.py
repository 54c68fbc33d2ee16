"""The NCCL communicator, on a fake ``cupy.cuda.nccl`` and the fake CuPy (tests/fake_cupy.py):
the ranks are threads; the fake NCCL reads and writes the device buffers through the raw
pointers, counts and datatypes it is given, as the real library does, and completes a
collective only when every rank has enqueued it."""
import ctypes
import threading
import types

import fake_cupy
import numpy as np
import pytest
from thread_ranks import run_ranks

import minicnn
from minicnn import distributed as dist
from minicnn import nn
from minicnn.distributed import comm as comm_module
from minicnn.nn import functional as F


class FakeNccl:
    """``cupy.cuda.nccl``'s names that the communicator uses."""
    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 6, 7, 8
    NCCL_INT32, NCCL_INT64, NCCL_UINT8, NCCL_SUM = 2, 4, 1, 0
    _CTYPES = {7: ctypes.c_float, 8: ctypes.c_double, 4: ctypes.c_int64}

    def __init__(self, size):
        self.size, self.cond, self.ops, self.calls = size, threading.Condition(), {}, []

    def get_unique_id(self):
        return (1, 2, 3)

    def NcclCommunicator(self, ndev, uid, rank):
        assert (ndev, uid) == (self.size, (1, 2, 3))
        return _FakeComm(self, rank)

    def view(self, pointer, count, datatype):
        return np.ctypeslib.as_array((self._CTYPES[datatype] * count).from_address(pointer))


class _FakeComm:
    def __init__(self, lib, rank):
        self.lib, self.rank, self.seq, self.aborted = lib, rank, 0, False

    def _enqueue(self, kind, buffer, count, datatype, root, stream):
        lib = self.lib
        lib.calls.append((self.rank, kind, count, datatype, root, stream))
        seq, self.seq = self.seq, self.seq + 1
        with lib.cond:
            entry = lib.ops.setdefault(seq, {"views": {}, "done": False})
            entry["views"][self.rank] = lib.view(buffer, count, datatype)
            if len(entry["views"]) == lib.size:
                views = entry["views"]
                result = sum(v.copy() for v in views.values()) if kind == "allReduce" \
                    else views[root].copy()
                for v in views.values():
                    v[...] = result
                entry["done"] = True
        stream.last = entry

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream_ptr):
        assert sendbuf == recvbuf and op == FakeNccl.NCCL_SUM        # in place
        self._enqueue("allReduce", recvbuf, count, datatype, None, _STREAMS[stream_ptr])

    def bcast(self, buffer, count, datatype, root, stream_ptr):
        self._enqueue("bcast", buffer, count, datatype, root, _STREAMS[stream_ptr])

    def check_async_error(self):
        pass

    def abort(self):
        self.aborted = True

    def destroy(self):
        pass


_STREAMS = {}


class _Stream:
    def __init__(self):
        self.ptr, self.last = id(self), None
        _STREAMS[self.ptr] = self


class _Event:
    def __init__(self, block=False, disable_timing=True):
        self.entry = None

    def record(self, stream):
        self.entry = stream.last

    @property
    def done(self):
        return self.entry is None or self.entry["done"]


def _fake_cupy_cuda():
    local = threading.local()

    def current():
        if not hasattr(local, "stream"):
            local.stream = _Stream()
        return local.stream
    used = []
    device = lambda index: types.SimpleNamespace(use=lambda: used.append(index))
    return types.SimpleNamespace(cuda=types.SimpleNamespace(
        get_current_stream=current, Event=_Event, Device=device)), used


@pytest.fixture
def gpu(monkeypatch):
    fake_cupy.install(monkeypatch)
    # the real one reads array.data.ptr; the fake's arrays are host memory: their address
    monkeypatch.setattr(comm_module, "_device_pointer",
                        lambda a: a.__array_interface__["data"][0])


def _nccl_ranks(size, fn, nccl=None, timeout=10.0):
    nccl = nccl or FakeNccl(size)
    cupy, used = _fake_cupy_cuda()

    def rank(r, init):
        comm = dist.NCCLCommunicator(init, timeout=timeout, nccl=nccl, cupy=cupy, device=r)
        return fn(r, comm)
    return run_ranks(size, rank), nccl, used


def test_allreduce_and_broadcast_in_place_on_device_arrays(gpu):
    def rank(r, comm):
        a = fake_cupy.to_device(np.arange(5, dtype=np.float32) * (r + 1))
        comm.allreduce(a)
        b = fake_cupy.to_device(np.full(3, 10.0 * (r + 1)))
        comm.broadcast(b, root=1)
        return type(a).__module__, fake_cupy.to_host(a), fake_cupy.to_host(b)
    results, nccl, used = _nccl_ranks(2, rank)
    for module, a, b in results:
        assert module.startswith("cupy")                 # stayed on the device
        np.testing.assert_array_equal(a, np.arange(5) * 3.0)
        np.testing.assert_array_equal(b, 20.0)
    assert sorted(used) == [0, 1]                        # one GPU per rank
    assert {(kind, count, datatype) for _, kind, count, datatype, _, _ in nccl.calls} == {
        ("allReduce", 5, FakeNccl.NCCL_FLOAT32), ("bcast", 3, FakeNccl.NCCL_FLOAT64)}


def test_ddp_over_nccl_averages_device_gradients(gpu):
    minicnn.manual_seed(0)
    base = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).double()
    data = {r: np.random.default_rng(r).standard_normal((3, 4)) for r in (0, 1)}
    reference = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).double()
    reference.load_state_dict(base.state_dict())
    loss = sum(F.mse_loss(reference(minicnn.tensor(data[r])), minicnn.zeros(3, 2).double())
               for r in (0, 1)) * 0.5
    loss.backward()
    expected = [p.grad.numpy() for p in reference.parameters()]
    base.to("cuda")

    def rank(r, comm):
        import copy
        model = copy.deepcopy(base)
        ddp = dist.DistributedDataParallel(model, process_group=comm, bucket_cap_mb=1e-4)
        x = minicnn.tensor(fake_cupy.to_device(data[r]))
        target = minicnn.tensor(fake_cupy.to_device(np.zeros((3, 2))))
        F.mse_loss(ddp(x), target).backward()
        return [fake_cupy.to_host(p.grad.array) for p in model.parameters()]
    results, nccl, _ = _nccl_ranks(2, rank)
    for grads in results:
        for g, e in zip(grads, expected):
            np.testing.assert_allclose(g, e, rtol=1e-12)
    assert sum(kind == "allReduce" for _, kind, *_ in nccl.calls) == 2 * 4   # 4 buckets


def test_a_dead_peer_times_out_and_aborts_nccl(gpu):
    nccl = FakeNccl(2)
    cupy, _ = _fake_cupy_cuda()

    class Init:                  # rank 0 alone: rank 1 never joins
        rank, size, timeout = 0, 2, 0.1

        def broadcast_object(self, obj, root=0):
            return obj
    comm = dist.NCCLCommunicator(Init(), timeout=0.1, nccl=nccl, cupy=cupy, device=0)
    with pytest.raises(dist.DistributedTimeoutError,
                       match="allreduce on rank 0 of 2 did not complete within 0.1 s"):
        comm.allreduce(fake_cupy.to_device(np.ones(3, dtype=np.float32)))
    assert comm.comm.aborted


def test_nccl_refuses_host_arrays_and_odd_dtypes(gpu):
    def rank(r, comm):
        with pytest.raises(TypeError, match="expected a CuPy array, got ndarray"):
            comm.allreduce(np.ones(2, dtype=np.float32))
        with pytest.raises(TypeError, match="dtype complex128 are not supported"):
            comm.allreduce(fake_cupy.to_device(np.ones(2, dtype=np.complex128)))
    _nccl_ranks(1, rank)
