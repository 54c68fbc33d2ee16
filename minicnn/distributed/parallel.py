"""DistributedDataParallel: one model replica per rank, gradients averaged during backward.

How a step goes (as ``torch.nn.parallel.DistributedDataParallel``):

1. At wrapping, rank 0's parameters and buffers are broadcast to every rank, so all
   replicas start equal.
2. Each forward first broadcasts rank 0's buffers (batch-norm running statistics), as
   ``broadcast_buffers=True`` does; then runs the wrapped model on this rank's batch.
3. During backward, a hook on each parameter (``register_post_accumulate_grad_hook``)
   marks its gradient ready. The parameters sit in *buckets* (about ``bucket_cap_mb``
   each, in reverse registration order, roughly the order backward reaches them; the
   first bucket is kept to 1 MB so that communication starts early). When every
   gradient of a bucket is ready, the bucket is flattened, divided by the world size
   and its sum over the ranks is *started* (a non-blocking allreduce) while backward goes
   on computing the gradients of earlier layers. Buckets are started in index order on
   every rank, so the ranks issue the same collectives in the same order.
4. When the backward walk ends (``autograd.queue_callback``), every allreduce is waited
   for and the averaged gradients are written back into ``.grad``: after
   ``loss.backward()`` every rank holds the same gradients -- the gradients of the mean
   loss over the global batch when the ranks' batches are the same size -- so the same
   optimizer step keeps the replicas equal.

Inside :meth:`no_sync` the hooks do nothing: gradients accumulate locally, and the first
backward after the block reduces the accumulated sum (gradient accumulation without a
collective per micro-batch).

MPI moves a non-blocking collective on only while some call polls it, so each gradient
hook polls the allreduces under way (MPICH's ``MPIR_CVAR_ASYNC_PROGRESS=1`` adds a thread
that does it all the time).

Batch normalisation computes its statistics on each rank's own batch (as PyTorch's
``BatchNorm2d`` under DDP); only the running statistics are synchronised, by the
broadcast of step 2. :class:`~minicnn.distributed.SyncBatchNorm` normalises with the
global batch's instead.

Departures from PyTorch: buckets are not rebuilt from the order observed in the first
iteration; a parameter that received no gradient on a rank contributes zeros to the
average (PyTorch asks for ``find_unused_parameters=True`` for that), and its ``.grad``
becomes the average. A parameter used several times in one graph (weight tying) is
reduced correctly, but its bucket may be reduced twice (minicnn delivers each use's
gradient separately).
"""
from __future__ import annotations

import contextlib
import time

from .. import autograd, backend
from ..autograd import Tensor, is_grad_enabled
from ..nn import Module
from .process_group import get_communicator

__all__ = ["DistributedDataParallel"]

_FIRST_BUCKET_BYTES = 1024 * 1024      # torch's dist._DEFAULT_FIRST_BUCKET_BYTES


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training over the process group's ranks.

    Args:
        module: the model (each rank builds the same one; rank 0's weights win).
        broadcast_buffers: broadcast rank 0's buffers at the start of each forward
            (default True, as PyTorch).
        process_group: a communicator (default: the one of ``init_process_group()``).
        bucket_cap_mb: the size of a gradient bucket in megabytes (default 25).
        device_ids, output_device, dim, find_unused_parameters,
        gradient_as_bucket_view, static_graph: accepted for PyTorch's signature; the model
            is on the device it was moved to before wrapping, unused parameters are always
            tolerated (see the module's docstring).

    ``ddp.module`` is the wrapped model: save ``ddp.module.state_dict()`` to get keys
    without the ``module.`` prefix. ``ddp.timings`` holds the last backward's seconds spent
    starting allreduces (``launch_s``) and waiting for them after the walk (``wait_s``).
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0,
                 broadcast_buffers=True, process_group=None, bucket_cap_mb=None,
                 find_unused_parameters=False, gradient_as_bucket_view=False,
                 static_graph=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a minicnn.nn.Module, "
                            f"got {type(module).__name__}")
        if bucket_cap_mb is None:
            bucket_cap_mb = 25
        if not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got "
                             f"{bucket_cap_mb!r}")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.comm = get_communicator() if process_group is None else process_group
        self.bucket_cap_mb = bucket_cap_mb
        self.require_backward_grad_sync = True
        self.require_forward_param_sync = True
        self.timings = {"launch_s": 0.0, "wait_s": 0.0}
        params = [p for p in module.parameters() if p.requires_grad]
        self._buckets = _make_buckets(params, bucket_cap_mb * 1024 * 1024)
        self._bucket_of = {id(p): b for b, bucket in enumerate(self._buckets)
                           for p in bucket.params}
        self._sync_state(list(module.parameters()) + list(module.buffers()))
        self._hooks = [p.register_post_accumulate_grad_hook(self._grad_ready) for p in params]
        self._reset_reduction()

    # --------------------------------------------------------------- forward
    def forward(self, *args, **kwargs):
        if self.require_forward_param_sync and self.broadcast_buffers:
            self._sync_state(list(self.module.buffers()))
        # as torch: the next forward syncs buffers only if this one could be followed by
        # a synchronised backward
        self.require_forward_param_sync = is_grad_enabled() and self.require_backward_grad_sync
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside this block backward only accumulates gradients locally; the first
        backward after it averages the accumulated gradients."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    # ------------------------------------------------------------ reduction
    def _reset_reduction(self):
        self._ready = set()              # ids of parameters whose gradient arrived
        self._missing = [len(b.params) for b in self._buckets]
        self._works = [None] * len(self._buckets)
        self._stale = set()              # buckets started before a late gradient came
        self._next = 0                   # the next bucket to start (index order)
        self._finishing = False

    def _grad_ready(self, param):
        if not self.require_backward_grad_sync:
            return
        if not self._finishing:          # the first gradient of this backward
            self._finishing = True
            self.timings = {"launch_s": 0.0, "wait_s": 0.0}
            autograd.queue_callback(self._finish_reduction)
        b = self._bucket_of[id(param)]
        if id(param) in self._ready:     # a later use of the same parameter
            if self._works[b] is not None:
                self._stale.add(b)
            return
        self._ready.add(id(param))
        self._missing[b] -= 1
        for work in self._works[:self._next]:
            work.test()                  # let MPI make progress on what is under way
        while self._next < len(self._buckets) and self._missing[self._next] == 0:
            self._launch(self._next)

    def _launch(self, b):
        started = time.perf_counter()
        bucket = self._buckets[b]
        self._works[b] = bucket.start(self.comm, f"allreduce of gradient bucket {b + 1} of "
                                                 f"{len(self._buckets)} ({bucket.nbytes:,} "
                                                 "bytes)")
        self._next = max(self._next, b + 1)
        self.timings["launch_s"] += time.perf_counter() - started

    def _finish_reduction(self):
        started = time.perf_counter()
        try:
            # buckets with gradients that never came (unused parameters): start them now,
            # in order, so every rank issues the same collectives
            while self._next < len(self._buckets):
                self._launch(self._next)
            for b, (bucket, work) in enumerate(zip(self._buckets, self._works)):
                if b in self._stale:     # a gradient grew after the bucket started
                    work.wait()
                    work = bucket.start(self.comm, f"allreduce of gradient bucket {b + 1} "
                                                   "(again, after a later gradient)")
                work.wait()
                bucket.write_back()
        finally:
            self._reset_reduction()
            self.timings["wait_s"] = time.perf_counter() - started

    def _sync_state(self, tensors):
        """Overwrite ``tensors`` with rank 0's, one broadcast per dtype and device."""
        if self.comm.size == 1:
            return
        groups = {}
        for t in tensors:
            key = (str(t.dtype), str(backend.device_of(t.array)))
            groups.setdefault(key, []).append(t)
        for key in sorted(groups):
            members = groups[key]
            xp = backend.get_array_module(members[0].array)
            flat = xp.concatenate([t.array.reshape(-1) for t in members])
            self.comm.broadcast(flat, root=0, what=f"broadcast of rank 0's {key[0]} "
                                                   "parameters and buffers")
            offset = 0
            for t in members:
                n = t.array.size
                t.array[...] = flat[offset:offset + n].reshape(t.array.shape)
                offset += n

    def extra_repr(self):
        return (f"rank {self.comm.rank} of {self.comm.size}, {len(self._buckets)} gradient "
                f"bucket(s), broadcast_buffers={self.broadcast_buffers}")


class _Bucket:
    """Parameters whose gradients are reduced together, as one flat array."""

    def __init__(self, params):
        self.params = params
        self.nbytes = sum(p.numel() * p.dtype.itemsize for p in params)
        self.flat = None

    def start(self, comm, what):
        grads = []
        for p in self.params:
            if p.grad is None:           # unused here: contributes zeros
                xp = backend.get_array_module(p.array)
                p.grad = Tensor._wrap(xp.zeros(p.shape, dtype=p.dtype))
            grads.append(p.grad.array.reshape(-1))
        xp = backend.get_array_module(*grads)
        self.flat = xp.concatenate(grads)
        if comm.size > 1:
            self.flat /= comm.size
        return comm.allreduce_async(self.flat, what)

    def write_back(self):
        offset = 0
        for p in self.params:
            n = p.numel()
            p.grad.array[...] = self.flat[offset:offset + n].reshape(p.shape)
            offset += n
        self.flat = None


def _make_buckets(params, cap_bytes):
    """Parameters in reverse order, cut into buckets of about ``cap_bytes`` (the first one
    of 1 MB at most) holding one dtype each."""
    buckets, current, size = [], [], 0
    limit = min(_FIRST_BUCKET_BYTES, cap_bytes)
    for p in reversed(params):
        nbytes = p.numel() * p.dtype.itemsize
        if current and (size + nbytes > limit or p.dtype != current[0].dtype):
            buckets.append(_Bucket(current))
            current, size, limit = [], 0, cap_bytes
        current.append(p)
        size += nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets
