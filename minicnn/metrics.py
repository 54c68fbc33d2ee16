"""Evaluation metrics: accuracy, top-k accuracy, confusion matrix, per-class precision and
recall, box IoU, non-maximum suppression, segmentation mIoU, ROC curve and AUC, and the
streaming segmentation scores of a whole data set (:class:`SegmentationMetric`).

Metrics are not differentiated, so they work on plain arrays: each accepts minicnn Tensors
or NumPy/CuPy arrays and returns Python numbers or host NumPy arrays.
"""
from __future__ import annotations

import math

import numpy as np

from .autograd import Tensor
from . import backend

__all__ = ["accuracy", "topk_accuracy", "confusion_matrix", "precision_recall",
           "box_iou", "nms", "mean_iou", "SegmentationMetric", "roc_curve", "roc_auc"]


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


class SegmentationMetric:
    """The FCN paper's four scores of semantic segmentation, accumulated over a data set.

    Each :meth:`update` adds one batch to a C×C confusion matrix, ``confusion[i, j]`` =
    the number of pixels of true class i predicted as class j (rows: truth, as
    ``confusion_matrix`` and torchvision's ``references/segmentation/utils.ConfusionMatrix``);
    predictions are never kept, so a whole Cityscapes val set (500 × 2048 × 1024 pixels)
    costs C² counters. The matrix stays on the device of the first batch (NumPy or
    CuPy); :meth:`compute` brings it to the host once.

    With n_ij = ``confusion[i, j]``, t_i = Σ_j n_ij the pixels of class i and
    (Long, Shelhamer & Darrell 2015, section 5):

    * ``pixel_accuracy``  Σ_i n_ii / Σ_i t_i
    * ``accuracy``        per class n_ii / t_i (recall); NaN for a class with t_i = 0
    * ``mean_accuracy``   the mean of ``accuracy`` over the classes present in the targets
    * ``iou``             per class n_ii / (t_i + Σ_j n_ji - n_ii) = TP / (TP + FP + FN),
                          which is also VOC's segmentation accuracy n / (n + e); NaN for a
                          class in neither the targets nor the predictions (0 / 0)
    * ``mean_iou``        the mean of ``iou`` over the classes that appear in the targets
                          or the predictions (the NaNs left out)
    * ``frequency_weighted_iou``  Σ_i t_i · iou_i / Σ_i t_i (classes present in targets)

    Conventions. Per class these are torchvision's numbers (``acc`` and ``iu`` of its
    ``ConfusionMatrix.compute``) and sklearn's ``recall_score`` / ``jaccard_score``
    (``average=None``) wherever a class appears. They differ only for an absent class:
    torchvision gives NaN and its mean IoU ``iu.mean()`` then becomes NaN, sklearn gives 0
    (with a warning) and its macro average counts it; here the class is NaN and left out
    of the means, the usual reading of "mean over the classes". With every class present
    (VOC's val set) all three agree. Before any pixel is counted every score is NaN.

    Pixels whose target is ``ignore_index`` (255: VOC's object borders, Cityscapes' void)
    are skipped. Any other target outside [0, num_classes) is an error, not silently
    dropped as torchvision's reference does, and so is a predicted class outside it.

    Example::

        metric = SegmentationMetric(21)
        for images, masks in loader:
            metric.update(model(images), masks)      # logits (N, 21, H, W), masks (N, H, W)
        metric.compute()["mean_iou"]
    """

    def __init__(self, num_classes, ignore_index=255):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes < 1:
            raise ValueError(f"SegmentationMetric: num_classes must be a positive integer, "
                             f"got {num_classes!r}")
        if ignore_index is not None and (isinstance(ignore_index, bool) or
                                         not isinstance(ignore_index, (int, np.integer))):
            raise TypeError(f"SegmentationMetric: ignore_index must be an integer or None, "
                            f"got {ignore_index!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.reset()

    def reset(self):
        """Forget every pixel seen (the matrix returns to zeros on the host)."""
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred, target):
        """Add a batch: ``pred`` class indices (N, H, W) or scores (N, C, H, W) (the class
        is their argmax over C), ``target`` class indices (N, H, W); Tensors or arrays.
        Any matching shapes work, e.g. (H, W) or (N,), scores having C at axis 1."""
        op, c = "SegmentationMetric.update", self.num_classes
        pred, target = _on_device(pred, "pred", op), _on_device(target, "target", op)
        if backend._is_cupy_array(pred) != backend._is_cupy_array(target):
            # one of them on the GPU: count there (moving the other, never the reverse)
            dev = backend.device_of(pred if backend._is_cupy_array(pred) else target)
            pred, target = backend.to_device(pred, dev), backend.to_device(target, dev)
        xp = backend.get_array_module(pred, target)
        if target.dtype.kind not in "iu":
            raise TypeError(f"{op}: target must hold integer class indices, got dtype "
                            f"{target.dtype}")
        if pred.dtype.kind == "f":
            if pred.ndim != target.ndim + 1 or pred.shape[1] != c or \
                    pred.shape[:1] + pred.shape[2:] != target.shape:
                raise ValueError(f"{op}: scores must have shape (N, {c}, ...) matching the "
                                 f"target {tuple(target.shape)}, i.e. "
                                 f"{target.shape[:1] + (c,) + target.shape[1:]}, got "
                                 f"{tuple(pred.shape)}")
            pred = pred.argmax(axis=1)
        elif pred.dtype.kind not in "iu":
            raise TypeError(f"{op}: pred must be integer class indices or float scores, got "
                            f"dtype {pred.dtype}")
        elif pred.shape != target.shape:
            raise ValueError(f"{op}: pred {tuple(pred.shape)} and target "
                             f"{tuple(target.shape)} must have the same shape (or pred be "
                             f"scores (N, {c}, ...))")
        pred = pred.reshape(-1).astype(np.int64, copy=False)
        target = target.reshape(-1).astype(np.int64, copy=False)
        if self.ignore_index is not None:
            kept = target != self.ignore_index
            pred, target = pred[kept], target[kept]
        if target.size == 0:
            return
        # NOTE: on a GPU each check waits for the device once: the price of an error that
        # names the value (a wrong class id would otherwise corrupt the matrix silently)
        for name, labels in (("target", target), ("pred", pred)):
            bad = (labels < 0) | (labels >= c)
            if bool(bad.any()):
                value = int(labels[bad][0].item())
                also = "" if self.ignore_index is None or name == "pred" else \
                    f" or ignore_index={self.ignore_index}"
                raise ValueError(f"{op}: {name} holds class {value}, outside [0, {c}) for "
                                 f"num_classes={c}{also}")
        counts = xp.bincount(target * c + pred, minlength=c * c).reshape(c, c)
        if backend.get_array_module(self.confusion) is not xp:
            self.confusion = backend.to_device(self.confusion, backend.device_of(counts))
        self.confusion = self.confusion + counts

    def compute(self):
        """The scores so far: a dict of ``pixel_accuracy``, ``mean_accuracy``,
        ``mean_iou``, ``frequency_weighted_iou`` (floats) and the per-class lists
        ``accuracy`` and ``iou`` (NaN for absent classes, see the class docstring)."""
        m = backend.to_device(self.confusion, "cpu").astype(np.float64)
        tp, truth, predicted = np.diag(m), m.sum(axis=1), m.sum(axis=0)
        union = truth + predicted - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = np.where(truth > 0, tp / truth, np.nan)
            iou = np.where(union > 0, tp / union, np.nan)
        total = truth.sum()
        present = truth > 0
        return {
            "pixel_accuracy": float(tp.sum() / total) if total else math.nan,
            "mean_accuracy": float(accuracy[present].mean()) if present.any() else math.nan,
            "mean_iou": float(iou[union > 0].mean()) if (union > 0).any() else math.nan,
            "frequency_weighted_iou": (float((truth[present] * iou[present]).sum() / total)
                                       if total else math.nan),
            "accuracy": accuracy.tolist(),
            "iou": iou.tolist(),
        }

    def __repr__(self):
        return (f"SegmentationMetric(num_classes={self.num_classes}, "
                f"ignore_index={self.ignore_index}, pixels={int(self.confusion.sum())})")


def _on_device(value, name, op):
    """A batch as a NumPy or CuPy array, left where it is."""
    if isinstance(value, Tensor):
        return value.array
    if value is None:
        raise ValueError(f"{op}: {name} is required")
    return value if backend._is_cupy_array(value) else np.asarray(value)


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
