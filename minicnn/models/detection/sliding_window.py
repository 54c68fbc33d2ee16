"""Detection before detectors: classify windows slid over the image (seed [001] L314-324,
[002] L979-1193), and OverFeat's greedy merge of the boxes found (Sermanet et al. 2013,
§4.3).

A classifier trained on ``window`` x ``window`` crops, with a background class, is run on
every crop of the image at a given stride and at several scales; each crop whose best
class is not the background gives a box. Done naively, that is one forward pass per crop
("very inefficient because you need to run the classification for each slice"). Done
densely, the classifier's Linear layers become convolutions (:func:`minicnn.convolutionize`)
and one pass over the whole image gives the scores of every window at once: the network's
total stride becomes the window stride, and the computation the crops share is done once.
For a network without zero padding the two give the same scores (padding makes the crops'
borders see zeros where the whole image has pixels).

:func:`window_scores` is the class-probability map of one image at one scale, either way;
:func:`sliding_window` turns maps at several scales into boxes and removes duplicates
with per-class NMS; :func:`greedy_merge` is OverFeat's alternative to NMS, which averages
overlapping boxes instead of keeping one.
"""
from __future__ import annotations

import numbers

import numpy as np

import minicnn
from minicnn import nn
from minicnn.nn import functional as F
from minicnn.ops import batched_nms, box_iou

__all__ = ["window_scores", "sliding_window", "greedy_merge"]


def sliding_window(model, image, window, stride, scales=(1.0,), background=0, dense=False,
                   score_threshold=0.5, iou_threshold=0.3):
    """Boxes of the objects in ``image`` found by classifying windows.

    Args:
        model: a classifier of ``(N, C, window, window)`` crops returning ``(N, K)``
            logits, one of its K classes being ``background``.
        image: a ``(C, H, W)`` Tensor (normalised as the classifier expects).
        window: the side of the square crops, in pixels of the scaled image.
        stride: the step between crops. With ``dense=True`` it must equal the
            network's total stride (the product of its strides), which is the step the
            dense pass takes.
        scales: the image is resized by each factor in turn, so a fixed window finds
            objects of several sizes (``scales=(1.0, 0.5)``: objects of ``window`` and
            ``2 * window`` pixels).
        dense: one convolutional pass per scale instead of one pass per crop.
        score_threshold: the least probability of a kept window's class.
        iou_threshold: per-class NMS over all scales.

    Returns:
        a dict of ``boxes`` (D, 4) xyxy in the input image's pixels, ``labels`` (D,) and
        ``scores`` (D,), by decreasing score, as a detector returns in eval mode.
    """
    _check_image(image, "sliding_window")
    window = _positive(window, "window", "sliding_window")
    stride = _positive(stride, "stride", "sliding_window")
    if not scales or any(not isinstance(s, numbers.Real) or s <= 0 for s in scales):
        raise ValueError(f"sliding_window: scales must be positive numbers, got {scales!r}")
    all_boxes, all_scores, all_labels = [], [], []
    for scale in scales:
        scaled = image if scale == 1.0 else F.interpolate(
            image.unsqueeze(0), scale_factor=float(scale), mode="bilinear",
            align_corners=False)[0]
        probs = window_scores(model, scaled, window, stride, dense=dense)
        p = np.asarray(minicnn.backend.to_device(probs.array, "cpu"), dtype=np.float64)
        foreground = np.delete(np.arange(p.shape[0]), background)
        best = foreground[p[foreground].argmax(axis=0)]            # (OH, OW) classes
        score = np.take_along_axis(p, best[None], axis=0)[0]
        rows, cols = np.nonzero(score >= score_threshold)
        # the window at map cell (i, j) starts at (i * stride, j * stride) of the scaled image
        x1, y1 = cols * stride / scale, rows * stride / scale
        side = window / scale
        all_boxes.append(np.stack([x1, y1, x1 + side, y1 + side], axis=1))
        all_scores.append(score[rows, cols])
        all_labels.append(best[rows, cols])
    boxes = minicnn.tensor(np.concatenate(all_boxes).astype(np.float32).reshape(-1, 4))
    scores = minicnn.tensor(np.concatenate(all_scores).astype(np.float32))
    labels = minicnn.tensor(np.concatenate(all_labels).astype(np.int64))
    keep = batched_nms(boxes, scores, labels, iou_threshold)
    return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}


def window_scores(model, image, window, stride, dense=False, batch_size=256):
    """The classifier's probabilities for every ``window`` x ``window`` crop of ``image``
    at step ``stride``: a ``(K, OH, OW)`` Tensor, OH = (H - window) // stride + 1 (only
    whole windows).

    ``dense=False`` cuts the crops and classifies them in batches of ``batch_size``.
    ``dense=True`` convolutionizes the classifier (a model without Linear layers is used
    as it is) and runs it once on the whole image; its map has one cell per window when
    ``stride`` is the network's total stride, which is checked.
    """
    _check_image(image, "window_scores")
    window = _positive(window, "window", "window_scores")
    stride = _positive(stride, "stride", "window_scores")
    C, H, W = image.shape
    if H < window or W < window:
        raise ValueError(f"window_scores: the image ({H}x{W}) is smaller than the window "
                         f"({window}x{window})")
    OH, OW = (H - window) // stride + 1, (W - window) // stride + 1
    was_training = model.training
    model.eval()
    try:
        with minicnn.no_grad():
            if dense:
                logits = _dense(model, image, window)
                if tuple(logits.shape[-2:]) != (OH, OW):
                    raise ValueError(
                        f"window_scores: the dense pass gives a {logits.shape[2]}x"
                        f"{logits.shape[3]} map, but windows of {window} at stride {stride} "
                        f"make {OH}x{OW}: stride must be the network's total stride")
                return logits[0].softmax(dim=0)
            tops = [i * stride for i in range(OH)]
            lefts = [j * stride for j in range(OW)]
            crops = [image[:, t:t + window, l:l + window] for t in tops for l in lefts]
            outputs = [model(minicnn.stack(crops[i:i + batch_size]))
                       for i in range(0, len(crops), batch_size)]
            logits = minicnn.cat(outputs)                          # (OH * OW, K)
            return logits.softmax(dim=1).transpose(0, 1).reshape(-1, OH, OW)
    finally:
        model.train(was_training)


def greedy_merge(boxes, scores, threshold=0.5):
    """OverFeat's merge: while two boxes overlap enough, replace the closest pair by one.

    Repeatedly take the pair of boxes with the smallest match score ``1 - IoU``; if it
    is below ``threshold`` replace both by the mean of their coordinates, with the sum of
    their scores (OverFeat adds the confidences of the boxes it merges, so a box many
    windows agree on ranks first); otherwise stop. OverFeat's match score combines the
    distance between the centres and the overlap; ``1 - IoU`` is the overlap alone, which
    makes ``threshold`` read like NMS's (merge while IoU > 1 - threshold).

    Args:
        boxes: ``(K, 4)`` xyxy boxes (Tensor or array); scores: ``(K,)``.
    Returns:
        ``(boxes, scores)`` of the merged boxes as float64 NumPy arrays, by decreasing
        score.
    """
    b = np.array(_host(boxes), dtype=np.float64).reshape(-1, 4) if len(_host(boxes)) \
        else np.zeros((0, 4))
    s = np.array(_host(scores), dtype=np.float64).reshape(-1)
    if b.shape[0] != s.shape[0]:
        raise ValueError(f"greedy_merge: {b.shape[0]} boxes but {s.shape[0]} scores")
    if np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1]):
        raise ValueError("greedy_merge: boxes must be xyxy with x2 >= x1 and y2 >= y1")
    boxes_left, scores_left = [row for row in b], list(s)
    while len(boxes_left) > 1:
        iou = np.asarray(box_iou(np.stack(boxes_left), np.stack(boxes_left)))
        np.fill_diagonal(iou, -np.inf)
        i, j = np.unravel_index(np.argmax(iou), iou.shape)
        if 1.0 - iou[i, j] >= threshold:
            break
        merged = (boxes_left[i] + boxes_left[j]) / 2.0
        merged_score = scores_left[i] + scores_left[j]
        for k in sorted((i, j), reverse=True):
            del boxes_left[k], scores_left[k]
        boxes_left.append(merged)
        scores_left.append(merged_score)
    order = np.argsort(-np.asarray(scores_left), kind="stable")
    out = np.stack(boxes_left)[order] if boxes_left else np.zeros((0, 4))
    return out, np.asarray(scores_left)[order]


# ---------------------------------------------------------------- helpers

def _dense(model, image, window):
    has_linear = any(isinstance(m, nn.Linear) for m in model.modules())
    conv = minicnn.convolutionize(model, (image.shape[0], window, window)) if has_linear \
        else model
    return conv(image.unsqueeze(0))


def _check_image(image, op):
    if not isinstance(image, minicnn.Tensor) or image.ndim != 3:
        raise ValueError(f"{op}: image must be a (C, H, W) Tensor, got "
                         f"{getattr(image, 'shape', type(image).__name__)}")


def _positive(value, name, op):
    if not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _host(value):
    if isinstance(value, minicnn.Tensor):
        return minicnn.backend.to_device(value.array, "cpu")
    return np.asarray(value)
