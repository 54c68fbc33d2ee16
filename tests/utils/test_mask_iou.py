"""metrics.mask_iou: hand values, rectangles against box_iou of their pixel-edge boxes,
probability masks read as non-zero, empty masks, and errors naming the function.
metrics.MaskIoUMetric: mean mask IoU on matched detections against hand values (a
perfect mask, a half overlap; unmatched, low-score, wrong-class, duplicate and background
detections left out), streaming, Tensors and the GPU path, and bad input."""
import math

import numpy as np
import pytest

import minicnn as mc
from minicnn.metrics import MaskIoUMetric, mask_iou
from minicnn.ops import box_iou

from fake_cupy import record_device_to_host, to_device


def test_hand_values():
    a = np.zeros((2, 4, 4), bool)
    a[0, :2, :2] = True                      # 4 pixels
    a[1] = True                              # 16 pixels
    b = np.zeros((3, 4, 4), bool)
    b[0, :2, :] = True                       # 8 pixels: 4 shared with a[0]
    b[2, 0, 0] = True                        # 1 pixel
    np.testing.assert_array_equal(mask_iou(a, b), [[4 / 8, 0, 1 / 4], [8 / 16, 0, 1 / 16]])
    assert mask_iou(a, b).dtype == np.float64


def test_rectangles_agree_with_box_iou():
    rng = np.random.default_rng(0)
    corners = np.sort(rng.integers(0, 32, (10, 2, 2)), axis=1)      # (x1, x2), (y1, y2)
    corners[:, 1] += 1                                               # non-empty
    boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0],
                      corners[:, 1, 1]], 1).astype(np.float64)      # xyxy pixel edges
    masks = np.zeros((10, 33, 33), np.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.astype(int)):
        m[y1:y2, x1:x2] = 1
    np.testing.assert_allclose(mask_iou(masks[:4], mc.tensor(masks)), box_iou(boxes[:4], boxes),
                               rtol=1e-14)


def test_probabilities_and_empty_masks():
    p = np.array([[[0.0, 0.2], [0.7, 0.0]]])
    empty = np.zeros((1, 2, 2))
    assert mask_iou(p >= 0.5, p).item() == 0.5           # 1 pixel of the 2 non-zero
    assert mask_iou(empty, empty).item() == 0.0
    assert mask_iou(np.zeros((0, 2, 2)), p).shape == (0, 1)


def test_errors_name_mask_iou():
    with pytest.raises(ValueError, match=r"mask_iou: expected masks1 of shape \(K, H, W\)"):
        mask_iou(np.zeros((2, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="mask_iou: masks1 and masks2 must have one size"):
        mask_iou(np.zeros((1, 2, 2)), np.zeros((1, 3, 2)))


# ------------------------------------------------------------------- MaskIoUMetric

def _rect(x1, y1, x2, y2, size=8):
    """An (H, W) mask with the pixels of the xyxy box (pixel edges) set."""
    m = np.zeros((size, size), np.float32)
    m[y1:y2, x1:x2] = 1
    return m


def _scene():
    """One 8x8 image with two objects (class 1 top-left 4x4, class 2 bottom-right 4x4)
    and five detections:

    0. class 1, score 0.9, on object 0, mask = the object's exactly         -> IoU 1
    1. class 2, score 0.8, on object 1, mask = its left half (8 of 16 px)   -> IoU 1/2
    2. class 1, score 0.7, box far from any object (unmatched)              -> ignored
    3. class 2, score 0.3, on object 1, full mask (under min_score)         -> ignored
    4. class 3, score 0.95, on object 0's box (no class-3 object)           -> ignored
    """
    boxes = np.array([[0, 0, 4, 4], [4, 4, 8, 8], [6, 0, 8, 2], [4, 4, 8, 8], [0, 0, 4, 4]],
                     np.float32)
    masks = np.stack([_rect(0, 0, 4, 4), 0.6 * _rect(4, 4, 6, 8), _rect(6, 0, 8, 2),
                      _rect(4, 4, 8, 8), _rect(0, 0, 4, 4)])[:, None]     # (5, 1, 8, 8)
    det = {"boxes": boxes, "labels": np.array([1, 2, 1, 2, 3]),
           "scores": np.array([0.9, 0.8, 0.7, 0.3, 0.95], np.float32), "masks": masks}
    tgt = {"boxes": np.array([[0, 0, 4, 4], [4, 4, 8, 8]], np.float32),
           "labels": np.array([1, 2]),
           "masks": np.stack([_rect(0, 0, 4, 4), _rect(4, 4, 8, 8)]).astype(np.uint8)}
    return det, tgt


def test_mask_iou_metric_hand_values():
    det, tgt = _scene()
    metric = MaskIoUMetric()
    assert math.isnan(metric.compute()["mask_iou"]) and metric.compute()["matched"] == 0
    metric.update([det], [tgt])
    assert metric.compute() == {"mask_iou": (1.0 + 0.5) / 2, "matched": 2}
    # a lower min_score lets detection 3 in: it comes after detection 1 (score 0.8) on
    # the same object, a duplicate, so nothing changes
    low = MaskIoUMetric(min_score=0.1)
    low.update([det], [tgt])
    assert low.compute() == {"mask_iou": 0.75, "matched": 2}
    # a mask threshold above 0.6 empties detection 1's mask: IoU 0
    strict = MaskIoUMetric(threshold=0.7)
    strict.update([det], [tgt])
    assert strict.compute() == {"mask_iou": 0.5, "matched": 2}


def test_mask_iou_metric_low_score_does_not_take_the_object():
    """Detections under min_score are dropped before the matching: detection 3 (score
    0.3, perfect mask) alone on object 1 is not counted, and with detection 1 dropped
    too the object is simply unmatched."""
    det, tgt = _scene()
    keep = [0, 3]
    only = {k: v[keep] for k, v in det.items()}
    metric = MaskIoUMetric()
    metric.update([only], [tgt])
    assert metric.compute() == {"mask_iou": 1.0, "matched": 1}


def test_mask_iou_metric_background_difficult_and_channelless_masks():
    det, tgt = _scene()
    det = {**det, "labels": np.array([0, 2, 1, 2, 3]), "masks": det["masks"][:, 0]}
    tgt = {**tgt, "labels": np.array([0, 2])}            # class 0: never scored
    metric = MaskIoUMetric()
    metric.update([det], [tgt])
    assert metric.compute() == {"mask_iou": 0.5, "matched": 1}
    hard = MaskIoUMetric()
    hard.update([det], [{**tgt, "difficult": np.array([False, True])}])
    assert hard.compute()["matched"] == 0                # on a difficult object: left out


def test_mask_iou_metric_streams_over_batches_and_resets():
    det, tgt = _scene()
    empty_det = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64),
                 "scores": np.zeros(0), "masks": np.zeros((0, 1, 8, 8))}
    metric = MaskIoUMetric()
    metric.update([det, empty_det], [tgt, tgt])
    metric.update([det], [tgt])
    assert metric.compute() == {"mask_iou": 0.75, "matched": 4}
    assert metric.images == 3
    metric.reset()
    assert metric.compute()["matched"] == 0 and metric.images == 0


def test_mask_iou_metric_agrees_with_mask_iou_on_random_masks():
    rng = np.random.default_rng(0)
    pred = rng.random((6, 1, 10, 10))
    true = rng.random((6, 10, 10)) < 0.5
    boxes = np.array([[i, i, i + 3, i + 3] for i in range(6)], np.float32)
    det = {"boxes": boxes, "labels": np.ones(6, np.int64), "scores": np.linspace(1, 0.5, 6),
           "masks": pred}
    tgt = {"boxes": boxes, "labels": np.ones(6, np.int64), "masks": true}
    metric = MaskIoUMetric()
    metric.update([det], [tgt])
    expected = np.diag(mask_iou(pred[:, 0] >= 0.5, true)).mean()
    assert metric.compute()["matched"] == 6
    assert metric.compute()["mask_iou"] == pytest.approx(expected, rel=1e-15, abs=0)


def test_mask_iou_metric_tensors_and_gpu(monkeypatch):
    det, tgt = _scene()
    as_tensors = MaskIoUMetric()
    as_tensors.update([{k: mc.tensor(v) for k, v in det.items()}],
                      [{k: mc.tensor(v) for k, v in tgt.items()}])
    assert as_tensors.compute() == {"mask_iou": 0.75, "matched": 2}

    copies = record_device_to_host(monkeypatch)
    device = MaskIoUMetric()
    device.update([{k: mc.Tensor._wrap(to_device(v)) for k, v in d.items()} for d in (det, det)],
                  [{k: to_device(v) for k, v in t.items()} for t in (tgt, tgt)])
    # five box fields, then the matched masks: one copy for each side, both images
    assert copies.count(True) == 7
    assert device.compute() == {"mask_iou": 0.75, "matched": 4}


def test_mask_iou_metric_errors_name_the_class():
    det, tgt = _scene()
    with pytest.raises(ValueError, match=r"MaskIoUMetric.update: detections\[0\]\['masks'\] "
                                         r"is required"):
        MaskIoUMetric().update([{k: v for k, v in det.items() if k != "masks"}], [tgt])
    with pytest.raises(ValueError, match=r"MaskIoUMetric.update: expected targets\[0\]"
                                         r"\['masks'\] of shape \(G, H, W\) with 2 masks"):
        MaskIoUMetric().update([det], [{**tgt, "masks": tgt["masks"][:1]}])
    with pytest.raises(ValueError, match=r"expected detections\[0\]\['masks'\] of shape "
                                         r"\(D, 1, H, W\) or \(D, H, W\) with 5 masks"):
        MaskIoUMetric().update([{**det, "masks": det["masks"][:, :, :, :, None]}], [tgt])
    with pytest.raises(ValueError, match=r"MaskIoUMetric.update: detections\[0\]\['masks'\] "
                                         r"are \(8, 8\) but targets\[0\]\['masks'\] are "
                                         r"\(8, 7\)"):
        MaskIoUMetric().update([det], [{**tgt, "masks": tgt["masks"][:, :, :7]}])
    with pytest.raises(ValueError, match="MaskIoUMetric.update: 1 detections but 2 targets"):
        MaskIoUMetric().update([det], [tgt, tgt])
    with pytest.raises(ValueError, match=r"detections\[0\]\['labels'\] holds class -1"):
        MaskIoUMetric().update([{**det, "labels": np.array([1, 2, 1, 2, -1])}], [tgt])
    with pytest.raises(ValueError, match=r"MaskIoUMetric: threshold must be in \(0, 1\]"):
        MaskIoUMetric(threshold=0)
    with pytest.raises(TypeError, match="MaskIoUMetric: min_score must be a finite number"):
        MaskIoUMetric(min_score="0.5")
    with pytest.raises(ValueError, match=r"MaskIoUMetric: iou_threshold must be in \(0, 1\]"):
        MaskIoUMetric(iou_threshold=1.5)
    metric = MaskIoUMetric()                  # a batch with a bad image adds nothing
    with pytest.raises(ValueError):
        metric.update([det, det], [tgt, {**tgt, "masks": tgt["masks"][:1]}])
    assert metric.compute()["matched"] == 0
