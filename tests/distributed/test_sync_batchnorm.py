"""SyncBatchNorm on threads-as-ranks (float64): the ranks' shares together normalise,
track and differentiate as one BatchNorm over the whole batch."""
import copy

import numpy as np
import pytest

import minicnn
from minicnn import distributed as dist
from minicnn import nn
from thread_ranks import run_ranks


def _net():
    minicnn.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(3 * 5 * 5, 4), nn.BatchNorm1d(4)).double()
    with minicnn.no_grad():                  # affine parameters that are not 1 and 0
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.data = minicnn.tensor(np.linspace(0.5, 1.5, m.num_features))
                m.bias.data = minicnn.tensor(np.linspace(-0.3, 0.2, m.num_features))
    return net


@pytest.mark.parametrize("sizes", [(4, 4), (3, 5)])
def test_ranks_together_equal_one_batchnorm_over_the_whole_batch(sizes):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((sum(sizes), 2, 5, 5)) * 2 + 1
    upstream = rng.standard_normal((sum(sizes), 4))
    # one process, the whole batch; the loss is a sum, so that it splits over the ranks
    reference = _net()
    xt = minicnn.tensor(x, requires_grad=True)
    (reference(xt) * minicnn.tensor(upstream)).sum().backward()
    starts = np.cumsum((0,) + sizes)

    nets = [dist.SyncBatchNorm.convert_sync_batchnorm(_net()) for _ in sizes]  # one thread

    def rank(r, comm):
        net = nets[r]
        for m in net.modules():
            if isinstance(m, dist.SyncBatchNorm):
                m.process_group = comm
        part = slice(starts[r], starts[r + 1])
        xr = minicnn.tensor(x[part], requires_grad=True)
        out = net(xr)
        (out * minicnn.tensor(upstream[part])).sum().backward()
        sync = [m for m in net.modules() if isinstance(m, dist.SyncBatchNorm)]
        return (out.numpy(), xr.grad.numpy(), [m.running_var.numpy() for m in sync],
                {n: p.grad.numpy() for n, p in net.named_parameters()}, len(sync))
    results = run_ranks(2, rank)
    outs = np.concatenate([r[0] for r in results])
    grads = np.concatenate([r[1] for r in results])
    np.testing.assert_allclose(grads, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert results[0][4] == 2
    # parameter gradients: local parts that add up to the whole batch's
    for name, p in reference.named_parameters():
        total = results[0][3][name] + results[1][3][name]
        np.testing.assert_allclose(total, p.grad.numpy(), rtol=1e-10, atol=1e-12)
    # the output of the first forward equals the whole batch's in training mode
    again = _net()
    np.testing.assert_allclose(outs, again(minicnn.tensor(x)).numpy(), rtol=1e-10, atol=1e-12)
    for r in results:       # every rank tracks the whole batch's statistics
        np.testing.assert_allclose(r[2][0], again[1].running_var.numpy(), rtol=1e-12)
        np.testing.assert_allclose(r[2][1], again[5].running_var.numpy(), rtol=1e-12)


def test_convert_keeps_the_objects_and_eval_is_batchnorm():
    net = _net()
    weight, running = net[1].weight, net[1].running_mean
    net.eval()
    converted = dist.SyncBatchNorm.convert_sync_batchnorm(net)
    assert converted is net and isinstance(net[1], dist.SyncBatchNorm)
    assert net[1].weight is weight and net[1]._buffers["running_mean"] is running
    assert not net[1].training
    x = minicnn.tensor(np.random.default_rng(1).standard_normal((3, 2, 5, 5)))
    np.testing.assert_allclose(net(x).numpy(), _net().eval()(x).numpy(), rtol=1e-12)
    assert set(net.state_dict()) == set(_net().state_dict())


def test_one_rank_is_batchnorm(monkeypatch):
    x = minicnn.tensor(np.random.default_rng(2).standard_normal((6, 2, 5, 5)))
    net = dist.SyncBatchNorm.convert_sync_batchnorm(_net(),
                                                    process_group=dist.LocalCommunicator())
    np.testing.assert_allclose(net(x).numpy(), _net()(x).numpy(), rtol=1e-12)
