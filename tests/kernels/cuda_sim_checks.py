"""Checks of the numba.cuda fast paths (kernels/cuda_*.py), run by test_cuda_kernels.py in
a subprocess with NUMBA_ENABLE_CUDASIM=1: numba picks its CUDA simulator when it is first
imported, which in the test process has happened long before. The simulator runs the
kernels thread by thread in Python on NumPy arrays, so the shapes are tiny.

    NUMBA_ENABLE_CUDASIM=1 python tests/kernels/cuda_sim_checks.py NAME
"""
import os
import pathlib
import sys

import numpy as np

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from kernels import (cuda_conv, cuda_lrn, cuda_norm, cuda_pool, dispatch,  # noqa: E402
                     im2col, lrn, pooling)

RNG = np.random.default_rng(0)


def im2col_col2im():
    x = RNG.standard_normal((2, 3, 5, 6))
    for KH, KW, SH, SW, PH, PW, DH, DW, out_size in [
            (3, 3, 1, 1, 1, 1, 1, 1, None), (2, 3, 2, 1, 0, 2, 1, 2, None),
            (3, 2, 2, 3, 1, 0, 2, 1, None), (2, 2, 1, 1, 0, 0, 1, 1, (3, 4))]:
        args = (KH, KW, SH, SW, PH, PW, DH, DW)
        for dtype in (np.float32, np.float64):
            xd = x.astype(dtype)
            ref = im2col.im2col(xd, *args, out_size=out_size)
            got = cuda_conv.im2col(xd, *args, out_size=out_size)
            assert got.dtype == dtype and np.array_equal(got, ref), ("im2col", args, dtype)
            if out_size is None:
                cols = RNG.standard_normal(ref.shape).astype(dtype)
                ref = im2col.col2im(cols, x.shape, *args[2:])
                got = cuda_conv.col2im(cols, x.shape, *args[2:])
                assert got.dtype == dtype, ("col2im dtype", args)
                np.testing.assert_allclose(got, ref, rtol=1e-6 if dtype == np.float32
                                           else 1e-13, atol=1e-6, err_msg=f"col2im {args}")


def max_pooling():
    x = RNG.standard_normal((2, 2, 7, 6))
    x[0, 0, 1, 1] = x[0, 0, 0, 0] = np.nan          # two NaNs in one window: the last wins
    x[1, 1, 2:4, 2:4] = 1.5                          # ties: the first wins
    x[1, 0] = -np.inf
    for kernel, stride, padding, dilation in [((2, 2), (2, 2), (0, 0), (1, 1)),
                                              ((3, 2), (1, 2), (1, 1), (1, 1)),
                                              ((2, 3), (2, 1), (1, 1), (2, 2))]:
        out_size = tuple(pooling.pool_output_size(n, k, s, p, d) for n, k, s, p, d in
                         zip(x.shape[2:], kernel, stride, padding, dilation))
        window = (kernel, stride, padding, dilation)
        for dtype in (np.float32, np.float64):
            xd = x.astype(dtype)
            out, arg = cuda_pool.max_pool2d_forward(xd, *window, out_size)
            ref, ref_arg = pooling.max_pool2d_forward(xd, *window, out_size)
            assert out.dtype == dtype and np.array_equal(out, ref, equal_nan=True), window
            assert arg.dtype == ref_arg.dtype and np.array_equal(arg, ref_arg), window
            values, none = cuda_pool.max_pool2d_forward(xd, *window, out_size, False)
            assert none is None and np.array_equal(values, ref, equal_nan=True)
            g = RNG.standard_normal(out.shape).astype(dtype)
            got = cuda_pool.max_pool2d_backward(g, arg, x.shape, *window)
            want = pooling.max_pool2d_backward(g, ref_arg, x.shape, *window)
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=str(window))


def lrn_window_sums():
    x = RNG.standard_normal((2, 5, 3, 2))
    for size, before in [(1, None), (3, None), (4, None), (4, 1), (7, None)]:
        for dtype in (np.float32, np.float64):
            xd = x.astype(dtype)
            got = cuda_lrn.channel_window_sum(xd, size, before)
            want = lrn.channel_window_sum(xd, size, before)
            assert got.dtype == dtype and got.shape == x.shape
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6,
                                       err_msg=f"size {size}, before {before}")
    strided = x.transpose(0, 1, 3, 2)                # a non-contiguous input
    np.testing.assert_allclose(cuda_lrn.channel_window_sum(strided, 3),
                               lrn.channel_window_sum(strided, 3), rtol=1e-12)


def batch_norm_statistics():
    x = RNG.standard_normal((3, 4, 5, 3)) * 4 + 100      # an offset: two passes needed
    for dtype in (np.float32, np.float64):
        xd = x.astype(dtype)
        inv_std, mean, var = cuda_norm.batch_norm_statistics(xd, 1e-5)
        ref_mean = xd.astype(np.float64).mean(axis=(0, 2, 3), keepdims=True)
        ref_var = xd.astype(np.float64).var(axis=(0, 2, 3), keepdims=True)
        for got in (inv_std, mean, var):
            assert got.dtype == dtype and got.shape == (1, 4, 1, 1)
        tol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(mean, ref_mean, rtol=tol)
        np.testing.assert_allclose(var, ref_var, rtol=10 * tol)
        np.testing.assert_allclose(inv_std, 1 / np.sqrt(ref_var + 1e-5), rtol=10 * tol)
    x3 = RNG.standard_normal((2, 3, 7))                  # (N, C, L) input too
    _, mean, var = cuda_norm.batch_norm_statistics(x3, 0.0)
    np.testing.assert_allclose(var.reshape(-1), x3.var(axis=(0, 2)), rtol=1e-12)


def ops_take_the_gpu_branch():
    """Through the ops: with use_cuda saying yes (NumPy arrays stand in for CuPy ones in
    the simulator) every op gives the reference's values and gradients."""
    import minicnn as mc
    from minicnn.nn import functional as F
    launched = []
    for module in (cuda_conv, cuda_pool, cuda_lrn, cuda_norm):
        for name in module.__all__:
            def spy(*args, _f=getattr(module, name), _n=f"{module.__name__}.{name}", **kw):
                launched.append(_n)
                return _f(*args, **kw)
            setattr(module, name, spy)
    cases = {
        "conv2d": lambda x, w: F.conv2d(x, w, stride=2, padding=1),
        "conv_transpose2d": lambda x, w: F.conv_transpose2d(x, w.transpose(1, 0), stride=2),
        "max_pool2d": lambda x, w: F.max_pool2d(x, 3, stride=2, padding=1),
        "lrn": lambda x, w: F.local_response_norm(x, size=3, alpha=0.9),
        "batch_norm": lambda x, w: F.batch_norm(x, mc.zeros(3, dtype=mc.float64),
                                                mc.ones(3, dtype=mc.float64), training=True),
    }
    x0 = RNG.standard_normal((2, 3, 6, 5))
    w0 = RNG.standard_normal((3, 3, 3, 3))
    for name, case in cases.items():
        results = []
        for gpu in (False, True):
            dispatch.use_fast = lambda *a: False
            dispatch.use_cuda = (lambda *a: True) if gpu else (lambda *a: False)
            x = mc.tensor(x0, requires_grad=True)
            w = mc.tensor(w0, requires_grad=True)
            out = case(x, w)
            (out * mc.tensor(np.cos(np.arange(out.numel())).reshape(out.shape))).sum().backward()
            results.append([out.numpy(), x.grad.numpy()]
                           + ([w.grad.numpy()] if w.grad is not None else []))
        for ref, got in zip(*results):
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12, err_msg=name)
    for name in ("cuda_conv.im2col", "cuda_conv.col2im", "cuda_pool.max_pool2d_forward",
                 "cuda_pool.max_pool2d_backward", "cuda_lrn.channel_window_sum",
                 "cuda_norm.batch_norm_statistics"):
        assert f"kernels.{name}" in launched, f"{name} was never launched"


if __name__ == "__main__":
    globals()[sys.argv[1]]()
    print("ok", sys.argv[1])
