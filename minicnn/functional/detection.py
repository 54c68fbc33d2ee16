"""YOLO v1's training target and loss (Redmon et al., "You Only Look Once: Unified,
Real-Time Object Detection", CVPR 2016, arXiv 1506.02640, §2 and eq. 3).

The network (``minicnn.models.detection.yolo``) cuts the image into an S x S grid and
predicts, for every cell, B boxes and C class probabilities: a (N, S, S, 5B + C) tensor
``pred`` whose cell ``pred[n, i, j]`` (row i from the top, column j from the left) holds

    [x_1, y_1, √w_1, √h_1, c_1,  ...,  x_B, y_B, √w_B, √h_B, c_B,  p_1, ..., p_C]

* x, y: the box centre's offset inside the cell, in cell units (0..1 spans the cell);
* √w, √h: the square roots of the box's width and height, relative to the image's;
* c: the box's confidence, trained towards the IoU of the box with the object it is
  responsible for (0 where there is none);
* p_k: the probability of class k given that the cell holds an object. Channel k is the
  detection label k + 1 (label 0 is the background in minicnn's detection targets, and
  YOLO has no background class: C = 20 for Pascal VOC).

NOTE, the square roots: the loss compares √w with √ŵ, and ŵ is a linear output that can
be negative, where √ŵ is undefined (and at 0 its derivative is infinite). As Darknet
does (``sqrt=1`` in ``yolov1.cfg``), the network's output *is* √ŵ: the loss uses it as
it is, the box's width is its square (ŵ = out², always >= 0), and the whole loss is a
polynomial in the outputs, finite and differentiable everywhere. The formula is the
paper's term for term.

``yolo_v1_targets`` encodes the ground truth into the same grid, ``yolo_v1_loss`` is the
sum-squared loss of eq. 3, ``yolo_v1_loss_terms`` gives its four parts. The loss is a
composite of differentiable Tensor ops; the choice of the responsible predictor and the
confidence targets (IoUs) are computed from the values alone, with no gradient, as in the
paper and Darknet.
"""
from __future__ import annotations

import math
import numbers

from .. import backend
from ..autograd import Tensor, as_tensor
from ._checks import check_reduction, float_input, pair, positive_int
from .reduction import sum as _sum

__all__ = ["yolo_v1_targets", "yolo_v1_loss", "yolo_v1_loss_terms"]


def yolo_v1_targets(boxes, labels, S=7, C=20, image_size=448, dtype=None):
    """Encode ground-truth boxes into YOLO v1's grid: a (N, S, S, 5 + C) Tensor.

    ``boxes``: a list of N (K_n, 4) Tensors or arrays, absolute ``xyxy`` pixels of an image
    of ``image_size`` (an int, or (height, width)); ``labels``: a list of N (K_n,) integer
    Tensors or arrays with values 1..C (label k is class channel k - 1).

    Cell (i, j) of image n holds ``[x, y, w, h, 1, p_1, ..., p_C]`` when the centre of a
    box lies in it (the cell is *responsible* for that object): x, y the centre's offset
    in the cell (cell units, 0..1), w, h the box's size relative to the image (not square
    rooted: the loss takes the roots), 1 the object indicator 𝟙ᵢᵒᵇʲ and p the one-hot
    class. Every other cell is all zeros.

    With centre (cx, cy) in pixels and an image W wide, H high:
        j = floor(S · cx / W) (S - 1 for a centre on the right edge), x = S · cx / W - j,
        i = floor(S · cy / H) likewise,  w = (x2 - x1) / W,  h = (y2 - y1) / H.
    A centre outside the image (a box cut by a crop) is first moved onto its border.

    One object per cell, as the paper assumes: when several centres fall into one cell,
    the *first* box in the target's order wins and the others are dropped (Darknet's
    rule when it fills its truth grid).

    ``dtype``: the grid's floating-point type (the boxes' own when they are floating
    point, else float32). The grid is built on the boxes' device and carries no gradient.
    """
    op = "yolo_v1_targets"
    S = positive_int(op, "S", S)
    C = positive_int(op, "C", C)
    height, width = pair(op, "image_size", image_size, minimum=1)
    if not isinstance(boxes, (list, tuple)) or not isinstance(labels, (list, tuple)):
        raise TypeError(f"{op}: boxes and labels must be lists (one entry per image) of "
                        f"(K, 4) boxes and (K,) labels, got {type(boxes).__name__} and "
                        f"{type(labels).__name__}")
    if len(boxes) != len(labels):
        raise ValueError(f"{op}: got boxes for {len(boxes)} images and labels for "
                         f"{len(labels)}")
    per_image = [_image_target(op, n, as_tensor(b).array, as_tensor(t).array, S, C,
                               height, width, dtype)
                 for n, (b, t) in enumerate(zip(boxes, labels))]
    if not per_image:
        xp = backend.get_array_module(as_tensor(0.0).array)
        dt = backend.get_default_dtype() if dtype is None else dtype
        return Tensor._wrap(xp.zeros((0, S, S, 5 + C), dtype=dt))
    xp = backend.get_array_module(per_image[0])
    return Tensor._wrap(xp.stack(per_image))


def yolo_v1_loss(pred, targets, S=7, B=2, C=20, lambda_coord=5.0, lambda_obj=1.0,
                 lambda_noobj=0.5, lambda_classes=1.0, reduction="mean"):
    """YOLO v1's sum-squared loss (the paper's eq. 3, as the seed writes it).

    ``pred``: the network's (N, S, S, 5B + C) output (layout in the module docstring);
    ``targets``: the (N, S, S, 5 + C) grid of :func:`yolo_v1_targets`.

    For cell i = 1..S², predictor j = 1..B, class c = 1..C:

        λ_coord   Σᵢ Σⱼ 𝟙ᵢⱼᵒᵇʲ [(xᵢ - x̂ᵢⱼ)² + (yᵢ - ŷᵢⱼ)² + (√wᵢ - √ŵᵢⱼ)² + (√hᵢ - √ĥᵢⱼ)²]
      + λ_obj     Σᵢ Σⱼ 𝟙ᵢⱼᵒᵇʲ (cᵢⱼ - ĉᵢⱼ)²
      + λ_noobj   Σᵢ Σⱼ (1 - 𝟙ᵢⱼᵒᵇʲ) ĉᵢⱼ²
      + λ_classes Σᵢ 𝟙ᵢᵒᵇʲ Σ_c (p_{i,c} - p̂_{i,c})²

    * 𝟙ᵢᵒᵇʲ: cell i holds an object (the grid's channel 4);
    * 𝟙ᵢⱼᵒᵇʲ: cell i holds an object and predictor j is responsible for it: of the cell's
      B predicted boxes, the one with the highest IoU with the object (ties, e.g. all
      IoUs 0 early in training: the lowest j);
    * cᵢⱼ: that IoU, a constant target (no gradient flows through it);
    * √ŵᵢⱼ, √ĥᵢⱼ: the network's outputs themselves (see the module docstring).

    The IoUs are taken between the predicted and true boxes placed in the image
    (centre ((j + x) / S, (i + y) / S), size (ŵ, ĥ) = (√ŵ², √ĥ²), image-relative units;
    an IoU is unchanged by scaling the two axes, so this is the IoU in pixels).

    λ's: the paper's (λ_coord = 5, λ_noobj = 0.5; the seed's λ_obj = λ_classes = 1).
    ``reduction``: 'mean' (the default) sums over cells and predictors and divides by
    the batch size N (the loss per image); 'sum' the total; 'none' the (N,) per-image
    losses. An empty batch gives 0 ('sum'), nan ('mean', 0 / 0) or an empty (0,) tensor.

    The gradient is that of the formula with 𝟙ᵢⱼᵒᵇʲ and cᵢⱼ held fixed, e.g.
    dL/dĉᵢⱼ = -2 λ_obj (cᵢⱼ - ĉᵢⱼ) for a responsible predictor, 2 λ_noobj ĉᵢⱼ otherwise;
    dL/d√ŵᵢⱼ = -2 λ_coord (√wᵢ - √ŵᵢⱼ).
    """
    terms = yolo_v1_loss_terms(pred, targets, S, B, C, lambda_coord, lambda_obj,
                               lambda_noobj, lambda_classes, reduction)
    return (terms["loss_box"] + terms["loss_object"] + terms["loss_noobject"]
            + terms["loss_class"])


def yolo_v1_loss_terms(pred, targets, S=7, B=2, C=20, lambda_coord=5.0, lambda_obj=1.0,
                       lambda_noobj=0.5, lambda_classes=1.0, reduction="mean"):
    """The four parts of :func:`yolo_v1_loss` (each with its λ and ``reduction``), whose
    sum is the loss: a dict with ``"loss_box"`` (the λ_coord line), ``"loss_object"``
    (λ_obj), ``"loss_noobject"`` (λ_noobj) and ``"loss_class"`` (λ_classes)."""
    op = "yolo_v1_loss"
    p, t = _check_loss_inputs(op, pred, targets, S, B, C)
    check_reduction(op, reduction)
    lambdas = {name: _lambda(op, name, value) for name, value in (
        ("lambda_coord", lambda_coord), ("lambda_obj", lambda_obj),
        ("lambda_noobj", lambda_noobj), ("lambda_classes", lambda_classes))}
    n = p.shape[0]
    xp = backend.get_array_module(p.array)

    boxes = p[..., :5 * B].reshape(n, S, S, B, 5)                   # (N, S, S, B, 5)
    classes = p[..., 5 * B:]                                         # (N, S, S, C)
    truth = t.array                                                  # (N, S, S, 5 + C)
    has_object = truth[..., 4]                                       # 𝟙ᵢᵒᵇʲ (N, S, S)

    # responsibility and confidence targets, from the values alone (no gradient)
    iou = _cell_iou(xp, boxes.array, truth, S)                       # (N, S, S, B)
    best = iou.argmax(axis=-1)              # the first of equal maxima: the lowest j
    responsible = (xp.arange(B) == best[..., None]) * has_object[..., None]   # 𝟙ᵢⱼᵒᵇʲ
    responsible = responsible.astype(p.dtype)                        # (N, S, S, B)

    xy_err = (boxes[..., 0:2] - truth[..., None, 0:2]) ** 2          # (N, S, S, B, 2)
    wh_err = (boxes[..., 2:4] - xp.sqrt(truth[..., None, 2:4])) ** 2
    coord = _sum(xy_err, -1) + _sum(wh_err, -1)                      # (N, S, S, B)
    confidence = boxes[..., 4]                                       # ĉᵢⱼ (N, S, S, B)
    class_err = _sum((classes - truth[..., 5:]) ** 2, -1)            # (N, S, S)

    per_cell = {
        "loss_box": lambdas["lambda_coord"] * (coord * responsible),
        "loss_object": lambdas["lambda_obj"] * (((confidence - iou) ** 2) * responsible),
        "loss_noobject": lambdas["lambda_noobj"] * ((confidence ** 2) * (1 - responsible)),
        "loss_class": lambdas["lambda_classes"] * (class_err * has_object),
    }
    return {name: _reduce(value, n, reduction) for name, value in per_cell.items()}


# ------------------------------------------------------------------------- helpers

def _image_target(op, n, boxes, labels, S, C, height, width, dtype):
    """The (S, S, 5 + C) grid of one image (see yolo_v1_targets)."""
    xp = backend.get_array_module(boxes)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{op}: boxes[{n}] must have shape (K, 4) (xyxy), got "
                         f"{tuple(boxes.shape)}")
    if labels.shape != (boxes.shape[0],):
        raise ValueError(f"{op}: labels[{n}] must have shape ({boxes.shape[0]},), one per "
                         f"box, got {tuple(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels[{n}] must be integers 1..{C}, got dtype "
                        f"{labels.dtype}")
    if dtype is None:
        dtype = boxes.dtype if boxes.dtype.kind == "f" else backend.get_default_dtype()
    grid = xp.zeros((S * S, 5 + C), dtype=dtype)
    if boxes.shape[0] == 0:
        return grid.reshape(S, S, 5 + C)
    if bool(((labels < 1) | (labels > C)).any()):
        raise ValueError(f"{op}: labels[{n}] must lie in 1..{C} (C = {C} object classes; "
                         f"0 is the background, which YOLO does not predict), got values "
                         f"from {int(labels.min())} to {int(labels.max())}")
    boxes = boxes.astype(xp.float64)
    if bool(((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any()):
        raise ValueError(f"{op}: boxes[{n}] must be xyxy with x2 >= x1 and y2 >= y1")
    gx = xp.clip((boxes[:, 0] + boxes[:, 2]) / 2 / width, 0, 1) * S     # centre, in cells
    gy = xp.clip((boxes[:, 1] + boxes[:, 3]) / 2 / height, 0, 1) * S
    col = xp.minimum(xp.floor(gx), S - 1).astype(xp.int64)
    row = xp.minimum(xp.floor(gy), S - 1).astype(xp.int64)
    cell = row * S + col                                                 # (K,)
    k = cell.shape[0]
    # first wins: drop a box when an earlier one has the same cell (K x K, K is small)
    earlier = xp.arange(k)[None, :] < xp.arange(k)[:, None]             # [a, b]: b < a
    kept = ~((cell[:, None] == cell[None, :]) & earlier).any(axis=1)    # (K,)
    values = xp.zeros((k, 5 + C), dtype=xp.float64)
    values[:, 0], values[:, 1] = gx - col, gy - row
    values[:, 2] = (boxes[:, 2] - boxes[:, 0]) / width
    values[:, 3] = (boxes[:, 3] - boxes[:, 1]) / height
    values[:, 4] = 1
    values[xp.arange(k), 4 + labels.astype(xp.int64)] = 1               # label l -> 5 + l - 1
    grid[cell[kept]] = values[kept].astype(dtype)
    return grid.reshape(S, S, 5 + C)


def _cell_iou(xp, boxes, truth, S):
    """IoU of each predicted box (N, S, S, B, 5) with its cell's true box (N, S, S, 5 + C),
    both placed in the image (image-relative units): (N, S, S, B), 0 where a union is 0."""
    rows = xp.arange(S, dtype=boxes.dtype)[None, :, None, None]          # i
    cols = xp.arange(S, dtype=boxes.dtype)[None, None, :, None]          # j

    def corners(x, y, w, h):
        cx, cy = (cols + x) / S, (rows + y) / S
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2

    p = corners(boxes[..., 0], boxes[..., 1], boxes[..., 2] ** 2, boxes[..., 3] ** 2)
    t = corners(*(truth[..., None, c].astype(boxes.dtype) for c in range(4)))
    iw = xp.clip(xp.minimum(p[2], t[2]) - xp.maximum(p[0], t[0]), 0, None)
    ih = xp.clip(xp.minimum(p[3], t[3]) - xp.maximum(p[1], t[1]), 0, None)
    inter = iw * ih
    union = (p[2] - p[0]) * (p[3] - p[1]) + (t[2] - t[0]) * (t[3] - t[1]) - inter
    return xp.where(union > 0, inter / xp.where(union > 0, union, 1), 0).astype(boxes.dtype)


def _check_loss_inputs(op, pred, targets, S, B, C):
    S, B, C = (positive_int(op, name, v) for name, v in (("S", S), ("B", B), ("C", C)))
    p = float_input(op, pred)
    if p.ndim != 4 or tuple(p.shape[1:]) != (S, S, 5 * B + C):
        raise ValueError(f"{op}: pred must have shape (N, S, S, 5B + C) = (N, {S}, {S}, "
                         f"{5 * B + C}) for S={S}, B={B}, C={C}, got {tuple(p.shape)}")
    if isinstance(targets, (list, tuple)):
        raise TypeError(f"{op}: targets must be the (N, S, S, 5 + C) grid of "
                        f"yolo_v1_targets, got a {type(targets).__name__} (encode target "
                        f"dicts with yolo_v1_targets first)")
    t = as_tensor(targets)
    if tuple(t.shape) != (p.shape[0], S, S, 5 + C):
        raise ValueError(f"{op}: targets must have shape (N, S, S, 5 + C) = "
                         f"({p.shape[0]}, {S}, {S}, {5 + C}) to match pred, got "
                         f"{tuple(t.shape)}")
    if t.device != p.device:
        raise RuntimeError(f"{op}: pred is on {p.device} but targets on {t.device}")
    return p, t.detach().to(dtype=p.dtype)


def _lambda(op, name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{op}: {name} must be a number >= 0, got {value!r}")
    return float(value)


def _reduce(per_cell, n, reduction):
    """Sum over everything but the batch, then 'none' (N,), 'sum' or 'mean' (÷ N)."""
    per_image = _sum(per_cell.reshape(n, math.prod(per_cell.shape[1:])), 1)   # (N,)
    if reduction == "none":
        return per_image
    total = _sum(per_image)
    return total / n if reduction == "mean" else total
