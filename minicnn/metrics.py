"""Evaluation metrics: accuracy, top-k accuracy, confusion matrix, per-class precision and
recall, box IoU, non-maximum suppression, segmentation mIoU, ROC curve and AUC.

Metrics are not differentiated, so they work on plain arrays: each accepts minicnn Tensors
or NumPy/CuPy arrays and returns Python numbers or host NumPy arrays.
"""
from __future__ import annotations

import numpy as np

from .autograd import Tensor
from . import backend

__all__ = ["accuracy", "topk_accuracy", "confusion_matrix", "precision_recall",
           "box_iou", "nms", "mean_iou", "roc_curve", "roc_auc"]


def _host(value, name, op):
    if isinstance(value, Tensor):
        value = value.array
    if value is None:
        raise ValueError(f"{op}: {name} is required")
    return backend.to_device(value, "cpu") if backend._is_cupy_array(value) else np.asarray(value)


def _labels_and_scores(output, target, op):
    scores, target = _host(output, "output", op), _host(target, "target", op)
    if scores.ndim != 2:
        raise ValueError(f"{op}: expected output of shape (N, num_classes), got {scores.shape}")
    if target.shape != (scores.shape[0],):
        raise ValueError(f"{op}: expected target of shape ({scores.shape[0]},) to match output "
                         f"{scores.shape}, got {target.shape}")
    return scores, target.astype(np.int64)


def accuracy(output, target):
    """Fraction of rows whose highest score is the target class (output (N, C), target (N,))."""
    scores, target = _labels_and_scores(output, target, "accuracy")
    if scores.shape[0] == 0:
        return 0.0
    return float((scores.argmax(axis=1) == target).mean())


def topk_accuracy(output, target, k=5):
    """Fraction of rows whose target is among the ``k`` highest scores (ImageNet's top-5)."""
    scores, target = _labels_and_scores(output, target, "topk_accuracy")
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"topk_accuracy: k must be in [1, {scores.shape[1]}], got {k}")
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float((top == target[:, None]).any(axis=1).mean()) if len(target) else 0.0


def confusion_matrix(pred, target, num_classes):
    """``M[i, j]`` = how many samples of true class i were predicted as j."""
    pred = _host(pred, "pred", "confusion_matrix").astype(np.int64).ravel()
    target = _host(target, "target", "confusion_matrix").astype(np.int64).ravel()
    if pred.shape != target.shape:
        raise ValueError(f"confusion_matrix: pred has {pred.size} labels, target {target.size}")
    for name, v in (("pred", pred), ("target", target)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} holds labels outside [0, {num_classes}): "
                             f"min {v.min()}, max {v.max()}")
    return np.bincount(target * num_classes + pred,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def precision_recall(pred, target, num_classes):
    """Per-class precision TP/(TP+FP) and recall TP/(TP+FN) (0 where undefined)."""
    m = confusion_matrix(pred, target, num_classes).astype(np.float64)
    tp = np.diag(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(m.sum(0) > 0, tp / m.sum(0), 0.0)
        recall = np.where(m.sum(1) > 0, tp / m.sum(1), 0.0)
    return precision, recall


def box_iou(boxes1, boxes2):
    """IoU of every pair of boxes given as (x1, y1, x2, y2): an (N, M) matrix.

    IoU = area(A ∩ B) / area(A ∪ B), as ``torchvision.ops.box_iou``.
    """
    a = _host(boxes1, "boxes1", "box_iou").astype(np.float64).reshape(-1, 4)
    b = _host(boxes2, "boxes2", "box_iou").astype(np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression: keep the best box, drop every box overlapping it by
    more than ``iou_threshold``, repeat. Returns kept indices by decreasing score, as
    ``torchvision.ops.nms``."""
    boxes = _host(boxes, "boxes", "nms").astype(np.float64).reshape(-1, 4)
    scores = _host(scores, "scores", "nms").astype(np.float64).ravel()
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"nms: {boxes.shape[0]} boxes but {scores.shape[0]} scores")
    order = np.argsort(-scores, kind="stable")
    ious = box_iou(boxes, boxes)
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= ious[i] > iou_threshold
    return np.array(keep, dtype=np.int64)


def mean_iou(pred, target, num_classes, ignore_index=None):
    """Segmentation mIoU: per-class TP / (TP + FP + FN) averaged over classes present in
    prediction or target. Returns (mIoU, per-class IoU with NaN for absent classes)."""
    pred = _host(pred, "pred", "mean_iou").astype(np.int64).ravel()
    target = _host(target, "target", "mean_iou").astype(np.int64).ravel()
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    m = confusion_matrix(pred, target, num_classes).astype(np.float64)
    tp = np.diag(m)
    denom = m.sum(0) + m.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(denom > 0, tp / denom, np.nan)
    present = ~np.isnan(iou)
    return (float(iou[present].mean()) if present.any() else 0.0), iou


def roc_curve(scores, labels):
    """False- and true-positive rates at every distinct score threshold (binary labels)."""
    scores = _host(scores, "scores", "roc_curve").astype(np.float64).ravel()
    labels = _host(labels, "labels", "roc_curve").astype(np.int64).ravel()
    if set(np.unique(labels)) - {0, 1}:
        raise ValueError("roc_curve: labels must be 0 or 1")
    pos, neg = labels.sum(), (1 - labels).sum()
    if pos == 0 or neg == 0:
        raise ValueError("roc_curve: needs at least one positive and one negative label")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]     # end of each tied-score run
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return np.r_[0.0, fps / neg], np.r_[0.0, tps / pos], np.r_[np.inf, s[last]]


def roc_auc(scores, labels):
    """Area under the ROC curve (trapezoids; ties handled as sklearn does)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
