"""kernels/numba_roi.py (the CPU fast path of roi_pool and roi_align) against the portable
reference kernels/roi.py, over drawn maps, boxes and settings, inputs full of ties, -inf
and NaN, in float32 and float64; the ops in both kernel modes; and the reference on
(fake) device arrays, which must never leave the device."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from fake_cupy import FakeDeviceArray, install, refuse_host_conversion, to_device, to_host
from kernels import dispatch
from kernels import roi as reference
from minicnn import ops

from kernels import numba_roi as fast          # numba is a runtime dependency

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def geometry(draw):
    """Map shape, (K, 5) rois in image coordinates (off the map, tiny, reversed too), output
    size, spatial scale, sampling ratio, aligned."""
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25, 0.3]))
    K = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    h, w = H / scale, W / scale
    corner = rng.uniform([-0.3 * w, -0.3 * h], [1.1 * w, 1.1 * h], (K, 2))
    size = rng.uniform(-2, 1.2 * max(h, w), (K, 2)) * rng.choice([0.05, 1], (K, 2))
    rois = np.concatenate([rng.integers(0, N, (K, 1)), corner, corner + size], axis=1)
    halves = rng.random(K) < 0.3                  # on half pixels: x·scale may be a half
    rois[halves, 1:] = np.round(rois[halves, 1:] * 2) / 2
    return dict(shape=(N, C, H, W), rois=rois, rng=rng, spatial_scale=scale,
                out_size=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
                sampling_ratio=draw(st.sampled_from([-1, 0, 1, 2, 3])),
                aligned=draw(st.booleans()))


def special_map(rng, shape, dtype, special):
    """Small integers (many ties); with ``special`` a quarter of them -inf or NaN."""
    x = rng.integers(-3, 3, size=shape).astype(dtype)
    odd = rng.choice([-np.inf, np.nan], shape)
    return np.where(special & (rng.random(shape) < 0.25), odd, x).astype(dtype)


@SETTINGS
@given(geometry(), st.sampled_from([np.float64, np.float32]), st.booleans())
def test_roi_pool_fast_equals_reference(g, dtype, special):
    x = special_map(g["rng"], g["shape"], dtype, special)
    rois = g["rois"].astype(dtype)
    args = (rois, g["spatial_scale"], g["out_size"])
    want, want_arg = reference.roi_pool_forward(x, *args)
    got, got_arg = fast.roi_pool_forward(x, *args)
    assert got.dtype == dtype and got_arg.dtype == want_arg.dtype == np.int32
    np.testing.assert_array_equal(got, want)             # NaN in the same places too
    np.testing.assert_array_equal(got_arg, want_arg)
    assert fast.roi_pool_forward(x, *args, with_argmax=False)[1] is None
    assert reference.roi_pool_forward(x, *args, with_argmax=False)[1] is None
    grad = g["rng"].standard_normal(got.shape).astype(dtype)
    np.testing.assert_allclose(fast.roi_pool_backward(grad, got_arg, rois, x.shape),
                               reference.roi_pool_backward(grad, want_arg, rois, x.shape),
                               rtol=1e-6, atol=1e-6)


@SETTINGS
@given(geometry(), st.sampled_from([np.float64, np.float32]))
def test_roi_align_fast_equals_reference(g, dtype):
    x = g["rng"].standard_normal(g["shape"]).astype(dtype)
    rois = g["rois"].astype(dtype)
    args = (rois, g["spatial_scale"], g["out_size"], g["sampling_ratio"], g["aligned"])
    tol = 1e-12 if dtype == np.float64 else 1e-5
    want = reference.roi_align_forward(x, *args)
    got = fast.roi_align_forward(x, *args)
    assert got.dtype == want.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    grad = g["rng"].standard_normal(got.shape).astype(dtype)
    back = (rois, x.shape) + args[1:]
    np.testing.assert_allclose(fast.roi_align_backward(grad, *back),
                               reference.roi_align_backward(grad, *back), rtol=tol, atol=tol)


def test_ops_agree_in_both_modes_and_take_the_fast_path(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 11, 9))[:, :, ::-1]           # a non-contiguous view
    boxes = [np.array([[1, 2, 30, 20], [-5, 3, 7, 9.5]]), np.array([[10, 10, 12, 11.0]])]
    calls = []
    for name in ("roi_pool_forward", "roi_align_forward"):
        original = getattr(fast, name)
        monkeypatch.setattr(fast, name, lambda *a, _f=original, _n=name, **k:
                            calls.append(_n) or _f(*a, **k))
    results = []
    for mode in ("reference", "auto"):
        with dispatch.kernels(mode):
            t = mc.tensor(x, requires_grad=True)
            pooled = ops.roi_pool(t, boxes, (3, 2), 0.5)
            aligned = ops.roi_align(t, boxes, (2, 3), 0.5, -1, True)
            (pooled.sum() * 2 + (aligned * aligned).sum()).backward()
            results.append((pooled.numpy(), aligned.numpy(), t.grad.numpy()))
    assert calls == ["roi_pool_forward", "roi_align_forward"]    # auto only, both ops
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_reference_stays_on_the_device(monkeypatch):
    """CuPy arrays take the portable reference; every result and gradient stays there and
    equals the host computation."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 7))
    rois = np.array([[0, 1, 1, 12, 9], [1, -4, 2, 5, 30], [1, 6, 6, 6.5, 6.2]])
    host = []
    for op in (lambda t, b: ops.roi_pool(t, b, 3, 0.5),
               lambda t, b: ops.roi_align(t, b, (2, 3), 0.5, 2, True)):
        t = mc.tensor(x, requires_grad=True)
        out = op(t, rois)
        out.sum().backward()
        host.append((out.numpy(), t.grad.numpy()))
    install(monkeypatch)
    refuse_host_conversion(monkeypatch)
    for i, op in enumerate((lambda t, b: ops.roi_pool(t, b, 3, 0.5),
                            lambda t, b: ops.roi_align(t, b, (2, 3), 0.5, 2, True))):
        t = mc.Tensor._wrap(to_device(x)).requires_grad_(True)
        out = op(t, mc.Tensor._wrap(to_device(rois)))
        out.sum().backward()
        assert isinstance(out.array, FakeDeviceArray) and isinstance(t.grad.array, FakeDeviceArray)
        np.testing.assert_allclose(to_host(out.array), host[i][0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(to_host(t.grad.array), host[i][1], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="roi_align: boxes must be on the input's device"):
        ops.roi_align(mc.Tensor._wrap(to_device(x)), rois, 2)
