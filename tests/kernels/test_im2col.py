"""kernels/im2col.py: im2col against a direct loop, col2im as its exact adjoint, the
output-size formulas, and the errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from kernels.im2col import col2im, conv_output_size, conv_transpose_output_size, im2col
from strategies import im2col_arguments

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def loop_im2col(x, KH, KW, SH, SW, PH, PW, DH, DW):
    """The definition, one element at a time, reading x with bounds checks instead of
    building a padded copy."""
    N, C, H, W = x.shape
    OH = (H + 2 * PH - DH * (KH - 1) - 1) // SH + 1
    OW = (W + 2 * PW - DW * (KW - 1) - 1) // SW + 1
    cols = np.zeros((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for n, c, kh, kw, oh, ow in np.ndindex(cols.shape):
        i, j = oh * SH + kh * DH - PH, ow * SW + kw * DW - PW
        if 0 <= i < H and 0 <= j < W:
            cols[n, c, kh, kw, oh, ow] = x[n, c, i, j]
    return cols


def loop_col2im(cols, x_shape, SH, SW, PH, PW, DH, DW):
    out = np.zeros(x_shape, dtype=cols.dtype)
    H, W = x_shape[2:]
    for n, c, kh, kw, oh, ow in np.ndindex(cols.shape):
        i, j = oh * SH + kh * DH - PH, ow * SW + kw * DW - PW
        if 0 <= i < H and 0 <= j < W:
            out[n, c, i, j] += cols[n, c, kh, kw, oh, ow]
    return out


@SETTINGS
@given(im2col_arguments())
def test_im2col_matches_direct_loop(rng, geo):
    shape, *params = geo
    x = rng.standard_normal(shape)
    cols = im2col(x, *params)
    np.testing.assert_array_equal(cols, loop_im2col(x, *params))
    assert cols.flags.c_contiguous


@SETTINGS
@given(im2col_arguments())
def test_col2im_matches_direct_loop(rng, geo):
    shape, KH, KW, *rest = geo
    cols_shape = im2col(np.zeros(shape), KH, KW, *rest).shape
    cols = rng.standard_normal(cols_shape)
    np.testing.assert_allclose(col2im(cols, shape, *rest), loop_col2im(cols, shape, *rest),
                               rtol=1e-12, atol=1e-12)


@SETTINGS
@given(im2col_arguments())
def test_col2im_is_the_adjoint_of_im2col(rng, geo):
    shape, KH, KW, *rest = geo
    x = rng.standard_normal(shape)
    cols = im2col(x, KH, KW, *rest)
    c = rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, c)                           # <im2col(x), c>
    rhs = np.vdot(x, col2im(c, shape, *rest))        # <x, col2im(c)>
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


def test_strided_input_view_and_float32_kept(rng):
    base = rng.standard_normal((3, 9, 7, 2)).astype(np.float32)
    x = base.transpose(3, 0, 2, 1)[:, :, ::2]       # (2, 3, 4, 9), not contiguous
    cols = im2col(x, 2, 3, 1, 2, 1, 0, 2, 1)
    assert cols.dtype == np.float32
    np.testing.assert_array_equal(cols, loop_im2col(np.ascontiguousarray(x),
                                                    2, 3, 1, 2, 1, 0, 2, 1))
    assert col2im(cols, x.shape, 1, 2, 1, 0, 2, 1).dtype == np.float32


def test_out_size_keeps_the_first_positions(rng):
    x = rng.standard_normal((1, 2, 7, 7))
    full = im2col(x, 2, 2, 1, 1, 1, 1, 3, 3)
    part = im2col(x, 2, 2, 1, 1, 1, 1, 3, 3, out_size=(4, 5))
    np.testing.assert_array_equal(part, full[..., :4, :5])
    with pytest.raises(ValueError, match="out_size"):
        im2col(x, 2, 2, out_size=(7, 1))


@given(st.integers(1, 12), st.integers(1, 5), st.integers(1, 4), st.integers(0, 3),
       st.integers(1, 3))
@settings(max_examples=60, deadline=None)
def test_output_size_counts_the_windows_that_fit(size, k, s, p, d):
    extent = d * (k - 1) + 1
    starts = range(0, size + 2 * p - extent + 1, s)    # window starts inside the padded axis
    assert max(conv_output_size(size, k, s, p, d), 0) == len(starts)


@given(st.integers(1, 8), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2),
       st.integers(1, 3), st.integers(0, 2))
@settings(max_examples=60, deadline=None)
def test_transpose_output_size_inverts_the_conv_size(size, k, s, p, d, op):
    assume(op < max(s, d))
    out = conv_transpose_output_size(size, k, s, p, d, op)
    assume(out > 0)
    # a convolution of the transposed output returns to `size` (plus op // s positions
    # when output_padding >= stride, which only dilation allows)
    assert conv_output_size(out, k, s, p, d) == size + op // s


def test_errors_name_the_sizes():
    with pytest.raises(ValueError, match=r"output size\s+would be -?\d+x"):
        im2col(np.zeros((1, 1, 3, 3)), 3, 3, 1, 1, 0, 0, 2, 2)
    with pytest.raises(ValueError, match="does not match cols"):
        col2im(np.zeros((1, 2, 1, 1, 3, 3)), (1, 3, 3, 3))
    with pytest.raises(ValueError, match="do not fit"):
        col2im(np.zeros((1, 1, 2, 2, 3, 3)), (1, 1, 3, 3))
