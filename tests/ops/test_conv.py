"""conv2d and conv_transpose2d: forward and every gradient against torch over drawn
geometries (float64 and float32, both at compare_with_torch's default tolerance), finite
differences, 3-D input, what forward saves, and every error."""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from kernels import dispatch
from minicnn import functional as F
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch
from strategies import conv2d_arguments, conv_transpose2d_arguments

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# Every comparison runs at compare_with_torch's default tolerance for its dtype
# (minicnn.utils.torch_compare.TOLERANCES: float32 rtol 1e-4, atol 1e-5). float32 sums of
# C/G·KH·KW (forward) or N·OH·OW (weight gradient) products are accumulated in another
# order than torch's, which moves the last bits only: over 6,000 drawn float32 cases the
# worst difference was about half the tolerance (6e-6 on a value near zero).
DTYPES = st.sampled_from([np.float64, np.float32])


def _inputs(rng, shapes):
    return [None if s is None else rng.standard_normal(s) for s in shapes]


def _torch_quiet(fn):
    """torch warns that padding='same' with an even kernel copies the input; we know."""
    def call(*args, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fn(*args, **kw)
    return call


# ------------------------------------------------------------------ against torch

@SETTINGS
@given(conv2d_arguments(), DTYPES)
def test_conv2d_matches_torch(torch, rng, setup, dtype):
    shapes, kw = setup
    compare_with_torch(lambda x, w, b: F.conv2d(x, w, b, **kw),
                       _torch_quiet(lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **kw)),
                       _inputs(rng, shapes), dtype=dtype, name=f"conv2d {kw}")


@SETTINGS
@given(conv_transpose2d_arguments(), DTYPES)
def test_conv_transpose2d_matches_torch(torch, rng, setup, dtype):
    shapes, kw = setup
    compare_with_torch(lambda x, w, b: F.conv_transpose2d(x, w, b, **kw),
                       lambda x, w, b: torch.nn.functional.conv_transpose2d(x, w, b, **kw),
                       _inputs(rng, shapes), dtype=dtype, name=f"conv_transpose2d {kw}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shapes, kw", [
    # depthwise with channel multiplier (MobileNet-like)
    ([(2, 4, 7, 7), (8, 1, 3, 3), (8,)], dict(padding=1, groups=4)),
    # AlexNet-like two towers, strided
    ([(1, 6, 11, 11), (4, 3, 5, 5), (4,)], dict(stride=2, padding=2, groups=2)),
    # kernel as large as the input: one output pixel (a fully connected layer)
    ([(3, 2, 5, 4), (3, 2, 5, 4), None], dict()),
    # one channel, batch 1, 1x1 kernel
    ([(1, 1, 3, 5), (2, 1, 1, 1), (2,)], dict(stride=(2, 3))),
    # 'same' with an even kernel and dilation: the odd padding goes right/bottom
    ([(2, 3, 6, 5), (2, 3, 4, 2), (2,)], dict(padding="same", dilation=(1, 3))),
])
def test_conv2d_named_cases(torch, rng, shapes, kw, dtype):
    compare_with_torch(lambda x, w, b: F.conv2d(x, w, b, **kw),
                       _torch_quiet(lambda x, w, b: torch.nn.functional.conv2d(x, w, b, **kw)),
                       _inputs(rng, shapes), dtype=dtype)


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_unbatched_3d_input(torch, rng, op):
    # weight (4, 2, 3, 3) with groups=2: 4 output channels for either op
    x, w, b = (rng.standard_normal(s) for s in ((4, 5, 6), (4, 2, 3, 3), (4,)))
    kw = dict(stride=2, padding=1, groups=2)
    out = getattr(F, op)(mc.tensor(x), mc.tensor(w), mc.tensor(b), **kw)
    assert out.ndim == 3
    compare_with_torch(lambda *a: getattr(F, op)(*a, **kw),
                       lambda *a: getattr(torch.nn.functional, op)(*a, **kw),
                       [x, w, b])


def test_non_contiguous_input_and_upstream(torch, rng):
    x = rng.standard_normal((6, 5, 3, 2)).transpose(3, 2, 1, 0)     # (2, 3, 5, 6) view
    w = rng.standard_normal((4, 3, 2, 2))
    compare_with_torch(lambda x, w: F.conv2d(x, w, padding=1).transpose(2, 3),
                       lambda x, w: torch.nn.functional.conv2d(x, w, padding=1).transpose(2, 3),
                       [x, w])


# ----------------------------------------------------------- finite differences

@pytest.mark.parametrize("kw", [dict(stride=2, padding=1, dilation=(2, 1), groups=2),
                                dict(padding="same", groups=4)])
def test_conv2d_gradcheck(rng, kw):
    x = mc.tensor(rng.standard_normal((2, 4, 5, 6)), requires_grad=True)
    w = mc.tensor(rng.standard_normal((4, 4 // kw["groups"], 3, 2)), requires_grad=True)
    b = mc.tensor(rng.standard_normal(4), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, **kw), x, w, b)


def test_conv_transpose2d_gradcheck(rng):
    x = mc.tensor(rng.standard_normal((2, 4, 3, 4)), requires_grad=True)
    w = mc.tensor(rng.standard_normal((4, 2, 3, 2)), requires_grad=True)
    b = mc.tensor(rng.standard_normal(4), requires_grad=True)
    kw = dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), groups=2, dilation=(1, 2))
    assert gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, **kw), x, w, b)


# ------------------------------------------------------- dtype and saved arrays

@pytest.mark.parametrize("op, wshape", [("conv2d", (4, 3, 3, 3)),
                                        ("conv_transpose2d", (3, 4, 3, 3))])
def test_float32_stays_float32(rng, op, wshape):
    x = mc.tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32), requires_grad=True)
    w = mc.tensor(rng.standard_normal(wshape).astype(np.float32), requires_grad=True)
    b = mc.tensor(np.zeros(4, np.float32), requires_grad=True)
    out = getattr(F, op)(x, w, b, stride=2, padding=1)
    assert out.dtype == np.float32
    out.backward(np.ones(out.shape, np.float32))
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32


def test_forward_saves_only_what_backward_needs(rng):
    # what the reference path saves (the CPU fast path keeps the input instead of its
    # columns: tests/kernels/test_fast_conv.py checks that one)
    with dispatch.kernels("reference"):
        x = mc.tensor(rng.standard_normal((1, 2, 5, 5)))
        w = mc.tensor(rng.standard_normal((3, 2, 3, 3)))
        only_w = F.conv2d(x, w.requires_grad_()).grad_fn
        assert only_w.cols is not None and only_w.w_mat is None
        x.requires_grad_()
        w.requires_grad_(False)
        only_x = F.conv2d(x, w).grad_fn
        assert only_x.cols is None and only_x.w_mat is not None
        out = F.conv2d(x, w)
        out.backward(np.ones(out.shape))
        assert x.grad is not None and w.grad is None


# -------------------------------------------------------------------------- errors

def _t(*shape, dtype=np.float64):
    return mc.tensor(np.zeros(shape, dtype=dtype))


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.conv2d(_t(2, 3, 4), _t(1, 3, 1, 1)[0]), ValueError, r"4-D weight"),
    (lambda: F.conv2d(_t(3, 4), _t(1, 3, 1, 1)), ValueError, r"3-D .* or 4-D .* got shape \(3, 4\)"),
    (lambda: F.conv2d(_t(1, 4, 5, 5), _t(2, 3, 3, 3)), ValueError,
     r"3 input channels per group.*groups=1.*\(1, 4, 5, 5\) has 4"),
    (lambda: F.conv2d(_t(1, 4, 5, 5), _t(3, 2, 3, 3), groups=2), ValueError,
     r"out_channels \(3.*divisible by groups \(2\)"),
    (lambda: F.conv2d(_t(1, 4, 5, 5), _t(4, 1, 3, 3), groups=0), ValueError, "groups"),
    (lambda: F.conv2d(_t(1, 1, 3, 3), _t(1, 1, 4, 4)), ValueError,
     r"larger than the padded input 3x3.*output size would be 0x0"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), dilation=3), ValueError,
     r"spans 7x7.*would be -1x-1"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), stride=0), ValueError, "stride must be >= 1"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), stride=(1, -2)), ValueError, "stride"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), padding=-1), ValueError,
     "padding must be >= 0"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), dilation=0), ValueError, "dilation"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), padding="full"), ValueError,
     r"'valid' or 'same', got 'full'"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), padding="same", stride=2), ValueError,
     "strided"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), stride=1.5), TypeError, "int or a pair"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(1, 1, 3, 3), padding=(1, 2, 3)), TypeError, "padding"),
    (lambda: F.conv2d(_t(1, 1, 5, 5, dtype=np.float32), _t(1, 1, 3, 3)), TypeError,
     "float32 does not match weight dtype float64"),
    (lambda: F.conv2d(mc.tensor(np.zeros((1, 1, 5, 5), np.int64)),
                      mc.tensor(np.zeros((1, 1, 3, 3), np.int64))), TypeError, "floating"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(2, 1, 3, 3), _t(3)), ValueError,
     r"bias must have shape \(2,\).*\(3,\)"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(2, 1, 3, 3), _t(2, dtype=np.float32)), TypeError,
     "bias dtype"),
    (lambda: F.conv2d(_t(1, 1, 5, 5), _t(2, 1, 0, 3)), ValueError, "kernel size"),
    # conv_transpose2d
    (lambda: F.conv_transpose2d(_t(1, 4, 3, 3), _t(3, 2, 2, 2)), ValueError,
     r"expects 3 input channels.*\(1, 4, 3, 3\) has 4"),
    (lambda: F.conv_transpose2d(_t(1, 3, 3, 3), _t(3, 2, 2, 2), groups=2), ValueError,
     r"in_channels \(3\) must be divisible by groups \(2\)"),
    (lambda: F.conv_transpose2d(_t(1, 2, 3, 3), _t(2, 2, 2, 2), output_padding=1), ValueError,
     "output_padding .* smaller than either stride"),
    (lambda: F.conv_transpose2d(_t(1, 2, 3, 3), _t(2, 2, 2, 2), stride=2, output_padding=(0, 2)),
     ValueError, "output_padding"),
    (lambda: F.conv_transpose2d(_t(1, 2, 1, 1), _t(2, 2, 1, 1), padding=1), ValueError,
     "output size would be -1x-1"),
    (lambda: F.conv_transpose2d(_t(1, 2, 3, 3), _t(2, 2, 2, 2), padding="same"), ValueError,
     "only for conv2d"),
    (lambda: F.conv_transpose2d(_t(1, 2, 3, 3), _t(2, 2, 2, 2), stride=-1), ValueError,
     "stride must be >= 1"),
    (lambda: F.conv_transpose2d(_t(1, 2, 3, 3), _t(2, 2, 2, 2), _t(3)), ValueError,
     r"bias must have shape \(2,\)"),
    (lambda: F.conv_transpose2d(_t(2, 3, 3), _t(2, 2, 2, 2, dtype=np.float32)), TypeError,
     "dtype"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
