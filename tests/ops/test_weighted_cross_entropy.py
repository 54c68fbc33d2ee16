"""cross_entropy's ``pixel_weight`` (U-Net's weighted pixel-wise loss, Ronneberger et al.
2015 eq. 1): forward and input gradients against torch's per-pixel losses times the same
weight map, reduced the same way (float64 tight, float32 loose), over drawn shapes, class
weights, ignored pixels, label smoothing and reductions; finite differences; all-ones
weights give the unweighted loss; and every error."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from minicnn import functional as F
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
SEEDS = st.integers(0, 2**31 - 1)
REDUCTIONS = st.sampled_from(["none", "mean", "sum"])


def _torch_weighted(torch, m, weight, ignore_index, reduction, label_smoothing):
    """torch's twin: per-pixel losses times m, 'mean' over Σ m·w[t] of the kept pixels."""
    def fn(x, t):
        tf = torch.nn.functional
        mm = torch.tensor(m, dtype=x.dtype)
        w = None if weight is None else torch.tensor(weight, dtype=x.dtype)
        per_pixel = tf.cross_entropy(x, t, w, ignore_index=ignore_index, reduction="none",
                                     label_smoothing=label_smoothing) * mm
        if reduction == "none":
            return per_pixel
        if reduction == "sum":
            return per_pixel.sum()
        kept = (t != ignore_index).to(x.dtype)
        w_t = kept if w is None else w[torch.where(t == ignore_index, 0, t)] * kept
        return per_pixel.sum() / (mm * w_t).sum()
    return fn


@st.composite
def weighted_problem(draw):
    """Logits (N, C, H, W), targets with some ignored, a weight map, class weights."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(2, 5))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(SEEDS))
    x = 3 * rng.standard_normal((n, c, h, w))
    t = rng.integers(0, c, (n, h, w))
    ignore_index = draw(st.sampled_from([-100, 255]))
    t.reshape(-1)[rng.random(t.size) < draw(st.sampled_from([0.0, 0.3]))] = ignore_index
    # U-Net-like weights: about 1 far from borders, up to w0 + 1 = 11 on them; some 0
    m = np.where(rng.random((n, h, w)) < 0.1, 0.0, 1 + 10 * rng.random((n, h, w)) ** 3)
    m.reshape(-1)[0] = 2.5               # never all zero (the mean would be nan, as torch)
    t.reshape(-1)[0] = 0
    weight = rng.random(c) + 0.1 if draw(st.booleans()) else None
    return x, t, m, weight, ignore_index


@SETTINGS
@given(problem=weighted_problem(), reduction=REDUCTIONS,
       label_smoothing=st.sampled_from([0.0, 0.0, 0.1]))
def test_pixel_weight_matches_torch_weighted_losses(problem, reduction, label_smoothing, torch):
    x, t, m, weight, ignore_index = problem
    kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    for dtype in (np.float64, np.float32):
        compare_with_torch(
            lambda a, b: F.cross_entropy(a, b, None if weight is None else mc.tensor(weight),
                                         pixel_weight=m, **kw),
            _torch_weighted(torch, m, weight, **kw), [x, t], dtype=dtype,
            name=f"cross_entropy pixel_weight {kw} weight={weight is not None}")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_pixel_weight_with_probability_targets_matches_torch(reduction, torch):
    rng = np.random.default_rng(3)
    x = 2 * rng.standard_normal((2, 4, 3, 2))
    q = np.ascontiguousarray(rng.dirichlet(np.ones(4), (2, 3, 2)).transpose(0, 3, 1, 2))
    m = 0.2 + 4 * rng.random((2, 3, 2))

    def twin(a, b):
        per_pixel = torch.nn.functional.cross_entropy(a, b, reduction="none",
                                                      label_smoothing=0.1)
        per_pixel = per_pixel * torch.tensor(m, dtype=a.dtype)
        if reduction == "none":
            return per_pixel
        return per_pixel.sum() / (float(m.sum()) if reduction == "mean" else 1.0)

    for dtype in (np.float64, np.float32):
        compare_with_torch(lambda a, b: F.cross_entropy(a, b, reduction=reduction,
                                                        label_smoothing=0.1, pixel_weight=m),
                           twin, [x, q], dtype=dtype, name=f"probabilities {reduction}")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_pixel_weight_finite_differences(reduction, smoothing):
    rng = np.random.default_rng(1)
    x = mc.tensor(rng.standard_normal((2, 3, 3, 4)), requires_grad=True)
    t = rng.integers(0, 3, (2, 3, 4))
    t[1, 2, 3] = -100
    m = 0.5 + 3 * rng.random((2, 3, 4))
    gradcheck(lambda a: F.cross_entropy(a, mc.tensor(t), mc.tensor([0.5, 2.0, 1.0]),
                                        reduction=reduction, label_smoothing=smoothing,
                                        pixel_weight=m), x)
    q = mc.tensor(rng.dirichlet(np.ones(3), (2, 3, 4)).transpose(0, 3, 1, 2).copy(),
                  requires_grad=True)
    gradcheck(lambda a, b: F.cross_entropy(a, b, reduction=reduction, pixel_weight=m), x, q)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_weights_of_one_give_the_unweighted_loss(reduction):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 4, 3))
    t = rng.integers(0, 5, (2, 4, 3))
    t[0, 1, 1] = 255
    outs, grads = [], []
    for m in (None, np.ones((2, 4, 3))):
        a = mc.tensor(x, requires_grad=True)
        out = F.cross_entropy(a, mc.tensor(t), ignore_index=255, reduction=reduction,
                              pixel_weight=m)
        (out * mc.tensor(rng.standard_normal(out.shape) * 0 + 1.5)).sum().backward()
        outs.append(out.numpy())
        grads.append(a.grad.numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-14, atol=0)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-14, atol=1e-17)


def test_weight_map_scales_each_pixel_and_mean_divides_by_the_kept_weight():
    """Worked numbers: two pixels of equal logits (loss log 2 each), weights 1 and 3,
    the second pixel ignored in the last case."""
    x = mc.tensor(np.zeros((1, 2, 1, 2)))
    t = mc.tensor(np.array([[[0, 1]]]))
    m = np.array([[[1.0, 3.0]]])
    log2 = np.log(2)
    np.testing.assert_allclose(F.cross_entropy(x, t, reduction="none", pixel_weight=m).numpy(),
                               [[[log2, 3 * log2]]])
    assert F.cross_entropy(x, t, reduction="sum", pixel_weight=m).item() == pytest.approx(4 * log2)
    assert F.cross_entropy(x, t, pixel_weight=m).item() == pytest.approx(log2)
    ignored = mc.tensor(np.array([[[0, 255]]]))
    assert F.cross_entropy(x, ignored, ignore_index=255, reduction="sum",
                           pixel_weight=m).item() == pytest.approx(log2)


def test_unbatched_sample_takes_a_scalar_weight():
    x = mc.tensor([0.5, -1.0, 2.0])
    t = mc.tensor(np.int64(1))
    plain = F.cross_entropy(x, t, reduction="none").item()
    assert F.cross_entropy(x, t, reduction="none", pixel_weight=2.0).item() == \
        pytest.approx(2 * plain)


def test_pixel_weight_errors():
    x = mc.tensor(np.zeros((2, 3, 4, 5)))
    t = mc.tensor(np.zeros((2, 4, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: pixel_weight must have the "
                                         r"target's shape \(2, 4, 5\).*got \(2, 3, 4, 5\)"):
        F.cross_entropy(x, t, pixel_weight=np.ones((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"got \(4, 5\)"):
        F.cross_entropy(x, t, pixel_weight=np.ones((4, 5)))      # no broadcasting
    bad = np.ones((2, 4, 5))
    bad[1, 2, 3] = -0.5
    with pytest.raises(ValueError, match="pixel_weight must be finite and non-negative "
                                         "everywhere, found -0.5"):
        F.cross_entropy(x, t, pixel_weight=bad)
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="found nan"):
        F.cross_entropy(x, t, pixel_weight=bad)
    with pytest.raises(RuntimeError, match="pixel_weight cannot require grad"):
        F.cross_entropy(x, t, pixel_weight=mc.ones(2, 4, 5, requires_grad=True))
    with pytest.raises(TypeError, match="pixel_weight must be a real-valued array"):
        F.cross_entropy(x, t, pixel_weight=np.ones((2, 4, 5), dtype=np.complex128))
