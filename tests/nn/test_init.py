"""minicnn.nn.init: the same distributions as torch.nn.init (bounds, means, standard
deviations), drawn from minicnn's seeded generator, in place, keeping dtype."""
import math

import numpy as np
import pytest

import minicnn
import minicnn.nn as mnn
from minicnn.nn import init

SHAPES = [(300, 400), (64, 32, 3, 3), (40, 10, 5, 5)]


def _param(shape, dtype=np.float32):
    return mnn.Parameter(np.zeros(shape, dtype))


@pytest.mark.parametrize("shape", SHAPES)
def test_fans_match_torch(torch, shape):
    t = torch.empty(shape)
    assert init._calculate_fan_in_and_fan_out(_param(shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(t)


@pytest.mark.parametrize("name,param", [("linear", None), ("conv2d", None), ("sigmoid", None),
                                        ("tanh", None), ("relu", None), ("leaky_relu", None),
                                        ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)),
                                        ("selu", None), ("conv_transpose2d", None)])
def test_calculate_gain_matches_torch(torch, name, param):
    assert init.calculate_gain(name, param) == pytest.approx(
        torch.nn.init.calculate_gain(name, param), rel=1e-15)


def _uniform_checks(values, bound):
    """U(-b, b): inside the bounds, reaching near them, mean 0, std b/√3."""
    n = values.size
    assert values.min() >= -bound and values.max() <= bound
    assert values.min() < -0.99 * bound and values.max() > 0.99 * bound
    std = bound / math.sqrt(3)
    assert abs(values.mean()) < 5 * std / math.sqrt(n)
    assert values.std() == pytest.approx(std, rel=0.02)


def _normal_checks(values, std, mean=0.0):
    n = values.size
    assert abs(values.mean() - mean) < 5 * std / math.sqrt(n)
    assert values.std() == pytest.approx(std, rel=0.02)
    # Gaussian tails: about 4.55 % beyond two std
    assert np.mean(np.abs(values - mean) > 2 * std) == pytest.approx(0.0455, abs=0.01)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["xavier_uniform_", "kaiming_uniform_", "kaiming_uniform_a5",
                                  "kaiming_uniform_fan_out_relu", "uniform_"])
def test_uniform_initializers_match_torch_bounds(torch, shape, kind):
    name, kwargs = {
        "xavier_uniform_": ("xavier_uniform_", dict(gain=1.7)),
        "kaiming_uniform_": ("kaiming_uniform_", {}),
        "kaiming_uniform_a5": ("kaiming_uniform_", dict(a=math.sqrt(5))),
        "kaiming_uniform_fan_out_relu": ("kaiming_uniform_", dict(mode="fan_out",
                                                                  nonlinearity="relu")),
        "uniform_": ("uniform_", dict(a=-0.3, b=0.3)),
    }[kind]
    p = _param(shape)
    out = getattr(init, name)(p, **kwargs)
    assert out is p and p.dtype == np.float32 and p.shape == shape
    t = getattr(torch.nn.init, name)(torch.empty(shape), **kwargs)
    # the bound from torch's own draws (their max magnitude) agrees with ours
    tv = t.numpy()
    bound = max(-tv.min(), tv.max())
    values = p.numpy().astype(np.float64)
    _uniform_checks(values, bound * 1.001)
    assert max(-values.min(), values.max()) == pytest.approx(bound, rel=2e-3)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name,kwargs,expected_std", [
    ("xavier_normal_", dict(gain=0.5), lambda fi, fo: 0.5 * math.sqrt(2 / (fi + fo))),
    ("kaiming_normal_", {}, lambda fi, fo: math.sqrt(2 / fi)),
    ("kaiming_normal_", dict(mode="fan_out", nonlinearity="relu"),
     lambda fi, fo: math.sqrt(2 / fo)),
    ("kaiming_normal_", dict(a=0.2, nonlinearity="leaky_relu"),
     lambda fi, fo: math.sqrt(2 / (1 + 0.04)) / math.sqrt(fi)),
    ("normal_", dict(mean=0.0, std=0.05), lambda fi, fo: 0.05),
])
def test_normal_initializers_match_torch_std(torch, shape, name, kwargs, expected_std):
    p = _param(shape)
    getattr(init, name)(p, **kwargs)
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(p)
    std = expected_std(fan_in, fan_out)
    _normal_checks(p.numpy().astype(np.float64), std)
    t = getattr(torch.nn.init, name)(torch.empty(shape), **kwargs)
    assert float(t.std()) == pytest.approx(std, rel=0.02)


def test_normal_mean_and_float64():
    p = _param((200, 300), np.float64)
    init.normal_(p, mean=3.0, std=2.0)
    assert p.dtype == np.float64
    _normal_checks(p.numpy(), 2.0, mean=3.0)


def test_trunc_normal_matches_torch(torch):
    shape = (200, 300)
    p = _param(shape)
    init.trunc_normal_(p, mean=0.5, std=1.0, a=-1.0, b=1.5)
    t = torch.nn.init.trunc_normal_(torch.empty(shape), mean=0.5, std=1.0, a=-1.0, b=1.5)
    v = p.numpy().astype(np.float64)
    assert v.min() >= -1.0 and v.max() <= 1.5
    assert v.mean() == pytest.approx(float(t.mean()), abs=0.01)
    assert v.std() == pytest.approx(float(t.std()), rel=0.02)


def test_constant_ones_zeros_eye_dirac(torch):
    p = _param((3, 4))
    assert np.all(init.constant_(p, 2.5).numpy() == 2.5)
    assert np.all(init.ones_(p).numpy() == 1)
    assert np.all(init.zeros_(p).numpy() == 0)
    np.testing.assert_array_equal(init.eye_(p).numpy(), torch.nn.init.eye_(torch.empty(3, 4)))
    w = _param((4, 2, 3, 3))
    np.testing.assert_array_equal(init.dirac_(w, groups=2).numpy(),
                                  torch.nn.init.dirac_(torch.empty(4, 2, 3, 3), groups=2))


@pytest.mark.parametrize("shape", [(5, 8), (8, 5), (6, 2, 2)])
def test_orthogonal(shape):
    p = _param(shape, np.float64)
    init.orthogonal_(p, gain=2.0)
    flat = p.numpy().reshape(shape[0], -1)
    rows, cols = flat.shape
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    np.testing.assert_allclose(gram, 4.0 * np.eye(min(rows, cols)), atol=1e-10)


def test_seeded_and_in_place():
    minicnn.manual_seed(123)
    a = init.kaiming_uniform_(_param((10, 10))).numpy().copy()
    minicnn.manual_seed(123)
    p = _param((10, 10))
    array_before = p.array
    b = init.kaiming_uniform_(p).numpy()
    np.testing.assert_array_equal(a, b)
    assert p.array is array_before          # filled in place
    assert p.grad is None and p.grad_fn is None


def test_default_layer_inits_follow_torch_formulas():
    """Linear/Conv: U(±1/√fan_in) for weight and bias; ConvTranspose's fan_in is
    dim 1 × kernel area (torch's quirk); BN: weight 1, bias 0."""
    cases = [(mnn.Linear(200, 300), 200), (mnn.Conv2d(16, 300, 5), 16 * 25),
             (mnn.Conv2d(16, 320, 3, groups=4), 4 * 9),
             (mnn.ConvTranspose2d(300, 16, 5), 16 * 25)]
    for layer, fan_in in cases:
        bound = 1 / math.sqrt(fan_in)
        _uniform_checks(layer.weight.numpy().astype(np.float64), bound)
        b = layer.bias.numpy()
        assert b.min() >= -bound and b.max() <= bound and b.std() > 0.3 * bound
    bn = mnn.BatchNorm2d(5)
    assert np.all(bn.weight.numpy() == 1) and np.all(bn.bias.numpy() == 0)


def test_init_errors():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(_param((5,)))
    with pytest.raises(ValueError, match="mode 'fan_avg' is not supported"):
        init.kaiming_normal_(_param((5, 5)), mode="fan_avg")
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(TypeError, match="minicnn Tensor"):
        init.uniform_(np.zeros(3))
    with pytest.raises(TypeError, match="floating-point"):
        init.normal_(minicnn.tensor(np.zeros(3, np.int64)))
    with pytest.warns(UserWarning, match="zero-element"):
        init.kaiming_uniform_(_param((0, 3)))
