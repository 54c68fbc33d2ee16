"""Normalisation ops against torch (float64 tight; float32 loose, where float32 can resolve
the input: see F32_MAX_AMPLIFICATION) over hypothesis-drawn shapes and hyper-parameters, by finite differences, and against direct loops where torch
has no counterpart (LRN within a channel, the window sums of kernels/lrn.py)."""
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from kernels import lrn as klrn
from minicnn import functional as F
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch

# the `torch` fixture is only the module: nothing in it needs resetting between examples
SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# float32: the default rtol; atol 1e-4 because the input gradient of a normalisation is a
# difference of order-1 terms that cancel (dx sums to zero over each normalised group):
# where the exact value is 0, torch's float32 gives up to 6.1e-5 of rounding (minicnn: 0).
FLOAT32 = dict(dtype=np.float32, rtol=1e-4, atol=1e-4)


# NOTE: float32 cannot resolve every normalisation. The input gradient is
# rstd * (g - mean(g) - xhat * mean(g * xhat)) with rstd = 1 / sqrt(var + eps): the
# rounding of the g terms is magnified by rstd, and that of x - mean (eps32 * |x|) by
# rstd**2 through xhat. Where a group's values nearly coincide, or a group has one
# element (var = 0, rstd = 1/sqrt(eps)), torch's float32 and minicnn's both drift past
# FLOAT32's tolerance, and hypothesis drew such a group about once in a few thousand
# examples: the float32 comparison then failed at random. E.g. group_norm of
# x = default_rng(10).standard_normal((1, 8)) in 4 groups: the group [0.843, 0.858]
# (std 0.0074) has an exact input gradient 3.36976, torch's float32 3.37036 (1.8e-4
# relative), minicnn's 3.36974; or a one-element group, exact gradient 0, where torch's
# float32 gives -1.2e-4. float32_amplification (below) estimates that magnification:
# over 30,000 random group_norm and layer_norm inputs (eps 1e-5 and 1e-2, with and
# without affine) no float32 comparison failed even at a quarter of FLOAT32's tolerance
# while it stayed below 200; 27 of the 2,685 inputs above 500 failed at the tolerance
# itself. So float32 is compared with torch only below F32_MAX_AMPLIFICATION (the
# float64 comparison runs on every draw).
F32_MAX_AMPLIFICATION = 100.0


def float32_amplification(x, axes, eps):
    """How much a normalisation over ``axes`` magnifies float32 rounding in its input
    gradient: the largest ``rstd * (1 + max|x| * rstd)`` over its groups, where
    ``rstd = 1 / sqrt(var + eps)`` (about 2 to 10 for a few standard-normal values)."""
    x = np.asarray(x, dtype=np.float64)
    rstd = 1.0 / np.sqrt(x.var(axis=axes) + eps)
    return float(np.max(rstd * (1.0 + np.abs(x).max(axis=axes) * rstd)))


def _both(mc_fn, torch_fn, inputs, requires_grad=None, f32=FLOAT32, amplification=0.0):
    """Compare in float64 (tight defaults) and, when ``amplification``
    (``float32_amplification`` of the input) is below F32_MAX_AMPLIFICATION, in float32
    (loose)."""
    compare_with_torch(mc_fn, torch_fn, inputs, requires_grad)
    if amplification < F32_MAX_AMPLIFICATION:
        compare_with_torch(mc_fn, torch_fn, inputs, requires_grad, **f32)


shapes_nc_star = st.tuples(st.integers(1, 3), st.integers(1, 7),
                           st.lists(st.integers(1, 4), min_size=1, max_size=3)
                           ).map(lambda t: (t[0], t[1], *t[2]))


# =================================================================== window sums

def _box_sum_loop(a, size, axes, before):
    out = np.zeros_like(a)
    for idx in itertools.product(*(range(n) for n in a.shape)):
        total = 0.0
        for offs in itertools.product(range(size), repeat=len(axes)):
            src = list(idx)
            for axis, o in zip(axes, offs):
                src[axis] = idx[axis] - before + o
            if all(0 <= s < n for s, n in zip(src, a.shape)):
                total += a[tuple(src)]
        out[idx] = total
    return out


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=3, max_size=4), size=st.integers(1, 6),
       spatial=st.booleans(), seed=st.integers(0, 2**16))
def test_window_sums_match_direct_loop_and_are_adjoint(shape, size, spatial, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    axes = tuple(range(2, a.ndim)) if spatial else (1,)
    fn = klrn.spatial_window_sum if spatial else klrn.channel_window_sum
    before = size // 2
    np.testing.assert_allclose(fn(a, size), _box_sum_loop(a, size, axes, before), atol=1e-12)
    # the transposed window is the adjoint: <S a, b> = <a, Sᵀ b> (what backward relies on)
    back = fn(b, size, klrn.transposed_before(size, before))
    np.testing.assert_allclose((fn(a, size) * b).sum(), (a * back).sum(), rtol=1e-10)


def test_even_window_is_placed_as_torch_places_it():
    a = np.zeros((1, 5, 1))
    a[0, 2, 0] = 1.0
    # size 4: channel c sums c-2 .. c+1, so channel 2 reaches outputs 1, 2, 3, 4
    assert klrn.channel_window_sum(a, 4)[0, :, 0].tolist() == [0, 1, 1, 1, 1]


# ====================================================== local_response_norm (torch)

@SETTINGS
@given(shape=shapes_nc_star, size=st.integers(1, 8), alpha=st.floats(1e-4, 2.0),
       beta=st.floats(0.25, 1.5), k=st.floats(0.5, 3.0), seed=st.integers(0, 2**16))
def test_local_response_norm_matches_torch(torch, shape, size, alpha, beta, k, seed):
    x = 2 * np.random.default_rng(seed).standard_normal(shape)
    _both(lambda a: F.local_response_norm(a, size, alpha, beta, k),
          lambda a: torch.nn.functional.local_response_norm(a, size, alpha, beta, k), [x],
          f32=dict(dtype=np.float32, rtol=1e-4, atol=1e-5))


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_local_response_norm_gradcheck_alpha_near_one(size):
    x = mc.tensor(np.random.default_rng(size).standard_normal((2, 6, 2, 3)), requires_grad=True)
    gradcheck(lambda a: F.local_response_norm(a, size, alpha=0.95, beta=0.75, k=1.0), x)


def test_local_response_norm_window_term_matters(torch):
    # guards the test set-up: with α near 1 the output is far from the identity term alone
    x = np.random.default_rng(1).standard_normal((1, 4, 3, 3))
    y = F.local_response_norm(mc.tensor(x), 3, alpha=0.9).numpy()
    assert np.abs(y - x).max() > 0.1


def test_local_response_norm_default_arguments_match_torch(torch):
    x = np.random.default_rng(2).standard_normal((2, 10, 3, 3))
    _both(lambda a: F.local_response_norm(a, 5), lambda a: torch.nn.functional.local_response_norm(a, 5), [x])


def test_local_response_norm_empty_input_is_returned():
    x = mc.zeros(2, 0, 3)
    assert F.local_response_norm(x, 3) is x
    assert F.local_response_norm_spatial(x, 3) is x


def test_local_response_norm_errors():
    with pytest.raises(ValueError, match=r"local_response_norm: expected 3D .* got 2 dim"):
        F.local_response_norm(mc.zeros(2, 3), 2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"local_response_norm: size must be a positive integer"):
            F.local_response_norm(mc.zeros(2, 3, 4), bad)
    with pytest.raises(TypeError, match=r"local_response_norm: expected a floating-point"):
        F.local_response_norm(mc.tensor(np.ones((2, 3, 4), dtype=np.int64)), 2)
    with pytest.raises(ValueError, match=r"local_response_norm_spatial: expected 3D"):
        F.local_response_norm_spatial(mc.zeros(3), 2)
    with pytest.raises(ValueError, match=r"local_response_norm_spatial: size"):
        F.local_response_norm_spatial(mc.zeros(2, 3, 4), 0)


# ================================================ local_response_norm_spatial (no torch)

def _lrn_spatial_loop(x, size, alpha, beta, k):
    """Direct definition on (N, C, H, W): a size × size zero-padded window per pixel."""
    before = size // 2
    n_, c_, h_, w_ = x.shape
    out = np.empty_like(x)
    for n, c, h, w in itertools.product(range(n_), range(c_), range(h_), range(w_)):
        hs = range(max(0, h - before), min(h_, h - before + size))
        ws = range(max(0, w - before), min(w_, w - before + size))
        total = sum(x[n, c, i, j] ** 2 for i in hs for j in ws)
        out[n, c, h, w] = x[n, c, h, w] / (k + alpha / size ** 2 * total) ** beta
    return out


@SETTINGS
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5),
                       st.integers(1, 5)),
       size=st.integers(1, 6), alpha=st.floats(1e-4, 2.0), beta=st.floats(0.25, 1.5),
       k=st.floats(0.5, 3.0), seed=st.integers(0, 2**16))
def test_local_response_norm_spatial_matches_loop(shape, size, alpha, beta, k, seed):
    x = 2 * np.random.default_rng(seed).standard_normal(shape)
    y = F.local_response_norm_spatial(mc.tensor(x), size, alpha, beta, k)
    np.testing.assert_allclose(y.numpy(), _lrn_spatial_loop(x, size, alpha, beta, k),
                               rtol=1e-12, atol=1e-14)
    y32 = F.local_response_norm_spatial(mc.tensor(x.astype(np.float32)), size, alpha, beta, k)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.numpy(), y.numpy(), rtol=1e-5, atol=1e-6)


@SETTINGS
@given(shape=st.sampled_from([(1, 2, 3, 3), (2, 1, 4, 2), (1, 1, 5), (1, 2, 2, 2, 2)]),
       size=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_local_response_norm_spatial_gradcheck(shape, size, seed):
    x = mc.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)
    gradcheck(lambda a: F.local_response_norm_spatial(a, size, alpha=0.9, beta=0.75, k=1.0), x)


def test_local_response_norm_spatial_divides_alpha_by_window_elements():
    # (N, C, L) uses a window of `size` positions and α/size; the same data as (N, C, L, 1)
    # sees the same squares but divides by size², so α·size there gives the same result
    x = np.random.default_rng(3).standard_normal((2, 3, 6))
    y3 = F.local_response_norm_spatial(mc.tensor(x), 3, alpha=0.5).numpy()
    y4 = F.local_response_norm_spatial(mc.tensor(x[..., None]), 3, alpha=1.5).numpy()
    np.testing.assert_allclose(y3, y4[..., 0], rtol=1e-13)


# ====================================================================== batch_norm

@st.composite
def bn_setups(draw):
    ndim = draw(st.integers(2, 4))
    n = draw(st.integers(1, 4))
    c = draw(st.integers(1, 4))
    spatial = tuple(draw(st.lists(st.integers(1, 3), min_size=ndim - 2, max_size=ndim - 2)))
    training = draw(st.booleans())
    if training and n * int(np.prod(spatial)) == 1:
        n = 2
    return dict(shape=(n, c) + spatial, training=training, affine=draw(st.booleans()),
                momentum=draw(st.floats(0.0, 1.0)), eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])),
                seed=draw(st.integers(0, 2**16)))


def _bn_pair(torch, training, momentum, eps, affine):
    def mc_fn(x, rm, rv, w, b):
        rm, rv = rm.clone(), rv.clone()
        y = F.batch_norm(x, rm, rv, w if affine else None, b if affine else None,
                         training=training, momentum=momentum, eps=eps)
        return y, rm, rv

    def th_fn(x, rm, rv, w, b):
        rm, rv = rm.clone(), rv.clone()
        y = torch.nn.functional.batch_norm(x, rm, rv, w if affine else None,
                                           b if affine else None, training=training,
                                           momentum=momentum, eps=eps)
        return y, rm, rv
    return mc_fn, th_fn


@SETTINGS
@given(setup=bn_setups())
def test_batch_norm_matches_torch(torch, setup):
    rng = np.random.default_rng(setup["seed"])
    c = setup["shape"][1]
    inputs = [rng.standard_normal(setup["shape"]), rng.standard_normal(c), rng.random(c) + 0.5,
              rng.standard_normal(c), rng.standard_normal(c)]
    mc_fn, th_fn = _bn_pair(torch, setup["training"], setup["momentum"], setup["eps"],
                            setup["affine"])
    x = inputs[0]          # training normalises each channel over (N, *spatial)
    amplification = (float32_amplification(x, (0,) + tuple(range(2, x.ndim)), setup["eps"])
                     if setup["training"] else 0.0)      # eval: the running statistics
    _both(mc_fn, th_fn, inputs, [True, False, False, setup["affine"], setup["affine"]],
          amplification=amplification)


@pytest.mark.parametrize("shape", [(2, 3), (2, 2, 3), (2, 2, 2, 2), (1, 2, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck_small_batches(shape, training):
    rng = np.random.default_rng(0)
    c = shape[1]
    x = mc.tensor(rng.standard_normal(shape), requires_grad=True)
    w = mc.tensor(rng.standard_normal(c), requires_grad=True)
    b = mc.tensor(rng.standard_normal(c), requires_grad=True)
    rm, rv = rng.standard_normal(c), rng.random(c) + 0.5

    def fn(x, w, b):
        return F.batch_norm(x, mc.tensor(rm), mc.tensor(rv), w, b, training=training)
    gradcheck(fn, x, w, b)


@pytest.mark.parametrize("shape", [(2, 3), (4, 3, 5), (2, 3, 4, 4)])
def test_batch_norm_running_stats_follow_torch_over_steps(torch, shape):
    rng = np.random.default_rng(5)
    c = shape[1]
    rm, rv = mc.zeros(c, dtype=mc.float64), mc.ones(c, dtype=mc.float64)
    trm, trv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
    array_before = rm.array
    for step in range(4):
        x = 3 * rng.standard_normal(shape) + step
        F.batch_norm(mc.tensor(x), rm, rv, training=True, momentum=0.2)
        torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.2)
    assert rm.array is array_before                     # updated in place
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-12)
    x = rng.standard_normal(shape)
    y = F.batch_norm(mc.tensor(x), rm, rv, training=False)
    ty = torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=False)
    np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-12, atol=1e-14)


def test_batch_norm_tracks_unbiased_variance_normalises_with_biased():
    x = np.array([[1.0], [3.0]])                         # N=2, C=1: mean 2, biased var 1
    rm, rv = mc.zeros(1, dtype=mc.float64), mc.zeros(1, dtype=mc.float64)
    y = F.batch_norm(mc.tensor(x), rm, rv, training=True, momentum=1.0, eps=0.0)
    np.testing.assert_allclose(y.numpy(), [[-1.0], [1.0]])
    np.testing.assert_allclose(rm.numpy(), [2.0])
    np.testing.assert_allclose(rv.numpy(), [2.0])        # unbiased: 2 / (2 - 1)


def test_batch_norm_momentum_zero_keeps_stats_and_eval_does_not_update():
    rm, rv = mc.tensor([0.5, -1.0]), mc.tensor([2.0, 3.0])
    x = mc.randn(4, 2, 3)
    F.batch_norm(x, rm, rv, training=True, momentum=0.0)
    F.batch_norm(x, rm, rv, training=False, momentum=0.9)
    assert rm.tolist() == [0.5, -1.0] and rv.tolist() == [2.0, 3.0]


def test_batch_norm_running_stats_as_arrays_and_without_tracking(torch):
    rm, rv = np.zeros(3, dtype=np.float32), np.ones(3, dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    F.batch_norm(mc.tensor(x), rm, rv, training=True)
    np.testing.assert_allclose(rm, 0.1 * x.mean(0), rtol=1e-5)
    y = F.batch_norm(mc.tensor(x), None, None, training=True)
    ty = torch.nn.functional.batch_norm(torch.tensor(x), None, None, training=True)
    np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-4, atol=1e-5)


def test_batch_norm_under_no_grad_still_updates():
    rm, rv = mc.zeros(2), mc.ones(2)
    with mc.no_grad():
        y = F.batch_norm(mc.randn(3, 2), rm, rv, mc.ones(2, requires_grad=True), training=True)
    assert not y.requires_grad and np.abs(rm.numpy()).sum() > 0


def test_batch_norm_errors():
    x = mc.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match=r"batch_norm: running_mean should contain 3 elements"):
        F.batch_norm(x, mc.zeros(4), mc.ones(3), training=True)
    with pytest.raises(RuntimeError, match=r"batch_norm: running_var should contain 3 elements"):
        F.batch_norm(x, mc.zeros(3), mc.ones(3, 1), training=True)
    with pytest.raises(RuntimeError, match=r"batch_norm: expected weight of shape \(3,\)"):
        F.batch_norm(x, mc.zeros(3), mc.ones(3), mc.ones(4), training=True)
    with pytest.raises(RuntimeError, match=r"batch_norm: expected bias of shape \(3,\)"):
        F.batch_norm(x, mc.zeros(3), mc.ones(3), None, mc.ones(2), training=True)
    for shape in [(1, 3), (1, 3, 1), (1, 3, 1, 1)]:
        with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training"):
            F.batch_norm(mc.randn(*shape), mc.zeros(3), mc.ones(3), training=True)
    F.batch_norm(mc.randn(1, 3), mc.zeros(3), mc.ones(3), training=False)   # fine in eval
    with pytest.raises(ValueError, match=r"batch_norm: expected input of shape \(N, C\)"):
        F.batch_norm(mc.randn(3), mc.zeros(3), mc.ones(3))
    with pytest.raises(RuntimeError, match=r"must be given in evaluation mode"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match=r"give both running_mean and running_var"):
        F.batch_norm(x, mc.zeros(3), None, training=True)
    with pytest.raises(TypeError, match=r"batch_norm: momentum must be a number.*num_batches"):
        F.batch_norm(x, mc.zeros(3), mc.ones(3), training=True, momentum=None)
    with pytest.raises(TypeError, match=r"batch_norm: running_mean must be a Tensor"):
        F.batch_norm(x, [0.0, 0.0, 0.0], mc.ones(3), training=True)
    with pytest.raises(TypeError, match=r"batch_norm: running_var must be floating point"):
        F.batch_norm(x, mc.zeros(3), mc.tensor([1, 1, 1]), training=True)
    with pytest.raises(TypeError, match=r"batch_norm: weight dtype float64 does not match"):
        F.batch_norm(x, mc.zeros(3), mc.ones(3), mc.ones(3, dtype=mc.float64), training=True)
    with pytest.raises(TypeError, match=r"batch_norm: expected a floating-point input"):
        F.batch_norm(mc.tensor([[1, 2], [3, 4]]), None, None, training=True)


# ====================================================================== layer_norm

@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data(),
       affine=st.sampled_from(["both", "weight", "none"]),
       eps=st.sampled_from([1e-5, 1e-2]), seed=st.integers(0, 2**16))
def test_layer_norm_matches_torch(torch, shape, data, affine, eps, seed):
    k = data.draw(st.integers(1, len(shape)))
    normalized = tuple(shape[len(shape) - k:])
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal(shape), rng.standard_normal(normalized),
              rng.standard_normal(normalized)]
    w_on, b_on = affine != "none", affine == "both"

    def run(fn):
        return lambda x, w, b: fn(x, normalized, w if w_on else None, b if b_on else None, eps)
    _both(run(F.layer_norm), run(torch.nn.functional.layer_norm), inputs, [True, w_on, b_on],
          amplification=float32_amplification(
              inputs[0].reshape(-1, int(np.prod(normalized))), (1,), eps))


def test_layer_norm_gradcheck_and_int_shape():
    rng = np.random.default_rng(0)
    x = mc.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    w = mc.tensor(rng.standard_normal(4), requires_grad=True)
    b = mc.tensor(rng.standard_normal(4), requires_grad=True)
    gradcheck(lambda x, w, b: F.layer_norm(x, 4, w, b), x, w, b)
    y = F.layer_norm(x, 4).numpy()
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1 / (1 + 1e-5 / x.numpy().var(-1)), rtol=1e-10)


def test_layer_norm_errors():
    x = mc.randn(2, 3)
    with pytest.raises(RuntimeError, match=r"layer_norm: given normalized_shape=\[4\], "
                                           r"expected input with shape \[\*, 4\]"):
        F.layer_norm(x, (4,))
    with pytest.raises(RuntimeError, match=r"layer_norm: given normalized_shape=\[2, 3, 1\]"):
        F.layer_norm(x, (2, 3, 1))
    with pytest.raises(RuntimeError, match=r"layer_norm: expected weight of shape \(3,\)"):
        F.layer_norm(x, (3,), mc.ones(4))
    with pytest.raises(RuntimeError, match=r"layer_norm: expected bias of shape \(3,\)"):
        F.layer_norm(x, (3,), None, mc.ones(2, 3))
    for bad in [(), (0,), (1.5,)]:
        with pytest.raises(RuntimeError, match=r"layer_norm: normalized_shape must be"):
            F.layer_norm(x, bad)


# ====================================================================== group_norm

@SETTINGS
@given(n=st.integers(1, 3), groups=st.integers(1, 4), per_group=st.integers(1, 3),
       spatial=st.lists(st.integers(1, 3), max_size=2), affine=st.booleans(),
       eps=st.sampled_from([1e-5, 1e-2]), seed=st.integers(0, 2**16))
def test_group_norm_matches_torch(torch, n, groups, per_group, spatial, affine, eps, seed):
    c = groups * per_group
    shape = (n, c, *spatial)
    if n * per_group * int(np.prod(spatial)) == 1:
        shape = (2, c, *spatial)
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)]

    def run(fn):
        return lambda x, w, b: fn(x, groups, w if affine else None, b if affine else None, eps)
    _both(run(F.group_norm), run(torch.nn.functional.group_norm), inputs, [True, affine, affine],
          amplification=float32_amplification(inputs[0].reshape(shape[0], groups, -1), (2,),
                                              eps))


@pytest.mark.parametrize("shape,groups", [((2, 4, 3), 2), ((1, 6, 2, 2), 3), ((2, 2), 1)])
def test_group_norm_gradcheck(shape, groups):
    rng = np.random.default_rng(0)
    c = shape[1]
    x = mc.tensor(rng.standard_normal(shape), requires_grad=True)
    w = mc.tensor(rng.standard_normal(c), requires_grad=True)
    b = mc.tensor(rng.standard_normal(c), requires_grad=True)
    gradcheck(lambda x, w, b: F.group_norm(x, groups, w, b), x, w, b)


def test_group_norm_errors():
    with pytest.raises(RuntimeError, match=r"group_norm: expected the number of channels in "
                                           r"input to be divisible by num_groups.*num_groups=4"):
        F.group_norm(mc.randn(2, 6, 4), 4)
    with pytest.raises(RuntimeError, match=r"group_norm: expected input of shape \(N, C, \*\)"):
        F.group_norm(mc.randn(6), 3)
    with pytest.raises(RuntimeError, match=r"group_norm: expected weight of shape \(6,\)"):
        F.group_norm(mc.randn(2, 6), 3, mc.ones(5))
    with pytest.raises(RuntimeError, match=r"group_norm: expected bias of shape \(6,\)"):
        F.group_norm(mc.randn(2, 6), 3, None, mc.ones(3))
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel"):
        F.group_norm(mc.randn(1, 6), 6)
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match=r"group_norm: num_groups must be a positive integer"):
            F.group_norm(mc.randn(2, 6), bad)
