"""The fused fast paths against the reference: max pooling with ``relu=True``
(kernels/numba_pool.py against kernels/pooling.py, the general loops and the 2x2 and
3x3 stride-2 ones, with and without relu) over drawn windows and inputs full of ties,
zeros, -inf and NaN; batch_norm_relu's compiled loops (kernels/numba_norm.py)
against the reference Function; both in float32 and float64; the seam (the fast
functions are reached with relu in "auto" mode, never in "reference" mode); and the
device paths: the reference on (fake) CuPy arrays, and the CUDA branch in numba's
simulator."""
import os
import pathlib
import subprocess
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from fake_cupy import FakeDeviceArray, count_syncs, install, to_device, to_host
from kernels import dispatch, numba_norm, numba_pool
from kernels import numba_pool as fast
from kernels import pooling as reference
from minicnn import functional as F
# window(): a pooling geometry with an output; _input: small integers (ties, zeros,
# all-negative windows), with -inf and NaN when asked
from test_fast_pool import _input, window

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = st.sampled_from([np.float64, np.float32])
ROOT = pathlib.Path(__file__).resolve().parents[2]




# ================================================================ relu + max pool

@SETTINGS
@given(window(), DTYPES, st.booleans())
def test_relu_max_pool_fast_equals_reference(rng, win, dtype, special):
    shape, *args, out_size = win
    x = _input(rng, shape, dtype, special)
    want, want_arg = reference.max_pool2d_forward(x, *args, out_size, relu=True)
    got, got_arg = fast.max_pool2d_forward(x, *args, out_size, relu=True)
    assert got.dtype == dtype and got_arg.dtype == want_arg.dtype
    np.testing.assert_array_equal(got, want)             # NaN in the same places too
    np.testing.assert_array_equal(got_arg, want_arg)     # max pooling's winners
    assert not (got < 0).any()
    values, none = fast.max_pool2d_forward(x, *args, out_size, with_argmax=False, relu=True)
    assert none is None
    np.testing.assert_array_equal(values, want)
    grad = rng.standard_normal(got.shape).astype(dtype)
    gx = fast.max_pool2d_backward(grad, got_arg, shape, *args, relu_out=got)
    np.testing.assert_allclose(gx, reference.max_pool2d_backward(grad, want_arg, shape, *args,
                                                                 relu_out=want),
                               rtol=1e-6, atol=1e-6)
    # no gradient reaches a position whose value is not > 0 (relu' = 0 there, NaN too)
    assert not gx[~(x > 0)].any()


@SETTINGS
@given(window(), DTYPES)
def test_without_relu_the_kernels_are_unchanged(rng, win, dtype):
    # relu=False / relu_out=None are max pooling exactly (the flag must not leak)
    shape, *args, out_size = win
    x = _input(rng, shape, dtype, special=True)
    plain, arg = reference.max_pool2d_forward(x, *args, out_size)
    got, got_arg = fast.max_pool2d_forward(x, *args, out_size, relu=False)
    np.testing.assert_array_equal(got, plain)
    np.testing.assert_array_equal(got_arg, arg)
    grad = rng.standard_normal(got.shape).astype(dtype)
    np.testing.assert_allclose(fast.max_pool2d_backward(grad, arg, shape, *args),
                               reference.max_pool2d_backward(grad, arg, shape, *args),
                               rtol=1e-6, atol=1e-6)


@SETTINGS
@given(st.sampled_from([2, 3]),
       st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(3, 11), st.integers(3, 11)),
       st.booleans(), DTYPES, st.booleans(), st.booleans(), st.booleans())
def test_the_stride_2_loops_equal_the_reference(rng, size, shape, ceil_mode, dtype, special,
                                                relu, contiguous):
    # kernels/numba_pool.py's own loops for the 2x2/2 and 3x3/2 pools (sizes that leave
    # a row or column over; with ceil_mode a window may hang over and the general loops
    # take it)
    args = ((size, size), (2, 2), (0, 0), (1, 1))
    out_size = tuple(reference.pool_output_size(n, size, 2, 0, 1, ceil_mode)
                     for n in shape[2:])
    x = _input(rng, shape, dtype, special)
    if not contiguous:
        x = np.swapaxes(np.swapaxes(x, 2, 3).copy(), 2, 3)
    want, want_arg = reference.max_pool2d_forward(x, *args, out_size, relu=relu)
    got, got_arg = fast.max_pool2d_forward(x, *args, out_size, relu=relu)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_arg, want_arg)
    grad = rng.standard_normal(got.shape).astype(dtype)
    relu_out = got if relu else None
    # 3x3 windows overlap: the same sums, added in another order
    np.testing.assert_allclose(
        fast.max_pool2d_backward(grad, got_arg, shape, *args, relu_out=relu_out),
        reference.max_pool2d_backward(grad, want_arg, shape, *args, relu_out=relu_out),
        rtol=1e-6, atol=1e-6)


def test_relu_max_pool_op_takes_the_fast_path_and_agrees(rng, monkeypatch):
    calls = []
    forward = numba_pool.max_pool2d_forward

    def spy(*args, **kw):
        calls.append(kw.get("relu"))
        return forward(*args, **kw)
    monkeypatch.setattr(numba_pool, "max_pool2d_forward", spy)
    x = rng.standard_normal((2, 3, 9, 7))[:, :, ::-1]           # a non-contiguous view
    g = np.cos(np.arange(2 * 3 * 5 * 4)).reshape(2, 3, 5, 4)
    results = []
    for mode in ("reference", "auto"):
        with dispatch.kernels(mode):
            t = mc.tensor(x, requires_grad=True)
            out = F.relu_max_pool2d(t, 3, stride=2, padding=1, ceil_mode=True)
            out.backward(mc.tensor(g))
            results.append((out.numpy(), t.grad.numpy()))
    assert calls == [True]                 # only in auto mode, and with relu
    (ref_out, ref_grad), (out, grad) = results
    np.testing.assert_array_equal(out, ref_out)
    # overlapping windows: the same sums, added in another order
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-14, atol=1e-15)


# ================================================================ batch norm + relu

@st.composite
def bn_cases(draw):
    """(shape (N, C, *) with 0 to 2 spatial axes, training, contiguous, dtype, seed)."""
    shape = draw(st.lists(st.integers(1, 5), min_size=2, max_size=4))
    training = draw(st.booleans())
    if training and np.prod(shape) == shape[1]:      # one value per channel: refused
        shape[0] = 2
    return (tuple(shape), training, draw(st.booleans()), draw(DTYPES),
            draw(st.integers(0, 2**16)))


def _run_bn_relu(x, w, b, rm, rv, g, training):
    leaves = [mc.tensor(a, requires_grad=True) for a in (x, w, b)]
    rm, rv = mc.tensor(rm.copy()), mc.tensor(rv.copy())
    y = F.batch_norm_relu(leaves[0], rm, rv, leaves[1], leaves[2], training=training,
                          momentum=0.3)
    y.backward(mc.tensor(g))
    return [y.numpy(), rm.numpy(), rv.numpy()] + [t.grad.numpy() for t in leaves]


@SETTINGS
@given(bn_cases())
def test_batch_norm_relu_fast_equals_reference(case):
    shape, training, contiguous, dtype, seed = case
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    if not contiguous:                         # the fast path copies; the answer is the same
        x = np.swapaxes(np.swapaxes(x, 0, 1).copy(), 0, 1)
    w, b = (rng.standard_normal(c).astype(dtype) for _ in range(2))
    rm, rv = rng.standard_normal(c), rng.random(c) + 0.5
    g = rng.standard_normal(shape).astype(dtype)
    results = []
    for mode in ("reference", "auto"):
        with dispatch.kernels(mode):
            results.append(_run_bn_relu(x, w, b, rm, rv, g, training))
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)
    for got, want in zip(results[1], results[0]):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, **tol)
    assert (results[1][0] >= 0).all()


def test_batch_norm_relu_kernels_mask_exactly_where_the_output_is_not_positive():
    # eval mode, scale 1: the compiled backward's mask is read from the output it wrote
    x = np.array([[[-2.0, -0.0, 0.0, 1e-30, 3.0, np.nan]]], dtype=np.float32)
    mean, inv_std = np.zeros(1), np.ones(1)
    y = numba_norm.batch_norm_eval(x, mean, inv_std, None, None, relu=True)
    np.testing.assert_array_equal(y, np.float32([[[0.0, 0.0, 0.0, 1e-30, 3.0, np.nan]]]))
    # (without the NaN: the compiled eval-mode dx multiplies x - μ by 0, NaN for a NaN x)
    x, y = x[..., :5], y[..., :5]
    g = np.ones_like(x)
    gx, gw, gb = numba_norm.batch_norm_backward(g, x, mean, inv_std, None, False, True,
                                                False, True, relu_out=y)
    np.testing.assert_array_equal(gx, np.float32([[[0.0, 0.0, 0.0, 1.0, 1.0]]]))
    assert gw is None and gb.tolist() == [2.0]
    plain = numba_norm.batch_norm_eval(x, mean, inv_std, None, None)
    np.testing.assert_array_equal(plain, x)                 # relu=False: no clamp
    gx, _, _ = numba_norm.batch_norm_backward(g, x, mean, inv_std, None, False, True, False,
                                              False)
    np.testing.assert_array_equal(gx, g)                    # nor a mask


def test_batch_norm_relu_op_takes_the_fast_path(monkeypatch):
    seen = []
    for name in ("batch_norm_train", "batch_norm_eval", "batch_norm_backward"):
        def spy(*args, _f=getattr(numba_norm, name), _n=name, **kw):
            seen.append((_n, kw.get("relu_out") is not None if _n.endswith("backward")
                         else args[-1]))
            return _f(*args, **kw)
        monkeypatch.setattr(numba_norm, name, spy)
    x = mc.tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2)), requires_grad=True)
    for training in (True, False):
        F.batch_norm_relu(x, mc.zeros(3, dtype=mc.float64), mc.ones(3, dtype=mc.float64),
                          training=training).sum().backward()
    assert seen == [("batch_norm_train", True), ("batch_norm_backward", True),
                    ("batch_norm_eval", True), ("batch_norm_backward", True)]
    seen.clear()
    with dispatch.kernels("reference"):
        F.batch_norm_relu(x, mc.zeros(3, dtype=mc.float64), mc.ones(3, dtype=mc.float64),
                          training=True).sum().backward()
    assert seen == []


# ========================================================================= devices

def test_fused_ops_stay_on_the_device_through_the_reference(monkeypatch):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    w, b = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    cases = {
        "relu_max_pool2d": lambda v, rm, rv: F.relu_max_pool2d(v, 3, stride=2, padding=1),
        "batch_norm_relu": lambda v, rm, rv: F.batch_norm_relu(
            v, rm, rv, mc.Tensor._wrap(w_dev), mc.Tensor._wrap(b_dev), training=True),
    }
    host_results = {}
    w_dev, b_dev = w, b
    for name, case in cases.items():
        t = mc.tensor(x, requires_grad=True)
        rm, rv = mc.zeros(3), mc.ones(3)
        out = case(t, rm, rv)
        out.sum().backward()
        host_results[name] = (out.numpy(), t.grad.numpy(), rm.numpy())
    install(monkeypatch)
    w_dev, b_dev = to_device(w), to_device(b)
    for name, case in cases.items():
        t = mc.Tensor._wrap(to_device(x)).requires_grad_(True)
        rm = mc.Tensor._wrap(to_device(np.zeros(3, np.float32)))
        rv = mc.Tensor._wrap(to_device(np.ones(3, np.float32)))
        with count_syncs() as record:
            out = case(t, rm, rv)
            out.sum().backward()
        assert isinstance(out.array, FakeDeviceArray), name
        assert isinstance(t.grad.array, FakeDeviceArray), name
        assert not record.syncs, (name, record)
        want_out, want_grad, want_rm = host_results[name]
        np.testing.assert_allclose(to_host(out.array), want_out, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(to_host(t.grad.array), want_grad, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(to_host(rm.array), want_rm, rtol=1e-5, atol=1e-6)


CUDA_SIM_CHECK = """
import numpy as np
import minicnn as mc
from kernels import cuda_pool, dispatch
from minicnn import functional as F
launched = []
for name in cuda_pool.__all__:
    def spy(*a, _f=getattr(cuda_pool, name), _n=name, **kw):
        launched.append(_n)
        return _f(*a, **kw)
    setattr(cuda_pool, name, spy)
rng = np.random.default_rng(0)
x0 = rng.integers(-3, 3, size=(2, 2, 7, 6)).astype(float)
x0[0, 0, 1, 1] = np.nan
results = []
for gpu in (False, True):
    dispatch.use_fast = lambda *a: False
    dispatch.use_cuda = (lambda *a: True) if gpu else (lambda *a: False)
    x = mc.tensor(x0, requires_grad=True)
    out = F.relu_max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
    out.backward(mc.tensor(np.cos(np.arange(out.numel())).reshape(out.shape)))
    results.append((out.numpy(), x.grad.numpy()))
for ref, got in zip(*results):
    np.testing.assert_allclose(got, ref, rtol=1e-14, atol=1e-15)
assert launched == ["max_pool2d_forward", "max_pool2d_backward"], launched
print("ok")
"""


def test_relu_max_pool_cuda_branch_in_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", CUDA_SIM_CHECK], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "ok" in done.stdout, done.stdout + done.stderr
