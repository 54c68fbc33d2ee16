"""kernels/numba_pool.py (the CPU fast path of max pooling) against the portable
reference kernels/pooling.py, over drawn windows and inputs full of ties, -inf and NaN,
in float32 and float64."""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from kernels import dispatch
from kernels import pooling as reference
from minicnn import functional as F
from strategies import pool_geometry

from kernels import numba_pool as fast          # numba is a runtime dependency

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = st.sampled_from([np.float64, np.float32])


def window():
    """x shape, kernel, stride, padding (at most half the kernel), dilation and the
    output size (ceil_mode or not), for a pooling with at least one output."""
    return pool_geometry(fit="output").map(lambda g: (g.x_shape, *g.window_args(), g.out_size))


def _input(rng, shape, dtype, special):
    """Small integers (many ties), with -inf and NaN sprinkled in when ``special``."""
    x = rng.integers(-3, 3, size=shape).astype(dtype)
    if special:
        x[rng.random(shape) < 0.15] = -np.inf
        x[rng.random(shape) < 0.1] = np.nan
    return x


@SETTINGS
@given(window(), DTYPES, st.booleans())
def test_forward_and_backward_equal_reference(rng, win, dtype, special):
    shape, *args, out_size = win
    x = _input(rng, shape, dtype, special)
    want, want_arg = reference.max_pool2d_forward(x, *args, out_size)
    got, got_arg = fast.max_pool2d_forward(x, *args, out_size)
    assert got.dtype == dtype and got_arg.dtype == want_arg.dtype
    np.testing.assert_array_equal(got, want)             # NaN in the same places too
    np.testing.assert_array_equal(got_arg, want_arg)
    assert fast.max_pool2d_forward(x, *args, out_size, with_argmax=False)[1] is None
    grad = rng.standard_normal(got.shape).astype(dtype)
    np.testing.assert_allclose(fast.max_pool2d_backward(grad, got_arg, shape, *args),
                               reference.max_pool2d_backward(grad, want_arg, shape, *args),
                               rtol=1e-6, atol=1e-6)


def test_op_uses_the_fast_path_and_agrees(rng):
    x = rng.standard_normal((2, 3, 9, 7))[:, :, ::-1]           # a non-contiguous view
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, return_indices=True)
    results = []
    for mode in ("reference", "auto"):
        with dispatch.kernels(mode):
            t = mc.tensor(x, requires_grad=True)
            out, idx = F.max_pool2d(t, **kw)
            out.backward(np.arange(out.numpy().size, dtype=float).reshape(out.shape))
            results.append((out.numpy(), idx.numpy(), t.grad.numpy()))
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)
