"""Evaluation metrics: accuracy, top-k accuracy, confusion matrix, per-class precision and
recall, segmentation mIoU, ROC curve and AUC, the streaming segmentation scores of a whole
data set (:class:`SegmentationMetric`), and object detection's average precision: PASCAL
VOC's matching and AP (all-point and the 11-point VOC2007 form), mAP at IoU 0.5 and COCO's
mAP@[.5:.95], streaming over a data set (:class:`DetectionMetric`).

Metrics are not differentiated, so they work on plain arrays: each accepts minicnn Tensors
or NumPy/CuPy arrays and returns Python numbers or host NumPy arrays. ``box_iou`` and
``nms`` are :mod:`minicnn.ops`' (torchvision's semantics; they keep the inputs' kind and
device), re-exported here under their old names.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .autograd import Tensor
from . import backend
from .ops import box_iou, nms       # the detection boxes' IoU and NMS live in ops

__all__ = ["accuracy", "topk_accuracy", "confusion_matrix", "precision_recall",
           "box_iou", "nms", "mean_iou", "SegmentationMetric", "roc_curve", "roc_auc",
           "DetectionMatch", "match_detections", "average_precision",
           "mean_average_precision", "DetectionMetric"]


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


# ====================================================================== object detection
#
# Every choice below that a reference implementation makes differently is named where it
# is made; the class docstring of DetectionMetric collects them.

#: COCO's ten IoU thresholds 0.50, 0.55, ..., 0.95 (as exact decimals: pycocotools' linspace
#: makes the ninth 0.8999999999999999)
COCO_IOU_THRESHOLDS = tuple((50 + 5 * i) / 100 for i in range(10))
#: COCO's 101 recall thresholds 0, 0.01, ..., 1 and its detections per image and class
_COCO_RECALLS = np.arange(101) / 100
_COCO_MAX_DETECTIONS = 100


class DetectionMatch(NamedTuple):
    """What :func:`match_detections` found for one image and one class.

    ``order``: the prediction indices by decreasing score (equal scores keep their input
    order); ``tp``, ``fp``: bool flags, in that order (a prediction matched to a
    ``difficult`` object has neither); ``gt_index``: the ground truth each prediction was
    matched to (its best-overlapping object, even when that one was taken and the prediction
    is a false positive; -1 when its best IoU is under the threshold or there is none);
    ``num_gt``: the number of objects that count (not ``difficult``)."""
    order: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    gt_index: np.ndarray
    num_gt: int


def match_detections(pred_boxes, pred_scores, gt_boxes, iou_threshold=0.5, difficult=None):
    """PASCAL VOC's assignment of one image's predictions of one class to its objects of
    that class (the devkit's ``VOCevaldet.m``; py-faster-rcnn's ``voc_eval``).

    The predictions are visited by decreasing score; each is compared with the object it
    overlaps most (highest IoU; among equal IoUs the first object). If that IoU is at least
    ``iou_threshold`` the prediction is

    * ignored (neither TP nor FP) when that object is ``difficult``,
    * a true positive when the object is not yet taken (it is taken now),
    * a false positive (a duplicate) when an earlier prediction took it, even if another
      free object overlaps this prediction enough: VOC does not look further;

    otherwise (or with no object at all) it is a false positive.

    Conventions. The test is IoU >= threshold, as the devkit's MATLAB code and the seed's
    "IoU >= 1/2"; py-faster-rcnn's ``voc_eval`` writes ``ovmax > ovthresh``, so an IoU of
    exactly 0.5 is a miss there and a hit here. Equal scores keep their input order (the
    devkit's MATLAB ``sort`` is stable; ``voc_eval``'s ``np.argsort`` is not guaranteed to
    be). IoU is torchvision's :func:`minicnn.ops.box_iou` on continuous coordinates (the
    contract of every detector here); the devkit counts pixels inclusively
    (``x2 - x1 + 1``), which raises IoUs slightly, most for small boxes. Two zero-area
    boxes have IoU 0 here (0 / 0 in box_iou).

    Args:
        pred_boxes: (D, 4) xyxy; pred_scores: (D,); gt_boxes: (G, 4) xyxy.
        iou_threshold: in (0, 1]. difficult: (G,) bools, or None for none difficult.

    Returns a :class:`DetectionMatch` (order, tp, fp, gt_index, num_gt).
    """
    op = "match_detections"
    threshold = _iou_threshold(iou_threshold, op, "iou_threshold")
    boxes = _box_array(_host(pred_boxes, "pred_boxes", op), "pred_boxes", op)
    scores = _score_array(_host(pred_scores, "pred_scores", op), len(boxes), "pred_scores",
                          op)
    gt = _box_array(_host(gt_boxes, "gt_boxes", op), "gt_boxes", op)
    difficult = _difficult_array(None if difficult is None else _host(difficult, "difficult",
                                                                      op), len(gt), op)
    order = _by_score(scores)
    iou = _iou(boxes[order], gt)
    tp, fp, best = _voc_match(iou, difficult, np.array([threshold]))
    reached = best >= 0
    reached[reached] = iou[reached, best[reached]] >= threshold
    return DetectionMatch(order, tp[:, 0], fp[:, 0], np.where(reached, best, -1),
                          int((~difficult).sum()))


def average_precision(recall, precision, use_07_metric=False):
    """The area under a precision/recall curve, as PASCAL VOC computes it (``voc_ap``).

    ``recall`` and ``precision`` are the values after each prediction in decreasing score
    order (recall TP/num_gt and precision TP/(TP+FP) of the predictions so far).

    * All-point (VOC2010 on, the default): the precision envelope p̂(r) = max precision at
      any recall >= r, summed over the recall steps: Σ_k (r_k - r_{k-1}) · p̂(r_k), with
      r_0 = 0 (a curve that never reaches recall 1 gets nothing past its last recall).
    * ``use_07_metric`` (VOC2007's 11 points): the mean over t = 0, 0.1, ..., 1 of the
      highest precision at recall >= t (0 where the recall never reaches t).

    NOTE: the eleven t are the exact decimals k/10, so a recall of exactly 0.3 counts for
    t = 0.3. py-faster-rcnn's ``np.arange(0., 1.1, 0.1)`` holds 0.30000000000000004,
    0.6000000000000001 and 0.7000000000000001, for which it does not (only curves whose
    recall lands exactly on those values differ).

    Shape: recall (D,), precision (D,) -> a float.
    """
    op = "average_precision"
    recall = _host(recall, "recall", op).astype(np.float64)
    precision = _host(precision, "precision", op).astype(np.float64)
    if recall.ndim != 1 or precision.shape != recall.shape:
        raise ValueError(f"{op}: expected recall and precision of one shape (D,), got "
                         f"{recall.shape} and {precision.shape}")
    if use_07_metric:
        total = 0.0
        for t in np.arange(11) / 10:
            reached = recall >= t
            total += float(precision[reached].max()) if reached.any() else 0.0
        return total / 11
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]         # the envelope, from the right
    step = np.nonzero(mrec[1:] != mrec[:-1])[0]            # where the recall moves
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def mean_average_precision(detections, targets, num_classes, iou_threshold=0.5,
                           use_07_metric=False):
    """PASCAL VOC's mean average precision of a whole set of images in one call:
    ``(mAP, per-class AP)``, the AP NaN for the background (class 0) and for classes without
    an object that counts, which the mean leaves out. See :class:`DetectionMetric` (this is
    its ``update`` then ``compute`` on all the images)."""
    op = "mean_average_precision"
    threshold = _iou_threshold(iou_threshold, op, "iou_threshold")
    _num_classes(num_classes, op)
    metric = DetectionMetric(num_classes, iou_thresholds=(threshold,),
                             use_07_metric=use_07_metric)
    metric._check_and_add(detections, targets, op)
    ap = metric._voc_ap()[metric.iou_thresholds.index(threshold)]
    return _mean_over_classes(ap, metric.num_gt), ap


class DetectionMetric:
    """Object detection's average precision over a data set, streaming: PASCAL VOC's mAP at
    IoU 0.5 and, with ``coco=True``, COCO's mAP@[.5:.95].

    Each :meth:`update` matches a batch's predictions to its objects image by image and
    class by class (:func:`match_detections`) and keeps, per class, the scores and TP/FP
    flags of the predictions and the number of objects that count; the images and boxes
    are not kept. :meth:`compute` sorts each class's predictions by score over the whole
    set and computes the precision/recall curve and its area (:func:`average_precision`).

    Inputs, per image (torchvision's detection convention): a detection dict ``boxes``
    (D, 4) xyxy, ``labels`` (D,) int, ``scores`` (D,); a target dict ``boxes`` (G, 4),
    ``labels`` (G,), optionally ``difficult`` (G,) bool. Labels are in [0, num_classes);
    class 0 is the background and is never scored (boxes labelled 0 are skipped). Tensors
    (on the CPU or a GPU) or arrays: on a GPU each field is joined over the batch's images
    on its device and copied to the host once per update (a few small copies per batch;
    the matching runs on the host).

    Results of :meth:`compute`, a dict:

    * ``map_50``: the mean over classes of VOC's AP at IoU >= 0.5 (all-point, or the
      11-point VOC2007 form with ``use_07_metric``);
    * ``ap_per_class``: that AP per class (a list of num_classes floats);
    * ``map_75`` etc.: the same mAP at each other threshold of ``iou_thresholds`` (the
      key is the threshold in hundredths; 0.5 is always evaluated);
    * ``map`` (with ``coco``): COCO's mAP@[.5:.95], pycocotools' ``stats[0]``: at each IoU
      threshold 0.5, 0.55, ..., 0.95, COCO's matching and its 101-point AP, averaged over
      the thresholds and the classes.

    Classes. A class without an object that counts (none, or only ``difficult`` ones) has
    AP NaN and is left out of every mean, predictions or not, as COCOeval does (its -1
    precision, left out by ``summarize``); the VOC devkit never meets the case (all 20
    classes have objects in its test sets), py-faster-rcnn's ``voc_eval`` divides by zero
    (NaN recall). The
    background (class 0) is NaN too. Before any object is seen every mean is NaN.

    VOC (``map_50``, ``ap_per_class``): the matching of :func:`match_detections`. Over the
    set, predictions are sorted by decreasing score, equal scores in the order they came
    (image by image); predictions on ``difficult`` objects are left out of the curve (the
    devkit keeps them as rows that change neither TP nor FP: the same area).

    COCO (``map``), as pycocotools' ``COCOeval`` with its defaults for boxes (all areas,
    ``maxDets=100``) where it differs from VOC: per image and class only the 100 best
    scored predictions count; a prediction takes the *free* object of highest IoU (>= the
    threshold; among equal IoUs the last, as COCOeval's loop), so a second prediction on
    a taken object can still match its neighbour; ``difficult`` objects play COCO's
    ``ignore`` (a prediction goes to an ordinary object when it can, else it may take a
    difficult one and is then left out). The precision envelope is read at the recalls
    0, 0.01, ..., 1 (the first prediction reaching each recall; 0 past the curve's end)
    and averaged. NOTE: thresholds are exact decimals (pycocotools' ``linspace`` gives
    0.8999999999999999 and, for recalls, 0.35000000000000003 and nine others), and
    precision is TP/(TP+FP) without pycocotools' ``+ np.spacing(1)``, so a perfect
    detector scores exactly 1.0 (pycocotools: 0.9999999999999998).

    Args:
        num_classes: the classes of the labels, the background (0) included.
        iou_thresholds: VOC IoU thresholds in (0, 1] to report (``map_NN`` each).
        use_07_metric: VOC2007's 11-point AP instead of the all-point area.
        coco: also compute COCO's mAP@[.5:.95] (``map``).

    Example::

        metric = DetectionMetric(21)
        for images, targets in loader:
            metric.update(model(images), targets)    # model in eval mode
        metric.compute()["map_50"]
    """

    def __init__(self, num_classes, iou_thresholds=(0.5,), use_07_metric=False, coco=False):
        op = "DetectionMetric"
        _num_classes(num_classes, op)
        try:
            thresholds = list(iou_thresholds)
        except TypeError:
            raise TypeError(f"{op}: iou_thresholds must be a sequence of numbers, got "
                            f"{iou_thresholds!r}") from None
        thresholds = {_iou_threshold(t, op, "iou_thresholds") for t in thresholds} | {0.5}
        self.num_classes = int(num_classes)
        self.iou_thresholds = tuple(sorted(thresholds))
        self.use_07_metric, self.coco = bool(use_07_metric), bool(coco)
        self.reset()

    def reset(self):
        """Forget every image seen."""
        # per class: a list of (scores by decreasing score, VOC flags (D, T), COCO flags
        # (min(D, 100), 10)) per image; flags are 1 TP, 0 FP, -1 left out
        self._seen = [[] for _ in range(self.num_classes)]
        self.num_gt = np.zeros(self.num_classes, dtype=np.int64)
        self.images = 0

    def update(self, detections, targets):
        """Add a batch: ``detections`` and ``targets`` are lists with one dict per image
        (see the class docstring). A batch with a bad image adds nothing."""
        self._check_and_add(detections, targets, "DetectionMetric.update")

    def compute(self):
        """The scores so far (see the class docstring): ``map_50``, ``ap_per_class``,
        ``map_NN`` per other threshold, and ``map`` with ``coco``."""
        ap = self._voc_ap()                              # (thresholds, num_classes)
        at_50 = self.iou_thresholds.index(0.5)
        result = {"map_50": _mean_over_classes(ap[at_50], self.num_gt),
                  "ap_per_class": ap[at_50].tolist()}
        for k, t in enumerate(self.iou_thresholds):
            if k != at_50:
                result[_map_key(t)] = _mean_over_classes(ap[k], self.num_gt)
        if self.coco:
            coco = self._coco_ap()                               # (10, num_classes)
            counted = self.num_gt > 0
            counted[0] = False
            result["map"] = float(coco[:, counted].mean()) if counted.any() else math.nan
        return result

    def __repr__(self):
        return (f"DetectionMetric(num_classes={self.num_classes}, iou_thresholds="
                f"{self.iou_thresholds}, use_07_metric={self.use_07_metric}, "
                f"coco={self.coco}, images={self.images})")

    # ------------------------------------------------------------------ the two halves

    def _check_and_add(self, detections, targets, op):
        images = _detection_batch(detections, targets, self.num_classes, op)
        voc_thresholds = np.array(self.iou_thresholds)
        coco_thresholds = np.array(COCO_IOU_THRESHOLDS)
        for boxes, labels, scores, gt_boxes, gt_labels, difficult in images:
            for c in np.unique(np.concatenate((labels, gt_labels))):
                if c == 0:
                    continue                                     # the background
                mine, theirs = labels == c, gt_labels == c
                self.num_gt[c] += int((~difficult[theirs]).sum())
                if not mine.any():
                    continue
                order = _by_score(scores[mine])
                iou = _iou(boxes[mine][order], gt_boxes[theirs])
                tp, fp, _ = _voc_match(iou, difficult[theirs], voc_thresholds)
                record = (scores[mine][order], _flags(tp, fp), None)
                if self.coco:
                    top = min(len(order), _COCO_MAX_DETECTIONS)
                    tp, fp = _coco_match(iou[:top], difficult[theirs], coco_thresholds)
                    record = record[:2] + (_flags(tp, fp),)
                self._seen[c].append(record)
        self.images += len(images)

    def _voc_ap(self):
        """VOC's AP per threshold and class: (T, num_classes), NaN where not defined."""
        return self._ap_table(1, lambda recall, precision: average_precision(
            recall, precision, self.use_07_metric))

    def _coco_ap(self):
        """COCO's 101-point AP per IoU threshold and class: (10, num_classes)."""
        return self._ap_table(2, _coco_interpolated_ap)

    def _ap_table(self, which, area):
        """``area(recall, precision)`` per threshold and class from the VOC (which=1) or
        COCO (2) flags: the classes' predictions sorted by score over the whole set."""
        width = len(self.iou_thresholds) if which == 1 else len(COCO_IOU_THRESHOLDS)
        ap = np.full((width, self.num_classes), math.nan)
        for c in range(1, self.num_classes):
            if self.num_gt[c] == 0:
                continue
            scores, flags = self._gathered(c, which, width)
            order = _by_score(scores)
            for k in range(width):
                ap[k, c] = area(*_curve(flags[order, k], self.num_gt[c]))
        return ap

    def _gathered(self, c, which, width):
        """Class c's scores and flags (VOC: which=1, COCO: 2) over all images so far, in
        the order they came."""
        records = self._seen[c]
        if not records:
            return np.zeros(0), np.zeros((0, width), dtype=np.int8)
        flags = [r[which] for r in records]
        scores = [r[0][:len(f)] for r, f in zip(records, flags)]
        return np.concatenate(scores), np.concatenate(flags)


# ------------------------------------------------------------------- detection helpers

def _voc_match(iou, difficult, thresholds):
    """VOC's matching at several thresholds at once: tp, fp (D, T) bool and each
    prediction's best object (D,) (-1 with no object). ``iou`` (D, G): predictions in
    score order.

    A prediction's best object does not depend on the threshold or on what is taken, so
    the greedy loop reduces to: among the predictions that reach their best object with
    IoU >= t and whose object is not difficult, the first (best scored) of each object is
    the TP and the later ones are duplicates."""
    d, g = iou.shape
    tp = np.zeros((d, len(thresholds)), dtype=bool)
    fp = np.ones((d, len(thresholds)), dtype=bool)
    if g == 0:
        return tp, fp, np.full(d, -1, dtype=np.int64)
    best = iou.argmax(axis=1)                  # the first of equal IoUs (devkit: ov > ovmax)
    hit = iou[np.arange(d), best][:, None] >= thresholds[None, :]          # (D, T)
    fp = ~hit
    counts = hit & ~difficult[best][:, None]
    for k in range(len(thresholds)):
        candidates = np.nonzero(counts[:, k])[0]
        _, first = np.unique(best[candidates], return_index=True)
        tp[candidates[first], k] = True
        fp[candidates, k] = ~tp[candidates, k]                 # the duplicates
    return tp, fp, best


def _coco_match(iou, ignore, thresholds):
    """COCOeval.evaluateImg's matching at every threshold: tp, fp (D, T) bool for the
    predictions in score order (``iou`` (D, G)); objects flagged ``ignore`` are matched
    only when no ordinary one is free, and a prediction matched to one is neither TP nor
    FP."""
    d, g = iou.shape
    tp = np.zeros((d, len(thresholds)), dtype=bool)
    fp = np.ones((d, len(thresholds)), dtype=bool)
    if g == 0:
        return tp, fp
    reach = np.minimum(thresholds, 1 - 1e-10)[:, None]      # COCOeval caps t below 1
    taken = np.zeros((len(thresholds), g), dtype=bool)      # (T, G)
    rows = np.arange(len(thresholds))
    for i in np.nonzero(iou.max(axis=1) >= reach.min())[0]:  # the others match nothing
        free = ~taken & (iou[i] >= reach)                    # (T, G)
        ordinary = free & ~ignore
        pool = np.where(ordinary.any(axis=1, keepdims=True), ordinary, free)
        found = pool.any(axis=1)
        # the last object of highest IoU in the pool (COCOeval replaces on equal IoU)
        last = g - 1 - np.argmax(np.where(pool, iou[i], -np.inf)[:, ::-1], axis=1)
        taken[rows[found], last[found]] = True
        tp[i, found] = ~ignore[last[found]]
        fp[i, found] = False
    return tp, fp


def _coco_interpolated_ap(recall, precision):
    """COCOeval.accumulate's AP: the precision envelope read at the first prediction whose
    recall reaches each of 0, 0.01, ..., 1 (0 for a recall the curve never reaches), then
    averaged over the 101 recalls."""
    if len(recall) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, _COCO_RECALLS, side="left")
    reached = at < len(recall)
    return float(np.where(reached, envelope[np.minimum(at, len(recall) - 1)], 0.0).mean())


def _curve(flags, num_gt):
    """Recall and precision after each counted prediction (flags in score order: 1 TP,
    0 FP, -1 left out)."""
    tp = flags[flags >= 0] == 1
    tps, fps = np.cumsum(tp), np.cumsum(~tp)
    return tps / num_gt, tps / (tps + fps)


def _flags(tp, fp):
    return np.where(tp, 1, np.where(fp, 0, -1)).astype(np.int8)


def _by_score(scores):
    """Indices by decreasing score, equal scores in their input order."""
    return np.argsort(-scores, kind="stable")


def _iou(boxes, gt_boxes):
    """IoU (D, G) in float64 on the host, 0 / 0 read as 0."""
    iou = box_iou(boxes, gt_boxes) if len(boxes) and len(gt_boxes) else \
        np.zeros((len(boxes), len(gt_boxes)))
    return np.where(np.isnan(iou), 0.0, iou)


def _mean_over_classes(ap, num_gt):
    counted = num_gt > 0
    counted[0] = False
    return float(ap[counted].mean()) if counted.any() else math.nan


def _snap(threshold):
    # 0.5 + 0.05 * 7 is 0.8500000000000001: thresholds are read to 10 decimals
    return round(float(threshold), 10)


def _map_key(threshold):
    return "map_" + f"{threshold * 100:.10g}".replace(".", "_")


def _num_classes(value, op):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
        raise ValueError(f"{op}: num_classes must be an integer >= 2 (the background and at "
                         f"least one class), got {value!r}")


def _iou_threshold(value, op, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be numbers in (0, 1], got {value!r}")
    if not 0 < value <= 1:
        raise ValueError(f"{op}: {name} must be in (0, 1], got {value!r}")
    return _snap(value)


def _box_array(boxes, name, op):
    """(K, 4) float64 boxes with x1 <= x2 and y1 <= y2 (an empty array of any shape is
    read as no boxes)."""
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{op}: expected {name} of shape (K, 4), one (x1, y1, x2, y2) box "
                         f"per row, got shape {boxes.shape}")
    if boxes.dtype.kind not in "iuf":
        raise TypeError(f"{op}: {name} must hold numbers, got dtype {boxes.dtype}")
    boxes = boxes.astype(np.float64)
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"{op}: {name}[{k}] = {boxes[k].tolist()} has x2 < x1 or y2 < y1; "
                         "expected (x1, y1, x2, y2) boxes")
    return boxes


def _score_array(scores, count, name, op):
    if scores.shape != (count,) and not (count == 0 and scores.size == 0):
        raise ValueError(f"{op}: expected {name} of shape ({count},), one per box, got "
                         f"shape {scores.shape}")
    if scores.size and scores.dtype.kind not in "iuf":
        raise TypeError(f"{op}: {name} must hold numbers, got dtype {scores.dtype}")
    scores = scores.astype(np.float64).reshape(count)
    if np.isnan(scores).any():
        raise ValueError(f"{op}: {name} holds NaN; a score must be a number to be ranked")
    return scores


def _label_array(labels, count, num_classes, name, op):
    if labels.shape != (count,) and not (count == 0 and labels.size == 0):
        raise ValueError(f"{op}: expected {name} of shape ({count},), one per box, got "
                         f"shape {labels.shape}")
    if labels.size and labels.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} must hold integer class indices, got dtype "
                        f"{labels.dtype}")
    labels = labels.astype(np.int64).reshape(count)
    if num_classes is None:                     # any class index (MaskIoUMetric)
        if (labels < 0).any():
            raise ValueError(f"{op}: {name} holds class {int(labels[labels < 0][0])}; "
                             "expected class indices >= 0")
        return labels
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        raise ValueError(f"{op}: {name} holds class {int(labels[bad][0])}, outside "
                         f"[0, {num_classes}) for num_classes={num_classes}")
    return labels


def _difficult_array(difficult, count, op, name="difficult"):
    if difficult is None:
        return np.zeros(count, dtype=bool)
    if difficult.shape != (count,) and not (count == 0 and difficult.size == 0):
        raise ValueError(f"{op}: expected {name} of shape ({count},), one flag per box, got "
                         f"shape {difficult.shape}")
    if difficult.size and difficult.dtype.kind not in "biu":
        raise TypeError(f"{op}: {name} must hold bools, got dtype {difficult.dtype}")
    return difficult.astype(bool).reshape(count)


def _detection_batch(detections, targets, num_classes, op):
    """Checked host arrays of a batch, one tuple per image: boxes, labels, scores,
    gt_boxes, gt_labels, difficult. Each field is copied from a GPU once per batch."""
    for name, value in (("detections", detections), ("targets", targets)):
        if isinstance(value, dict) or not isinstance(value, (list, tuple)):
            raise TypeError(f"{op}: {name} must be a list with one dict per image, got "
                            f"{type(value).__name__}")
    if len(detections) != len(targets):
        raise ValueError(f"{op}: {len(detections)} detections but {len(targets)} targets; "
                         "expected one of each per image")
    fields = {}
    for name, dicts, keys in (("detections", detections, ("boxes", "labels", "scores")),
                              ("targets", targets, ("boxes", "labels"))):
        for i, entry in enumerate(dicts):
            if not isinstance(entry, dict):
                raise TypeError(f"{op}: {name}[{i}] must be a dict, got "
                                f"{type(entry).__name__}")
            for key in keys:
                if entry.get(key) is None:
                    raise ValueError(f"{op}: {name}[{i}] has no {key!r}; expected the keys "
                                     f"{', '.join(map(repr, keys))}")
        for key in keys:
            fields[name, key] = _batch_to_host([entry[key] for entry in dicts])
    present = [i for i, t in enumerate(targets) if t.get("difficult") is not None]
    difficult = _batch_to_host([targets[i]["difficult"] for i in present])
    difficult = dict(zip(present, difficult))
    images = []
    for i in range(len(detections)):
        where = f"detections[{i}]"
        boxes = _box_array(fields["detections", "boxes"][i], f"{where}['boxes']", op)
        labels = _label_array(fields["detections", "labels"][i], len(boxes), num_classes,
                              f"{where}['labels']", op)
        scores = _score_array(fields["detections", "scores"][i], len(boxes),
                              f"{where}['scores']", op)
        where = f"targets[{i}]"
        gt_boxes = _box_array(fields["targets", "boxes"][i], f"{where}['boxes']", op)
        gt_labels = _label_array(fields["targets", "labels"][i], len(gt_boxes), num_classes,
                                 f"{where}['labels']", op)
        flags = _difficult_array(difficult.get(i), len(gt_boxes), op,
                                 f"{where}['difficult']")
        images.append((boxes, labels, scores, gt_boxes, gt_labels, flags))
    return images


def _batch_to_host(values):
    """Host NumPy arrays of a list of Tensors/arrays/lists. Those on a GPU are joined on
    their device and copied in one transfer per device: one wait per field and batch,
    not one per image."""
    arrays = [v.array if isinstance(v, Tensor) else v for v in values]
    out = [None if backend._is_cupy_array(a) else np.asarray(a) for a in arrays]
    on_device = {}
    for i, a in enumerate(arrays):
        if backend._is_cupy_array(a):
            on_device.setdefault(backend.device_of(a), []).append(i)
    for indices in on_device.values():
        xp = backend.get_array_module(arrays[indices[0]])
        joined = xp.concatenate([arrays[i].reshape(-1) for i in indices])
        host = backend.to_device(joined, "cpu")
        ends = np.cumsum([arrays[i].size for i in indices])
        for i, end in zip(indices, ends):
            size = arrays[i].size
            out[i] = host[end - size:end].reshape(arrays[i].shape)
    return out


# ------------------------------------------------------------- balanced error rate

def balanced_error_rate(pred, target, num_classes):
    """The balanced error rate: the error rate of each true class, averaged over the
    classes present in ``target`` (Fleuret's EE-559 §7: BER = (1/C) Σ_y P̂(f(X) ≠ y | Y = y)),
    so a rare class weighs as much as a common one. ``pred`` and ``target`` are label
    arrays of one size. Equals ``1 - sklearn.metrics.balanced_accuracy_score(target,
    pred)``; on balanced classes it is the plain error rate."""
    m = confusion_matrix(pred, target, num_classes).astype(np.float64)
    support = m.sum(1)
    present = support > 0
    if not present.any():
        raise ValueError("balanced_error_rate: target holds no labels")
    recall = np.diag(m)[present] / support[present]
    return float(1.0 - recall.mean())


__all__.append("balanced_error_rate")


def mask_iou(masks1, masks2):
    """Intersection over union of every pair of binary masks (instance segmentation's
    IoU, as ``box_iou`` is for boxes)::

        iou[n, m] = |A_n ∩ B_m| / |A_n ∪ B_m|     (pixels; 0 where both masks are empty)

    Shape: masks1 (N, H, W), masks2 (M, H, W) of one size; bools, or numbers read as
    "non-zero is in the mask" (threshold probability masks first, e.g. ``p >= 0.5``)
    -> (N, M) float64.
    """
    op = "mask_iou"
    a = _host(masks1, "masks1", op)
    b = _host(masks2, "masks2", op)
    for name, m in (("masks1", a), ("masks2", b)):
        if m.ndim != 3:
            raise ValueError(f"{op}: expected {name} of shape (K, H, W), got shape "
                             f"{tuple(m.shape)}")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"{op}: masks1 and masks2 must have one size (H, W), got "
                         f"{tuple(a.shape[1:])} and {tuple(b.shape[1:])}")
    pixels = a.shape[1] * a.shape[2]
    a = (a != 0).reshape(a.shape[0], pixels).astype(np.float64)
    b = (b != 0).reshape(b.shape[0], pixels).astype(np.float64)
    inter = a @ b.T                                                    # (N, M) pixels
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


__all__.append("mask_iou")


class MaskIoUMetric:
    """Instance segmentation's mean mask IoU on matched detections, streaming (as Mask
    R-CNN's examples report it next to the boxes' mAP).

    Per image and class, the detections scoring at least ``min_score`` (the others are
    dropped first) are matched to the objects by PASCAL VOC's rule
    (:func:`match_detections`: same class, box IoU >= ``iou_threshold``, by decreasing
    score, first come); each true positive's mask, thresholded at ``threshold``
    (``p >= threshold``), is compared with its object's mask by :func:`mask_iou`.
    Unmatched detections, duplicates, detections on ``difficult`` objects and class 0 (the
    background) add nothing. Only the sum of the IoUs and their count are kept.

    Inputs, per image (torchvision's Mask R-CNN convention): a detection dict ``boxes``
    (D, 4) xyxy, ``labels`` (D,), ``scores`` (D,), ``masks`` (D, 1, H, W) or (D, H, W)
    probabilities; a target dict ``boxes`` (G, 4), ``labels`` (G,), ``masks`` (G, H, W)
    (non-zero is in the mask), optionally ``difficult`` (G,). Tensors (on the CPU or a
    GPU) or arrays; only the matched masks are copied to the host, thresholded, once per
    field and batch.

    :meth:`compute` returns ``{"mask_iou": mean, "matched": count}``; the mean is NaN
    while nothing has been matched.

    Example::

        metric = MaskIoUMetric()
        for images, targets in loader:
            metric.update(model(images), targets)    # model in eval mode
        metric.compute()["mask_iou"]
    """

    def __init__(self, min_score=0.5, threshold=0.5, iou_threshold=0.5):
        op = "MaskIoUMetric"
        for name, value in (("min_score", min_score), ("threshold", threshold)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not math.isfinite(value):
                raise TypeError(f"{op}: {name} must be a finite number, got {value!r}")
        if not 0 < threshold <= 1:
            raise ValueError(f"{op}: threshold must be in (0, 1] (masks are "
                             f"probabilities), got {threshold}")
        self.min_score, self.threshold = float(min_score), float(threshold)
        self.iou_threshold = _iou_threshold(iou_threshold, op, "iou_threshold")
        self.reset()

    def reset(self):
        """Forget every image seen."""
        self.total, self.matched, self.images = 0.0, 0, 0

    def update(self, detections, targets):
        """Add a batch: lists with one dict per image (see the class docstring). A batch
        with a bad image adds nothing."""
        op = "MaskIoUMetric.update"
        images = _detection_batch(detections, targets, None, op)
        picked, truths = [], []                  # per image: the matched masks, on device
        for i, (boxes, labels, scores, gt_boxes, gt_labels, difficult) in enumerate(images):
            pred = _mask_stack(detections[i].get("masks"), len(boxes), True,
                               f"detections[{i}]['masks']", op)
            true = _mask_stack(targets[i].get("masks"), len(gt_boxes), False,
                               f"targets[{i}]['masks']", op)
            if pred.shape[1:] != true.shape[1:]:
                raise ValueError(f"{op}: detections[{i}]['masks'] are "
                                 f"{tuple(pred.shape[1:])} but targets[{i}]['masks'] are "
                                 f"{tuple(true.shape[1:])}; expected one image size")
            keep = scores >= self.min_score
            mine_all, theirs_all = [], []
            for c in np.unique(labels[keep]):
                if c == 0:
                    continue                                     # the background
                mine = np.flatnonzero(keep & (labels == c))
                theirs = np.flatnonzero(gt_labels == c)
                match = match_detections(boxes[mine], scores[mine], gt_boxes[theirs],
                                         self.iou_threshold, difficult[theirs])
                tp = match.tp.astype(bool)
                mine_all.extend(mine[match.order[tp]].tolist())
                theirs_all.extend(theirs[match.gt_index[tp]].tolist())
            xp = backend.get_array_module(pred)
            picked.append(pred[xp.asarray(mine_all, dtype=np.int64)] >= self.threshold)
            truths.append(true[xp.asarray(theirs_all, dtype=np.int64)] != 0)
        ious = [_paired_mask_iou(a, b) for a, b in zip(_batch_to_host(picked),
                                                        _batch_to_host(truths))]
        ious = np.concatenate(ious) if ious else np.zeros(0)
        self.total += float(ious.sum())
        self.matched += len(ious)
        self.images += len(images)

    def compute(self):
        """``{"mask_iou": mean IoU of the matched masks (NaN before any), "matched":
        their count}``."""
        mean = self.total / self.matched if self.matched else math.nan
        return {"mask_iou": mean, "matched": self.matched}

    def __repr__(self):
        return (f"MaskIoUMetric(min_score={self.min_score}, threshold={self.threshold}, "
                f"iou_threshold={self.iou_threshold}, matched={self.matched})")


def _mask_stack(masks, count, channel, name, op):
    """One image's masks as an array on their device, (count, H, W); a detector's
    (count, 1, H, W) when ``channel``."""
    if masks is None:
        raise ValueError(f"{op}: {name} is required (one mask per box)")
    masks = masks.array if isinstance(masks, Tensor) else masks
    if not backend._is_cupy_array(masks):
        masks = np.asarray(masks)
    if channel and masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    expected = "(D, 1, H, W) or (D, H, W)" if channel else "(G, H, W)"
    if masks.ndim != 3 or masks.shape[0] != count:
        raise ValueError(f"{op}: expected {name} of shape {expected} with {count} masks, "
                         f"one per box, got shape {tuple(masks.shape)}")
    return masks


def _paired_mask_iou(a, b):
    """IoU of ``a[k]`` with ``b[k]`` for each k (bool (K, H, W) each): the diagonal of
    :func:`mask_iou`, 0 where both masks are empty."""
    inter = (a & b).sum(axis=(1, 2)).astype(np.float64)
    union = (a | b).sum(axis=(1, 2)).astype(np.float64)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


__all__.append("MaskIoUMetric")
