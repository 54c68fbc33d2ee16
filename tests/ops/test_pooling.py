"""Pooling against torch: max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d
and max_unpool2d, forward, returned indices and input gradients, float64 (tight) and
float32 (loose), over hypothesis-drawn windows; ties, NaN and -inf as torch treats them;
finite differences on small tie-free inputs; and every error."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from minicnn import functional as F
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch
from strategies import pool2d_arguments

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = (np.float64, np.float32)


def distinct(rng, shape):
    """Tie-free values 0.01 apart, mostly negative (zero padding would show)."""
    n = int(np.prod(shape))
    return rng.permutation(n).reshape(shape) * 0.01 - 0.8 * n * 0.01


def both(torch, name, inputs, dtypes=DTYPES, **kw):
    """minicnn's F.name against torch's on the same inputs and keywords, in each dtype:
    outputs, integer outputs (indices) exactly, and every float input's gradient."""
    for dtype in dtypes:
        compare_with_torch(lambda *a: getattr(F, name)(*a, **kw),
                           lambda *a: getattr(torch.nn.functional, name)(*a, **kw),
                           inputs, dtype=dtype, name=f"{name} {kw}")


def values_without_grad(torch, name, x, **kw):
    """The forward that skips the argmax bookkeeping (no gradient wanted) gives the same."""
    with mc.no_grad():
        out = getattr(F, name)(mc.Tensor(x), **kw)
    ref = getattr(torch.nn.functional, name)(torch.tensor(x), **kw)
    np.testing.assert_array_equal(out.numpy(), ref.numpy())


# ------------------------------------------------------------------ strategies

def windows(dilation=True, fit="output"):
    """(x shape, keywords): kernel, stride, padding, dilation (unless ``dilation=False``)
    and ceil_mode, in the spellings a caller may use, for an input with an output
    (``fit``: see strategies.pool_geometry)."""
    return pool2d_arguments(with_dilation=dilation, fit=fit)


@st.composite
def adaptive(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)),
             draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    side = st.one_of(st.integers(1, 10), st.none())
    size = draw(st.one_of(st.integers(1, 10), st.tuples(side, side)))
    return shape, size


# ------------------------------------------------------------------- max_pool2d

@SETTINGS
@given(windows(), st.integers(0, 2**31))
def test_max_pool2d_matches_torch(torch, case, seed):
    shape, kw = case
    x = distinct(np.random.default_rng(seed), shape)
    if all_padding_window(torch, x, kw):
        with pytest.raises(ValueError, match="would pool nothing but padding"):
            F.max_pool2d(mc.Tensor(x), **kw)
        return
    both(torch, "max_pool2d", [x], return_indices=True, **kw)
    values_without_grad(torch, "max_pool2d", x, **kw)


def all_padding_window(torch, x, kw):
    """Whether some window of this (dilated) max pool reads only padding: torch gives
    -inf and an index outside the input there, minicnn refuses."""
    out = torch.nn.functional.max_pool2d(torch.tensor(x), **kw)
    kernel, stride, padding, dilation = (
        np.broadcast_to(kw[k] if kw.get(k) is not None else kw["kernel_size"], 2)
        for k in ("kernel_size", "stride", "padding", "dilation"))
    for n, o, k, s, p, d in zip(x.shape[2:], out.shape[2:], kernel, stride, padding, dilation):
        if any(not any(0 <= i * s - p + j * d < n for j in range(k)) for i in range(o)):
            return True
    return False


def test_max_pool2d_refuses_a_window_of_only_padding(torch):
    x = np.zeros((1, 2, 1, 1))
    with pytest.raises(ValueError, match=r"output column 0 would pool nothing but padding.*"
                                         r"taps \[-1, 1\] all miss the input's 1 columns"):
        F.max_pool2d(mc.Tensor(x), (1, 2), padding=(0, 1), dilation=(1, 2))
    # torch answers -inf with index 1, outside the 1x1 plane
    out, idx = torch.nn.functional.max_pool2d(torch.tensor(x), (1, 2), padding=(0, 1),
                                              dilation=(1, 2), return_indices=True)
    assert out[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == 1


@SETTINGS
@given(windows(), st.integers(0, 2**31))
def test_max_pool2d_ties_go_where_torch_sends_them(torch, case, seed):
    # integer-valued data: many equal maxima in a window, and overlapping windows
    shape, kw = case
    x = np.random.default_rng(seed).integers(-2, 2, shape).astype(np.float64)
    if all_padding_window(torch, x, kw):
        return
    both(torch, "max_pool2d", [x], return_indices=True, **kw)


def test_max_pool2d_all_equal_overlapping_windows(torch):
    x = np.full((1, 2, 5, 6), -3.0)
    both(torch, "max_pool2d", [x], kernel_size=3, stride=1, padding=1, return_indices=True)


def test_max_pool2d_pads_with_minus_infinity(torch):
    x = -np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    out = F.max_pool2d(mc.Tensor(x), 2, stride=2, padding=1)
    assert (out.numpy() < 0).all()
    both(torch, "max_pool2d", [x], kernel_size=2, padding=1, return_indices=True)


def test_max_pool2d_nan_and_inf_like_torch(torch):
    nan, inf = np.nan, np.inf
    x = np.array([[[[1.0, nan, 3.0, -inf],
                    [nan, 2.0, nan, -inf],
                    [-inf, -inf, 0.5, -inf],
                    [-inf, -inf, -inf, -inf]]]])
    calls = [("max_pool2d", kw) for kw in (dict(kernel_size=3),
                                           dict(kernel_size=2, stride=1, padding=1),
                                           dict(kernel_size=2, ceil_mode=True, stride=3))]
    calls.append(("adaptive_max_pool2d", dict(output_size=3)))
    for name, kw in calls:
        exactly_as_torch(torch, name, x, **kw)


def exactly_as_torch(torch, name, x, **kw):
    """Values, indices and gradient identical to torch's, NaN and inf included (by
    hand: compare_with_torch subtracts, and inf - inf warns)."""
    xm, xt = mc.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, idx = getattr(F, name)(xm, return_indices=True, **kw)
    ref, ref_idx = getattr(torch.nn.functional, name)(xt, return_indices=True, **kw)
    np.testing.assert_array_equal(out.numpy(), ref.detach().numpy())
    np.testing.assert_array_equal(idx.numpy(), ref_idx.numpy())
    up = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(up)
    ref.backward(torch.tensor(up))
    # duplicates add up in another order: equal up to rounding
    np.testing.assert_allclose(xm.grad.numpy(), xt.grad.numpy(), rtol=1e-12, atol=1e-15)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows(), adaptive(), st.integers(0, 2**31))
def test_sprinkled_nan_and_inf_like_torch(torch, case, adaptive_case, seed):
    rng = np.random.default_rng(seed)
    shape, kw = case
    x = rng.integers(-2, 2, shape).astype(np.float64)
    x[rng.random(shape) < 0.2] = np.nan
    x[rng.random(shape) < 0.2] = -np.inf
    if not all_padding_window(torch, x, kw):
        exactly_as_torch(torch, "max_pool2d", x, **kw)
    shape, size = adaptive_case
    x = rng.integers(-2, 2, shape).astype(np.float64)
    x[rng.random(shape) < 0.2] = np.nan
    x[rng.random(shape) < 0.2] = -np.inf
    exactly_as_torch(torch, "adaptive_max_pool2d", x, output_size=size)


def test_max_pool2d_integer_input(torch):
    x = np.random.default_rng(0).integers(-50, 50, (2, 3, 5, 6))
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)):
        out, idx = F.max_pool2d(mc.Tensor(x), return_indices=True, **kw)
        ref, ref_idx = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out.numpy(), ref.numpy())
        np.testing.assert_array_equal(idx.numpy(), ref_idx.numpy())


# ------------------------------------------------------------------- avg_pool2d

@SETTINGS
@given(windows(dilation=False), st.booleans(), st.sampled_from([None, 1, 3, -2]),
       st.integers(0, 2**31))
def test_avg_pool2d_matches_torch(torch, case, count_include_pad, divisor_override, seed):
    shape, kw = case
    x = np.random.default_rng(seed).standard_normal(shape)
    both(torch, "avg_pool2d", [x], count_include_pad=count_include_pad,
         divisor_override=divisor_override, **kw)


def test_avg_pool2d_ceil_windows_past_the_padding(torch):
    # H=6, k=3, s=2, p=1, ceil: the last window spans padded rows 6..8 of a 0..7 padded
    # input; torch divides it by 2*... (clipped), not by 9, with count_include_pad
    x = np.random.default_rng(1).standard_normal((1, 1, 6, 6))
    for include in (True, False):
        both(torch, "avg_pool2d", [x], kernel_size=3, stride=2, padding=1, ceil_mode=True,
             count_include_pad=include)
    ones = F.avg_pool2d(mc.Tensor(np.ones((1, 1, 6, 6))), 3, 2, 1, ceil_mode=True,
                        count_include_pad=False)
    np.testing.assert_allclose(ones.numpy(), 1.0)


# --------------------------------------------------------------------- adaptive

@SETTINGS
@given(adaptive(), st.integers(0, 2**31))
def test_adaptive_avg_pool2d_matches_torch(torch, case, seed):
    shape, size = case
    x = np.random.default_rng(seed).standard_normal(shape)
    both(torch, "adaptive_avg_pool2d", [x], output_size=size)


@SETTINGS
@given(adaptive(), st.integers(0, 2**31), st.booleans())
def test_adaptive_max_pool2d_matches_torch(torch, case, seed, ties):
    shape, size = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 2, shape).astype(np.float64) if ties else distinct(rng, shape)
    both(torch, "adaptive_max_pool2d", [x], output_size=size, return_indices=True)
    values_without_grad(torch, "adaptive_max_pool2d", x, output_size=size)


@pytest.mark.parametrize("name", ["adaptive_avg_pool2d", "adaptive_max_pool2d"])
def test_adaptive_empty_output(torch, name):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    for size in (0, (0, 3), (2, 0)):
        out = getattr(F, name)(mc.Tensor(x), size)
        ref = getattr(torch.nn.functional, name)(torch.tensor(x), size)
        assert out.shape == tuple(ref.shape)


# ------------------------------------------------------------------ max_unpool2d

@SETTINGS
@given(windows(dilation=False, fit="padded"), st.sampled_from(["default", "pair", "full"]),
       st.integers(0, 2**31))
def test_max_unpool2d_matches_torch(torch, case, how, seed):
    # ceil_mode is dropped below: the padded input must hold a window without it
    shape, kw = case
    kw.pop("ceil_mode")
    kernel, padding = kw["kernel_size"], kw["padding"]
    stride = kw["stride"] or kernel
    if np.any(np.less(stride, kernel)):
        kw["stride"] = stride = kernel           # no overlap: every index appears once
    rng = np.random.default_rng(seed)
    x = torch.tensor(distinct(rng, shape))
    pooled, indices = torch.nn.functional.max_pool2d(x, return_indices=True, **kw)
    kernel, stride, padding = (np.broadcast_to(v, 2) for v in (kernel, stride, padding))
    default = tuple((np.array(pooled.shape[2:]) - 1) * stride - 2 * padding + kernel)
    if how == "default" and default != shape[2:]:
        how = "pair"      # the indices point into the original plane, so ask for its size
    size = {"default": None, "pair": shape[2:], "full": shape}[how]
    values = rng.standard_normal(tuple(pooled.shape))
    both(torch, "max_unpool2d", [values, indices.numpy()], output_size=size, **kw)


def test_max_unpool2d_inverts_max_pool2d_positions(torch):
    x = distinct(np.random.default_rng(2), (2, 3, 6, 4))
    out, idx = F.max_pool2d(mc.Tensor(x), 2, return_indices=True)
    back = F.max_unpool2d(out, idx, 2).numpy()
    kept = back != 0
    np.testing.assert_array_equal(back[kept], x[kept])
    assert kept.sum() == out.numpy().size


def test_max_unpool2d_repeated_index_keeps_the_last(torch):
    x = np.array([[[[1.0, 2.0, 3.0]]]])
    idx = np.array([[[[0, 0, 2]]]])
    both(torch, "max_unpool2d", [x, idx], kernel_size=(1, 2), dtypes=(np.float64,))


# ------------------------------------------------------------ shapes and dtypes

@pytest.mark.parametrize("name, kw", [
    ("max_pool2d", dict(kernel_size=2, padding=1, return_indices=True)),
    ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("adaptive_avg_pool2d", dict(output_size=(2, None))),
    ("adaptive_max_pool2d", dict(output_size=3, return_indices=True)),
])
def test_unbatched_input(torch, name, kw):
    x = distinct(np.random.default_rng(3), (3, 5, 4))
    both(torch, name, [x], **kw)


def test_max_unpool2d_unbatched(torch):
    x = torch.tensor(distinct(np.random.default_rng(4), (2, 4, 6)))
    pooled, idx = torch.nn.functional.max_pool2d(x, 2, return_indices=True)
    both(torch, "max_unpool2d", [pooled.numpy(), idx.numpy()], kernel_size=2)
    both(torch, "max_unpool2d", [pooled.numpy(), idx.numpy()], kernel_size=2,
         output_size=(5, 7))


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
                                  "adaptive_max_pool2d"])
def test_empty_batch(torch, name):
    kw = dict(output_size=2) if name.startswith("adaptive") else dict(kernel_size=2)
    both(torch, name, [np.zeros((0, 2, 4, 4))], **kw)


@pytest.mark.parametrize("call", [
    lambda x: F.max_pool2d(x, 3, 2, 1),
    lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
    lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
    lambda x: F.adaptive_max_pool2d(x, (3, 2)),
    lambda x: F.max_unpool2d(x, mc.Tensor(np.zeros(x.shape, dtype=np.int64)), 2),
], ids=["max", "avg", "adaptive_avg", "adaptive_max", "unpool"])
def test_float32_stays_float32_and_input_is_untouched(call):
    data = np.random.default_rng(5).standard_normal((2, 3, 7, 6)).astype(np.float32)
    x = mc.Tensor(data.copy(), requires_grad=True)
    out = call(x)
    out.backward(np.ones(out.shape, dtype=np.float32))
    assert out.dtype == np.float32 and x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.numpy(), data)


def test_non_contiguous_input(torch):
    x = distinct(np.random.default_rng(6), (2, 3, 6, 7)).transpose(0, 1, 3, 2)
    assert not x.flags.c_contiguous
    for name, kw in (("max_pool2d", dict(kernel_size=3, stride=2, return_indices=True)),
                     ("avg_pool2d", dict(kernel_size=2)),
                     ("adaptive_max_pool2d", dict(output_size=(4, 3))),
                     ("adaptive_avg_pool2d", dict(output_size=(4, 3)))):
        out = getattr(F, name)(mc.Tensor(x), **kw)
        ref = getattr(torch.nn.functional, name)(torch.tensor(x), **kw)
        out, ref = (out, ref) if isinstance(out, tuple) else ((out,), (ref,))
        for o, r in zip(out, ref):
            np.testing.assert_allclose(o.numpy(), r.numpy(), rtol=1e-12)


# ------------------------------------------------------------- finite differences

@pytest.mark.parametrize("fn", [
    lambda x: F.max_pool2d(x, 2),
    lambda x: F.max_pool2d(x, 3, stride=1, padding=1),
    lambda x: F.max_pool2d(x, (2, 3), stride=(1, 2), dilation=(2, 1), ceil_mode=True),
    lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True),
    lambda x: F.avg_pool2d(x, 2, stride=1, padding=1, count_include_pad=False),
    lambda x: F.avg_pool2d(x, (3, 2), divisor_override=5),
    lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
    lambda x: F.adaptive_avg_pool2d(x, 6),
    lambda x: F.adaptive_max_pool2d(x, (3, 2)),
    lambda x: F.adaptive_max_pool2d(x, (6, 1)),
    lambda x: F.max_pool2d(x[0], 2, padding=1),
], ids=["max k2", "max k3 s1 p1", "max dilated ceil", "avg ceil", "avg exclude pad",
        "avg divisor", "adaptive avg", "adaptive avg upsample", "adaptive max",
        "adaptive max upsample", "max unbatched"])
def test_gradcheck(fn):
    x = mc.Tensor(distinct(np.random.default_rng(7), (2, 2, 5, 4)), requires_grad=True)
    gradcheck(fn, x)


def test_gradcheck_max_unpool2d():
    rng = np.random.default_rng(8)
    x = mc.Tensor(rng.standard_normal((1, 2, 2, 3)), requires_grad=True)
    idx = mc.Tensor(rng.permutation(20)[:12].reshape(1, 2, 2, 3))
    gradcheck(lambda v: F.max_unpool2d(v, idx, 2, output_size=(4, 5)), x)


# ------------------------------------------------------------------------ errors

X4 = mc.Tensor(np.zeros((1, 2, 5, 5)))
IDX = mc.Tensor(np.zeros((1, 2, 2, 2), dtype=np.int64))
V = mc.Tensor(np.zeros((1, 2, 2, 2)))

ERRORS = [
    (lambda: F.max_pool2d(mc.Tensor(np.zeros((5, 5))), 2), ValueError, r"max_pool2d: expected a 3-D"),
    (lambda: F.avg_pool2d(mc.Tensor(np.zeros((1, 1, 1, 5, 5))), 2), ValueError, r"avg_pool2d: expected a 3-D"),
    (lambda: F.max_pool2d(mc.Tensor(np.zeros((1, 0, 5, 5))), 2), ValueError, r"non-zero"),
    (lambda: F.adaptive_avg_pool2d(mc.Tensor(np.zeros((1, 2, 0, 5))), 2), ValueError, r"non-zero"),
    (lambda: F.avg_pool2d(mc.Tensor(np.zeros((1, 2, 5, 5), dtype=np.int64)), 2), TypeError, r"floating-point"),
    (lambda: F.adaptive_max_pool2d(mc.Tensor(np.zeros((1, 2, 5, 5), dtype=bool)), 2), TypeError, r"floating-point"),
    (lambda: F.max_pool2d(mc.Tensor(np.zeros((1, 2, 5, 5), dtype=bool)), 2), TypeError, r"or integer"),
    (lambda: F.max_pool2d(X4, 0), ValueError, r"kernel_size must be >= 1, got \(0, 0\)"),
    (lambda: F.max_pool2d(X4, (2, -1)), ValueError, r"kernel_size must be >= 1"),
    (lambda: F.max_pool2d(X4, 2, stride=0), ValueError, r"stride must be >= 1"),
    (lambda: F.avg_pool2d(X4, 2, stride=(1, -2)), ValueError, r"stride must be >= 1"),
    (lambda: F.max_pool2d(X4, 2, dilation=0), ValueError, r"dilation must be >= 1"),
    (lambda: F.max_pool2d(X4, 2, padding=-1), ValueError, r"padding must be >= 0"),
    (lambda: F.max_pool2d(X4, 3, padding=2), ValueError, r"at most half the kernel size"),
    (lambda: F.max_pool2d(X4, 3, padding=2, dilation=3), ValueError, r"at most half"),
    (lambda: F.avg_pool2d(X4, (2, 4), padding=(1, 3)), ValueError, r"at most half"),
    (lambda: F.max_pool2d(X4, 6), ValueError, r"output would be empty: input 5x5 gives an output of 0x0"),
    (lambda: F.max_pool2d(X4, 3, dilation=3), ValueError, r"spans 7x7"),
    (lambda: F.avg_pool2d(X4, (2, 6)), ValueError, r"output of 2x0"),
    (lambda: F.max_pool2d(X4, 2.0), TypeError, r"kernel_size must be an int or a pair"),
    (lambda: F.max_pool2d(X4, (2, 2, 2)), TypeError, r"kernel_size must be an int or a pair"),
    (lambda: F.max_pool2d(X4, 2, padding=(1,) * 3), TypeError, r"padding must be"),
    (lambda: F.avg_pool2d(X4, 2, divisor_override=0), ValueError, r"divisor_override must not be zero"),
    (lambda: F.avg_pool2d(X4, 2, divisor_override=1.5), TypeError, r"divisor_override must be an int"),
    (lambda: F.adaptive_avg_pool2d(X4, (2, 3, 4)), TypeError, r"output_size must be an int or a pair"),
    (lambda: F.adaptive_max_pool2d(X4, 2.5), TypeError, r"output_size must be"),
    (lambda: F.adaptive_max_pool2d(X4, None), TypeError, r"output_size must be"),
    (lambda: F.adaptive_avg_pool2d(X4, (-1, 3)), ValueError, r"output_size must be >= 0"),
    (lambda: F.max_unpool2d(V, IDX.array[:, :1], 2), ValueError, r"indices must have the input's shape \(1, 2, 2, 2\)"),
    (lambda: F.max_unpool2d(V, IDX.array.astype(np.float64), 2), TypeError, r"indices must be integers"),
    (lambda: F.max_unpool2d(V, IDX.array + 16, 2), ValueError, r"indices must lie in \[0, 16\).*found 16"),
    (lambda: F.max_unpool2d(V, IDX.array - 1, 2), ValueError, r"found -1"),
    (lambda: F.max_unpool2d(V, IDX, 2, output_size=(6, 4)), ValueError, r"strictly between 2 and 6"),
    (lambda: F.max_unpool2d(V, IDX, 2, output_size=(2, 4)), ValueError, r"strictly between 2 and 6"),
    (lambda: F.max_unpool2d(V, IDX, 2, output_size=(2, 4, 4)), ValueError, r"\(OH, OW\) or \(N, C, OH, OW\)"),
    (lambda: F.max_unpool2d(V, IDX, 2, output_size=4), ValueError, r"output_size must be \(OH, OW\)"),
    (lambda: F.max_unpool2d(V, IDX, 0), ValueError, r"kernel_size must be >= 1"),
    (lambda: F.max_unpool2d(V, IDX, 2, stride=0), ValueError, r"stride must be >= 1"),
    (lambda: F.max_unpool2d(V, IDX, 1, padding=3), ValueError, r"would be negative"),
    (lambda: F.max_unpool2d(mc.Tensor(np.zeros((2, 2))), np.zeros((2, 2), dtype=np.int64), 2), ValueError, r"max_unpool2d: expected a 3-D"),
]


@pytest.mark.parametrize("call, error, message", ERRORS, ids=[m for _, _, m in ERRORS])
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_errors_torch_also_rejects(torch):
    """Where we refuse, torch refuses too (we only add clearer messages)."""
    t = torch.zeros(1, 2, 5, 5)
    for call in (lambda: torch.nn.functional.max_pool2d(t, 3, padding=2),
                 lambda: torch.nn.functional.max_pool2d(t, 6),
                 lambda: torch.nn.functional.avg_pool2d(t, 2, divisor_override=0),
                 lambda: torch.nn.functional.adaptive_avg_pool2d(t, (-1, 3))):
        with pytest.raises(RuntimeError):
            call()
