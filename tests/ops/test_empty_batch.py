"""An empty batch (N = 0) does what PyTorch does, on the fast path and the reference:
empty outputs, empty input gradients, zero parameter gradients, and batch norm's running
statistics left as they are (never NaN)."""
import numpy as np
import pytest

import minicnn
import minicnn.nn as nn
import minicnn.nn.functional as F
from kernels import dispatch


def _both(torch, build, make_input, *, loss=lambda y: y.sum()):
    """Run the same module built in both libraries on an empty input; compare outputs,
    gradients and buffers."""
    ours, theirs = build(nn), build(torch.nn)
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    x = make_input()
    xm = minicnn.tensor(x, requires_grad=x.dtype.kind == "f")
    xt = torch.tensor(x, requires_grad=x.dtype.kind == "f")
    ym, yt = ours(xm), theirs(xt)
    assert tuple(ym.shape) == tuple(yt.shape)
    loss(ym).backward()
    loss(yt).backward()
    assert tuple(xm.grad.shape) == tuple(xt.grad.shape)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy(), err_msg=name)
    for (name, b), (_, c) in zip(ours.named_buffers(), theirs.named_buffers()):
        np.testing.assert_array_equal(b.numpy(), c.numpy(), err_msg=name)
    return ours


@pytest.fixture(params=["auto", "reference"])
def kernels(request):
    with dispatch.kernels(request.param):
        yield request.param


def test_conv2d_on_an_empty_batch(torch, kernels):
    _both(torch, lambda m: m.Conv2d(3, 4, 3, padding=1),
          lambda: np.zeros((0, 3, 8, 8), np.float32))


def test_conv_transpose2d_on_an_empty_batch(torch, kernels):
    _both(torch, lambda m: m.ConvTranspose2d(3, 4, 3, stride=2),
          lambda: np.zeros((0, 3, 5, 5), np.float32))


def test_batch_norm_on_an_empty_batch_keeps_its_statistics(torch, kernels):
    module = _both(torch, lambda m: m.BatchNorm2d(3),
                   lambda: np.zeros((0, 3, 4, 4), np.float32))
    assert module.num_batches_tracked.item() == 1        # as torch: counted, not used
    assert np.isfinite(module.running_var.numpy()).all()
    module.eval()
    assert tuple(module(minicnn.zeros(0, 3, 4, 4)).shape) == (0, 3, 4, 4)


def test_pooling_and_linear_on_an_empty_batch(torch, kernels):
    _both(torch, lambda m: m.Sequential(m.MaxPool2d(2), m.AvgPool2d(2), m.Flatten(),
                                        m.Linear(3, 5)),
          lambda: np.zeros((0, 3, 4, 4), np.float32))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("target", ["indices", "probabilities"])
def test_cross_entropy_on_an_empty_batch(torch, reduction, target):
    x = np.zeros((0, 3), np.float64)
    t = np.zeros(0, np.int64) if target == "indices" else np.zeros((0, 3), np.float64)
    xm, xt = minicnn.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    lm = F.cross_entropy(xm, minicnn.tensor(t), reduction=reduction)
    lt = torch.nn.functional.cross_entropy(xt, torch.tensor(t), reduction=reduction)
    np.testing.assert_array_equal(lm.numpy(), lt.detach().numpy())   # nan for the mean
    lm.sum().backward()
    lt.sum().backward()
    assert xm.grad.shape == tuple(xt.grad.shape) == (0, 3)
