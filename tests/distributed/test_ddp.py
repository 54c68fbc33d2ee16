"""DistributedDataParallel on a test communicator whose ranks are threads: the average it
computes (float64, tight), when its buckets start, no_sync, the broadcasts, deadlines."""
import copy

import numpy as np
import pytest
from thread_ranks import run_ranks as ranks

import minicnn
from minicnn import distributed as dist
from minicnn import nn
from minicnn.nn import functional as F


def _model(seed=0):
    minicnn.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                         nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).double()


# buckets of 600 bytes: four for _model()
PER_LAYER = 600 / 2 ** 20


def _batch(rank, n=5):
    rng = np.random.default_rng(10 + rank)
    return (minicnn.tensor(rng.standard_normal((n, 6))),
            minicnn.tensor(rng.integers(0, 3, n)))


def _reference_grads(model, batches):
    """Gradients of the mean of the ranks' mean losses, in one process."""
    model = copy.deepcopy(model)
    loss = sum(F.cross_entropy(model(x), y) for x, y in batches) * (1.0 / len(batches))
    loss.backward()
    return [p.grad.numpy() for p in model.parameters()]


def test_gradients_are_averaged_over_the_ranks():
    base = _model()
    expected = _reference_grads(base, [_batch(0), _batch(1)])

    def rank(r, comm):
        model = copy.deepcopy(base)
        ddp = dist.DistributedDataParallel(model, process_group=comm, bucket_cap_mb=PER_LAYER)
        x, y = _batch(r)
        F.cross_entropy(ddp(x), y).backward()
        return [p.grad.numpy() for p in model.parameters()], len(ddp._buckets)
    for grads, buckets in ranks(2, rank):
        assert buckets == 4
        for g, e in zip(grads, expected):
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


def test_buckets_start_in_order_while_backward_still_runs():
    base = _model()

    def rank(r, comm):
        model = copy.deepcopy(base)
        params = list(model.parameters())
        ddp = dist.DistributedDataParallel(model, process_group=comm, bucket_cap_mb=PER_LAYER)
        started = []
        launch = comm.allreduce_async

        def watching(array, what):
            # how many parameters still await their gradient as this bucket starts
            started.append((what, sum(p.grad is None for p in params)))
            return launch(array, what)
        comm.allreduce_async = watching
        x, y = _batch(r)
        F.cross_entropy(ddp(x), y).backward()
        index = {id(p): i for i, p in enumerate(params)}
        buckets = [[index[id(p)] for p in b.params] for b in ddp._buckets]
        return started, buckets
    for started, buckets in ranks(2, rank):
        # reverse registration order (backward reaches the last layer first), a bucket
        # closed when the next parameter would pass 600 bytes: biases of 24/64/64/64 bytes
        # and weights of 192/512/512/384
        assert buckets == [[7, 6, 5], [4, 3], [2, 1], [0]]
        assert [w.split(" of ")[1] for w, _ in started] == [
            f"gradient bucket {i}" for i in (1, 2, 3, 4)]
        # the first two started with earlier layers' gradients still to come (a layer
        # delivers its weight's gradient, then its bias's)
        assert [waiting for _, waiting in started] == [4, 2, 0, 0]


def test_no_sync_accumulates_locally_then_averages_the_sum():
    base = _model()
    micro = {r: [_batch(r, 3), _batch(r + 5, 4)] for r in (0, 1)}
    # the accumulated gradient of each rank is the sum of its micro-batches' mean losses
    expected = _reference_grads(base, [micro[0][0], micro[0][1], micro[1][0], micro[1][1]])
    expected = [2 * e for e in expected]

    def rank(r, comm):
        model = copy.deepcopy(base)
        ddp = dist.DistributedDataParallel(model, process_group=comm, bucket_cap_mb=PER_LAYER)
        before = len(comm.log)
        with ddp.no_sync():
            x, y = micro[r][0]
            F.cross_entropy(ddp(x), y).backward()
        inside = len(comm.log) - before
        local = [p.grad.numpy().copy() for p in model.parameters()]
        x, y = micro[r][1]
        F.cross_entropy(ddp(x), y).backward()
        return inside, local, [p.grad.numpy() for p in model.parameters()]
    (in0, local0, g0), (in1, local1, g1) = ranks(2, rank)
    assert in0 == in1 == 0                         # no collective inside no_sync
    assert not np.allclose(local0[0], local1[0])   # the ranks' gradients differ there
    for a, b, e in zip(g0, g1, expected):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b, e, rtol=1e-12, atol=1e-14)


def test_rank_0s_weights_and_buffers_win():
    def rank(r, comm):
        model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
        for p in model.parameters():
            p.data = p.array * 0 + (1.0 + r)
        ddp = dist.DistributedDataParallel(model, process_group=comm)
        weights = model[0].weight.numpy().copy()
        model[1].running_mean.array[...] = 3.0 + r       # the ranks drift apart
        ddp.eval()
        ddp(minicnn.ones(1, 1, 4, 4))
        return weights, model[1].running_mean.numpy(), ddp.module is model
    for weights, running_mean, same in ranks(2, rank):
        assert same
        np.testing.assert_array_equal(weights, 1.0)
        np.testing.assert_array_equal(running_mean, 3.0)  # broadcast before the forward


def test_a_tied_weight_and_an_unused_parameter_are_averaged():
    minicnn.manual_seed(3)
    layer, unused = nn.Linear(4, 4).double(), nn.Linear(2, 2).double()
    inputs = {r: minicnn.tensor(np.random.default_rng(r).standard_normal((3, 4)))
              for r in (0, 1)}
    reference = copy.deepcopy(layer)
    loss = sum((reference(reference(inputs[r])) ** 2).mean() for r in (0, 1)) * 0.5
    loss.backward()

    def rank(r, comm):
        model = nn.ModuleDict({"unused": copy.deepcopy(unused), "layer": copy.deepcopy(layer)})

        class Twice(nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = model

            def forward(self, x):
                return self.inner["layer"](self.inner["layer"](x))
        net = Twice()
        ddp = dist.DistributedDataParallel(net, process_group=comm, bucket_cap_mb=0.0001)
        (ddp(inputs[r]) ** 2).mean().backward()
        return (model["layer"].weight.grad.numpy(), model["unused"].weight.grad.numpy(),
                [what for kind, what in comm.log if kind == "allreduce"])
    for weight_grad, unused_grad, log in ranks(2, rank):
        # buckets [layer.bias], [layer.weight], [unused.bias, unused.weight]: the first two
        # start after the outer use's gradients and again after the inner use's
        assert len(log) == 5 and sum("again" in what for what in log) == 2
        np.testing.assert_allclose(weight_grad, reference.weight.grad.numpy(), rtol=1e-12)
        np.testing.assert_array_equal(unused_grad, 0.0)


def test_a_collective_past_its_deadline_raises_a_clear_error():
    work = dist.Work(lambda: False, lambda: None, "allreduce of gradient bucket 2 of 3",
                     rank=1, size=4, timeout=0.05)
    with pytest.raises(dist.DistributedTimeoutError,
                       match=r"allreduce of gradient bucket 2 of 3 on rank 1 of 4 did not "
                             r"complete within 0.05 s: another rank has stopped"):
        work.wait()


def test_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("MINICNN_DIST_TIMEOUT", "2.5")
    assert dist.LocalCommunicator().timeout == 2.5
    monkeypatch.setenv("MINICNN_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="MINICNN_DIST_TIMEOUT must be a positive number"):
        dist.default_timeout()
    monkeypatch.delenv("MINICNN_DIST_TIMEOUT")
    assert dist.default_timeout() == 1800
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        dist.LocalCommunicator(timeout=0)


def test_a_group_of_one_without_mpiexec(monkeypatch):
    monkeypatch.setattr(dist.process_group, "_group", None)
    comm = dist.init_process_group()
    try:
        assert (dist.get_rank(), dist.get_world_size(), dist.is_initialized()) == (0, 1, True)
        dist.barrier()
        t = minicnn.tensor([1.0, 2.0])
        np.testing.assert_array_equal(dist.all_reduce(t).numpy(), [1.0, 2.0])
        assert comm.broadcast_object({"a": 1}) == {"a": 1}
        with pytest.raises(RuntimeError, match="already initialized"):
            dist.init_process_group()
    finally:
        dist.destroy_process_group()
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="call minicnn.distributed.init_process_group"):
        dist.barrier()
    with pytest.raises(ValueError, match="backend must be one of"):
        dist.init_process_group(backend="gloo")


def test_ddp_refuses_what_is_not_a_module():
    with pytest.raises(TypeError, match="DistributedDataParallel: module must be a "
                                        "minicnn.nn.Module, got list"):
        dist.DistributedDataParallel([], process_group=dist.LocalCommunicator())


def test_ranks_on_one_machine_share_its_cores(monkeypatch):
    import numba
    import threadpoolctl
    from minicnn.distributed import process_group
    for name in process_group._THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")
    monkeypatch.setattr(process_group.os, "cpu_count", lambda: 4)
    numba_before = numba.get_num_threads()
    with threadpoolctl.threadpool_limits(None):      # restores the BLAS pools after
        try:
            assert process_group._share_cores(None) == 2
            assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)
            assert all(p["num_threads"] <= 2 for p in threadpoolctl.threadpool_info())
        finally:
            numba.set_num_threads(numba_before)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")       # the user's choice stands
    assert process_group._share_cores(None) is None


def test_the_trainer_refuses_a_task_whose_metrics_it_cannot_sum():
    from minicnn.train import Detection, Trainer
    from minicnn import optim
    model = nn.Linear(2, 2)
    ddp = dist.DistributedDataParallel(model, process_group=dist.LocalCommunicator())
    with pytest.raises(NotImplementedError, match="Detection's metrics cannot be summed"):
        Trainer(ddp, optim.SGD(model.parameters(), lr=0.1), task=Detection(2))


def test_epoch_means_are_summed_over_ranks_even_where_a_rank_saw_nothing():
    from minicnn.train import Accuracy, Mean

    def rank(r, comm):
        mean, accuracy = Mean(), Accuracy()
        if r == 0:
            mean.update({"loss": 2.0}, 3)
            accuracy.update(minicnn.tensor([[0.0, 1.0]] * 3), (None, minicnn.tensor([1, 1, 0])))
        else:
            mean.update({"loss": 4.0}, 1)
        if r == 2:
            mean = Mean()                    # this rank had no batch at all
        mean.reduce(comm)
        accuracy.reduce(comm)
        return mean.compute(), mean.count, accuracy.compute()["accuracy"]
    for means, count, acc in ranks(3, rank):
        assert count == 4 and means == {"loss": pytest.approx((2.0 * 3 + 4.0) / 4)}
        assert acc == pytest.approx(2 / 3)
