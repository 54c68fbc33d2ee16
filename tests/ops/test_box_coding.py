"""minicnn.ops box coding, matching and sampling against torch twins written here
(torchvision's _utils formulas in plain torch): BoxCoder encode/decode (values, round trip,
the exp clamp, the batched forms), Matcher (thresholds, low-quality matches with ties),
SSDMatcher (forced best boxes), BalancedPositiveNegativeSampler (counts, fractions,
reproducibility with minicnn.manual_seed), hard_negative_mask (SSD.compute_loss's
selection); the CuPy path (fake device arrays) and every bad-input error."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from minicnn import ops

from fake_cupy import FakeDeviceArray, install, refuse_host_conversion, to_device, to_host

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
WEIGHTS = st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 0.5, 7.0)])
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}


def random_boxes(rng, k, dtype=np.float64, min_side=0.5):
    xy = rng.uniform(-20, 60, (k, 2))
    return np.concatenate([xy, xy + rng.uniform(min_side, 40, (k, 2))], axis=1).astype(dtype)


def grid_boxes(draw, k):
    """Boxes on an integer grid: exact IoU ties between anchors come up often."""
    rows = draw(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(1, 4),
                                   st.integers(1, 4)), min_size=k, max_size=k))
    a = np.array(rows, dtype=np.float64).reshape(k, 4)
    a[:, 2:] += a[:, :2]
    return a


@st.composite
def quality_matrices(draw):
    """An (M, N) IoU matrix of M gt boxes against N anchors, both on the grid."""
    m, n = draw(st.integers(1, 4)), draw(st.integers(1, 10))
    return ops.box_iou(grid_boxes(draw, m), grid_boxes(draw, n))


# ------------------------------------------------------------------ torch twins

def torch_encode(torch, reference, proposals, weights):
    """torchvision's encode_boxes, in its order of operations."""
    wx, wy, ww, wh = torch.as_tensor(weights, dtype=reference.dtype)
    ex_w = proposals[:, 2:3] - proposals[:, 0:1]
    ex_h = proposals[:, 3:4] - proposals[:, 1:2]
    ex_x = proposals[:, 0:1] + 0.5 * ex_w
    ex_y = proposals[:, 1:2] + 0.5 * ex_h
    gt_w = reference[:, 2:3] - reference[:, 0:1]
    gt_h = reference[:, 3:4] - reference[:, 1:2]
    gt_x = reference[:, 0:1] + 0.5 * gt_w
    gt_y = reference[:, 1:2] + 0.5 * gt_h
    return torch.cat((wx * (gt_x - ex_x) / ex_w, wy * (gt_y - ex_y) / ex_h,
                      ww * torch.log(gt_w / ex_w), wh * torch.log(gt_h / ex_h)), dim=1)


def torch_decode(torch, codes, boxes, weights, clip):
    """torchvision's BoxCoder.decode_single."""
    boxes = boxes.to(codes.dtype)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ctr_x, ctr_y = boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx, dy = codes[:, 0::4] / wx, codes[:, 1::4] / wy
    dw = torch.clamp(codes[:, 2::4] / ww, max=clip)
    dh = torch.clamp(codes[:, 3::4] / wh, max=clip)
    px, py = dx * widths[:, None] + ctr_x[:, None], dy * heights[:, None] + ctr_y[:, None]
    half_w = torch.tensor(0.5, dtype=codes.dtype) * (torch.exp(dw) * widths[:, None])
    half_h = torch.tensor(0.5, dtype=codes.dtype) * (torch.exp(dh) * heights[:, None])
    return torch.stack((px - half_w, py - half_h, px + half_w, py + half_h), dim=2).flatten(1)


def torch_matcher(torch, q, high, low, allow_low_quality):
    """torchvision's Matcher.__call__ and set_low_quality_matches_."""
    vals, matches = q.max(dim=0)
    all_matches = matches.clone()
    below = vals < low
    between = (vals >= low) & (vals < high)
    matches[below] = -1
    matches[between] = -2
    if allow_low_quality:
        highest, _ = q.max(dim=1)
        preds = torch.where(q == highest[:, None])[1]
        matches[preds] = all_matches[preds]
    return matches


def torch_ssd_matcher(torch, q, threshold):
    matches = torch_matcher(torch, q, threshold, threshold, False)
    _, best = q.max(dim=1)
    for gt, pred in enumerate(best.tolist()):       # in order: the last gt wins a shared box
        matches[pred] = gt
    return matches


def torch_hard_negatives(torch, loss, positive, ratio):
    """SSD.compute_loss's selection (with a stable sort, the tie rule minicnn documents)."""
    num_negative = ratio * positive.sum(1, keepdim=True)
    negative_loss = loss.clone()
    negative_loss[positive] = -float("inf")
    _, idx = negative_loss.sort(dim=1, descending=True, stable=True)
    return idx.sort(1)[1] < num_negative


# ------------------------------------------------------------------ BoxCoder

@SETTINGS
@given(st.integers(0, 2**31), st.integers(0, 9), WEIGHTS, st.sampled_from([np.float64, np.float32]))
def test_encode_decode_equal_torch_and_round_trip(torch, seed, k, weights, dtype):
    rng = np.random.default_rng(seed)
    gt, proposals = random_boxes(rng, k, dtype), random_boxes(rng, k, dtype)
    coder = ops.BoxCoder(weights)
    codes = coder.encode_single(gt, proposals)
    want = torch_encode(torch, torch.tensor(gt), torch.tensor(proposals), weights).numpy()
    assert codes.dtype == dtype and codes.shape == (k, 4)
    np.testing.assert_allclose(codes, want, **TOL[dtype])
    decoded = coder.decode_single(codes, proposals)
    want = torch_decode(torch, torch.tensor(codes), torch.tensor(proposals), weights,
                        coder.bbox_xform_clip).numpy()
    np.testing.assert_allclose(decoded, want, **TOL[dtype])
    # these gt boxes are at most 80 times a proposal's side: unclamped unless dw > log(62.5)
    fits = (np.abs(codes[:, 2:] / np.array(weights[2:], dtype)) < coder.bbox_xform_clip).all(1)
    np.testing.assert_allclose(decoded[fits], gt[fits], rtol=1e-4 if dtype == np.float32
                               else 1e-9, atol=1e-3 if dtype == np.float32 else 1e-9)


def test_encode_hand_values():
    coder = ops.BoxCoder((10.0, 10.0, 5.0, 5.0))
    proposal = np.array([[0.0, 0.0, 10.0, 20.0]])            # centre (5, 10), 10 x 20
    gt = np.array([[2.0, 4.0, 22.0, 24.0]])                  # centre (12, 14), 20 x 20
    np.testing.assert_allclose(coder.encode_single(gt, proposal),
                               [[10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2), 5 * math.log(1)]])


def test_decode_several_classes_and_the_clamp(torch):
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 5)
    codes = rng.normal(0, 2, (5, 12))                        # three classes
    codes[0, 2] = 100.0                                       # exp(100 / 5) would be huge
    coder = ops.BoxCoder((1.0, 1.0, 5.0, 5.0))
    got = coder.decode_single(codes, boxes)
    want = torch_decode(torch, torch.tensor(codes), torch.tensor(boxes), coder.weights,
                        coder.bbox_xform_clip)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)
    assert got.shape == (5, 12)
    width = got[0, 2] - got[0, 0]
    assert width == pytest.approx(1000 / 16 * (boxes[0, 2] - boxes[0, 0]))


def test_batched_encode_and_decode_split_and_stack():
    rng = np.random.default_rng(4)
    coder = ops.BoxCoder((10.0, 10.0, 5.0, 5.0))
    gts = [random_boxes(rng, 3), random_boxes(rng, 0), random_boxes(rng, 2)]
    props = [random_boxes(rng, 3), random_boxes(rng, 0), random_boxes(rng, 2)]
    parts = coder.encode(gts, props)
    assert [p.shape for p in parts] == [(3, 4), (0, 4), (2, 4)]
    np.testing.assert_array_equal(np.concatenate(parts),
                                  coder.encode_single(np.concatenate(gts), np.concatenate(props)))
    codes = rng.normal(size=(5, 8))
    decoded = coder.decode(codes, props)
    assert decoded.shape == (5, 2, 4)
    np.testing.assert_array_equal(decoded.reshape(5, 8),
                                  coder.decode_single(codes, np.concatenate(props)))
    assert coder.decode(np.zeros((0, 4)), [np.zeros((0, 4))]).shape == (0, 4)


def test_degenerate_proposals_encode_to_inf_silently():
    coder = ops.BoxCoder((1.0, 1.0, 1.0, 1.0))
    codes = coder.encode_single(np.array([[0.0, 0, 4, 4]]), np.array([[1.0, 1, 1, 3]]))
    assert np.isinf(codes[0, 0]) and np.isinf(codes[0, 2])   # torch gives inf too, no warning


# ------------------------------------------------------------------ Matcher

@SETTINGS
@given(quality_matrices(), st.sampled_from([(0.7, 0.3), (0.5, 0.5), (0.5, 0.4), (0.3, 0.0)]),
       st.booleans())
def test_matcher_equals_torch(torch, q, thresholds, allow_low_quality):
    high, low = thresholds
    got = ops.Matcher(high, low, allow_low_quality)(q)
    want = torch_matcher(torch, torch.tensor(q), high, low, allow_low_quality)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want.numpy())


def test_matcher_hand_cases_with_low_quality_ties():
    q = np.array([[0.9, 0.3, 0.1, 0.0, 0.2],     # gt 0: pred 0 clearly
                  [0.2, 0.6, 0.45, 0.1, 0.2],    # gt 1: best 0.6 at pred 1 (between)
                  [0.1, 0.2, 0.2, 0.25, 0.25]])  # gt 2: best 0.25 at preds 3 and 4 (tie)
    plain = ops.Matcher(0.7, 0.3)(q)
    assert plain.tolist() == [0, -2, -2, -1, -1]
    low = ops.Matcher(0.7, 0.3, allow_low_quality_matches=True)(q)
    # pred 1 is gt 1's best; preds 3 and 4 both reach gt 2's best 0.25; pred 4 gets back
    # *its own* best gt, which is gt 2 by value 0.25 over gt 0's and gt 1's 0.2
    assert low.tolist() == [0, 1, -2, 2, 2]
    assert ops.Matcher.BELOW_LOW_THRESHOLD == -1 and ops.Matcher.BETWEEN_THRESHOLDS == -2
    # a prediction reaching a gt's best gets its own argmax, not that gt
    q = np.array([[0.2, 0.1], [0.5, 0.1]])      # gt 0's best is pred 0, whose best gt is 1
    assert ops.Matcher(0.7, 0.3, True)(q).tolist() == [1, -1]
    # first maximum wins a tie between gts, as torch's max(dim=0)
    assert ops.Matcher(0.5, 0.5)(np.array([[0.8], [0.8]])).tolist() == [0]


@SETTINGS
@given(quality_matrices(), st.sampled_from([0.5, 0.3, 0.9]))
def test_ssd_matcher_equals_torch(torch, q, threshold):
    got = ops.SSDMatcher(threshold)(q)
    np.testing.assert_array_equal(got, torch_ssd_matcher(torch, torch.tensor(q), threshold).numpy())


def test_ssd_matcher_forces_every_gt_onto_its_best_box():
    q = np.array([[0.1, 0.3, 0.2, 0.0],          # gt 0: best 0.3, below the threshold
                  [0.0, 0.0, 0.6, 0.7]])         # gt 1
    assert ops.SSDMatcher(0.5)(q).tolist() == [-1, 0, 1, 1]
    shared = np.array([[0.4, 0.1], [0.45, 0.2]])  # both gts' best box is 0: the later gt wins
    assert ops.SSDMatcher(0.5)(shared).tolist() == [1, -1]


# ------------------------------------------------------------------ sampler

def test_sampler_counts_and_membership():
    labels = np.array([1, 0, 0, -1, 2, 3, 0, 0, 0, 1, -2, 0] * 3)
    positives, negatives = labels >= 1, labels == 0
    for batch, fraction in ((8, 0.25), (8, 0.5), (100, 0.5), (4, 1.0), (6, 0.0)):
        pos, neg = ops.BalancedPositiveNegativeSampler(batch, fraction)([labels])
        pos, neg = pos[0], neg[0]
        assert pos.dtype == np.uint8 and neg.dtype == np.uint8 and pos.shape == labels.shape
        num_pos = min(positives.sum(), int(batch * fraction))
        assert pos.sum() == num_pos
        assert neg.sum() == min(negatives.sum(), batch - num_pos)
        assert not (pos.astype(bool) & ~positives).any()
        assert not (neg.astype(bool) & ~negatives).any()


def test_sampler_is_reproducible_with_manual_seed_and_uniform():
    labels = [np.array([1] * 10 + [0] * 30), np.array([0, 2, -1, 0, 0])]
    sampler = ops.BalancedPositiveNegativeSampler(8, 0.25)
    mc.manual_seed(7)
    first = sampler(labels)
    mc.manual_seed(7)
    second = sampler(labels)
    for a, b in zip(first[0] + first[1], second[0] + second[1]):
        np.testing.assert_array_equal(a, b)
    counts = np.zeros(40)
    for _ in range(600):
        pos, neg = sampler(labels[:1])
        counts += pos[0] + neg[0]
    # each positive is drawn with probability 2/10, each negative 6/30
    assert np.abs(counts / 600 - 0.2).max() < 0.08
    assert len({sampler(labels[:1])[0][0].tobytes() for _ in range(20)}) > 1


def test_sampler_keeps_tensors_and_devices(monkeypatch):
    pos, neg = ops.BalancedPositiveNegativeSampler(4, 0.5)([mc.tensor([1, 0, 0, 1, 0])])
    assert isinstance(pos[0], mc.Tensor) and isinstance(neg[0], mc.Tensor)
    install(monkeypatch)
    refuse_host_conversion(monkeypatch)
    pos, neg = ops.BalancedPositiveNegativeSampler(4, 0.5)([to_device(np.array([1, 0, 0, 1, 0]))])
    assert isinstance(pos[0], FakeDeviceArray) and to_host(pos[0]).sum() == 2


# ------------------------------------------------------------------ hard negatives

@SETTINGS
@given(st.integers(0, 2**31), st.integers(1, 3), st.integers(1, 30),
       st.sampled_from([3, 3.0, 1, 2.5, 0]))
def test_hard_negative_mask_equals_ssd_compute_loss(torch, seed, n, a, ratio):
    rng = np.random.default_rng(seed)
    loss = rng.choice([0.1, 0.4, 0.4, 0.8, 1.5, 2.0], (n, a))   # many ties
    positive = rng.random((n, a)) < 0.15
    got = ops.hard_negative_mask(loss, positive, ratio)
    want = torch_hard_negatives(torch, torch.tensor(loss), torch.tensor(positive), ratio).numpy()
    assert got.dtype == np.bool_ and got.shape == loss.shape
    np.testing.assert_array_equal(got, want & ~positive)         # torchvision's, negatives only
    budget = np.minimum(np.ceil(ratio * positive.sum(1)), (~positive).sum(1))
    np.testing.assert_array_equal(got.sum(1), budget)


def test_hard_negative_mask_hand_case():
    loss = np.array([0.1, 0.5, 0.3, 0.9, 0.5, 0.7, 5.0])
    positive = np.array([0, 0, 0, 0, 0, 0, 1], dtype=bool)       # one positive, the largest
    got = ops.hard_negative_mask(loss, positive, neg_pos_ratio=3)
    # the three hardest negatives: 0.9, 0.7, then 0.5 at index 1 (tie with 4: lower index)
    assert np.flatnonzero(got).tolist() == [1, 3, 5]
    assert not ops.hard_negative_mask(loss, np.zeros(7, bool)).any()   # no positive: none
    t = ops.hard_negative_mask(mc.tensor(loss, requires_grad=True), positive)
    assert isinstance(t, mc.Tensor) and not t.requires_grad


# ------------------------------------------------------------------ device and errors

def test_coding_stays_on_the_device(monkeypatch):
    rng = np.random.default_rng(5)
    gt, props = random_boxes(rng, 6), random_boxes(rng, 6)
    q = ops.box_iou(gt[:3], props)
    loss, positive = rng.random((2, 6)), rng.random((2, 6)) < 0.3
    coder = ops.BoxCoder((10.0, 10.0, 5.0, 5.0))
    host = [coder.encode_single(gt, props), coder.decode_single(rng.normal(size=(6, 8)), props),
            ops.Matcher(0.5, 0.3, True)(q), ops.SSDMatcher(0.5)(q),
            ops.hard_negative_mask(loss, positive)]
    codes = rng.normal(size=(6, 8))
    host[1] = coder.decode_single(codes, props)
    install(monkeypatch)
    refuse_host_conversion(monkeypatch)
    d = to_device
    device = [coder.encode_single(d(gt), d(props)), coder.decode_single(d(codes), d(props)),
              ops.Matcher(0.5, 0.3, True)(d(q)), ops.SSDMatcher(0.5)(d(q)),
              ops.hard_negative_mask(d(loss), d(positive))]
    for got, want in zip(device, host):
        assert isinstance(got, FakeDeviceArray)
        np.testing.assert_array_equal(to_host(got), want)


def test_bad_input_errors_name_the_op():
    coder = ops.BoxCoder((1.0, 1.0, 1.0, 1.0))
    box = np.array([[0.0, 0, 1, 1]])
    with pytest.raises(ValueError, match="BoxCoder: weights must be four non-zero numbers"):
        ops.BoxCoder((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="BoxCoder: weights must be four non-zero numbers"):
        ops.BoxCoder((1.0, 0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"BoxCoder.encode_single: expected proposals of shape "
                                         r"\(K, 4\).*\(1, 5\)"):
        coder.encode_single(box, np.zeros((1, 5)))
    with pytest.raises(ValueError, match="BoxCoder.encode_single: 1 reference_boxes but 2"):
        coder.encode_single(box, np.tile(box, (2, 1)))
    with pytest.raises(ValueError, match="BoxCoder.encode: image 0 has 1 reference_boxes but 2"):
        coder.encode([box], [np.tile(box, (2, 1))])
    with pytest.raises(TypeError, match="BoxCoder.encode: reference_boxes must be a list"):
        coder.encode(box, [box])
    with pytest.raises(ValueError, match=r"BoxCoder.decode_single: expected rel_codes of shape "
                                         r"\(1, 4·C\)"):
        coder.decode_single(np.zeros((1, 6)), box)
    with pytest.raises(ValueError, match=r"BoxCoder.decode: rel_codes of shape \(3, 4\) cannot"):
        coder.decode(np.zeros((3, 4)), [box, box])
    with pytest.raises(TypeError, match="BoxCoder.decode: boxes must be a list"):
        coder.decode(np.zeros((1, 4)), box)
    with pytest.raises(ValueError, match="Matcher: low_threshold must be <= high_threshold"):
        ops.Matcher(0.3, 0.7)
    with pytest.raises(ValueError, match="Matcher: no ground-truth boxes"):
        ops.Matcher(0.7, 0.3)(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="SSDMatcher: no proposal boxes"):
        ops.SSDMatcher(0.5)(np.zeros((2, 0)))
    with pytest.raises(ValueError, match=r"Matcher: expected match_quality_matrix of shape "
                                         r"\(M, N\)"):
        ops.Matcher(0.7, 0.3)(np.zeros(5))
    with pytest.raises(ValueError, match="BalancedPositiveNegativeSampler: positive_fraction"):
        ops.BalancedPositiveNegativeSampler(256, 1.5)
    with pytest.raises(ValueError, match="BalancedPositiveNegativeSampler: batch_size_per_image"):
        ops.BalancedPositiveNegativeSampler(-1, 0.5)
    with pytest.raises(TypeError, match="BalancedPositiveNegativeSampler: expected a list"):
        ops.BalancedPositiveNegativeSampler(4, 0.5)(np.zeros(4))
    with pytest.raises(ValueError, match=r"hard_negative_mask: expected positive of shape \(2, 3\)"):
        ops.hard_negative_mask(np.zeros((2, 3)), np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="hard_negative_mask: neg_pos_ratio must be"):
        ops.hard_negative_mask(np.zeros(3), np.zeros(3, bool), -1)
