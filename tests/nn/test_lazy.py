"""Lazy layers: sizes inferred on the first call, parameters created then (in place),
PyTorch's init ranges, the class turning into Linear/Conv2d, and the documented
state_dict behaviour before the first call."""
import math

import numpy as np
import pytest

import minicnn
import minicnn.nn as mnn
from minicnn.optim import SGD


def x_of(*shape, dtype=np.float32):
    return minicnn.tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))


def test_lazy_linear_infers_in_features_and_becomes_linear(torch):
    layer = mnn.LazyLinear(7)
    assert repr(layer) == repr(torch.nn.LazyLinear(7))
    y = layer(x_of(4, 12))
    assert y.shape == (4, 7)
    assert type(layer) is mnn.Linear
    assert layer.in_features == 12 and layer.weight.shape == (7, 12)
    assert type(layer.weight) is mnn.Parameter
    assert repr(layer) == "Linear(in_features=12, out_features=7, bias=True)"
    bound = 1 / math.sqrt(12)
    assert np.abs(layer.weight.numpy()).max() <= bound and np.abs(layer.bias.numpy()).max() <= bound
    assert np.abs(layer.weight.numpy()).max() > 0.8 * bound


def test_lazy_conv_infers_in_channels_and_matches_torch(torch):
    mlayer = mnn.LazyConv2d(6, kernel_size=5, padding=2, groups=2, bias=False)
    tlayer = torch.nn.LazyConv2d(6, kernel_size=5, padding=2, groups=2, bias=False)
    assert repr(mlayer) == repr(tlayer)
    x = np.random.default_rng(1).standard_normal((2, 4, 8, 8))
    tlayer(torch.from_numpy(x).float())
    mlayer(minicnn.tensor(x.astype(np.float32)))
    assert type(mlayer) is mnn.Conv2d
    assert repr(mlayer) == repr(tlayer)
    assert list(mlayer.state_dict()) == list(tlayer.state_dict())
    assert mlayer.weight.shape == tuple(tlayer.weight.shape) == (6, 2, 5, 5)
    mlayer.load_state_dict({k: v.numpy() for k, v in tlayer.state_dict().items()})
    np.testing.assert_allclose(mlayer(minicnn.tensor(x.astype(np.float32))).numpy(),
                               tlayer(torch.from_numpy(x).float()).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_d2l_style_lenet_with_lazy_layers():
    net = mnn.Sequential(
        mnn.LazyConv2d(6, kernel_size=5, padding=2), mnn.Sigmoid(),
        mnn.AvgPool2d(kernel_size=2, stride=2),
        mnn.LazyConv2d(16, kernel_size=5), mnn.Sigmoid(),
        mnn.AvgPool2d(kernel_size=2, stride=2),
        mnn.Flatten(), mnn.LazyLinear(120), mnn.Sigmoid(), mnn.LazyLinear(84), mnn.Sigmoid(),
        mnn.LazyLinear(10))
    assert sum(p.numel() for p in net.parameters()) == 0
    net(x_of(1, 1, 28, 28))
    # LeNet-5's parameter count: 156 + 2416 + 48120 + 10164 + 850
    assert sum(p.numel() for p in net.parameters()) == 61706
    assert "LazyConv2d" not in repr(net) and "Conv2d(1, 6" in repr(net)


def test_optimizer_built_before_first_call_updates_the_materialized_parameters():
    layer = mnn.LazyLinear(3)
    params = list(layer.parameters())
    opt = SGD(layer.parameters(), lr=0.1)
    out = layer(x_of(5, 4))
    assert [id(p) for p in layer.parameters()] == [id(p) for p in params]
    before = layer.weight.numpy().copy()
    out.sum().backward()
    opt.step()
    assert not np.allclose(layer.weight.numpy(), before)
    np.testing.assert_allclose(layer.weight.numpy(), before - 0.1 * layer.weight.grad.numpy(),
                               rtol=1e-6)


def test_state_dict_before_first_call_is_a_clear_error():
    net = mnn.Sequential(mnn.Linear(3, 3), mnn.LazyLinear(4))
    with pytest.raises(RuntimeError, match=r"LazyLinear\(in_features=0, out_features=4, "
                                           r"bias=True\) does not exist yet.*forward call"):
        net.state_dict()
    with pytest.raises(RuntimeError, match="does not exist yet"):
        net[1].weight.shape


def test_load_state_dict_materializes_lazy_layers():
    src = mnn.Sequential(mnn.LazyConv2d(4, 3), mnn.Flatten(), mnn.LazyLinear(2))
    src(x_of(2, 3, 5, 5))
    dst = mnn.Sequential(mnn.LazyConv2d(4, 3), mnn.Flatten(), mnn.LazyLinear(2))
    dst.load_state_dict({k: v.numpy() for k, v in src.state_dict().items()})
    assert type(dst[0]) is mnn.Conv2d and dst[0].in_channels == 3
    assert type(dst[2]) is mnn.Linear and dst[2].in_features == 36
    x = x_of(2, 3, 5, 5)
    np.testing.assert_array_equal(dst(x).numpy(), src(x).numpy())


def test_load_state_dict_into_lazy_layer_checks_what_it_can():
    layer = mnn.LazyLinear(4)
    with pytest.raises(RuntimeError, match="Size mismatch: weight: checkpoint shape \\(5, 3\\)"):
        layer.load_state_dict({"weight": np.zeros((5, 3), np.float32),
                               "bias": np.zeros(4, np.float32)})
    fresh = mnn.LazyLinear(4)
    with pytest.raises(RuntimeError, match="weight has shape \\(4,\\), which does not fit"):
        fresh.load_state_dict({"weight": np.zeros(4, np.float32), "bias": np.zeros(4, np.float32)})


def test_lazy_dtype_follows_to_before_first_call():
    layer = mnn.LazyLinear(3).double()
    y = layer(x_of(2, 5, dtype=np.float64))
    assert layer.weight.dtype == np.float64 and y.dtype == np.float64


def test_lazy_input_errors():
    with pytest.raises(ValueError, match=r"LazyConv2d\(0, 4.*4-D input"):
        mnn.LazyConv2d(4, 3)(x_of(5, 5))
    with pytest.raises(ValueError, match=r"3 channels, which is not divisible by groups=2"):
        mnn.LazyConv2d(4, 3, groups=2)(x_of(1, 3, 5, 5))
    layer = mnn.LazyLinear(2)
    layer(x_of(3, 4))
    with pytest.raises(ValueError, match=r"Linear\(in_features=4.*expected input with 4"):
        layer(x_of(3, 5))       # the size is fixed after the first call
