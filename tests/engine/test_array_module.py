"""One code path for NumPy and CuPy, checked without a GPU.

Every registered op case runs on ``FakeDeviceArray`` inputs (arrays that claim to live on
the GPU, see fake_cupy.py). The outputs and every input gradient must still be device
arrays with the values the NumPy path gives: an op that calls ``np.`` on data, or pulls an
array to the host, fails here.
"""
import numpy as np
import pytest

import minicnn as mc
from minicnn import backend
from minicnn.utils import opcheck

from fake_cupy import FakeDeviceArray, install, to_device, to_host

CASES = opcheck.cases()


def _run(case, inputs, on_device):
    tensors = []
    for v in inputs:
        if isinstance(v, np.ndarray):
            arr = v.astype(np.float64) if v.dtype.kind == "f" else v
            arr = to_device(arr.copy()) if on_device else arr.copy()
            t = mc.Tensor._wrap(arr)
            if v.dtype.kind == "f":
                t.requires_grad_(True)
            tensors.append(t)
        else:
            tensors.append(v)
    mc.manual_seed(0)
    out = case.fn(*tensors)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    float_outs = [o for o in outs if isinstance(o, mc.Tensor) and o.requires_grad]
    if float_outs:
        total = None
        for k, o in enumerate(float_outs):
            up = np.random.default_rng(k).standard_normal(o.shape)
            up = to_device(up) if on_device else up
            term = (o * mc.Tensor._wrap(up)).sum()
            total = term if total is None else total + term
        total.backward()
    grads = [t.grad.array if isinstance(t, mc.Tensor) and t.grad is not None else None
             for t in tensors]
    return [o.array for o in outs if isinstance(o, mc.Tensor)], grads


@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}[{c.label}]" for c in CASES])
def test_op_stays_on_device(case, monkeypatch):
    inputs = case.make_inputs(np.random.default_rng(0))
    host_outs, host_grads = _run(case, inputs, on_device=False)
    install(monkeypatch)
    dev_outs, dev_grads = _run(case, inputs, on_device=True)
    for k, (h, d) in enumerate(zip(host_outs, dev_outs)):
        assert isinstance(d, FakeDeviceArray), f"output {k} left the device ({type(d).__name__})"
        np.testing.assert_allclose(to_host(d), h, rtol=1e-12, atol=1e-12)
    for i, (h, d) in enumerate(zip(host_grads, dev_grads)):
        if h is None:
            assert d is None
            continue
        assert isinstance(d, FakeDeviceArray), f"gradient of input {i} left the device ({type(d).__name__})"
        np.testing.assert_allclose(to_host(d), h, rtol=1e-12, atol=1e-12)


def test_fake_device_is_seen_as_cuda(monkeypatch):
    install(monkeypatch)
    t = mc.Tensor._wrap(to_device(np.ones(3)))
    assert t.device == "cuda:0" and t.is_cuda
    assert backend.get_array_module(t) is backend._cupy
    host = t.cpu()
    assert type(host.array) is np.ndarray
