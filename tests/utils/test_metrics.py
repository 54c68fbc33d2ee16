"""Metrics against scikit-learn and hand-worked examples."""
import numpy as np
import pytest

import minicnn as mc
from minicnn import metrics

import sklearn.metrics as sk  # in the test extras


def test_accuracy_and_topk():
    out = mc.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.3, 0.3, 0.4]])
    target = mc.tensor([1, 2, 2])
    assert metrics.accuracy(out, target) == pytest.approx(2 / 3)
    assert metrics.topk_accuracy(out, target, k=2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="topk_accuracy: k must be"):
        metrics.topk_accuracy(out, target, k=4)
    with pytest.raises(ValueError, match="accuracy: expected target of shape"):
        metrics.accuracy(out, mc.tensor([1, 2]))


def test_confusion_precision_recall_match_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    np.testing.assert_array_equal(metrics.confusion_matrix(p, y, 4), sk.confusion_matrix(y, p))
    prec, rec = metrics.precision_recall(p, y, 4)
    np.testing.assert_allclose(prec, sk.precision_score(y, p, average=None))
    np.testing.assert_allclose(rec, sk.recall_score(y, p, average=None))
    with pytest.raises(ValueError, match="labels outside"):
        metrics.confusion_matrix([5], [0], 4)


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + labels * 0.3, 1)       # many ties
    assert metrics.roc_auc(scores, labels) == pytest.approx(sk.roc_auc_score(labels, scores))
    fpr, tpr, _ = metrics.roc_curve(scores, labels)
    sk_fpr, sk_tpr, _ = sk.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_box_iou_and_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 5, 10]], float)
    iou = metrics.box_iou(boxes, boxes)
    assert iou[0, 1] == pytest.approx(81 / 119)
    assert iou[0, 2] == 0 and iou[0, 3] == pytest.approx(0.5)
    keep = metrics.nms(boxes, np.array([0.9, 0.8, 0.7, 0.95]), iou_threshold=0.6)
    assert keep.tolist() == [3, 0, 2]


def test_mean_iou():
    pred = np.array([[0, 0, 1], [1, 2, 2]])
    target = np.array([[0, 1, 1], [1, 2, 0]])
    miou, per_class = metrics.mean_iou(pred, target, 3)
    np.testing.assert_allclose(per_class, [1 / 3, 2 / 3, 1 / 2])
    assert miou == pytest.approx(np.mean([1 / 3, 2 / 3, 1 / 2]))
    miou_ignored, _ = metrics.mean_iou(pred, target, 3, ignore_index=0)
    assert miou_ignored > 0
