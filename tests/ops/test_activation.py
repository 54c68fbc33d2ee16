"""Activations: forward and gradient against torch over drawn shapes and hyper-parameters
(float64 tight, float32 loose), the gradient conventions at every kink, finite
differences, extreme inputs, the erf behind the exact GELU, and every error."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from minicnn import backend
from minicnn import functional as F
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch

from kernels import special

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
SHAPES = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)
SEEDS = st.integers(0, 2**31 - 1)


def _both_dtypes(mc_fn, th_fn, inputs, **kw):
    for dtype in (np.float64, np.float32):
        compare_with_torch(mc_fn, th_fn, inputs, dtype=dtype, **kw)


# (name, drawn keyword arguments) for every activation with parameters
PARAMS = {
    "leaky_relu": st.fixed_dictionaries({"negative_slope": st.floats(-0.5, 2.0)}),
    "elu": st.fixed_dictionaries({"alpha": st.floats(0.1, 3.0)}),
    "gelu": st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])}),
    "relu6": st.just({}),
    "hardtanh": st.tuples(st.floats(-2, 0.5), st.floats(0, 2)).map(
        lambda p: {"min_val": min(p), "max_val": max(p)}),
    "softplus": st.fixed_dictionaries({"beta": st.sampled_from([0.5, 1.0, 2.0, -1.0]),
                                       "threshold": st.sampled_from([1.0, 5.0, 20.0])}),
    "silu": st.just({}),
}


@pytest.mark.parametrize("name", list(PARAMS))
@SETTINGS
@given(data=st.data(), shape=SHAPES, seed=SEEDS, scale=st.sampled_from([0.5, 3.0, 10.0]))
def test_matches_torch(name, data, shape, seed, scale, torch):
    kw = data.draw(PARAMS[name])
    x = scale * np.random.default_rng(seed).standard_normal(shape)
    _both_dtypes(lambda a: getattr(F, name)(a, **kw),
                 lambda a: getattr(torch.nn.functional, name)(a, **kw), [x],
                 name=f"{name} {kw}")


# Gradients exactly at a kink: each convention is torch's.
KINKS = [
    ("relu", {}, [0.0], [0.0]),
    ("leaky_relu", {"negative_slope": 0.1}, [0.0], [0.1]),
    ("elu", {"alpha": 2.0}, [0.0], [2.0]),
    ("relu6", {}, [0.0, 6.0], [0.0, 0.0]),
    ("hardtanh", {}, [-1.0, 1.0], [0.0, 0.0]),
    ("hardtanh", {"min_val": -0.5, "max_val": 2.0}, [-0.5, 2.0], [0.0, 0.0]),
    ("softplus", {"beta": 2.0, "threshold": 2.0}, [1.0], [1 / (1 + math.exp(-2.0))]),
]


@pytest.mark.parametrize("name,kw,points,expected", KINKS,
                         ids=[f"{k[0]}{k[1]}" for k in KINKS])
def test_gradient_at_kinks_matches_torch(name, kw, points, expected, torch):
    x = mc.tensor(points, dtype=np.float64, requires_grad=True)
    getattr(F, name)(x, **kw).sum().backward()
    xt = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    getattr(torch.nn.functional, name)(xt, **kw).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def _kink_free(rng, shape, kinks, scale=2.0, gap=0.05):
    x = scale * rng.standard_normal(shape)
    for k in kinks:
        x = np.where(np.abs(x - k) < gap, k + 2 * gap * np.sign(x - k + 1e-300), x)
    return x


GRADCHECK = [
    ("leaky_relu", {"negative_slope": 0.3}, (0.0,)),
    ("elu", {"alpha": 0.7}, (0.0,)),
    ("gelu", {}, ()),
    ("gelu", {"approximate": "tanh"}, ()),
    ("relu6", {}, (0.0, 6.0)),
    ("hardtanh", {"min_val": -0.3, "max_val": 0.8}, (-0.3, 0.8)),
    ("softplus", {"beta": 1.5, "threshold": 2.0}, (2.0 / 1.5,)),
    ("silu", {}, ()),
]


@pytest.mark.parametrize("name,kw,kinks", GRADCHECK, ids=[f"{g[0]}{g[1]}" for g in GRADCHECK])
def test_finite_differences(name, kw, kinks, rng):
    x = mc.tensor(_kink_free(rng, (3, 4), kinks, scale=3.0), requires_grad=True)
    gradcheck(lambda a: getattr(F, name)(a, **kw), x)


@pytest.mark.parametrize("name", list(PARAMS))
def test_extreme_inputs_stay_finite_and_match_torch(name, torch):
    x = np.array([-1e4, -1000.0, -88.0, -30.0, 30.0, 88.0, 1000.0, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no overflow warnings from NumPy
        for dtype in (np.float64, np.float32):
            t = mc.tensor(x.astype(dtype), requires_grad=True)
            y = getattr(F, name)(t)
            y.sum().backward()
            assert np.isfinite(y.numpy()).all() and np.isfinite(t.grad.numpy()).all()
            assert y.dtype == dtype and t.grad.dtype == dtype
    compare_with_torch(lambda a: getattr(F, name)(a),
                       lambda a: getattr(torch.nn.functional, name)(a), [x])


def test_softplus_is_finite_where_torch_overflows(torch):
    # log(1 + e^z) evaluated stably: a huge threshold keeps the soft branch at z = 800
    x = mc.tensor([800.0, -800.0], requires_grad=True)
    y = F.softplus(x, threshold=1000.0)
    y.sum().backward()
    np.testing.assert_allclose(y.numpy(), [800.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 0.0], atol=1e-12)
    assert math.isinf(torch.nn.functional.softplus(torch.tensor([800.0], dtype=torch.float64),
                                                   threshold=1000.0).item())


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "relu6", "hardtanh", "silu"])
def test_inplace_is_accepted_and_leaves_the_input_alone(name):
    x = mc.tensor([-1.0, 0.5, 7.0])
    before = x.numpy().copy()
    y = getattr(F, name)(x, inplace=True)
    np.testing.assert_array_equal(x.numpy(), before)
    assert y is not x


def test_core_activations_still_work(torch):
    x = np.random.default_rng(1).standard_normal((3, 4))
    for name in ("relu", "sigmoid", "tanh"):
        compare_with_torch(getattr(F, name), getattr(torch, name), [x])
    compare_with_torch(lambda a: F.softmax(a, dim=1), lambda a: a.softmax(1), [x])
    compare_with_torch(lambda a: F.log_softmax(a, dim=0), lambda a: a.log_softmax(0), [x])


def test_no_gradient_saved_without_requires_grad():
    fn = F.activation.GELU("none")
    fn(mc.tensor([0.5, -0.2]))
    assert not hasattr(fn, "slope")


# ---------------------------------------------------------------------------- erf

ERF_POINTS = np.concatenate([np.linspace(-7, 7, 2801), [0.0, 1e-300, -1e-12, 2.5, -2.5,
                                                         2.4999999, 6.0, 40.0, 1e300]])


def test_erf_cpu_matches_math_erf():
    expected = np.array([math.erf(v) for v in ERF_POINTS])
    np.testing.assert_array_equal(special.erf_cpu(ERF_POINTS), expected)
    finite32 = np.abs(ERF_POINTS) < 1e30
    out32 = special.erf_cpu(ERF_POINTS[finite32].astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, expected[finite32], rtol=1e-6, atol=1e-7)


def test_erf_reference_is_accurate_everywhere():
    expected = np.array([math.erf(v) for v in ERF_POINTS])
    got = special.erf_reference(np, ERF_POINTS)
    np.testing.assert_allclose(got, expected, rtol=4e-15, atol=1e-300)
    odd = special.erf_reference(np, np.array([-0.0, -np.inf, np.inf, np.nan, -1e300]))
    assert np.signbit(odd[0]) and list(odd[1:3]) == [-1.0, 1.0] and np.isnan(odd[3])
    assert odd[4] == -1.0


def test_backend_erf_on_the_cpu_is_numba():
    x = np.array([-1.0, 0.3])
    np.testing.assert_array_equal(backend.erf(x), special.erf_cpu(x))


def test_erf_rejects_integers():
    with pytest.raises(TypeError, match="floating-point"):
        special.erf_cpu(np.arange(3))


# ------------------------------------------------------------------------- errors

def test_gelu_rejects_an_unknown_approximation():
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh', got 'fast'"):
        F.gelu(mc.tensor([1.0]), approximate="fast")


def test_hardtanh_rejects_min_above_max():
    with pytest.raises(ValueError, match=r"hardtanh: min_val \(2\) cannot be greater than max_val \(1\)"):
        F.hardtanh(mc.tensor([1.0]), 2, 1)


def test_softplus_rejects_beta_zero():
    with pytest.raises(ValueError, match="softplus: beta must be non-zero"):
        F.softplus(mc.tensor([1.0]), beta=0)


@pytest.mark.parametrize("name", list(PARAMS))
def test_integer_input_is_rejected(name):
    with pytest.raises(TypeError, match=f"{name}: expected a floating-point input, got dtype int64"):
        getattr(F, name)(mc.tensor(np.arange(3)))
