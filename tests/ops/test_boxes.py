"""minicnn.ops box operations against torch twins written here (torchvision.ops' formulas
in plain torch, and NMS as its CPU kernel's greedy loop): box_area, box_iou, box_convert,
clip_boxes_to_image, remove_small_boxes, nms, batched_nms. Random and degenerate boxes
(zero width, identical boxes, equal scores) drawn with hypothesis; the NMS tie rule and
threshold comparison; Tensor/array in, same kind out; the CuPy path (fake device arrays);
every bad-input error."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from minicnn import ops

from fake_cupy import FakeDeviceArray, install, refuse_host_conversion, to_device, to_host

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = (np.float64, np.float32)


# ------------------------------------------------------------------ strategies

@st.composite
def box_arrays(draw, min_boxes=0, max_boxes=12):
    """(K, 4) xyxy boxes on a coarse half-pixel grid, so that identical boxes, shared
    edges, zero widths/heights and exact IoU ties come up often; sometimes negative."""
    k = draw(st.integers(min_boxes, max_boxes))
    corner = st.integers(-4, 24)
    side = st.integers(0, 12)
    rows = draw(st.lists(st.tuples(corner, corner, side, side), min_size=k, max_size=k))
    a = np.array(rows, dtype=np.float64).reshape(k, 4) * 0.5
    a[:, 2:] += a[:, :2]
    return a


@st.composite
def scored_boxes(draw, max_boxes=14):
    """(boxes, scores, categories): scores from a few values so that ties are common."""
    boxes = draw(box_arrays(max_boxes=max_boxes))
    k = len(boxes)
    scores = np.array(draw(st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]),
                                    min_size=k, max_size=k)), dtype=np.float64)
    categories = np.array(draw(st.lists(st.integers(0, 2), min_size=k, max_size=k)),
                          dtype=np.int64)
    return boxes, scores, categories


THRESHOLDS = st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0])


# ------------------------------------------------------------------ torch twins

def torch_area(torch, b):
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def torch_iou(torch, a, b):
    """torchvision.ops.box_iou's formula: inter / union, no guard against 0 / 0."""
    lt = torch.max(a[:, None, :2], b[:, :2])
    rb = torch.min(a[:, None, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (torch_area(torch, a)[:, None] + torch_area(torch, b) - inter)


def torch_nms(torch, boxes, scores, threshold):
    """torchvision's CPU nms kernel as a loop: stable descending sort, visit in order, a
    kept box suppresses later boxes with IoU > threshold (IoU in the boxes' dtype, the
    comparison in double)."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    suppressed = [False] * len(order)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            if suppressed[j]:
                continue
            w = torch.clamp(torch.min(x2[i], x2[j]) - torch.max(x1[i], x1[j]), min=0)
            h = torch.clamp(torch.min(y2[i], y2[j]) - torch.max(y1[i], y1[j]), min=0)
            inter = w * h
            ovr = inter / (areas[i] + areas[j] - inter)
            if ovr.double().item() > threshold:
                suppressed[j] = True
    return keep


def per_class_nms(torch, boxes, scores, categories, threshold):
    """batched_nms by definition: nms per category, the kept indices merged by decreasing
    score (stable: equal scores keep the lower index first)."""
    kept = []
    for c in sorted(set(categories.tolist())):
        members = torch.nonzero(categories == c).flatten()
        kept += members[torch_nms(torch, boxes[members], scores[members], threshold)].tolist()
    kept.sort()
    order = torch.sort(scores[kept], descending=True, stable=True).indices.tolist()
    return [kept[k] for k in order]


def coordinate_trick(torch, boxes, scores, categories, threshold):
    """torchvision's _batched_nms_coordinate_trick: shift each category by idx·(max + 1)."""
    if boxes.numel() == 0:
        return []
    offsets = categories.to(boxes) * (boxes.max() + 1)
    return torch_nms(torch, boxes + offsets[:, None], scores, threshold)


# ------------------------------------------------------------------ area, IoU, convert

@SETTINGS
@given(box_arrays(), box_arrays(), st.sampled_from(DTYPES))
def test_box_area_and_iou_equal_torch(torch, a, b, dtype):
    a, b = a.astype(dtype), b.astype(dtype)
    np.testing.assert_array_equal(ops.box_area(a), torch_area(torch, torch.tensor(a)).numpy())
    got = ops.box_iou(a, b)
    want = torch_iou(torch, torch.tensor(a), torch.tensor(b)).numpy()
    assert got.dtype == want.dtype and got.shape == (len(a), len(b))
    np.testing.assert_array_equal(got, want)          # NaN where torch has NaN


def test_box_iou_hand_values_and_degenerate_boxes():
    a = np.array([[0, 0, 2, 2], [1, 1, 1, 1]], dtype=np.float64)       # 2x2, a point
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [1, 1, 1, 1], [5, 5, 6, 6]], dtype=np.float64)
    iou = ops.box_iou(a, b)
    np.testing.assert_allclose(iou[0], [1 / 7, 1.0, 0.0, 0.0])
    assert iou[1, 0] == 0 and iou[1, 1] == 0 and iou[1, 3] == 0
    assert np.isnan(iou[1, 2])                        # two zero-area boxes: 0 / 0, as torch


def test_integer_and_half_boxes_take_torch_dtypes(torch):
    a = np.array([[0, 0, 4, 4], [1, 2, 3, 5]], dtype=np.int64)
    iou = ops.box_iou(a, a)
    want = torch_iou(torch, torch.tensor(a), torch.tensor(a))
    assert iou.dtype == np.float32 and want.dtype == torch.float32
    np.testing.assert_allclose(iou, want.numpy())
    assert ops.box_area(a.astype(np.uint8)).dtype == np.int32     # torchvision's _upcast
    assert ops.box_area(a.astype(np.float16)).dtype == np.float32
    assert ops.box_area(a).dtype == np.int64


CONVERSIONS = [(i, o) for i in ("xyxy", "xywh", "cxcywh") for o in ("xyxy", "xywh", "cxcywh")]


def torch_convert(torch, b, in_fmt, out_fmt):
    """torchvision's _box_convert formulas, through xyxy."""
    c0, c1, c2, c3 = b.unbind(-1)
    if in_fmt == "xywh":
        c2, c3 = c0 + c2, c1 + c3
    elif in_fmt == "cxcywh":
        c0, c1, c2, c3 = c0 - 0.5 * c2, c1 - 0.5 * c3, c0 + 0.5 * c2, c1 + 0.5 * c3
    if out_fmt == "xywh":
        c2, c3 = c2 - c0, c3 - c1
    elif out_fmt == "cxcywh":
        c0, c1, c2, c3 = (c0 + c2) / 2, (c1 + c3) / 2, c2 - c0, c3 - c1
    return torch.stack((c0, c1, c2, c3), dim=-1)


@SETTINGS
@given(box_arrays(), st.sampled_from(CONVERSIONS), st.sampled_from(DTYPES))
def test_box_convert_equals_torch_and_round_trips(torch, boxes, fmts, dtype):
    boxes = boxes.astype(dtype)
    in_fmt, out_fmt = fmts
    got = ops.box_convert(boxes, in_fmt, out_fmt)
    want = torch_convert(torch, torch.tensor(boxes), in_fmt, out_fmt).numpy()
    np.testing.assert_array_equal(got, want)
    assert got.dtype == dtype
    back = ops.box_convert(got, out_fmt, in_fmt)
    np.testing.assert_allclose(back, boxes, rtol=1e-6, atol=1e-5)


def test_box_convert_hand_values_and_copy():
    xyxy = np.array([[1.0, 2.0, 5.0, 8.0]])
    np.testing.assert_array_equal(ops.box_convert(xyxy, "xyxy", "xywh"), [[1, 2, 4, 6]])
    np.testing.assert_array_equal(ops.box_convert(xyxy, "xyxy", "cxcywh"), [[3, 5, 4, 6]])
    np.testing.assert_array_equal(ops.box_convert([[3.0, 5, 4, 6]], "cxcywh", "xyxy"), xyxy)
    same = ops.box_convert(xyxy, "xyxy", "xyxy")
    same[0, 0] = 99
    assert xyxy[0, 0] == 1                           # the same format returns a copy
    assert ops.box_convert(np.zeros((2, 3, 4)), "xywh", "cxcywh").shape == (2, 3, 4)
    assert ops.box_convert(np.array([[0, 0, 3, 3]]), "xyxy", "cxcywh").dtype == np.float32


# ------------------------------------------------------------------ clip, remove_small

@SETTINGS
@given(box_arrays(), st.integers(0, 12), st.integers(0, 12), st.sampled_from(DTYPES))
def test_clip_equals_torch_clamp(torch, boxes, height, width, dtype):
    boxes = boxes.astype(dtype)
    got = ops.clip_boxes_to_image(boxes, (height, width))
    t = torch.tensor(boxes)
    want = torch.stack((t[:, 0::2].clamp(0, width), t[:, 1::2].clamp(0, height)), dim=2)
    np.testing.assert_array_equal(got, want.reshape(t.shape).numpy())
    assert got.dtype == dtype and got is not boxes


def test_clip_hand_values_keep_nan_and_batch_axes():
    boxes = np.array([[-3.0, 2.0, 15.0, 30.0], [np.nan, 1.0, 2.0, 3.0]])
    got = ops.clip_boxes_to_image(boxes, (20, 10))
    np.testing.assert_array_equal(got[0], [0, 2, 10, 20])
    assert np.isnan(got[1, 0])
    assert ops.clip_boxes_to_image(np.full((2, 3, 4), 50.0), (4, 5))[1, 2].tolist() == [5, 4, 5, 4]


@SETTINGS
@given(box_arrays(), st.sampled_from([0.0, 0.5, 1.0, 2.5, 6.0]))
def test_remove_small_boxes_equals_torch(torch, boxes, min_size):
    t = torch.tensor(boxes)
    keep = ((t[:, 2] - t[:, 0]) >= min_size) & ((t[:, 3] - t[:, 1]) >= min_size)
    got = ops.remove_small_boxes(boxes, min_size)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, torch.where(keep)[0].numpy())


def test_remove_small_boxes_keeps_exactly_min_size():
    boxes = np.array([[0, 0, 2, 2], [0, 0, 1.999, 5], [0, 0, 5, 2], [0, 0, np.nan, 3]])
    np.testing.assert_array_equal(ops.remove_small_boxes(boxes, 2), [0, 2])


# ------------------------------------------------------------------ NMS

@SETTINGS
@given(scored_boxes(), THRESHOLDS, st.sampled_from(DTYPES))
def test_nms_equals_the_greedy_loop(torch, sample, threshold, dtype):
    boxes, scores, _ = sample
    boxes, scores = boxes.astype(dtype), scores.astype(dtype)
    got = ops.nms(boxes, scores, threshold)
    assert got.dtype == np.int64
    assert got.tolist() == torch_nms(torch, torch.tensor(boxes), torch.tensor(scores), threshold)


def test_nms_tie_rule_lower_index_first():
    # three identical boxes with one score: the first is kept, the others suppressed
    boxes = np.tile([[0.0, 0.0, 10.0, 10.0]], (3, 1))
    assert ops.nms(boxes, np.array([0.5, 0.5, 0.5]), 0.5).tolist() == [0]
    # disjoint boxes: all kept, by decreasing score, equal scores in index order
    boxes = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5], [6, 6, 7, 7.0]])
    assert ops.nms(boxes, np.array([0.2, 0.9, 0.2, 0.9]), 0.5).tolist() == [1, 3, 0, 2]


def test_nms_threshold_is_strict_and_compared_in_double():
    # IoU exactly 1/2 (float64): kept at threshold 0.5 (not > 0.5), suppressed below it
    boxes = np.array([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    scores = np.array([1.0, 0.5])
    assert ops.nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert ops.nms(boxes, scores, 0.4999).tolist() == [0]
    # float32 IoU 1/10 rounds to 0.100000001...: above the double 0.1, so suppressed, as
    # in torchvision's kernel (a float32 comparison would keep it)
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 10]], dtype=np.float32)
    assert ops.nms(boxes, scores.astype(np.float32), 0.1).tolist() == [0]


def test_nms_nan_scores_first_and_zero_area_boxes_suppress_nothing(torch):
    scores = np.array([0.3, np.nan, 0.9, np.nan])
    boxes = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5], [6, 6, 7, 7.0]])
    want = torch.sort(torch.tensor(scores), descending=True, stable=True).indices.tolist()
    assert ops.nms(boxes, scores, 0.5).tolist() == want == [1, 3, 2, 0]
    points = np.array([[1.0, 1.0, 1.0, 1.0]] * 3)     # IoU 0 / 0 = NaN: not > threshold
    assert ops.nms(points, np.array([0.1, 0.2, 0.3]), 0.0).tolist() == [2, 1, 0]


def test_nms_empty_and_integer_inputs():
    assert ops.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    assert ops.nms(np.zeros((0, 4)), np.zeros(0), 0.5).dtype == np.int64
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    assert ops.nms(boxes, np.array([3, 2, 1], dtype=np.uint8), 0.5).tolist() == [0, 2]


@SETTINGS
@given(scored_boxes(), THRESHOLDS, st.sampled_from(DTYPES))
def test_batched_nms_equals_per_class_nms(torch, sample, threshold, dtype):
    boxes, scores, categories = sample
    boxes, scores = boxes.astype(dtype), scores.astype(dtype)
    got = ops.batched_nms(boxes, scores, categories, threshold)
    tb, ts, tc = torch.tensor(boxes), torch.tensor(scores), torch.tensor(categories)
    assert got.tolist() == per_class_nms(torch, tb, ts, tc, threshold)
    if boxes.size and boxes.min() >= 0 and dtype == np.float64:
        # torchvision's offset trick agrees where its assumption (coordinates >= 0) holds
        assert got.tolist() == coordinate_trick(torch, tb, ts, tc, threshold)


def test_batched_nms_hand_case_and_negative_coordinates():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [-30, -30, -20, -20.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # box 1 is suppressed by box 0 (same class); box 2 is another class, kept
    assert ops.batched_nms(boxes, scores, np.array([0, 0, 1, 0]), 0.5).tolist() == [0, 2, 3]
    # negative coordinates: torchvision's small-input offset idx·(max + 1) = 11 would move
    # class 1's box onto class 0's [0, 0, 10, 10] and its single nms would drop box 1;
    # per category, both stay
    shifted = np.array([[-11, -11, -1, -1], [0, 0, 10, 10.0]])
    assert ops.batched_nms(shifted, np.array([0.9, 0.8]), np.array([1, 0]), 0.1).tolist() == [0, 1]


# ------------------------------------------------------------------ kinds and devices

def test_tensor_in_tensor_out_array_in_array_out():
    boxes = np.array([[0, 0, 2, 2], [1, 1, 3, 3.0]], dtype=np.float32)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    t = mc.tensor(boxes, requires_grad=True)
    for out in (ops.box_area(t), ops.box_iou(t, boxes), ops.box_convert(t, "xyxy", "xywh"),
                ops.clip_boxes_to_image(t, (2, 2)), ops.remove_small_boxes(t, 1),
                ops.nms(t, scores, 0.5), ops.batched_nms(boxes, mc.Tensor(scores), [0, 0], 0.5)):
        assert isinstance(out, mc.Tensor) and not out.requires_grad
    for out in (ops.box_area(boxes), ops.box_iou(boxes, boxes), ops.nms(boxes, scores, 0.5)):
        assert type(out) is np.ndarray
    assert ops.box_iou([[0, 0, 1, 1]], [[0, 0, 1, 1]]).tolist() == [[1.0]]   # lists work


def test_every_op_stays_on_the_device(monkeypatch):
    install(monkeypatch)
    refuse_host_conversion(monkeypatch)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 20, (30, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 8, (30, 2))], axis=1)
    scores = rng.choice([0.2, 0.5, 0.8], 30)
    categories = rng.integers(0, 3, 30)
    d = to_device
    results = {
        "box_area": (ops.box_area(d(boxes)), ops.box_area(boxes)),
        "box_iou": (ops.box_iou(d(boxes), d(boxes[:5])), ops.box_iou(boxes, boxes[:5])),
        "box_convert": (ops.box_convert(d(boxes), "xyxy", "cxcywh"),
                        ops.box_convert(boxes, "xyxy", "cxcywh")),
        "clip": (ops.clip_boxes_to_image(d(boxes), (15, 12)),
                 ops.clip_boxes_to_image(boxes, (15, 12))),
        "remove_small": (ops.remove_small_boxes(d(boxes), 3), ops.remove_small_boxes(boxes, 3)),
        "nms": (ops.nms(mc.Tensor._wrap(d(boxes)), d(scores), 0.3).array,
                ops.nms(boxes, scores, 0.3)),
        "batched_nms": (ops.batched_nms(d(boxes), d(scores), d(categories), 0.3),
                        ops.batched_nms(boxes, scores, categories, 0.3)),
    }
    for name, (device, host) in results.items():
        assert isinstance(device, FakeDeviceArray), name
        np.testing.assert_array_equal(to_host(device), host, err_msg=name)


# ------------------------------------------------------------------ bad input

def test_bad_input_errors_name_the_op():
    good = np.array([[0, 0, 1, 1.0]])
    flipped = np.array([[0, 0, 1, 1.0], [5, 0, 4, 1]])
    with pytest.raises(ValueError, match=r"box_area: expected boxes of shape \(K, 4\).*\(3, 5\)"):
        ops.box_area(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"box_iou: expected boxes2 of shape \(K, 4\)"):
        ops.box_iou(good, np.zeros(4))
    with pytest.raises(ValueError, match=r"nms: boxes\[1\] = \[5.0, 0.0, 4.0, 1.0\] has x2 < x1"):
        ops.nms(flipped, np.ones(2), 0.5)
    for call in (lambda: ops.box_area(flipped), lambda: ops.box_iou(good, flipped),
                 lambda: ops.remove_small_boxes(flipped, 1),
                 lambda: ops.batched_nms(flipped, np.ones(2), np.zeros(2), 0.5)):
        with pytest.raises(ValueError, match="x2 < x1 or y2 < y1"):
            call()
    with pytest.raises(ValueError, match="y2 < y1"):
        ops.box_iou(np.array([[0, 3, 1, 2.0]]), good)
    with pytest.raises(ValueError, match=r"nms: expected scores of shape \(2,\).*\(3,\)"):
        ops.nms(np.tile(good, (2, 1)), np.ones(3), 0.5)
    with pytest.raises(ValueError, match=r"nms: expected scores of shape \(1,\).*\(1, 1\)"):
        ops.nms(good, np.ones((1, 1)), 0.5)
    with pytest.raises(TypeError, match="batched_nms: idxs must hold integer categories"):
        ops.batched_nms(good, np.ones(1), np.zeros(1), 0.5)
    with pytest.raises(ValueError, match=r"batched_nms: expected idxs of shape \(1,\)"):
        ops.batched_nms(good, np.ones(1), np.zeros(2), 0.5)
    with pytest.raises(TypeError, match="nms: iou_threshold must be a number"):
        ops.nms(good, np.ones(1), "0.5")
    with pytest.raises(ValueError, match="nms: boxes is required"):
        ops.nms(None, np.ones(1), 0.5)
    with pytest.raises(TypeError, match="box_area: boxes must hold real numbers"):
        ops.box_area(np.array([["a", "b", "c", "d"]]))
    with pytest.raises(ValueError, match="box_convert: in_fmt must be one of"):
        ops.box_convert(good, "xyxyr", "xyxy")
    with pytest.raises(ValueError, match="box_convert: out_fmt must be one of"):
        ops.box_convert(good, "xyxy", "yxyx")
    with pytest.raises(ValueError, match=r"clip_boxes_to_image: size must be the image's "
                                         r"\(height, width\)"):
        ops.clip_boxes_to_image(good, 10)
    with pytest.raises(ValueError, match="got width -1"):
        ops.clip_boxes_to_image(good, (10, -1))
    with pytest.raises(TypeError, match="remove_small_boxes: min_size must be a number"):
        ops.remove_small_boxes(good, None)


def test_mixed_devices_are_an_error(monkeypatch):
    install(monkeypatch)
    good = np.array([[0, 0, 1, 1.0]])
    with pytest.raises(ValueError, match="box_iou: inputs must be on one device, got boxes1 "
                                         "on cuda:0, boxes2 on cpu"):
        ops.box_iou(to_device(good), good)
    with pytest.raises(ValueError, match="nms: inputs must be on one device"):
        ops.nms(good, to_device(np.ones(1)), 0.5)
