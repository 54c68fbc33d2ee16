"""Box operations and non-maximum suppression, as ``torchvision.ops``: box_area, box_iou,
box_convert, clip_boxes_to_image, remove_small_boxes, nms and batched_nms.

Boxes are (K, 4) arrays of corners ``(x1, y1, x2, y2)`` in pixels, with x1 <= x2 and
y1 <= y2 ('xyxy', torchvision's format; ``box_convert`` also reads and writes 'xywh' and
'cxcywh'). Every op takes minicnn Tensors or NumPy/CuPy arrays and returns the same kind
(a Tensor when any box or score input is one) on the same device; the arithmetic uses the
inputs' array module, so boxes on the GPU stay there. None of these ops records a
gradient: they are bookkeeping around a detector, not part of its loss.

Checks: boxes must be (K, 4), and the ops that read boxes as regions (area, IoU,
NMS, remove_small_boxes) refuse a box with x2 < x1 or y2 < y1 with a ValueError naming
the op and the box (torchvision assumes ``x1 <= x2``, ``y1 <= y2`` and returns nonsense,
e.g. a negative area, otherwise; its detectors assert it). A zero-width or zero-height
box is allowed.

Dtypes follow torchvision's ``_upcast``: float16 boxes are computed in float32, integer
boxes narrower than int32 in int32; an IoU is a float (integer boxes give the default
float dtype, as torch's true division does).
"""
from __future__ import annotations

import contextlib
import numbers

from .. import backend
from ..autograd import Tensor, as_tensor

__all__ = ["box_area", "box_iou", "box_convert", "clip_boxes_to_image",
           "remove_small_boxes", "nms", "batched_nms"]

_FORMATS = ("xyxy", "xywh", "cxcywh")


def box_area(boxes):
    """The area (x2 - x1)·(y2 - y1) of each box, as ``torchvision.ops.box_area``.

    Shape: boxes (K, 4) xyxy -> (K,).
    """
    was_tensor = isinstance(boxes, Tensor)
    b = _upcast(_boxes(boxes, "box_area"))
    return _like(was_tensor, _area(b))


def box_iou(boxes1, boxes2):
    """Intersection over union of every pair of boxes, as ``torchvision.ops.box_iou``::

        iou[n, m] = area(A_n ∩ B_m) / (area(A_n) + area(B_m) - area(A_n ∩ B_m))

    Shape: boxes1 (N, 4), boxes2 (M, 4), both xyxy -> (N, M).

    NOTE: two zero-area boxes have union 0 and IoU 0 / 0 = NaN, as torchvision's (it
    divides without a guard); a zero-area box against a box of positive area gets 0.
    (``minicnn.metrics.box_iou`` used to answer 0 for 0 / 0.)
    """
    was_tensor = isinstance(boxes1, Tensor) or isinstance(boxes2, Tensor)
    a = _upcast(_boxes(boxes1, "box_iou", "boxes1"))
    b = _upcast(_boxes(boxes2, "box_iou", "boxes2"))
    _same_device("box_iou", boxes1=a, boxes2=b)
    xp = backend.get_array_module(a)
    with _quiet(xp):                    # 0 / 0 gives NaN without a warning, as in torch
        lt = xp.maximum(a[:, None, :2], b[None, :, :2])         # (N, M, 2)
        rb = xp.minimum(a[:, None, 2:], b[None, :, 2:])         # (N, M, 2)
        wh = xp.clip(rb - lt, 0, None)
        inter = wh[..., 0] * wh[..., 1]                          # (N, M)
        union = _area(a)[:, None] + _area(b)[None, :] - inter
        out_dtype = _float_dtype(inter.dtype)
        iou = inter.astype(out_dtype, copy=False) / union.astype(out_dtype, copy=False)
    return _like(was_tensor, iou)


def box_convert(boxes, in_fmt, out_fmt):
    """Boxes from one format to another, as ``torchvision.ops.box_convert``.

    Formats: 'xyxy' (corners), 'xywh' (top-left corner, width, height), 'cxcywh'
    (centre, width, height); cxcywh -> xyxy is x1 = cx - 0.5·w, x2 = cx + 0.5·w.
    The same format returns a copy. Integer boxes converted to or from 'cxcywh' become
    the default float dtype (halves), as in torch.

    Shape: boxes (..., 4) -> (..., 4).
    """
    op = "box_convert"
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in _FORMATS:
            raise ValueError(f"{op}: {name} must be one of {', '.join(map(repr, _FORMATS))}, "
                             f"got {fmt!r}")
    was_tensor = isinstance(boxes, Tensor)
    b = _boxes(boxes, op, ordered=False, batched=True)
    xp = backend.get_array_module(b)
    if in_fmt == out_fmt:
        return _like(was_tensor, b.copy())
    if "cxcywh" in (in_fmt, out_fmt):
        b = b.astype(_float_dtype(b.dtype), copy=False)
    c0, c1, c2, c3 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    # through xyxy: every format pair is one step in and one step out
    if in_fmt == "xywh":
        c2, c3 = c0 + c2, c1 + c3
    elif in_fmt == "cxcywh":
        c0, c1, c2, c3 = c0 - 0.5 * c2, c1 - 0.5 * c3, c0 + 0.5 * c2, c1 + 0.5 * c3
    if out_fmt == "xywh":
        c2, c3 = c2 - c0, c3 - c1
    elif out_fmt == "cxcywh":
        c0, c1, c2, c3 = (c0 + c2) / 2, (c1 + c3) / 2, c2 - c0, c3 - c1
    return _like(was_tensor, xp.stack((c0, c1, c2, c3), axis=-1))


def clip_boxes_to_image(boxes, size):
    """Clamp x coordinates to [0, width] and y coordinates to [0, height], as
    ``torchvision.ops.clip_boxes_to_image``. ``size`` is the image's (height, width).
    A box wholly outside the image becomes a zero-width or zero-height box on the border
    (``remove_small_boxes`` drops it); NaN coordinates stay NaN.

    Shape: boxes (..., 4) xyxy -> (..., 4), same dtype.
    """
    op = "clip_boxes_to_image"
    was_tensor = isinstance(boxes, Tensor)
    b = _boxes(boxes, op, ordered=False, batched=True)
    height, width = _image_size(size, op)
    xp = backend.get_array_module(b)
    out = b.copy()
    out[..., 0::2] = xp.clip(b[..., 0::2], 0, width)
    out[..., 1::2] = xp.clip(b[..., 1::2], 0, height)
    return _like(was_tensor, out)


def remove_small_boxes(boxes, min_size):
    """Indices (int64, increasing) of the boxes whose width and height are both
    >= ``min_size``, as ``torchvision.ops.remove_small_boxes`` (a NaN side removes the box).

    Shape: boxes (K, 4) xyxy -> (K',).
    """
    op = "remove_small_boxes"
    if isinstance(min_size, bool) or not isinstance(min_size, numbers.Real):
        raise TypeError(f"{op}: min_size must be a number, got {min_size!r}")
    was_tensor = isinstance(boxes, Tensor)
    b = _boxes(boxes, op)
    xp = backend.get_array_module(b)
    keep = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
    return _like(was_tensor, xp.nonzero(keep)[0].astype(xp.int64))


def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression, as ``torchvision.ops.nms``: visit the boxes by
    decreasing score; keep a box unless a kept box overlaps it with IoU > ``iou_threshold``
    (strictly greater).

    Returns the int64 indices of the kept boxes, by decreasing score.

    Conventions (torchvision's CPU kernel): the visiting order is a stable sort, so among
    equal scores the lower index comes first; a NaN score sorts before every number (torch's
    descending sort); the IoU is computed in the boxes' dtype as inter / (area_i + area_j -
    inter) and compared with the threshold in float64 (C++ promotes the float to double); an
    IoU of 0 / 0 (two zero-area boxes) or with a NaN coordinate suppresses nothing.

    Shape: boxes (K, 4) xyxy, scores (K,) -> (K',) with K' <= K.
    """
    was_tensor = isinstance(boxes, Tensor) or isinstance(scores, Tensor)
    b, s, thr = _nms_inputs("nms", boxes, scores, iou_threshold)
    return _like(was_tensor, _greedy_nms(b, s, thr))


def batched_nms(boxes, scores, idxs, iou_threshold):
    """Non-maximum suppression within each category, as ``torchvision.ops.batched_nms``:
    a box is only suppressed by a kept box of the same ``idxs`` value.

    Returns the int64 indices kept, by decreasing score over all categories (equal scores:
    lower index first): ``nms`` run on each category, the kept indices merged by score.

    NOTE: this is torchvision's path for large inputs (``_batched_nms_vanilla``). For small
    ones it shifts each category's boxes by idx·(max coordinate + 1) instead and runs one
    ``nms``: the same answer in exact arithmetic, but the shift rounds large float32
    coordinates and assumes coordinates >= 0 (with negative ones, shifted boxes of two
    categories can still overlap). Per category is also faster here: the greedy loop costs
    kept × candidates, which splitting divides by about the number of categories.

    Shape: boxes (K, 4) xyxy, scores (K,), idxs (K,) integer categories -> (K',).
    """
    op = "batched_nms"
    was_tensor = any(isinstance(v, Tensor) for v in (boxes, scores, idxs))
    b, s, thr = _nms_inputs(op, boxes, scores, iou_threshold)
    categories = _array(idxs, "idxs", op)
    _same_device(op, boxes=b, idxs=categories)
    if categories.shape != s.shape:
        raise ValueError(f"{op}: expected idxs of shape ({s.shape[0]},), one category per "
                         f"box, got shape {tuple(categories.shape)}")
    if categories.dtype.kind not in "biu":
        raise TypeError(f"{op}: idxs must hold integer categories, got dtype "
                        f"{categories.dtype}")
    xp = backend.get_array_module(b)
    if b.shape[0] == 0:
        return _like(was_tensor, xp.zeros((0,), dtype=xp.int64))
    kept = []
    for category in xp.unique(categories):
        members = xp.nonzero(categories == category)[0]
        kept.append(members[_greedy_nms(b[members], s[members], thr)])
    kept = xp.sort(xp.concatenate(kept))                  # by index, then stably by score
    return _like(was_tensor, kept[_descending_order(s[kept])].astype(xp.int64))


# ----------------------------------------------------------------------- the greedy loop

def _greedy_nms(boxes, scores, iou_threshold):
    """Kept indices (int64) of greedy NMS, by decreasing score.

    One pass over the boxes in visiting order that shrinks the list of candidates: the first
    candidate is kept, and every later candidate it suppresses is dropped. The loop runs once
    per *kept* box, each step O(candidates left); no (K, K) matrix is built, and on CuPy
    nothing but the number of candidates left reaches the host.
    """
    xp = backend.get_array_module(boxes)
    n = boxes.shape[0]
    if n == 0:
        return xp.zeros((0,), dtype=xp.int64)
    order = _descending_order(scores)
    b = boxes[order]                                           # boxes in visiting order
    x1, y1, x2, y2 = (xp.ascontiguousarray(b[:, k]) for k in range(4))
    zero = xp.zeros((), dtype=b.dtype)
    candidates = xp.arange(n)
    kept = []
    with _quiet(xp):                    # 0 / 0 and inf - inf give NaN, as in torch
        area = (x2 - x1) * (y2 - y1)
        while candidates.shape[0]:
            i, rest = candidates[:1], candidates[1:]           # i: shape (1,), on the device
            kept.append(i)
            # NOTE: w = max(0, xx2 - xx1) as C++ std::max(0, d) = d if 0 < d else 0, so a
            # NaN difference gives 0 (xp.maximum would propagate the NaN).
            w = xp.minimum(x2[i], x2[rest]) - xp.maximum(x1[i], x1[rest])
            h = xp.minimum(y2[i], y2[rest]) - xp.maximum(y1[i], y1[rest])
            inter = xp.where(w > 0, w, zero) * xp.where(h > 0, h, zero)
            iou = inter / (area[i] + area[rest] - inter)
            suppressed = iou.astype(xp.float64) > iou_threshold
            candidates = rest[~suppressed]
    return order[xp.concatenate(kept)]


def _descending_order(scores):
    """Indices sorting ``scores`` along its last axis in decreasing order, stably (ties:
    lower index first), NaN first, as torch's ``sort(descending=True, stable=True)``.

    An ascending stable sort of the reversed array, read backwards: ties come out in
    increasing original index, NaN (sorted last ascending) comes first, and it works for
    unsigned integers, which negation would wrap.
    """
    xp = backend.get_array_module(scores)
    n = scores.shape[-1]
    ascending = xp.argsort(scores[..., ::-1], axis=-1, kind="stable")
    return (n - 1 - ascending)[..., ::-1].astype(xp.int64)


def _nms_inputs(op, boxes, scores, iou_threshold):
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, numbers.Real):
        raise TypeError(f"{op}: iou_threshold must be a number, got {iou_threshold!r}")
    b = _boxes(boxes, op)
    s = _array(scores, "scores", op)
    _same_device(op, boxes=b, scores=s)
    if s.ndim != 1 or s.shape[0] != b.shape[0]:
        raise ValueError(f"{op}: expected scores of shape ({b.shape[0]},), one per box, got "
                         f"shape {tuple(s.shape)}")
    if s.dtype.kind not in "biuf":
        raise TypeError(f"{op}: scores must be real numbers, got dtype {s.dtype}")
    if b.dtype.kind != "f":
        b = b.astype(backend.float64)         # integer corners: exact in float64
    return _upcast(b), s, float(iou_threshold)


# -------------------------------------------------------------------------------- helpers

def _array(value, name, op):
    """The backend array of a Tensor, array or (nested) list; None is an error."""
    if value is None:
        raise ValueError(f"{op}: {name} is required, got None")
    if isinstance(value, Tensor):
        return value.array
    if hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "ndim"):
        return value                                  # a NumPy or CuPy array
    return as_tensor(value).array                     # lists and numbers: host, torch's dtypes


def _boxes(value, op, name="boxes", ordered=True, batched=False):
    """``value`` as a box array: (K, 4) (``batched``: any (..., 4)) of real numbers, and
    with ``ordered`` x1 <= x2 and y1 <= y2 in every box."""
    b = _array(value, name, op)
    expected = "(..., 4)" if batched else "(K, 4)"
    if b.ndim < 1 or b.shape[-1] != 4 or (not batched and b.ndim != 2):
        raise ValueError(f"{op}: expected {name} of shape {expected}, one (x1, y1, x2, y2) "
                         f"box per row, got shape {tuple(b.shape)}")
    if b.dtype.kind not in "biuf":
        raise TypeError(f"{op}: {name} must hold real numbers, got dtype {b.dtype}")
    if ordered and b.shape[0]:
        xp = backend.get_array_module(b)
        bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        if bool(bad.any()):                          # one scalar to the host, as TORCH_CHECK
            k = int(xp.argmax(bad))
            raise ValueError(f"{op}: {name}[{k}] = {b[k].tolist()} has x2 < x1 or y2 < y1; "
                             "expected (x1, y1, x2, y2) boxes with x1 <= x2 and y1 <= y2")
    return b


def _upcast(b):
    """torchvision's ``_upcast``: float16 -> float32, integers narrower than int32 -> int32,
    so that areas neither overflow nor lose precision."""
    if b.dtype.kind == "f":
        return b if b.dtype.itemsize >= 4 else b.astype(backend.float32)
    if b.dtype.kind == "b" or b.dtype.itemsize < 4:
        return b.astype(backend.int32)
    return b


def _area(b):
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def _float_dtype(dtype):
    """``dtype`` if it is a float, else the default float dtype (torch's true division)."""
    return dtype if dtype.kind == "f" else backend.get_default_dtype()


def _image_size(size, op):
    try:
        height, width = size
    except (TypeError, ValueError):
        raise ValueError(f"{op}: size must be the image's (height, width), got {size!r}") \
            from None
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0:
            raise ValueError(f"{op}: size must be the image's (height, width), two "
                             f"non-negative numbers; got {name} {v!r}")
    return height, width


def _same_device(op, **arrays):
    devices = {name: backend.device_of(a) for name, a in arrays.items()}
    if len(set(devices.values())) > 1:
        where = ", ".join(f"{name} on {d}" for name, d in devices.items())
        raise ValueError(f"{op}: inputs must be on one device, got {where}")


def _like(was_tensor, array):
    """A Tensor (no gradient) when the input was one, else the array itself."""
    return Tensor._wrap(array) if was_tensor else array


def _quiet(xp):
    """Silence NumPy's divide/invalid warnings around a division that may be 0 / 0
    (torch gives NaN without a word); CuPy never warns."""
    if hasattr(xp, "errstate"):
        return xp.errstate(divide="ignore", invalid="ignore")
    return contextlib.nullcontext()
