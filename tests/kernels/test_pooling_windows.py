"""kernels/pooling.py on its own: the raw window routines against plain Python loops that
follow torch's CPU kernels line by line, the output-size formula against torch, and the
backward routines as the exact adjoints (transposes) of the forward ones."""
import ast
import pathlib
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kernels import pooling as kp
from strategies import pool_geometry

SETTINGS = settings(max_examples=40, deadline=None)


# ----------------------------------------------------------- loop references

def ref_max_pool(x, kernel, stride, padding, dilation, out_size):
    """torch's cpu_max_pool: visit in-bounds taps row-major; a tap wins when greater or
    NaN; start from -inf at the first in-bounds tap. Returns (values, flat indices)."""
    N, C, H, W = x.shape
    out = np.empty((N, C) + out_size, dtype=x.dtype)
    idx = np.empty((N, C) + out_size, dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(out_size[0]):
                for ow in range(out_size[1]):
                    rows = [oh * stride[0] - padding[0] + k * dilation[0] for k in range(kernel[0])]
                    cols = [ow * stride[1] - padding[1] + k * dilation[1] for k in range(kernel[1])]
                    rows = [h for h in rows if 0 <= h < H]
                    cols = [w for w in cols if 0 <= w < W]
                    best, where = -np.inf, rows[0] * W + cols[0]
                    for h in rows:
                        for w in cols:
                            v = x[n, c, h, w]
                            if v > best or np.isnan(v):
                                best, where = v, h * W + w
                    out[n, c, oh, ow], idx[n, c, oh, ow] = best, where
    return out, idx


def ref_avg_divisor(size, out, kernel, stride, padding, count_include_pad):
    """torch's avg_pool2d divisor along one axis (pool_size and the clipped count)."""
    result = []
    for o in range(out):
        start = o * stride - padding
        end = min(start + kernel, size + padding)
        pool = end - start
        inside = min(end, size) - max(start, 0)
        result.append(pool if count_include_pad else inside)
    return np.array(result)


def ref_adaptive(x, out_size, reduce):
    N, C, H, W = x.shape
    out = np.empty((N, C) + out_size)
    for i in range(out_size[0]):
        for j in range(out_size[1]):
            hs, he = i * H // out_size[0], -(-(i + 1) * H // out_size[0])
            ws, we = j * W // out_size[1], -(-(j + 1) * W // out_size[1])
            out[:, :, i, j] = reduce(x[:, :, hs:he, ws:we].reshape(N, C, -1))
    return out


def ref_adaptive_max_indices(x, out_size):
    """Row-major first maximum (last NaN) of each adaptive window, as flat h*W + w."""
    N, C, H, W = x.shape
    idx = np.empty((N, C) + out_size, dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for i in range(out_size[0]):
                for j in range(out_size[1]):
                    hs, he = i * H // out_size[0], -(-(i + 1) * H // out_size[0])
                    ws, we = j * W // out_size[1], -(-(j + 1) * W // out_size[1])
                    best, where = -np.inf, hs * W + ws
                    for h in range(hs, he):
                        for w in range(ws, we):
                            v = x[n, c, h, w]
                            if v > best or np.isnan(v):
                                best, where = v, h * W + w
                    idx[n, c, i, j] = where
    return idx


def scatter(grad, indices, in_shape):
    """Reference backward of any max pool: add grad at the flat indices."""
    N, C = in_shape[:2]
    gx = np.zeros((N, C, in_shape[2] * in_shape[3]))
    for n in range(N):
        for c in range(C):
            np.add.at(gx[n, c], indices[n, c].ravel(), grad[n, c].ravel())
    return gx.reshape(in_shape)


# -------------------------------------------------------------- strategies

def window(with_dilation=True):
    """(in_hw, kernel, stride, padding, dilation, out): an input that holds one dilated
    window without its padding, and the output size (ceil_mode or not)."""
    geo = pool_geometry(fit="input", dilation=(1, 3) if with_dilation else (1, 1))
    return geo.map(lambda g: (g.size, *g.window_args(), g.out_size))


def values(draw_ties, rng, shape):
    if draw_ties:
        return rng.integers(-2, 2, shape).astype(np.float64)
    return rng.permutation(int(np.prod(shape))).reshape(shape).astype(np.float64) - 7.0


# ---------------------------------------------------------------- the tests

@SETTINGS
@given(st.integers(1, 12), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2),
       st.integers(1, 3), st.booleans())
def test_output_size_is_torchs(size, kernel, stride, padding, dilation, ceil_mode):
    import torch
    ours = kp.pool_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    if padding > kernel // 2:
        return
    try:
        shape = torch.nn.functional.max_pool2d(torch.zeros(1, 1, size, 1), (kernel, 1),
                                               (stride, 1), (padding, 0), (dilation, 1),
                                               ceil_mode).shape
    except RuntimeError:                     # "Output size is too small"
        assert ours <= 0
    else:
        assert ours == shape[2]


def test_ceil_mode_drops_a_window_starting_in_the_right_padding():
    # H=4, k=2, s=3, p=1: padded length 6; ceil would give a 3rd window at padded
    # position 6 >= H + P = 5, which starts past the input: torch keeps 2
    assert kp.pool_output_size(4, 2, 3, 1, ceil_mode=True) == 2
    assert kp.pool_output_size(5, 2, 2, 0, ceil_mode=True) == 3
    assert kp.pool_output_size(5, 2, 2, 0, ceil_mode=False) == 2


@SETTINGS
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 4), st.integers(1, 3),
       st.integers(0, 2), st.integers(1, 3))
def test_window_taps_are_exactly_the_in_bounds_taps(size, out, kernel, stride, padding, dilation):
    expected = {(o, k, o * stride - padding + k * dilation) for o in range(out)
                for k in range(kernel) if 0 <= o * stride - padding + k * dilation < size}
    got = set()
    for k, outs, ins in kp.window_taps(size, out, kernel, stride, padding, dilation):
        o_range, i_range = range(*outs.indices(out)), range(*ins.indices(size))
        assert len(o_range) == len(i_range) > 0
        got |= {(o, k, i) for o, i in zip(o_range, i_range)}
    assert got == expected


@SETTINGS
@given(window(), st.booleans(), st.integers(0, 2**31))
def test_max_pool_forward_indices_backward_match_loops(case, ties, seed):
    in_hw, kernel, stride, padding, dilation, out = case
    if min(out) < 1:
        return
    rng = np.random.default_rng(seed)
    x = values(ties, rng, (2, 2) + in_hw)
    ref, ref_idx = ref_max_pool(x, kernel, stride, padding, dilation, out)
    values_only, none = kp.max_pool2d_forward(x, kernel, stride, padding, dilation, out,
                                              with_argmax=False)
    assert none is None
    np.testing.assert_array_equal(values_only, ref)
    got, argmax = kp.max_pool2d_forward(x, kernel, stride, padding, dilation, out)
    np.testing.assert_array_equal(got, ref)
    assert argmax.dtype == np.uint8
    np.testing.assert_array_equal(
        kp.max_pool2d_indices(argmax, in_hw, kernel, stride, padding, dilation), ref_idx)
    g = rng.standard_normal(got.shape)
    np.testing.assert_allclose(
        kp.max_pool2d_backward(g, argmax, x.shape, kernel, stride, padding, dilation),
        scatter(g, ref_idx, x.shape), rtol=1e-12, atol=1e-12)


def test_max_pool_nan_and_minus_inf_follow_torchs_rule():
    nan, inf = np.nan, np.inf
    x = np.array([[[[nan, 1.0, nan], [2.0, -inf, 5.0], [-inf, -inf, -inf]]]])
    for args in (((3, 3), (1, 1), (1, 1), (1, 1), (3, 3)), ((2, 2), (1, 1), (0, 0), (1, 1), (2, 2))):
        ref, ref_idx = ref_max_pool(x, *args)
        got, argmax = kp.max_pool2d_forward(x, *args)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(kp.max_pool2d_indices(argmax, (3, 3), *args[:4]), ref_idx)
    got, saved = kp.adaptive_max_pool2d_forward(x, (2, 2))
    np.testing.assert_array_equal(kp.adaptive_max_pool2d_indices(saved, (3, 3)),
                                  ref_adaptive_max_indices(x, (2, 2)))


@SETTINGS
@given(window(), st.integers(1, 7), st.integers(1, 9), st.integers(0, 2**31))
def test_sprinkled_nan_and_inf_follow_torchs_rule(case, H, OH, seed):
    in_hw, kernel, stride, padding, dilation, out = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 2, (2, 2) + in_hw).astype(np.float64)
    x[rng.random(x.shape) < 0.2] = np.nan
    x[rng.random(x.shape) < 0.2] = -np.inf
    if min(out) >= 1:
        ref, ref_idx = ref_max_pool(x, kernel, stride, padding, dilation, out)
        got, argmax = kp.max_pool2d_forward(x, kernel, stride, padding, dilation, out)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(
            kp.max_pool2d_indices(argmax, in_hw, kernel, stride, padding, dilation), ref_idx)
    # adaptive windows of unequal lengths (H=5 -> 3: lengths 2, 3, 2), re-read when short
    y = rng.integers(-2, 2, (2, 2, H, 3)).astype(np.float64)
    y[rng.random(y.shape) < 0.3] = np.nan
    y[rng.random(y.shape) < 0.2] = -np.inf
    top, saved = kp.adaptive_max_pool2d_forward(y, (OH, 2))
    np.testing.assert_array_equal(top, ref_adaptive(y, (OH, 2), lambda b: b.max(-1)))
    np.testing.assert_array_equal(kp.adaptive_max_pool2d_indices(saved, (H, 3)),
                                  ref_adaptive_max_indices(y, (OH, 2)))


@SETTINGS
@given(st.integers(1, 12), st.integers(1, 30))
def test_scatter_steps_never_name_a_position_twice(size, out):
    starts, ends = kp.adaptive_bounds(size, out)
    seen = []
    for t, windows, index, short in kp._window_steps(starts, ends, -1, np, disjoint=True):
        picked = np.arange(out)[windows[-1]]
        positions = np.arange(size)[index[-1]]
        assert len(set(positions.tolist())) == len(positions) == len(picked)
        live = picked if short is None else picked[~short.ravel()]
        seen += [(i, p) for i, p in zip(picked, positions) if i in live]
    # every (window, position) pair is visited exactly once
    assert sorted(seen) == sorted((i, p) for i in range(out) for p in range(starts[i], ends[i]))


@SETTINGS
@given(window(with_dilation=False), st.booleans(), st.sampled_from([None, 2]),
       st.integers(0, 2**31))
def test_avg_pool_divisor_forward_and_adjoint(case, include_pad, override, seed):
    in_hw, kernel, stride, padding, _, out = case
    if min(out) < 1:
        return
    divisor = kp.avg_pool2d_divisor(in_hw, out, kernel, stride, padding, include_pad,
                                    override, np.float64, np)
    if override is None:
        rows = ref_avg_divisor(in_hw[0], out[0], kernel[0], stride[0], padding[0], include_pad)
        cols = ref_avg_divisor(in_hw[1], out[1], kernel[1], stride[1], padding[1], include_pad)
        np.testing.assert_array_equal(divisor, np.outer(rows, cols))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 1) + in_hw)
    y = kp.avg_pool2d_forward(x, kernel, stride, padding, out, divisor)
    # the loop reference: sum the in-bounds part of each window, divide
    xpad = np.pad(x, ((0, 0), (0, 0), (padding[0], kernel[0] + stride[0]),
                      (padding[1], kernel[1] + stride[1])))
    ref = np.empty_like(y)
    for i in range(out[0]):
        for j in range(out[1]):
            block = xpad[:, :, i * stride[0]:i * stride[0] + kernel[0],
                         j * stride[1]:j * stride[1] + kernel[1]]
            ref[:, :, i, j] = block.sum(axis=(2, 3))
    np.testing.assert_allclose(y, ref / divisor, rtol=1e-12, atol=1e-12)
    # backward is the transpose: <A x, g> == <x, Aᵀ g>
    g = rng.standard_normal(y.shape)
    gx = kp.avg_pool2d_backward(g, x.shape, kernel, stride, padding, divisor)
    np.testing.assert_allclose((y * g).sum(), (x * gx).sum(), rtol=1e-10)


@SETTINGS
@given(st.integers(1, 30), st.integers(1, 30))
def test_adaptive_bounds_are_floor_and_ceil(size, out):
    starts, ends = kp.adaptive_bounds(size, out)
    for i, (s, e) in enumerate(zip(starts, ends)):
        assert s == int(Fraction(i * size, out).__floor__())
        assert e == int(Fraction((i + 1) * size, out).__ceil__())
        assert 0 <= s < e <= size


@SETTINGS
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 9), st.integers(1, 9),
       st.booleans(), st.integers(0, 2**31))
def test_adaptive_pools_match_loops(H, W, OH, OW, ties, seed):
    rng = np.random.default_rng(seed)
    x = values(ties, rng, (2, 3, H, W))
    avg = kp.adaptive_avg_pool2d_forward(x, (OH, OW))
    np.testing.assert_allclose(avg, ref_adaptive(x, (OH, OW), lambda b: b.mean(-1)),
                               rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(avg.shape)
    gx = kp.adaptive_avg_pool2d_backward(g, x.shape)
    np.testing.assert_allclose((avg * g).sum(), (x * gx).sum(), rtol=1e-10)

    top, saved = kp.adaptive_max_pool2d_forward(x, (OH, OW))
    np.testing.assert_array_equal(top, ref_adaptive(x, (OH, OW), lambda b: b.max(-1)))
    no_arg, none = kp.adaptive_max_pool2d_forward(x, (OH, OW), with_argmax=False)
    assert none is None
    np.testing.assert_array_equal(no_arg, top)
    idx = kp.adaptive_max_pool2d_indices(saved, (H, W))
    np.testing.assert_array_equal(idx, ref_adaptive_max_indices(x, (OH, OW)))
    np.testing.assert_allclose(kp.adaptive_max_pool2d_backward(g, saved, x.shape),
                               scatter(g, idx, x.shape), rtol=1e-12, atol=1e-12)


def test_unpool_forward_and_backward_are_adjoint():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 3, 4))
    idx = np.stack([rng.permutation(30)[:12] for _ in range(6)]).reshape(2, 3, 3, 4)
    y = kp.max_unpool2d_forward(x, idx, (5, 6))
    assert y.shape == (2, 3, 5, 6) and np.count_nonzero(y) == x.size
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose((y * g).sum(), (x * kp.max_unpool2d_backward(g, idx)).sum(),
                               rtol=1e-12)
    assert kp.unpool_output_size(3, 2, 2, 0) == 6


def test_float32_stays_float32_and_input_is_not_written():
    x = np.random.default_rng(1).standard_normal((2, 2, 7, 5)).astype(np.float32)
    keep = x.copy()
    args = ((3, 2), (2, 1), (1, 1), (1, 2))
    out = tuple(kp.pool_output_size(n, k, s, p, d) for n, k, s, p, d in zip(x.shape[2:], *args))
    y, argmax = kp.max_pool2d_forward(x, *args, out)
    assert y.dtype == np.float32
    assert kp.max_pool2d_backward(y, argmax, x.shape, *args).dtype == np.float32
    div = kp.avg_pool2d_divisor(x.shape[2:], out, *args[:3], True, None, x.dtype, np)
    assert div.dtype == np.float32
    a = kp.avg_pool2d_forward(x, *args[:3], out, div)
    assert a.dtype == np.float32
    assert kp.avg_pool2d_backward(a, x.shape, *args[:3], div).dtype == np.float32
    m, saved = kp.adaptive_max_pool2d_forward(x, (3, 4))
    assert m.dtype == np.float32 and kp.adaptive_max_pool2d_backward(m, saved, x.shape).dtype == np.float32
    v = kp.adaptive_avg_pool2d_forward(x, (3, 4))
    assert v.dtype == np.float32 and kp.adaptive_avg_pool2d_backward(v, x.shape).dtype == np.float32
    np.testing.assert_array_equal(x, keep)


def test_large_kernels_get_a_wider_offset_type():
    x = np.random.default_rng(2).standard_normal((1, 1, 17, 17))
    y, argmax = kp.max_pool2d_forward(x, (17, 17), (1, 1), (0, 0), (1, 1), (1, 1))
    assert argmax.dtype == np.int32 and y[0, 0, 0, 0] == x.max()
    assert kp.max_pool2d_indices(argmax, (17, 17), (17, 17), (1, 1), (0, 0), (1, 1)) == x.argmax()


def test_regular_positions_become_slices():
    assert kp._as_index([1, 3, 5], np) == slice(1, 6, 2)
    assert kp._as_index([4], np) == slice(4, 5)
    assert isinstance(kp._as_index([0, 0, 1], np), np.ndarray)
    assert isinstance(kp._as_index([0, 2, 3], np), np.ndarray)


def test_kernels_import_only_numpy():
    path = pathlib.Path(kp.__file__)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"numpy", "sys"}


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 1, 7)])
def test_degenerate_sizes(shape):
    x = np.random.default_rng(3).standard_normal(shape)
    y, _ = kp.max_pool2d_forward(x, (1, 1), (1, 1), (0, 0), (1, 1), shape[2:])
    np.testing.assert_array_equal(y, x)
    np.testing.assert_allclose(kp.adaptive_avg_pool2d_forward(x, (1, 1)),
                               x.mean(axis=(2, 3), keepdims=True), rtol=1e-12)
