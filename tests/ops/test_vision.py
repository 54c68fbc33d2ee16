"""interpolate, center_crop, pixel_shuffle and pixel_unshuffle: forward and gradient against
torch (or, for center_crop, torchvision's rule written in NumPy) over drawn sizes, scale
factors and modes (float64 tight, float32 loose), torch's index quirks, finite
differences, and every error."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import minicnn as mc
from minicnn import functional as F
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
SEEDS = st.integers(0, 2**31 - 1)


def _both_dtypes(mc_fn, th_fn, inputs, **kw):
    for dtype in (np.float64, np.float32):
        compare_with_torch(mc_fn, th_fn, inputs, dtype=dtype, **kw)


# ----------------------------------------------------------------------- interpolate

@st.composite
def resize(draw):
    """An input shape and interpolate's keyword arguments, for a non-empty output."""
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    mode = draw(st.sampled_from(["nearest", "nearest-exact", "bilinear"]))
    kw = {"mode": mode}
    if mode == "bilinear":
        kw["align_corners"] = draw(st.booleans())
    if draw(st.booleans()):
        kw["size"] = draw(st.one_of(st.integers(1, 12),
                                    st.tuples(st.integers(1, 12), st.integers(1, 12))))
    else:
        factor = st.one_of(st.sampled_from([0.5, 1.0, 1.5, 1.7, 2.0, 2.3, 3.0, 1 / 3]),
                           st.floats(0.2, 3.5))
        sf = draw(st.one_of(factor, st.tuples(factor, factor)))
        sh, sw = (sf, sf) if isinstance(sf, float) else sf
        assume(math.floor(h * sh) >= 1 and math.floor(w * sw) >= 1)
        kw["scale_factor"] = sf
        if draw(st.booleans()):
            kw["recompute_scale_factor"] = True
    return (n, c, h, w), kw


@SETTINGS
@given(setup=resize(), seed=SEEDS)
def test_interpolate_matches_torch(setup, seed, torch):
    shape, kw = setup
    x = np.random.default_rng(seed).standard_normal(shape)
    _both_dtypes(lambda a: F.interpolate(a, **kw),
                 lambda a: torch.nn.functional.interpolate(a, **kw), [x],
                 name=f"interpolate {shape} {kw}")


def test_nearest_scale_factor_and_size_can_pick_different_pixels(torch):
    # 7 * 1.7 = 11.9 -> 11 outputs; torch maps with 1/1.7 for scale_factor, 7/11 for size
    x = np.arange(7.0).reshape(1, 1, 1, 7)
    by_scale = F.interpolate(mc.tensor(x), scale_factor=(1.0, 1.7)).numpy().ravel()
    by_size = F.interpolate(mc.tensor(x), size=(1, 11)).numpy().ravel()
    assert not np.array_equal(by_scale, by_size)
    for kw, ours in ((dict(scale_factor=(1.0, 1.7)), by_scale), (dict(size=(1, 11)), by_size)):
        theirs = torch.nn.functional.interpolate(torch.tensor(x), **kw).numpy().ravel()
        np.testing.assert_array_equal(ours, theirs)


def test_bilinear_keeps_a_dimension_whose_size_does_not_change(torch):
    # 6 * 1.1 = 6.6 -> 6: torch copies that dimension, although 1/1.1 would shift it
    x = np.random.default_rng(3).standard_normal((1, 1, 6, 4))
    out = F.interpolate(mc.tensor(x), scale_factor=(1.1, 2.0), mode="bilinear").numpy()
    ref = torch.nn.functional.interpolate(torch.tensor(x), scale_factor=(1.1, 2.0),
                                          mode="bilinear").numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    # the same as asking for size (6, 8), where the rows map one to one
    same = F.interpolate(mc.tensor(x), size=(6, 8), mode="bilinear").numpy()
    np.testing.assert_allclose(out, same, rtol=1e-12)


def test_nearest_upsampling_gradient_sums_each_block(rng):
    x = mc.tensor(rng.standard_normal((1, 1, 2, 3)), requires_grad=True)
    g = rng.standard_normal((1, 1, 4, 6))
    F.interpolate(x, scale_factor=2).backward(mc.tensor(g))
    expected = g.reshape(1, 1, 2, 2, 3, 2).sum(axis=(3, 5))
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("kw", [
    dict(size=(5, 4)), dict(scale_factor=1.7), dict(size=(3, 7), mode="nearest-exact"),
    dict(scale_factor=(1.5, 0.7), mode="bilinear"),
    dict(size=(6, 2), mode="bilinear", align_corners=True),
], ids=str)
def test_interpolate_finite_differences(kw, rng):
    x = mc.tensor(rng.standard_normal((2, 2, 4, 3)), requires_grad=True)
    gradcheck(lambda a: F.interpolate(a, **kw), x)


def test_interpolate_errors():
    x = mc.tensor(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(x, size=2, scale_factor=2)
    with pytest.raises(ValueError, match="either size or scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="align_corners option can only be set with the interpolating"):
        F.interpolate(x, size=2, align_corners=True)
    with pytest.raises(ValueError, match="mode must be one of .* got 'bicubic'"):
        F.interpolate(x, size=2, mode="bicubic")
    with pytest.raises(ValueError, match=r"expected a 4-D input \(N, C, H, W\), got shape \(1, 4, 4\)"):
        F.interpolate(mc.tensor(np.zeros((1, 4, 4))), size=2)
    with pytest.raises(ValueError, match="output size .* must be positive"):
        F.interpolate(x, scale_factor=0.1)
    with pytest.raises(ValueError, match="scale_factor must be a positive number"):
        F.interpolate(x, scale_factor=-2)
    with pytest.raises(ValueError, match="size must be an int or a pair of ints"):
        F.interpolate(x, size=(2, 2, 2))
    with pytest.raises(ValueError, match="recompute_scale_factor is not meaningful"):
        F.interpolate(x, size=2, recompute_scale_factor=True)
    with pytest.raises(NotImplementedError, match="antialias"):
        F.interpolate(x, size=2, mode="bilinear", antialias=True)
    with pytest.raises(TypeError, match="interpolate: expected a floating-point input, got dtype"):
        F.interpolate(mc.tensor(np.zeros((1, 1, 2, 2), dtype=np.int64)), size=3)


# ---------------------------------------------------------------------- center_crop

def _center_crop_reference(x, h, w):
    """torchvision.transforms.functional.center_crop's rule, on a NumPy array."""
    H, W = x.shape[-2:]
    pads = [(0, 0)] * (x.ndim - 2) + [
        ((h - H) // 2, (h - H + 1) // 2) if h > H else (0, 0),
        ((w - W) // 2, (w - W + 1) // 2) if w > W else (0, 0)]
    x = np.pad(x, pads)
    H, W = x.shape[-2:]
    top, left = int(round((H - h) / 2.0)), int(round((W - w) / 2.0))
    return x[..., top:top + h, left:left + w]


@settings(max_examples=60, deadline=None)
@given(lead=st.lists(st.integers(1, 3), max_size=2).map(tuple), H=st.integers(1, 9),
       W=st.integers(1, 9), h=st.integers(1, 11), w=st.integers(1, 11), seed=SEEDS)
def test_center_crop_matches_torchvision_rule(lead, H, W, h, w, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(lead + (H, W))
    t = mc.tensor(x, requires_grad=True)
    out = F.center_crop(t, (h, w))
    np.testing.assert_array_equal(out.numpy(), _center_crop_reference(x, h, w))
    # the gradient is the adjoint: the upstream gradient put back where it was read
    g = rng.standard_normal(out.shape)
    out.backward(mc.tensor(g))
    marker = np.arange(x.size, dtype=float).reshape(x.shape) + 1
    picked = _center_crop_reference(marker, h, w)
    expected = np.zeros(x.size)
    hits = picked > 0
    expected[(picked[hits] - 1).astype(int)] = g[hits]
    np.testing.assert_array_equal(t.grad.numpy(), expected.reshape(x.shape))


@pytest.mark.parametrize("H,h,top", [(5, 2, 2), (7, 2, 2), (4, 3, 0), (6, 3, 2), (9, 4, 2),
                                     (4, 4, 0)])
def test_center_crop_rounds_halves_to_even(H, h, top):
    x = np.arange(H * 1.0).reshape(H, 1)
    out = F.center_crop(mc.tensor(x), (h, 1)).numpy().ravel()
    np.testing.assert_array_equal(out, np.arange(top, top + h))


def test_center_crop_size_forms_and_finite_differences(rng):
    x = rng.standard_normal((2, 6, 5))
    for size, hw in ((3, (3, 3)), ([4], (4, 4)), ((2, 7), (2, 7))):
        np.testing.assert_array_equal(F.center_crop(mc.tensor(x), size).numpy(),
                                      _center_crop_reference(x, *hw))
    gradcheck(lambda a: F.center_crop(a, (3, 7)), mc.tensor(x, requires_grad=True))


def test_center_crop_errors():
    with pytest.raises(ValueError, match="center_crop: size must be a positive int or a pair"):
        F.center_crop(mc.tensor(np.zeros((3, 3))), (1, 2, 3))
    with pytest.raises(ValueError, match="center_crop: size must be a positive int"):
        F.center_crop(mc.tensor(np.zeros((3, 3))), 0)
    with pytest.raises(ValueError, match=r"at least 2 dimensions \(\.\.\., H, W\), got shape \(3,\)"):
        F.center_crop(mc.tensor(np.zeros(3)), 2)


# ------------------------------------------------------------------- pixel shuffle

@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lead=st.lists(st.integers(1, 3), max_size=2).map(tuple), c=st.integers(1, 3),
       r=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4), seed=SEEDS)
def test_pixel_shuffle_and_unshuffle_match_torch(lead, c, r, h, w, seed, torch):
    rng = np.random.default_rng(seed)
    tf = torch.nn.functional
    _both_dtypes(lambda a: F.pixel_shuffle(a, r), lambda a: tf.pixel_shuffle(a, r),
                 [rng.standard_normal(lead + (c * r * r, h, w))])
    _both_dtypes(lambda a: F.pixel_unshuffle(a, r), lambda a: tf.pixel_unshuffle(a, r),
                 [rng.standard_normal(lead + (c, h * r, w * r))])


def test_pixel_shuffle_round_trip_and_finite_differences(rng):
    x = rng.standard_normal((2, 8, 3, 2))
    back = F.pixel_unshuffle(F.pixel_shuffle(mc.tensor(x), 2), 2)
    np.testing.assert_array_equal(back.numpy(), x)
    gradcheck(lambda a: F.pixel_shuffle(a, 2), mc.tensor(x, requires_grad=True))
    gradcheck(lambda a: F.pixel_unshuffle(a, 3),
              mc.tensor(rng.standard_normal((1, 2, 3, 6)), requires_grad=True))


def test_pixel_shuffle_errors():
    with pytest.raises(ValueError, match=r"input channels \(5\) must be divisible by upscale_factor² = 4"):
        F.pixel_shuffle(mc.tensor(np.zeros((1, 5, 2, 2))), 2)
    with pytest.raises(ValueError, match="height 3 and width 4 must both be divisible by downscale_factor = 2"):
        F.pixel_unshuffle(mc.tensor(np.zeros((1, 1, 3, 4))), 2)
    with pytest.raises(ValueError, match="upscale_factor must be a positive integer, got 0"):
        F.pixel_shuffle(mc.tensor(np.zeros((1, 4, 2, 2))), 0)
    with pytest.raises(ValueError, match="downscale_factor must be a positive integer, got 1.5"):
        F.pixel_unshuffle(mc.tensor(np.zeros((1, 4, 2, 2))), 1.5)
    with pytest.raises(ValueError, match=r"at least 3 dimensions \(\*, C, H, W\)"):
        F.pixel_shuffle(mc.tensor(np.zeros((4, 2))), 2)
