"""F.normalize (x / max(‖x‖_p, eps) along a dimension) against torch.nn.functional.normalize
(values and input gradients, float64 tight and float32 loose) over hypothesis-drawn
shapes, dimensions and p; the corners that have their own rule (a zero vector, a norm
clamped by eps, tied maxima for p = inf); finite differences; errors; the device path."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from minicnn import functional as F
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch

from fake_cupy import FakeDeviceArray, install, to_device, to_host

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
P_VALUES = [2.0, 1.0, 3.0, 1.5, 0.5, float("inf")]


def _both(fn_mc, fn_torch, x, min_norm=1.0):
    """float64 tight; float32 loose, with atol grown by 1/min_norm: the gradient is a
    difference of terms of size |g|/‖x‖ that cancel (exactly, along a dimension of size
    1), so float32 rounding grows as the smallest norm shrinks."""
    compare_with_torch(fn_mc, fn_torch, [x])
    atol = 1e-5 * max(1.0, 1.0 / max(min_norm, 1e-3))
    compare_with_torch(fn_mc, fn_torch, [x], dtype=np.float32, rtol=1e-4, atol=atol)


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data(),
       p=st.sampled_from(P_VALUES), seed=st.integers(0, 2**16))
def test_matches_torch(torch, shape, data, p, seed):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    x = np.random.default_rng(seed).standard_normal(shape)
    _both(lambda a: F.normalize(a, p=p, dim=dim),
          lambda a: torch.nn.functional.normalize(a, p=p, dim=dim), x,
          min_norm=float(np.abs(x).max(axis=dim).min()))


def test_default_arguments_are_l2_across_channels(torch):
    x = np.random.default_rng(1).standard_normal((2, 6, 3, 3))
    y = F.normalize(mc.tensor(x)).numpy()
    np.testing.assert_allclose(np.sqrt((y ** 2).sum(axis=1)), 1.0, rtol=1e-12)
    _both(F.normalize, torch.nn.functional.normalize, x)


@pytest.mark.parametrize("p", P_VALUES)
def test_zero_vector_stays_zero_with_torch_gradient(torch, p):
    # a zero vector: the output is 0 and the gradient through the norm is dropped
    x = np.random.default_rng(2).standard_normal((3, 4))
    x[1] = 0.0
    x[2, 1] = 0.0                   # a zero entry in a non-zero vector (p < 1: |x|^(p-1))
    y = F.normalize(mc.tensor(x), p=p).numpy()
    assert np.all(y[1] == 0)
    _both(lambda a: F.normalize(a, p=p), lambda a: torch.nn.functional.normalize(a, p=p), x)


def test_norm_clamped_by_eps_divides_by_eps(torch):
    x = np.array([[0.3, -0.4], [3.0, 4.0]])     # norms 0.5 and 5
    y = F.normalize(mc.tensor(x), eps=1.0).numpy()
    np.testing.assert_allclose(y, [[0.3, -0.4], [0.6, 0.8]], rtol=1e-15)
    # the clamped row's gradient is g / eps only (nothing flows through its norm)
    _both(lambda a: F.normalize(a, eps=1.0),
          lambda a: torch.nn.functional.normalize(a, eps=1.0), x)
    x = mc.tensor(x, requires_grad=True)
    g = np.array([[1.0, 2.0], [0.5, -1.0]])
    F.normalize(x, eps=1.0).backward(mc.tensor(g))
    np.testing.assert_allclose(x.grad.numpy()[0], g[0], rtol=1e-15)


def test_inf_norm_shares_the_gradient_among_tied_maxima(torch):
    x = np.array([[2.0, -2.0, 1.0], [0.5, 3.0, -1.0]])
    _both(lambda a: F.normalize(a, p=float("inf")),
          lambda a: torch.nn.functional.normalize(a, p=float("inf")), x)
    np.testing.assert_allclose(F.normalize(mc.tensor(x), p=float("inf")).numpy(),
                               x / [[2.0], [3.0]])


@pytest.mark.parametrize("p, dim", [(2.0, 1), (1.0, 0), (3.0, -1), (0.7, 2),
                                    (float("inf"), 1)])
def test_gradcheck(p, dim):
    x = mc.tensor(np.random.default_rng(3).standard_normal((2, 3, 4)) + 0.1,
                  requires_grad=True)
    gradcheck(lambda a: F.normalize(a, p=p, dim=dim), x)


def test_empty_input_and_float32_dtype_kept():
    assert F.normalize(mc.zeros(0, 3)).shape == (0, 3)
    y = F.normalize(mc.tensor(np.ones((2, 3), dtype=np.float32)))
    assert y.dtype == np.float32


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(dim=2), IndexError, "dim 2 is out of range"),
    (dict(dim=-3), IndexError, "dim -3 is out of range"),
    (dict(dim=1.0), TypeError, "dim must be an int"),
    (dict(p=0), ValueError, "p must be a positive number"),
    (dict(p=-2), ValueError, "p must be a positive number"),
    (dict(p="fro"), ValueError, "p must be a positive number"),
    (dict(eps=-1e-3), ValueError, "eps must be a non-negative number"),
])
def test_bad_arguments_name_the_op(kwargs, error, words):
    with pytest.raises(error, match=f"normalize: {words}"):
        F.normalize(mc.ones(2, 3), **kwargs)


def test_bad_inputs_name_the_op():
    with pytest.raises(ValueError, match="normalize: expected an input with at least one"):
        F.normalize(mc.tensor(1.0))
    with pytest.raises(TypeError, match="normalize: expected a floating-point input"):
        F.normalize(mc.tensor(np.ones((2, 3), dtype=np.int64)))


@pytest.mark.parametrize("p", [2.0, 3.0, float("inf")])
def test_stays_on_the_device(monkeypatch, p):
    x = np.random.default_rng(4).standard_normal((2, 3, 2))
    x[0, :, 1] = 0.0
    host = mc.tensor(x, requires_grad=True)
    F.normalize(host, p=p).sum().backward()
    install(monkeypatch)
    dev = mc.Tensor._wrap(to_device(x)).requires_grad_(True)
    y = F.normalize(dev, p=p)
    assert isinstance(y.array, FakeDeviceArray)
    y.sum().backward()
    assert isinstance(dev.grad.array, FakeDeviceArray)
    np.testing.assert_allclose(to_host(dev.grad.array),
                               host.grad.numpy(), rtol=1e-14)
