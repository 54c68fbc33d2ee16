"""metrics.SegmentationMetric: the FCN paper's four scores from a streaming confusion
matrix. Worked numbers from hand-made matrices; streaming over batches equals one shot on
the concatenation; sklearn's confusion_matrix / jaccard_score / recall_score and
torchvision's reference ConfusionMatrix formulas on random data; ignore_index; logits
give what their argmax gives; bad input; the matrix stays on the batch's device."""
import math

import numpy as np
import pytest
import sklearn.metrics as sk  # in the test extras

import minicnn as mc
from minicnn.metrics import SegmentationMetric, confusion_matrix

from fake_cupy import FakeDeviceArray, install, to_device


def _pixels_of(matrix):
    """(pred, target) pixel lists whose confusion matrix is ``matrix`` (rows: truth)."""
    matrix = np.asarray(matrix)
    truth, pred = np.nonzero(np.ones_like(matrix))
    counts = matrix[truth, pred]
    return np.repeat(pred, counts), np.repeat(truth, counts)


def test_worked_example_every_class_present():
    # rows truth, columns prediction; t = (6, 6, 4), predicted (7, 5, 4), TP (5, 3, 3)
    matrix = [[5, 1, 0],
              [2, 3, 1],
              [0, 1, 3]]
    pred, target = _pixels_of(matrix)
    metric = SegmentationMetric(3)
    metric.update(pred.reshape(1, 4, 4), target.reshape(1, 4, 4))
    np.testing.assert_array_equal(metric.confusion, matrix)
    r = metric.compute()
    assert r["pixel_accuracy"] == pytest.approx(11 / 16)
    assert r["accuracy"] == pytest.approx([5 / 6, 3 / 6, 3 / 4])
    assert r["mean_accuracy"] == pytest.approx(25 / 36)
    # IoU = TP / (t + predicted - TP) = 5/8, 3/8, 3/5
    assert r["iou"] == pytest.approx([5 / 8, 3 / 8, 3 / 5])
    assert r["mean_iou"] == pytest.approx(8 / 15)
    assert r["frequency_weighted_iou"] == pytest.approx((6 * 5 / 8 + 6 * 3 / 8 + 4 * 3 / 5) / 16)
    assert r["frequency_weighted_iou"] == pytest.approx(0.525)


def test_worked_example_with_absent_classes():
    # class 2 is only predicted (IoU 0, no recall), class 3 appears nowhere (NaN, left out)
    matrix = [[2, 0, 1, 0],
              [0, 1, 1, 0],
              [0, 0, 0, 0],
              [0, 0, 0, 0]]
    pred, target = _pixels_of(matrix)
    metric = SegmentationMetric(4)
    metric.update(pred, target)
    r = metric.compute()
    assert r["pixel_accuracy"] == pytest.approx(3 / 5)
    assert r["accuracy"][:2] == pytest.approx([2 / 3, 1 / 2])
    assert math.isnan(r["accuracy"][2]) and math.isnan(r["accuracy"][3])
    assert r["mean_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    # union = truth + predicted - TP: 3 + 2 - 2, 2 + 1 - 1, 0 + 2 - 0
    assert r["iou"][:3] == pytest.approx([2 / 3, 1 / 2, 0.0])
    assert math.isnan(r["iou"][3])
    assert r["mean_iou"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert r["frequency_weighted_iou"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2) / 5)


def test_streaming_equals_one_shot_on_the_concatenation():
    rng = np.random.default_rng(0)
    c = 6
    batches = []
    for n, h, w in [(2, 5, 7), (1, 3, 3), (4, 6, 2), (3, 5, 7)]:
        target = rng.integers(0, c, (n, h, w))
        target[rng.random(target.shape) < 0.1] = 255
        batches.append((rng.integers(0, c, (n, h, w)), target))
    streamed = SegmentationMetric(c)
    for pred, target in batches:
        streamed.update(pred, target)
    once = SegmentationMetric(c)
    pred_all = np.concatenate([p.reshape(-1) for p, _ in batches])
    target_all = np.concatenate([t.reshape(-1) for _, t in batches])
    once.update(pred_all, target_all)
    np.testing.assert_array_equal(streamed.confusion, once.confusion)
    kept = target_all != 255
    np.testing.assert_array_equal(streamed.confusion,
                                  confusion_matrix(pred_all[kept], target_all[kept], c))
    assert streamed.compute() == once.compute()


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_and_torchvision_reference(seed, torch):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 8))
    target = rng.integers(0, c, (3, 9, 11))
    # predictions right about half the time, so that the scores are far from 0 and 1
    pred = np.where(rng.random(target.shape) < 0.5, target, rng.integers(0, c, target.shape))
    target[rng.random(target.shape) < 0.05] = 255
    metric = SegmentationMetric(c)
    metric.update(mc.tensor(pred), mc.tensor(target))
    r = metric.compute()

    kept = target != 255
    p, t = pred[kept], target[kept]
    labels = list(range(c))
    np.testing.assert_array_equal(metric.confusion, sk.confusion_matrix(t, p, labels=labels))
    assert r["iou"] == pytest.approx(sk.jaccard_score(t, p, labels=labels, average=None))
    assert r["mean_iou"] == pytest.approx(sk.jaccard_score(t, p, labels=labels,
                                                           average="macro"))
    assert r["accuracy"] == pytest.approx(sk.recall_score(t, p, labels=labels, average=None))
    assert r["mean_accuracy"] == pytest.approx(sk.balanced_accuracy_score(t, p))
    assert r["pixel_accuracy"] == pytest.approx(sk.accuracy_score(t, p))
    iou_w = sk.jaccard_score(t, p, labels=labels, average="weighted")   # support-weighted
    assert r["frequency_weighted_iou"] == pytest.approx(iou_w)

    # torchvision references/segmentation/utils.py: ConfusionMatrix.compute on the same
    # matrix (its update's rows are the targets too)
    h = torch.tensor(metric.confusion).double()
    diag = torch.diag(h)
    acc_global, acc = diag.sum() / h.sum(), diag / h.sum(1)
    iu = diag / (h.sum(1) + h.sum(0) - diag)
    assert r["pixel_accuracy"] == pytest.approx(acc_global.item())
    assert r["accuracy"] == pytest.approx(acc.tolist())
    assert r["iou"] == pytest.approx(iu.tolist())
    assert r["mean_iou"] == pytest.approx(iu.mean().item())


def test_ignore_index_pixels_are_skipped_whatever_their_prediction():
    target = np.array([[0, 1, 255, 255], [1, 255, 0, 0]])
    metric = SegmentationMetric(2)
    metric.update(np.array([[0, 1, 0, 1], [1, 1, 0, 1]]), target)
    np.testing.assert_array_equal(metric.confusion, [[2, 1], [0, 2]])
    other = SegmentationMetric(2, ignore_index=7)
    other.update(np.array([[0, 1]]), np.array([[7, 1]]))
    np.testing.assert_array_equal(other.confusion, [[0, 0], [0, 1]])
    strict = SegmentationMetric(2, ignore_index=None)
    with pytest.raises(ValueError, match="target holds class 255, outside \\[0, 2\\)"):
        strict.update(np.array([[0, 1]]), np.array([[255, 1]]))


def test_logits_give_what_their_argmax_gives():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)
    target = rng.integers(0, 5, (2, 6, 4))
    from_logits, from_indices = SegmentationMetric(5), SegmentationMetric(5)
    from_logits.update(mc.tensor(logits), target)
    from_indices.update(logits.argmax(axis=1), mc.tensor(target))
    np.testing.assert_array_equal(from_logits.confusion, from_indices.confusion)
    assert from_logits.compute() == from_indices.compute()


def test_bad_input_errors():
    metric = SegmentationMetric(3)
    good = np.zeros((1, 2, 2), dtype=np.int64)
    with pytest.raises(ValueError, match=r"SegmentationMetric.update: target holds class 5, "
                                         r"outside \[0, 3\) for num_classes=3 or "
                                         r"ignore_index=255"):
        metric.update(good, np.array([[[0, 5], [1, 2]]]))
    with pytest.raises(ValueError, match="target holds class -1"):
        metric.update(good, np.array([[[0, -1], [1, 2]]]))
    with pytest.raises(ValueError, match="pred holds class 3"):
        metric.update(np.array([[[0, 3], [1, 2]]]), good)
    with pytest.raises(ValueError, match=r"pred \(1, 2, 3\) and target \(1, 2, 2\) must "
                                         r"have the same shape"):
        metric.update(np.zeros((1, 2, 3), dtype=np.int64), good)
    with pytest.raises(ValueError, match=r"scores must have shape \(N, 3, ...\) matching "
                                         r"the target \(1, 2, 2\), i.e. \(1, 3, 2, 2\), "
                                         r"got \(1, 4, 2, 2\)"):
        metric.update(np.zeros((1, 4, 2, 2)), good)
    with pytest.raises(TypeError, match="target must hold integer class indices, got dtype "
                                        "float64"):
        metric.update(good, good.astype(np.float64))
    with pytest.raises(TypeError, match="pred must be integer class indices or float "
                                        "scores, got dtype bool"):
        metric.update(good.astype(bool), good)
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got 0"):
        SegmentationMetric(0)
    with pytest.raises(TypeError, match="ignore_index must be an integer or None"):
        SegmentationMetric(3, ignore_index=2.5)
    assert metric.confusion.sum() == 0       # nothing half-counted by a failed update


def test_reset_and_nothing_counted():
    metric = SegmentationMetric(2)
    empty = metric.compute()
    assert all(math.isnan(empty[k]) for k in ("pixel_accuracy", "mean_accuracy",
                                              "mean_iou", "frequency_weighted_iou"))
    metric.update(np.array([255, 255]), np.array([255, 255]))   # all ignored: nothing
    metric.update(np.array([0, 1]), np.array([0, 0]))
    assert metric.compute()["pixel_accuracy"] == 0.5
    metric.reset()
    assert metric.confusion.sum() == 0
    assert math.isnan(metric.compute()["mean_iou"])


def test_counts_on_the_batch_device(monkeypatch):
    """The matrix is counted where the batch lives (only compute() copies it to the
    host); a host target joins a device prediction there."""
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((2, 4, 3, 5))
    target = rng.integers(0, 4, (2, 3, 5))
    target[0, 0] = 255
    host = SegmentationMetric(4)
    host.update(logits, target)
    install(monkeypatch)
    device = SegmentationMetric(4)
    device.update(mc.Tensor._wrap(to_device(logits)), mc.Tensor._wrap(to_device(target)))
    assert isinstance(device.confusion, FakeDeviceArray)
    device.update(to_device(logits), target)
    assert isinstance(device.confusion, FakeDeviceArray)
    host.update(logits, target)
    r_host, r_device = host.compute(), device.compute()
    assert r_device == r_host
