"""minicnn.ops.roi_pool / roi_align and the RoIPool, RoIAlign and MultiScaleRoIAlign modules
against torch twins of torchvision's CPU kernels (torchvision itself cannot be imported
here, SEEDS-SPEC §12 X5): the kernels' loops transcribed line by line below in plain
Python over torch tensors, torch's autograd giving the input gradient. Forward and input
gradient in float64 at 1e-9 over drawn maps and boxes (partly off the map, tiny, x2 < x1,
both box formats, several images), in both kernel modes; float32; the spec's hand values;
ties, -inf and NaN in roi_pool; finite differences; empty box sets; every error."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from kernels import dispatch
from minicnn import ops
from minicnn.utils.gradcheck import gradcheck
from minicnn.utils.torch_compare import compare_with_torch

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
MODES = ("auto", "reference")
FLT_MAX = float(np.finfo(np.float32).max)


# ------------------------------------------------------------------ torch twins
# Each follows torchvision/csrc/ops/cpu/roi_{pool,align}_kernel.cpp statement by statement,
# with the box arithmetic in numpy scalars of the input's dtype (T), as the C++ template
# computes it, and the channel loop as a torch vector.

def c_round(v):
    """C's round(): to nearest, halves away from zero."""
    whole = math.floor(abs(v))
    if abs(v) - whole >= 0.5:
        whole += 1
    return int(math.copysign(whole, v))


def over_rois(torch, x, rois, output_size, bins_of):
    """The kernels' outer loop: ``bins_of(plane, roi, T)`` gives one RoI's OH·OW bins,
    (C,) each, in row-major order, from its image's (C, H, W) ``plane``; T is the numpy
    scalar type of x's dtype."""
    T = np.float64 if x.dtype == torch.float64 else np.float32
    C = x.shape[1]
    pooled = [torch.stack(bins_of(x[int(r[0])], r, T), 1).reshape(C, *output_size)
              for r in rois.astype(T)]
    return torch.stack(pooled) if pooled else x.new_zeros((0, C) + tuple(output_size))


def roi_pool_twin(torch, x, rois, output_size, spatial_scale):
    C, H, W = x.shape[1:]
    OH, OW = output_size

    def bins_of(plane, r, T):
        roi_start_w, roi_start_h, roi_end_w, roi_end_h = (
            c_round(float(r[i] * T(spatial_scale))) for i in (1, 2, 3, 4))
        roi_width = max(roi_end_w - roi_start_w + 1, 1)
        roi_height = max(roi_end_h - roi_start_h + 1, 1)
        bin_size_h = T(roi_height) / T(OH)
        bin_size_w = T(roi_width) / T(OW)
        bins = []
        for ph in range(OH):
            for pw in range(OW):
                hstart = math.floor(T(ph) * bin_size_h)
                wstart = math.floor(T(pw) * bin_size_w)
                hend = math.ceil(T(ph + 1) * bin_size_h)
                wend = math.ceil(T(pw + 1) * bin_size_w)
                hstart = min(max(hstart + roi_start_h, 0), H)
                hend = min(max(hend + roi_start_h, 0), H)
                wstart = min(max(wstart + roi_start_w, 0), W)
                wend = min(max(wend + roi_start_w, 0), W)
                is_empty = hend <= hstart or wend <= wstart
                maxval = x.new_full((C,), 0.0 if is_empty else -FLT_MAX)
                for h in range(hstart, hend):
                    for w in range(wstart, wend):
                        v = plane[:, h, w]
                        maxval = torch.where(v > maxval, v, maxval)
                bins.append(maxval)
        return bins

    return over_rois(torch, x, rois, output_size, bins_of)


def bilinear_twin(plane, H, W, y, x, T):
    """bilinear_interpolate / pre_calc_for_bilinear_interpolate: the (C,) value."""
    if not (y >= -1.0 and y <= H and x >= -1.0 and x <= W):
        return plane.new_zeros(plane.shape[0])
    if y <= 0:
        y = T(0)
    if x <= 0:
        x = T(0)
    y_low, x_low = int(y), int(x)
    if y_low >= H - 1:
        y_high = y_low = H - 1
        y = T(y_low)
    else:
        y_high = y_low + 1
    if x_low >= W - 1:
        x_high = x_low = W - 1
        x = T(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - T(y_low), x - T(x_low)
    hy, hx = T(1.0 - float(ly)), T(1.0 - float(lx))
    w1, w2, w3, w4 = hy * hx, hy * lx, ly * hx, ly * lx
    return (float(w1) * plane[:, y_low, x_low] + float(w2) * plane[:, y_low, x_high]
            + float(w3) * plane[:, y_high, x_low] + float(w4) * plane[:, y_high, x_high])


def roi_align_twin(torch, x, rois, output_size, spatial_scale, sampling_ratio, aligned):
    C, H, W = x.shape[1:]
    OH, OW = output_size

    def bins_of(plane, r, T):
        offset = T(0.5) if aligned else T(0.0)
        roi_start_w = r[1] * T(spatial_scale) - offset
        roi_start_h = r[2] * T(spatial_scale) - offset
        roi_end_w = r[3] * T(spatial_scale) - offset
        roi_end_h = r[4] * T(spatial_scale) - offset
        roi_width = roi_end_w - roi_start_w
        roi_height = roi_end_h - roi_start_h
        if not aligned:
            roi_width = max(roi_width, T(1.0))
            roi_height = max(roi_height, T(1.0))
        bin_size_h = roi_height / T(OH)
        bin_size_w = roi_width / T(OW)
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_height / T(OH))
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_width / T(OW))
        count = T(max(grid_h * grid_w, 1))
        bins = []
        for ph in range(OH):
            for pw in range(OW):
                output_val = x.new_zeros(C)
                for iy in range(grid_h):
                    yy = roi_start_h + T(ph) * bin_size_h + T(iy + .5) * bin_size_h / T(grid_h)
                    for ix in range(grid_w):
                        xx = (roi_start_w + T(pw) * bin_size_w
                              + T(ix + .5) * bin_size_w / T(grid_w))
                        output_val = output_val + bilinear_twin(plane, H, W, yy, xx, T)
                bins.append(output_val / float(count))
        return bins

    return over_rois(torch, x, rois, output_size, bins_of)


# ------------------------------------------------------------------ inputs

def draw_boxes(rng, K, N, image_hw, grid=None):
    """(K, 5) rois over an image of ``image_hw`` pixels: corners from a quarter of the
    image before it to a tenth past it, sizes tiny, ordinary and reversed (x2 < x1).
    With ``grid`` the coordinates are multiples of it (halves that round both ways)."""
    h, w = image_hw
    x1 = rng.uniform(-0.25 * w, 1.1 * w, K)
    y1 = rng.uniform(-0.25 * h, 1.1 * h, K)
    kind = rng.integers(0, 4, (K, 2))
    sizes = np.where(kind == 0, rng.uniform(0, 1.5, (K, 2)),               # tiny
                     np.where(kind == 3, -rng.uniform(0, 3, (K, 2)),       # reversed
                              rng.uniform(1, 1 + 0.8 * max(h, w), (K, 2))))
    boxes = np.stack([x1, y1, x1 + sizes[:, 0], y1 + sizes[:, 1]], axis=1)
    if grid:
        boxes = np.round(boxes / grid) * grid
    return np.concatenate([rng.integers(0, N, (K, 1)), boxes], axis=1)


def as_list(rois, N):
    """The same boxes as a list of (L, 4) per image (and the rows in that order)."""
    order = np.argsort(rois[:, 0], kind="stable")
    return [rois[rois[:, 0] == n, 1:] for n in range(N)], rois[order]


@st.composite
def roi_cases(draw):
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    out = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25]))
    return dict(shape=(N, C, H, W), K=draw(st.integers(0, 5)), output_size=out,
                spatial_scale=scale, listed=draw(st.booleans()),
                mode=draw(st.sampled_from(MODES)), seed=draw(st.integers(0, 2**31)))


def case_inputs(case, grid=None):
    rng = np.random.default_rng(case["seed"])
    N, _, H, W = case["shape"]
    x = rng.standard_normal(case["shape"])
    image = (H / case["spatial_scale"], W / case["spatial_scale"])
    rois = draw_boxes(rng, case["K"], N, image, grid)
    if case["listed"]:
        boxes, rois = as_list(rois, N)
    else:
        boxes = rois
    return x, boxes, rois


def against_twin(torch, mc_fn, twin, x, mode, dtype=np.float64, tol=1e-9):
    with dispatch.kernels(mode):
        compare_with_torch(mc_fn, twin, [x], dtype=dtype, rtol=tol, atol=tol,
                           name=f"{mode} {dtype.__name__}")


# ------------------------------------------------------------------ hand values

def hand_map():
    x = np.zeros((2, 1, 8, 8))
    x[0, 0] = np.arange(64).reshape(8, 8)
    return x


@pytest.mark.parametrize("mode", MODES)
def test_spec_hand_values(mode):
    """SEEDS-SPEC Appendix A: arange(64) as an 8x8 map, box (0, 1, 1, 6, 5), 2x2."""
    x = mc.tensor(hand_map())
    with dispatch.kernels(mode):
        for boxes in (mc.tensor([[0, 1, 1, 6, 5.0]]), [mc.tensor([[1, 1, 6, 5.0]])]):
            np.testing.assert_array_equal(ops.roi_pool(x, boxes, 2).numpy()[0, 0],
                                          [[27, 30], [43, 46]])
            np.testing.assert_allclose(
                ops.roi_align(x, boxes, 2, spatial_scale=1, sampling_ratio=2,
                              aligned=True).numpy()[0, 0],
                [[13.75, 16.25], [29.75, 32.25]], rtol=0, atol=1e-12)


def test_twins_give_the_hand_values(torch):
    """The twins themselves reproduce the spec's figures (so they transcribe the kernels)."""
    x = torch.tensor(hand_map())
    rois = np.array([[0, 1, 1, 6, 5.0]])
    assert roi_pool_twin(torch, x, rois, (2, 2), 1.0)[0, 0].tolist() == [[27, 30], [43, 46]]
    np.testing.assert_allclose(roi_align_twin(torch, x, rois, (2, 2), 1.0, 2, True)[0, 0],
                               [[13.75, 16.25], [29.75, 32.25]], atol=1e-12)


# ------------------------------------------------------------------ roi_pool

@SETTINGS
@given(roi_cases())
def test_roi_pool_matches_torch_twin(torch, case):
    # coordinates on a 1/8-pixel grid: x·scale lands on halves, which round away from 0
    x, boxes, rois = case_inputs(case, grid=0.125)
    kw = dict(output_size=case["output_size"], spatial_scale=case["spatial_scale"])
    against_twin(torch, lambda t: ops.roi_pool(t, boxes, **kw),
                 lambda t: roi_pool_twin(torch, t, rois, kw["output_size"],
                                         kw["spatial_scale"]), x, case["mode"])


@pytest.mark.parametrize("mode", MODES)
def test_roi_pool_ties_inf_and_nan_as_torchvision(torch, mode):
    """Small integers (ties everywhere: the first maximum in row-major order takes the
    gradient), -inf (a bin of -inf gives -FLT_MAX and no gradient) and NaN (never wins)."""
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 2, (2, 3, 7, 6)).astype(float)
    x[0, 0, :4, :4] = -np.inf
    x[1, 2, 3, 1:5] = np.nan
    rois = np.array([[0, 0, 0, 3, 3], [0, 0, 0, 6, 5], [1, 0.5, 0.5, 4.4, 6.6],
                     [1, -3, -3, 10, 10], [0, 2, 1, 2, 1]])
    want = roi_pool_twin(torch, torch.tensor(x), rois, (2, 3), 1.0)
    assert (want[0, 0] == -FLT_MAX).all()
    got = ops.roi_pool(mc.tensor(x), rois, (2, 3))
    np.testing.assert_array_equal(got.numpy(), want.numpy())   # NaN-free: NaN never wins
    # the gradient on a NaN-free copy (NaN x 0 would spoil torch's where-chain gradient)
    x[np.isnan(x)] = -5
    with dispatch.kernels(mode):
        compare_with_torch(lambda t: ops.roi_pool(t, rois, (2, 3)),
                           lambda t: roi_pool_twin(torch, t, rois, (2, 3), 1.0), [x],
                           rtol=0, atol=1e-12, name="roi_pool ties")


def test_roi_pool_rounds_halves_away_from_zero(torch):
    """x·scale = 0.5 and 2.5 round to 1 and 3 (C's round), not to even (0 and 2)."""
    x = np.arange(2 * 36, dtype=float).reshape(2, 1, 6, 6)
    out = ops.roi_pool(mc.tensor(x), np.array([[0, 1, 1, 5, 5.0], [1, -1, -1, 1, 1]]), 1,
                       spatial_scale=0.5)
    # box 0: x1' = y1' = round(0.5) = 1, x2' = y2' = round(2.5) = 3 -> max at (3, 3)
    # box 1: from round(-0.5) = -1 to round(0.5) = 1, clamped -> max at (1, 1) of image 1
    assert out.numpy().ravel().tolist() == [3 * 6 + 3, 36 + 6 + 1]


# ------------------------------------------------------------------ roi_align

@SETTINGS
@given(roi_cases(), st.sampled_from([-1, 0, 1, 2, 3]), st.booleans())
def test_roi_align_matches_torch_twin(torch, case, sampling_ratio, aligned):
    x, boxes, rois = case_inputs(case)
    kw = dict(output_size=case["output_size"], spatial_scale=case["spatial_scale"],
              sampling_ratio=sampling_ratio, aligned=aligned)
    against_twin(torch, lambda t: ops.roi_align(t, boxes, **kw),
                 lambda t: roi_align_twin(torch, t, rois, **kw), x, case["mode"])


@pytest.mark.parametrize("mode", MODES)
def test_roi_align_edges(torch, mode):
    """Samples just inside and outside [-1, H], exactly on the last row (the high-edge
    rule), a box thinner than a cell with and without ``aligned``, reversed boxes."""
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 6))
    rois = np.array([[0, -2, -2, 7, 6], [0, -1.6, -1.4, 0.2, 0.4], [0, 4, 3, 6, 5],
                     [0, 2.2, 1.1, 2.3, 1.15], [0, 3, 3, 1, 2], [0, 5, 4, 5, 4],
                     [0, -9, -9, -7, -7]])
    for aligned in (False, True):
        for sampling_ratio in (-1, 2):
            kw = dict(output_size=(2, 3), spatial_scale=1.0, sampling_ratio=sampling_ratio,
                      aligned=aligned)
            against_twin(torch, lambda t, kw=kw: ops.roi_align(t, rois, **kw),
                         lambda t, kw=kw: roi_align_twin(torch, t, rois, **kw), x, mode)


# ------------------------------------------------------------------ float32

@pytest.mark.parametrize("mode", MODES)
def test_float32_against_the_twin_in_float32(torch, mode):
    """float32 in, float32 out; the twin computes its box arithmetic in float32 too."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 8))
    rois = draw_boxes(rng, 8, 2, (18, 16), grid=0.125)
    with dispatch.kernels(mode):
        pooled = ops.roi_pool(mc.tensor(x.astype(np.float32)), rois, 3, 0.5)
        aligned = ops.roi_align(mc.tensor(x.astype(np.float32)), rois, 3, 0.5, -1, True)
    assert pooled.dtype == aligned.dtype == np.float32
    against_twin(torch, lambda t: ops.roi_pool(t, rois, 3, 0.5),
                 lambda t: roi_pool_twin(torch, t, rois, (3, 3), 0.5), x, mode,
                 dtype=np.float32, tol=1e-6)
    against_twin(torch, lambda t: ops.roi_align(t, rois, 3, 0.5, -1, True),
                 lambda t: roi_align_twin(torch, t, rois, (3, 3), 0.5, -1, True), x, mode,
                 dtype=np.float32, tol=1e-5)


# ------------------------------------------------------------------ finite differences

def test_gradcheck_roi_pool_tie_free():
    rng = np.random.default_rng(4)
    x = mc.tensor(rng.permutation(2 * 2 * 6 * 7).reshape(2, 2, 6, 7) * 0.01 - 1.0,
                  requires_grad=True)
    rois = mc.tensor([[0, 0, 0, 5, 4], [1, 1.5, 0.2, 4.6, 5.8], [1, -2, 3, 9, 9],
                      [0, 3, 3, 3, 3]])
    gradcheck(lambda t: ops.roi_pool(t, rois, (2, 3), 1.0), x, name="roi_pool")


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_gradcheck_roi_align(aligned, sampling_ratio):
    rng = np.random.default_rng(5)
    x = mc.tensor(rng.standard_normal((2, 2, 6, 5)), requires_grad=True)
    boxes = [mc.tensor([[0.3, 0.2, 4.1, 5.5], [-1, -1, 2, 1.5]]),
             mc.tensor([[2.2, 1.7, 2.9, 2.4]])]
    gradcheck(lambda t: ops.roi_align(t, boxes, 2, 1.0, sampling_ratio, aligned), x,
              name="roi_align")


# ------------------------------------------------------------------ formats, modules

def test_both_box_formats_and_integer_boxes_agree():
    x = mc.tensor(np.random.default_rng(6).standard_normal((3, 2, 8, 8)))
    listed = [np.array([[1, 1, 6, 5]]), np.zeros((0, 4)), np.array([[0, 2, 7, 7], [3, 3, 4, 6]])]
    rois = np.array([[0, 1, 1, 6, 5], [2, 0, 2, 7, 7], [2, 3, 3, 4, 6]])
    for op in (lambda b: ops.roi_pool(x, b, 3), lambda b: ops.roi_align(x, b, 3, 1.0, 2)):
        want = op(mc.tensor(rois.astype(float))).numpy()
        np.testing.assert_array_equal(op(rois).numpy(), want)          # int boxes
        np.testing.assert_array_equal(op([mc.tensor(b) for b in listed]).numpy(), want)
        np.testing.assert_array_equal(op(tuple(listed)).numpy(), want)


def test_boxes_get_no_gradient():
    x = mc.tensor(np.random.default_rng(7).standard_normal((1, 2, 5, 5)), requires_grad=True)
    boxes = mc.tensor([[0, 0.5, 0.5, 3.5, 4.0]], requires_grad=True)
    (ops.roi_align(x, boxes, 2).sum() + ops.roi_pool(x, boxes, 2).sum()).backward()
    assert boxes.grad is None and x.grad is not None


@pytest.mark.parametrize("mode", MODES)
def test_no_boxes_give_an_empty_output(mode):
    x = mc.tensor(np.ones((2, 3, 5, 5)), requires_grad=True)
    with dispatch.kernels(mode):
        for boxes in (np.zeros((0, 5)), [np.zeros((0, 4)), np.zeros((0, 4))], []):
            for out in (ops.roi_pool(x, boxes, (2, 4)), ops.roi_align(x, boxes, (2, 4))):
                assert out.shape == (0, 3, 2, 4)
                out.sum().backward()
                assert x.grad.shape == x.shape and not x.grad.numpy().any()
                x.grad = None


def test_modules_call_the_ops():
    x = mc.tensor(np.random.default_rng(8).standard_normal((2, 2, 8, 8)))
    boxes = [mc.tensor([[1, 1, 6, 5.0]]), mc.tensor([[0, 0, 3, 3.0]])]
    pool, align = ops.RoIPool(3, 0.5), ops.RoIAlign((2, 3), 0.5, 2, aligned=True)
    np.testing.assert_array_equal(pool(x, boxes).numpy(), ops.roi_pool(x, boxes, 3, 0.5).numpy())
    np.testing.assert_array_equal(align(x, boxes).numpy(),
                                  ops.roi_align(x, boxes, (2, 3), 0.5, 2, True).numpy())
    assert repr(pool) == "RoIPool(output_size=3, spatial_scale=0.5)"
    assert repr(align) == ("RoIAlign(output_size=(2, 3), spatial_scale=0.5, sampling_ratio=2, "
                           "aligned=True)")
    assert list(pool.parameters()) == [] and list(align.parameters()) == []


# ------------------------------------------------------------------ MultiScaleRoIAlign

def multiscale_twin(torch, features, boxes, image_shapes, output_size, sampling_ratio,
                    canonical_scale=224, canonical_level=4):
    """torchvision's poolers: scales 2 ** round(log2(map / image)) in float32, levels by
    FPN eq. 1 with eps 1e-6, roi_align (unaligned) from each box's level."""
    hmax = max(s[0] for s in image_shapes)
    scales = [2 ** float(torch.tensor(f.shape[-2] / hmax).log2().round()) for f in features]
    k_min = int(-torch.log2(torch.tensor(scales[0], dtype=torch.float32)).item())
    k_max = int(-torch.log2(torch.tensor(scales[-1], dtype=torch.float32)).item())
    rois = np.concatenate([np.concatenate([np.full((len(b), 1), i), b], 1)
                           for i, b in enumerate(boxes)])
    area = torch.tensor((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    level = torch.floor(canonical_level + torch.log2(area.sqrt() / canonical_scale)
                        + torch.tensor(1e-6, dtype=area.dtype))
    level = (level.clamp(k_min, k_max).to(torch.int64) - k_min).tolist()
    rows = [roi_align_twin(torch, features[lv], rois[k:k + 1], output_size, scales[lv],
                           sampling_ratio, False) for k, lv in enumerate(level)]
    return torch.cat(rows), level


def test_multiscale_roi_align_matches_torchvision_poolers(torch):
    rng = np.random.default_rng(9)
    maps = {"feat1": rng.standard_normal((2, 2, 16, 16)), "skip": rng.standard_normal((2, 2, 3, 3)),
            "feat2": rng.standard_normal((2, 2, 8, 8)), "feat3": rng.standard_normal((2, 2, 4, 4))}
    names = ["feat1", "feat2", "feat3"]
    # levels (canonical 32 at level 3, maps at levels 2-4): 0, 2, 0 / 1, 0, 0
    boxes = [np.array([[2, 3, 9, 11], [0, 0, 70, 64], [10, 10, 12, 13.5]]),
             np.array([[5, 5, 45, 40], [30, 1, 33, 3], [0, 0, 20, 20]])]
    shapes = [(64, 60), (62, 64)]
    m = ops.MultiScaleRoIAlign(names, 3, 2, canonical_scale=32, canonical_level=3)
    inputs = {k: mc.tensor(v, requires_grad=True) for k, v in maps.items()}
    out = m(inputs, [mc.tensor(b) for b in boxes], shapes)
    assert m.scales == [0.25, 0.125, 0.0625]
    t_maps = {k: torch.tensor(v, requires_grad=True) for k, v in maps.items()}
    want, levels = multiscale_twin(torch, [t_maps[n] for n in names], boxes, shapes, (3, 3), 2,
                                   canonical_scale=32, canonical_level=3)
    assert sorted(set(levels)) == [0, 1, 2]                 # every level is used
    np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=1e-9, atol=1e-9)
    upstream = rng.standard_normal(out.shape)
    (out * mc.tensor(upstream)).sum().backward()
    (want * torch.tensor(upstream)).sum().backward()
    for n in names:
        np.testing.assert_allclose(inputs[n].grad.numpy(), t_maps[n].grad.numpy(),
                                   rtol=1e-9, atol=1e-9, err_msg=n)
    assert inputs["skip"].grad is None
    # the scales are kept from the first call, as torchvision's
    m(inputs, [mc.tensor(b) for b in boxes], [(256, 256)])
    assert m.scales == [0.25, 0.125, 0.0625]


def test_multiscale_roi_align_one_level_and_no_boxes(torch):
    rng = np.random.default_rng(10)
    feat = rng.standard_normal((1, 3, 10, 12))
    boxes = [np.array([[0, 0, 30, 20], [5.5, 7, 38, 39]])]
    m = ops.MultiScaleRoIAlign(["0"], (2, 2), -1)
    out = m({"0": mc.tensor(feat)}, boxes, [(40, 48)])
    want = roi_align_twin(torch, torch.tensor(feat),
                          np.concatenate([np.zeros((2, 1)), boxes[0]], 1), (2, 2), 0.25, -1,
                          False)
    np.testing.assert_allclose(out.numpy(), want.numpy(), rtol=1e-9, atol=1e-9)
    two = ops.MultiScaleRoIAlign(["a", "b"], 2, 2)
    empty = two({"a": mc.tensor(feat), "b": mc.tensor(feat[..., ::2, ::2])},
                [np.zeros((0, 4))], [(40, 48)])
    assert empty.shape == (0, 3, 2, 2)


def test_level_mapper_by_hand():
    """FPN eq. 1 with 224 and 4: a 224-pixel box -> level 4, 112 -> 3, 448 -> 5, clamped
    to [2, 5], a box of no area -> the lowest level."""
    mapper = ops.roi.LevelMapper(2, 5)
    boxes = np.array([[0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 448, 448], [0, 0, 10, 10],
                      [0, 0, 5000, 5000], [3, 3, 3, 3], [0, 0, 223, 224]], dtype=np.float32)
    assert mapper([boxes[:3], boxes[3:]]).tolist() == [2, 1, 3, 0, 3, 0, 1]


# ------------------------------------------------------------------ bad input

def test_bad_input_errors_name_the_op():
    x = mc.tensor(np.zeros((2, 1, 4, 4)))
    good = np.array([[0, 0, 0, 2, 2.0]])
    for op in ("roi_pool", "roi_align"):
        f = getattr(ops, op)
        with pytest.raises(ValueError, match=rf"{op}: boxes must have shape \(K, 5\).*\(1, 4\)"):
            f(x, np.zeros((1, 4)), 2)
        with pytest.raises(ValueError, match=rf"{op}: boxes\[1\] must have shape \(L, 4\).*"
                                             r"\(2, 5\)"):
            f(x, [np.zeros((1, 4)), np.zeros((2, 5))], 2)
        with pytest.raises(TypeError, match=rf"{op}: boxes must be a Tensor\[K, 5\]"):
            f(x, "boxes", 2)
        with pytest.raises(ValueError, match=rf"{op}: the batch index of box 1 \(2\) is out of "
                                             r"range for an input of 2 image"):
            f(x, np.array([[0, 0, 0, 1, 1], [2, 0, 0, 1, 1.0]]), 2)
        with pytest.raises(ValueError, match=rf"{op}: the batch index of box 0 \(-1\) is out"):
            f(x, np.array([[-1, 0, 0, 1, 1.0]]), 2)
        with pytest.raises(ValueError, match="out of range for an input of 2"):
            f(x, [np.zeros((1, 4))] * 3, 2)                 # a third image's boxes
        with pytest.raises(ValueError, match=rf"{op}: the batch index of box 0 \(0.5\) is not a "
                                             "whole number"):
            f(x, np.array([[0.5, 0, 0, 1, 1.0]]), 2)
        with pytest.raises(ValueError, match=rf"{op}: boxes must be finite; row 0"):
            f(x, np.array([[0, 0, np.nan, 1, 1.0]]), 2)
        for scale in (-0.5, 0, float("inf"), "1"):
            with pytest.raises(ValueError, match=rf"{op}: spatial_scale must be a positive "
                                                 r"number"):
                f(x, good, 2, scale)
        with pytest.raises(ValueError, match=rf"{op}: output_size must be >= 1, got \(0, 2\)"):
            f(x, good, (0, 2))
        with pytest.raises(TypeError, match=rf"{op}: output_size must be an int or a pair"):
            f(x, good, 2.5)
        with pytest.raises(ValueError, match=rf"{op}: expected a 4-D \(N, C, H, W\) input, got "
                                             r"shape \(1, 4, 4\)"):
            f(mc.tensor(np.zeros((1, 4, 4))), good, 2)
        with pytest.raises(ValueError, match=rf"{op}: the feature map must have height and "
                                             "width >= 1"):
            f(mc.tensor(np.zeros((1, 1, 0, 4))), good, 2)
        with pytest.raises(TypeError, match=rf"{op}: expected a floating-point input"):
            f(mc.tensor(np.zeros((1, 1, 4, 4), dtype=np.int64)), good, 2)
        with pytest.raises(TypeError, match=rf"{op}: boxes must hold real numbers"):
            f(x, np.zeros((1, 5), dtype=bool), 2)
    with pytest.raises(TypeError, match="roi_align: sampling_ratio must be an int"):
        ops.roi_align(x, good, 2, 1.0, 1.5)
    m = ops.MultiScaleRoIAlign(["a"], 2, 2)
    with pytest.raises(ValueError, match=r"MultiScaleRoIAlign: none of featmap_names \['a'\]"):
        m({"b": x}, [np.zeros((0, 4))], [(4, 4)])
    with pytest.raises(ValueError, match="MultiScaleRoIAlign: image_shapes should not be empty"):
        m({"a": x}, [np.zeros((0, 4))], [])
    with pytest.raises(TypeError, match="MultiScaleRoIAlign: boxes must be a list"):
        m({"a": x}, np.zeros((1, 4)), [(4, 4)])
