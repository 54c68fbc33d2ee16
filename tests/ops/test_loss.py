"""Losses: forward and the gradient of every differentiable input against torch over drawn
shapes, weights, ignored targets, label smoothing and reductions (float64 tight, float32
loose); finite differences; stability at logits of ±1000; torch's edge cases (every
target ignored, BCE at exactly 0 and 1); and every error."""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from minicnn import functional as F
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
SEEDS = st.integers(0, 2**31 - 1)
REDUCTIONS = st.sampled_from(["none", "mean", "sum"])


def _both_dtypes(mc_fn, th_fn, inputs, **kw):
    for dtype in (np.float64, np.float32):
        compare_with_torch(mc_fn, th_fn, inputs, dtype=dtype, **kw)


def _weights(torch, w):
    """The same constant class weights for both libraries, in the input's dtype."""
    if w is None:
        return (lambda x: None), (lambda x: None)
    return (lambda x: mc.tensor(w)), (lambda x: torch.tensor(w, dtype=x.dtype))


# ------------------------------------------------------------------ cross-entropy

@st.composite
def class_problem(draw):
    """Logits (N, C, *spatial), class-index targets with some ignored, and options."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    spatial = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    rng = np.random.default_rng(draw(SEEDS))
    x = draw(st.sampled_from([1.0, 4.0])) * rng.standard_normal((n, c) + spatial)
    t = rng.integers(0, c, (n,) + spatial)
    # ignore_index may be -100 or a real class (torch allows both)
    ignore_index = draw(st.sampled_from([-100, 0, c - 1]))
    t.reshape(-1)[rng.random(t.size) < draw(st.sampled_from([0.0, 0.3]))] = ignore_index
    weight = rng.random(c) + 0.1 if draw(st.booleans()) else None
    return x, t, weight, ignore_index


@SETTINGS
@given(problem=class_problem(), reduction=REDUCTIONS,
       label_smoothing=st.sampled_from([0.0, 0.0, 0.1, 0.45, 1.0]))
def test_cross_entropy_class_targets_match_torch(problem, reduction, label_smoothing, torch):
    x, t, weight, ignore_index = problem
    mw, tw = _weights(torch, weight)
    kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    _both_dtypes(lambda a, b: F.cross_entropy(a, b, mw(a), **kw),
                 lambda a, b: torch.nn.functional.cross_entropy(a, b, tw(a), **kw),
                 [x, t], name=f"cross_entropy {kw} weight={weight is not None}")


@SETTINGS
@given(problem=class_problem(), reduction=REDUCTIONS)
def test_nll_loss_matches_torch(problem, reduction, torch):
    x, t, weight, ignore_index = problem
    mw, tw = _weights(torch, weight)
    kw = dict(ignore_index=ignore_index, reduction=reduction)
    _both_dtypes(lambda a, b: F.nll_loss(a, b, mw(a), **kw),
                 lambda a, b: torch.nn.functional.nll_loss(a, b, tw(a), **kw), [x, t],
                 name=f"nll_loss {kw}")


@SETTINGS
@given(n=st.integers(1, 4), c=st.integers(1, 5),
       spatial=st.lists(st.integers(1, 3), max_size=2).map(tuple), seed=SEEDS,
       reduction=REDUCTIONS, label_smoothing=st.sampled_from([0.0, 0.2]),
       use_weight=st.booleans(), soft=st.booleans())
def test_cross_entropy_probability_targets_match_torch(n, c, spatial, seed, reduction,
                                                       label_smoothing, use_weight, soft, torch):
    rng = np.random.default_rng(seed)
    x = 2 * rng.standard_normal((n, c) + spatial)
    q = rng.random((n, c) + spatial)
    if soft:
        q = q / q.sum(axis=1, keepdims=True)
    mw, tw = _weights(torch, rng.random(c) + 0.1 if use_weight else None)
    kw = dict(reduction=reduction, label_smoothing=label_smoothing)
    # the target is differentiated too, as in torch
    _both_dtypes(lambda a, b: F.cross_entropy(a, b, mw(a), **kw),
                 lambda a, b: torch.nn.functional.cross_entropy(a, b, tw(a), **kw), [x, q],
                 name=f"cross_entropy probabilities {kw}")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_unbatched_input(reduction, torch, rng):
    x = rng.standard_normal(5)
    for fn, tfn in ((F.cross_entropy, torch.nn.functional.cross_entropy),
                    (F.nll_loss, torch.nn.functional.nll_loss)):
        compare_with_torch(lambda a, b: fn(a, b, reduction=reduction),
                           lambda a, b: tfn(a, b, reduction=reduction), [x, np.array(3)])
    compare_with_torch(lambda a, b: F.cross_entropy(a, b, reduction=reduction),
                       lambda a, b: torch.nn.functional.cross_entropy(a, b, reduction=reduction),
                       [x, rng.random(5)])


def test_cross_entropy_gradient_is_softmax_minus_onehot(rng):
    x = mc.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    t = np.array([2, 0, 3])
    F.cross_entropy(x, mc.tensor(t), reduction="sum").backward()
    p = np.exp(x.numpy()) / np.exp(x.numpy()).sum(1, keepdims=True)
    np.testing.assert_allclose(x.grad.numpy(), p - np.eye(4)[t], rtol=1e-12, atol=1e-15)


def test_every_target_ignored_gives_nan_and_zero_gradient_as_torch(torch):
    x = np.random.default_rng(2).standard_normal((3, 4))
    t = np.full(3, -100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # and no 0/0 warning from NumPy
        for fn in ("cross_entropy", "nll_loss"):
            xm = mc.tensor(x, requires_grad=True)
            out = getattr(F, fn)(xm, mc.tensor(t))
            assert np.isnan(out.item())
            assert np.isnan(getattr(torch.nn.functional, fn)(torch.tensor(x),
                                                             torch.tensor(t)).item())
            out.backward()
            np.testing.assert_array_equal(xm.grad.numpy(), 0.0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_is_stable_for_huge_logits(reduction, torch):
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0], [0.0, 0.0, -1000.0]])
    t = np.array([1, 2, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dtype in (np.float64, np.float32):
            xm = mc.tensor(x.astype(dtype), requires_grad=True)
            out = F.cross_entropy(xm, mc.tensor(t), reduction=reduction, label_smoothing=0.1)
            out.sum().backward()
            assert np.isfinite(out.numpy()).all() and np.isfinite(xm.grad.numpy()).all()
    _both_dtypes(lambda a, b: F.cross_entropy(a, b, reduction=reduction, label_smoothing=0.1),
                 lambda a, b: torch.nn.functional.cross_entropy(a, b, reduction=reduction,
                                                                label_smoothing=0.1),
                 [x, t])


# --------------------------------------------------------------- regression losses

@st.composite
def regression_problem(draw, min_dims=0):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=min_dims, max_size=3)))
    rng = np.random.default_rng(draw(SEEDS))
    return rng.standard_normal(shape), rng.standard_normal(shape), rng.random(shape) + 0.1


REGRESSION = {
    "mse_loss": st.just({}),
    "l1_loss": st.just({}),
    "smooth_l1_loss": st.fixed_dictionaries({"beta": st.sampled_from([0.0, 0.3, 1.0, 2.5])}),
    "huber_loss": st.fixed_dictionaries({"delta": st.sampled_from([0.3, 1.0, 2.5])}),
}


@pytest.mark.parametrize("name", list(REGRESSION))
@SETTINGS
@given(data=st.data(), problem=regression_problem(), reduction=REDUCTIONS)
def test_regression_losses_match_torch(name, data, problem, reduction, torch):
    x, y, _ = problem
    kw = dict(data.draw(REGRESSION[name]), reduction=reduction)
    _both_dtypes(lambda a, b: getattr(F, name)(a, b, **kw),
                 lambda a, b: getattr(torch.nn.functional, name)(a, b, **kw), [x, y],
                 name=f"{name} {kw}")


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
@SETTINGS
@given(problem=regression_problem(min_dims=1), reduction=REDUCTIONS)
def test_weighted_regression_losses_match_torch(name, problem, reduction, torch):
    # torch differentiates this weight (its weighted path is plain tensor arithmetic);
    # at least 1-D: torch's weighted path fails on 0-d tensors
    _both_dtypes(lambda a, b, w: getattr(F, name)(a, b, reduction=reduction, weight=w),
                 lambda a, b, w: getattr(torch.nn.functional, name)(a, b, reduction=reduction,
                                                                    weight=w),
                 list(problem), name=f"{name} weighted {reduction}")


def test_l1_gradient_is_zero_where_input_equals_target(torch):
    x = mc.tensor([1.0, 2.0, 3.0], requires_grad=True)
    F.l1_loss(x, mc.tensor([1.0, 0.0, 5.0]), reduction="sum").backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, -1.0])


# ------------------------------------------------------------------- binary losses

@st.composite
def binary_problem(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    rng = np.random.default_rng(draw(SEEDS))
    p = 0.02 + 0.96 * rng.random(shape)
    y = rng.random(shape) if draw(st.booleans()) else (rng.random(shape) > 0.5).astype(float)
    # a weight that broadcasts: the full shape, the last dimension, or none
    wshape = draw(st.sampled_from([None, shape, shape[-1:]]))
    w = None if wshape is None else rng.random(wshape) + 0.1
    pw = rng.random(shape[-1:]) + 0.2 if draw(st.booleans()) else None
    return p, y, w, pw


def _const(torch, v):
    if v is None:
        return (lambda x: None), (lambda x: None)
    return (lambda x: mc.tensor(v)), (lambda x: torch.tensor(v, dtype=x.dtype))


@SETTINGS
@given(problem=binary_problem(), reduction=REDUCTIONS)
def test_binary_cross_entropy_matches_torch(problem, reduction, torch):
    p, y, w, _ = problem
    mw, tw = _const(torch, w)
    _both_dtypes(lambda a, b: F.binary_cross_entropy(a, b, mw(a), reduction=reduction),
                 lambda a, b: torch.nn.functional.binary_cross_entropy(a, b, tw(a),
                                                                      reduction=reduction),
                 [p, y], name=f"binary_cross_entropy {reduction}")


@SETTINGS
@given(problem=binary_problem(), reduction=REDUCTIONS, scale=st.sampled_from([1.0, 5.0, 30.0]))
def test_binary_cross_entropy_with_logits_matches_torch(problem, reduction, scale, torch):
    p, y, w, pw = problem
    x = scale * np.log(p / (1 - p))
    mw, tw = _const(torch, w)
    mp, tp = _const(torch, pw)
    _both_dtypes(
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, mw(a), reduction=reduction,
                                                        pos_weight=mp(a)),
        lambda a, b: torch.nn.functional.binary_cross_entropy_with_logits(
            a, b, tw(a), reduction=reduction, pos_weight=tp(a)),
        [x, y], name=f"bce_with_logits {reduction}")


def test_bce_with_logits_is_stable_for_huge_logits(torch):
    x = np.array([[1000.0, -1000.0, 1000.0, -1000.0, 0.0]])
    y = np.array([[1.0, 0.0, 0.0, 1.0, 0.5]])
    pw = np.array([2.0, 2.0, 2.0, 2.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dtype in (np.float64, np.float32):
            xm = mc.tensor(x.astype(dtype), requires_grad=True)
            ym = mc.tensor(y.astype(dtype), requires_grad=True)
            out = F.binary_cross_entropy_with_logits(xm, ym, reduction="none",
                                                     pos_weight=mc.tensor(pw))
            out.sum().backward()
            for a in (out, xm.grad, ym.grad):
                assert np.isfinite(a.numpy()).all()
            np.testing.assert_allclose(out.numpy()[0, :4], [0.0, 0.0, 1000.0, 2000.0])
    _both_dtypes(lambda a, b: F.binary_cross_entropy_with_logits(
                     a, b, reduction="none", pos_weight=mc.tensor(pw)),
                 lambda a, b: torch.nn.functional.binary_cross_entropy_with_logits(
                     a, b, reduction="none", pos_weight=torch.tensor(pw, dtype=a.dtype)),
                 [x, y], requires_grad=[True, False])


def test_bce_at_exactly_zero_and_one_is_clamped_like_torch(torch):
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare_with_torch(lambda a, b: F.binary_cross_entropy(a, b, reduction="none"),
                           lambda a, b: torch.nn.functional.binary_cross_entropy(
                               a, b, reduction="none"), [p, y], requires_grad=[True, False])
    out = F.binary_cross_entropy(mc.tensor(p), mc.tensor(y), reduction="none").numpy()
    np.testing.assert_allclose(out[:2], [100.0, 100.0])


# --------------------------------------------------------------- finite differences

def _gap(x, y, kinks, gap=0.05):
    for k in kinks:
        for s in (1, -1):
            x = np.where(np.abs(x - y - s * k) < gap, x + 3 * gap, x)
    return x


def test_finite_differences(rng):
    x = rng.standard_normal((3, 4, 2))
    t = mc.tensor(np.array([[0, 3], [-100, 1], [2, 2]]))
    w = mc.tensor(np.array([0.5, 1.0, 2.0, 0.3]))
    q = rng.random((3, 4, 2))
    cases = [
        (lambda a: F.cross_entropy(a, t, w, label_smoothing=0.3), [x]),
        (lambda a, b: F.cross_entropy(a, b, w, label_smoothing=0.3, reduction="none"), [x, q]),
        (lambda a: F.nll_loss(a, t, w, reduction="sum"), [x]),
    ]
    y = rng.standard_normal((3, 4))
    xr = rng.standard_normal((3, 4))
    bce_weight = mc.tensor(rng.random(4))
    cases += [
        (lambda a, b, c: F.mse_loss(a, b, weight=c), [xr, y, rng.random((3, 4)) + 0.1]),
        (lambda a, b, c: F.l1_loss(a, b, weight=c), [_gap(xr, y, [0.0]), y, rng.random((3, 4))]),
        (lambda a, b: F.smooth_l1_loss(a, b, beta=0.5), [_gap(xr, y, [0.5]), y]),
        (lambda a, b, c: F.huber_loss(a, b, delta=0.5, weight=c),
         [_gap(xr, y, [0.5]), y, rng.random((3, 4))]),
        (lambda a, b: F.binary_cross_entropy(a, b, bce_weight),
         [0.1 + 0.8 * rng.random((3, 4)), rng.random((3, 4))]),
        (lambda a, b: F.binary_cross_entropy_with_logits(
            a, b, pos_weight=mc.tensor([1.0, 2.0, 0.5, 3.0]), reduction="sum"),
         [3 * xr, rng.random((3, 4))]),
    ]
    for fn, arrays in cases:
        gradcheck(fn, *[mc.tensor(a, requires_grad=True) for a in arrays])


def test_no_state_saved_without_gradients():
    fn = F.loss.CrossEntropy(None, -100, "mean", 0.0)
    fn(mc.tensor(np.zeros((2, 3))), mc.tensor(np.array([0, 1])))
    assert not hasattr(fn, "probs")


# ---------------------------------------------------------------------------- errors

X = mc.tensor(np.zeros((2, 3)))


@pytest.mark.parametrize("fn", [F.cross_entropy, F.nll_loss])
def test_target_out_of_range_names_the_value_and_classes(fn):
    with pytest.raises(IndexError, match=r"target 3 is out of bounds for 3 classes"):
        fn(X, mc.tensor(np.array([0, 3])))
    with pytest.raises(IndexError, match=r"target -1 is out of bounds for 3 classes .*ignore_index=-100"):
        fn(X, mc.tensor(np.array([-1, 0])))


@pytest.mark.parametrize("fn", [F.cross_entropy, F.nll_loss])
def test_class_target_shape_mismatch(fn):
    with pytest.raises(ValueError, match=r"expected target of shape \(2,\).*got \(3,\)"):
        fn(X, mc.tensor(np.array([0, 1, 2])))
    with pytest.raises(ValueError, match=r"expected target of shape \(2, 5\)"):
        fn(mc.tensor(np.zeros((2, 3, 5))), mc.tensor(np.zeros((2, 4), dtype=np.int64)))


def test_target_dtype_errors():
    with pytest.raises(TypeError, match="class-index target must be an integer tensor, got dtype bool"):
        F.cross_entropy(X, mc.tensor(np.array([True, False])))
    with pytest.raises(ValueError, match=r"floating-point target holds class probabilities.*\(2, 3\)"):
        F.cross_entropy(X, mc.tensor(np.array([0.0, 1.0])))
    with pytest.raises(TypeError, match="nll_loss: class-index target must be an integer"):
        F.nll_loss(X, mc.tensor(np.array([0.0, 1.0])))
    with pytest.raises(TypeError, match="cross_entropy: expected a floating-point input"):
        F.cross_entropy(mc.tensor(np.zeros((2, 3), dtype=np.int64)), mc.tensor(np.array([0, 1])))


@pytest.mark.parametrize("call", [
    lambda r: F.cross_entropy(X, mc.tensor(np.array([0, 1])), reduction=r),
    lambda r: F.nll_loss(X, mc.tensor(np.array([0, 1])), reduction=r),
    lambda r: F.mse_loss(X, X, reduction=r),
    lambda r: F.l1_loss(X, X, reduction=r),
    lambda r: F.smooth_l1_loss(X, X, reduction=r),
    lambda r: F.huber_loss(X, X, reduction=r),
    lambda r: F.binary_cross_entropy(X, X, reduction=r),
    lambda r: F.binary_cross_entropy_with_logits(X, X, reduction=r),
])
def test_bad_reduction(call):
    with pytest.raises(ValueError, match="reduction must be 'none', 'mean' or 'sum', got 'avg'"):
        call("avg")


@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
                                  "binary_cross_entropy", "binary_cross_entropy_with_logits"])
def test_input_target_size_mismatch(name):
    with pytest.raises(ValueError, match=rf"{name}: target size \(2, 1\) must equal input size \(2, 3\)"):
        getattr(F, name)(X, mc.tensor(np.zeros((2, 1))))


def test_other_errors():
    t = mc.tensor(np.array([0, 1]))
    with pytest.raises(TypeError, match="mse_loss: target must be floating point"):
        F.mse_loss(X, mc.tensor(np.zeros((2, 3), dtype=np.int64)))
    with pytest.raises(ValueError, match=r"cross_entropy: weight must have shape \(C,\) = \(3,\)"):
        F.cross_entropy(X, t, mc.tensor([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="weight cannot require grad"):
        F.cross_entropy(X, t, mc.tensor([1.0, 2.0, 3.0], requires_grad=True))
    with pytest.raises(RuntimeError, match="pos_weight cannot require grad"):
        F.binary_cross_entropy_with_logits(X, X, pos_weight=mc.tensor([1.0, 2.0, 3.0],
                                                                      requires_grad=True))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(2,\) does not broadcast"):
        F.binary_cross_entropy_with_logits(X, X, pos_weight=mc.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0, got 1.5"):
        F.cross_entropy(X, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="probability in \\[0, 1\\], found 1.5"):
        F.binary_cross_entropy(mc.tensor([0.5, 1.5]), mc.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="smooth_l1_loss: beta must be non-negative"):
        F.smooth_l1_loss(X, X, beta=-1.0)
    with pytest.raises(ValueError, match="huber_loss: delta must be positive"):
        F.huber_loss(X, X, delta=0.0)
    with pytest.raises(ValueError, match=r"mse_loss: weight size \(3,\) must equal input size"):
        F.mse_loss(X, X, weight=mc.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="input must have a class dimension"):
        F.cross_entropy(mc.tensor(1.0), mc.tensor(np.array(0)))


def test_arguments_after_torch_legacy_slots_are_keyword_only():
    # torch's third positional slot after weight is size_average: refusing it here means a
    # positional call never silently means something else in the two libraries
    with pytest.raises(TypeError):
        F.cross_entropy(X, mc.tensor(np.array([0, 1])), None, 0)
    with pytest.raises(TypeError):
        F.mse_loss(X, X, "sum")
