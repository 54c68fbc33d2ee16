"""Run by tests/distributed/test_mpi.py, under ``mpiexec -n N`` or alone.

    python ddp_worker.py equivalence MODEL STEPS GLOBAL_BATCH OUT.npz [DTYPE]
        trains MODEL for STEPS steps of SGD (momentum, weight decay) on fixed random data,
        each rank on its 1/N of every global batch (DistributedDataParallel over a
        DistributedSampler); rank 0 saves the final weights. Alone, with N = 1, it is the
        one-process reference. Batch normalisation layers become SyncBatchNorm, so that
        the ranks normalise with the global batch's statistics (alone: BatchNorm).
        DTYPE: float32 (default) or float64.
    python ddp_worker.py die SECONDS
        rank 1 leaves at once; rank 0 tries an allreduce with a SECONDS deadline and
        prints the error it gets.
"""
import sys
import time

import numpy as np

import minicnn
from minicnn import distributed as dist
from minicnn import models, optim
from minicnn.data import DataLoader, TensorDataset
from minicnn.nn import functional as F


def equivalence(model_name, steps, global_batch, out, dtype="float32"):
    comm = dist.init_process_group()
    minicnn.manual_seed(0)
    if model_name == "lenet5":
        model, shape = models.get_model("lenet5", num_classes=10, in_channels=1,
                                        input_size=28), (1, 28, 28)
    else:
        model, shape = models.get_model(model_name, num_classes=10, in_channels=3), (3, 16, 16)
    data = np.random.default_rng(1)
    images = data.standard_normal((global_batch * steps,) + shape).astype(dtype)
    model.to(np.dtype(dtype))
    labels = data.integers(0, 10, len(images))
    if comm.rank == 1:      # another rank's initial weights: the broadcast must replace them
        for p in model.parameters():
            p.data = p.array * 0 + 0.5
    # batch statistics over the global batch, as the one process computes them
    model = dist.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = dist.DistributedDataParallel(model, bucket_cap_mb=0.05)
    dataset = TensorDataset(minicnn.tensor(images), minicnn.tensor(labels))
    sampler = dist.DistributedSampler(dataset, shuffle=True, seed=5)
    loader = DataLoader(dataset, batch_size=global_batch // comm.size, sampler=sampler)
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for x, y in loader:
        optimizer.zero_grad()
        F.cross_entropy(ddp(x), y).backward()
        optimizer.step()
    if comm.rank == 0:
        np.savez(out, **{k: v.numpy() for k, v in model.state_dict().items()},
                 _buckets=len(ddp._buckets))


def die(seconds):
    comm = dist.init_process_group(timeout=float(seconds))
    if comm.rank == 1:
        sys.exit(0)
    started = time.monotonic()
    try:
        comm.allreduce(np.ones(4), "allreduce of a test array")
    except dist.DistributedTimeoutError as exc:
        print(f"rank 0 stopped after {time.monotonic() - started:.1f} s: {exc}", flush=True)
        sys.exit(3)
    print("the allreduce completed: rank 1 did not die", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "equivalence":
        equivalence(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], *sys.argv[6:])
    else:
        die(sys.argv[2])
