"""Backend: array modules, devices, dtypes, seeded generators, and the CUDA error."""
import numpy as np
import pytest

import minicnn as mc
from minicnn import backend


def test_get_array_module_defaults_to_numpy():
    assert backend.get_array_module(np.ones(2), 3.0, None, mc.ones(2)) is np


def test_device_parsing():
    assert str(mc.device("cpu")) == "cpu"
    assert mc.device("cuda") == "cuda:0"
    assert mc.device("cuda:1").index == 1
    for bad in ("gpu", "cuda:x", "cpu:0", ""):
        with pytest.raises(ValueError, match="device"):
            mc.device(bad)
    with pytest.raises(TypeError, match="device"):
        mc.device(3)


def test_cuda_request_without_cupy_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cupy_error", "CuPy is not installed (test)")
    with pytest.raises(RuntimeError, match="device 'cuda' was requested but CuPy is not installed"):
        mc.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="CuPy"):
        mc.ones(2).to("cuda")
    assert not mc.cuda.is_available()
    assert mc.ones(2).to("cpu").device == "cpu"       # the CPU keeps working


def test_manual_seed_fixes_random_tensors():
    mc.manual_seed(123)
    a = mc.randn(4, 4).numpy()
    mc.manual_seed(123)
    b = mc.randn(4, 4).numpy()
    mc.manual_seed(124)
    c = mc.randn(4, 4).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="manual_seed"):
        mc.manual_seed(-1)


def test_rng_state_round_trip():
    mc.manual_seed(5)
    mc.rand(3)
    state = backend.get_rng_state()
    a = mc.rand(5).numpy()
    backend.set_rng_state(state)
    np.testing.assert_array_equal(mc.rand(5).numpy(), a)


def test_default_dtype():
    assert mc.get_default_dtype() == np.float32
    assert mc.randn(2).dtype == np.float32 and mc.tensor([1.5]).dtype == np.float32
    mc.set_default_dtype(np.float64)
    try:
        assert mc.zeros(2).dtype == np.float64 and mc.tensor([0.5]).dtype == np.float64
    finally:
        mc.set_default_dtype(np.float32)
    with pytest.raises(ValueError, match="float32 or float64"):
        mc.set_default_dtype(np.int32)


def test_uniform_and_normal_statistics():
    x = mc.rand(200_000).numpy()
    assert 0 <= x.min() and x.max() < 1 and abs(x.mean() - 0.5) < 0.01
    y = mc.randn(200_000).numpy()
    assert abs(y.mean()) < 0.01 and abs(y.std() - 1) < 0.01
