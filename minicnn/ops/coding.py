"""Box coding, matching and sampling, as ``torchvision.models.detection._utils``: BoxCoder,
Matcher, SSDMatcher, BalancedPositiveNegativeSampler, and SSD's hard-negative selection
(``hard_negative_mask``, what ``torchvision.models.detection.SSD.compute_loss`` does inline).

These turn ground-truth boxes into training targets for a detector's heads; none records
a gradient (the regression targets are constants of the loss, and decoding runs in
post-processing). Inputs are minicnn Tensors or NumPy/CuPy arrays; outputs are the same
kind on the same device.
"""
from __future__ import annotations

import math
import numbers

from .. import backend
from ..autograd import Tensor
from ..creation import randperm
from .boxes import _array, _boxes, _descending_order, _like, _quiet, _same_device

__all__ = ["BoxCoder", "Matcher", "SSDMatcher", "BalancedPositiveNegativeSampler",
           "hard_negative_mask"]


class BoxCoder:
    """Boxes to regression targets and back, relative to reference boxes (anchors,
    proposals, default boxes), as ``torchvision.models.detection._utils.BoxCoder``.

    With a proposal P (centre px, py, size pw, ph), a box G and weights (wx, wy, ww, wh)
    (Girshick et al., R-CNN appendix C; Ren et al. eq. 2)::

        tx = wx·(gx - px) / pw      ty = wy·(gy - py) / ph
        tw = ww·log(gw / pw)        th = wh·log(gh / ph)

    Decoding inverts it, with dw = tw / ww and dh = th / wh first clamped from above at
    ``bbox_xform_clip`` (log(1000/16): a box at most 62.5 times its proposal) so that exp
    cannot overflow; the corners are centre ∓ 0.5·size (torchvision's current decode, no
    -1/+1 pixel convention). Weights: (1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for the
    Fast R-CNN box head and SSD.

    Centres are x1 + 0.5·w, as torchvision computes them (the same value as (x1 + x2)/2
    up to rounding). A proposal of zero width or height encodes to ±inf/NaN, as in torch.
    """

    def __init__(self, weights, bbox_xform_clip=math.log(1000.0 / 16)):
        try:
            weights = tuple(weights)
        except TypeError:
            weights = (weights,)
        if len(weights) != 4 or any(isinstance(w, bool) or not isinstance(w, numbers.Real)
                                    or w == 0 for w in weights):
            raise ValueError(f"BoxCoder: weights must be four non-zero numbers (wx, wy, ww, wh), "
                             f"got {weights!r}")
        if isinstance(bbox_xform_clip, bool) or not isinstance(bbox_xform_clip, numbers.Real):
            raise TypeError(f"BoxCoder: bbox_xform_clip must be a number, got "
                            f"{bbox_xform_clip!r}")
        self.weights = weights
        self.bbox_xform_clip = bbox_xform_clip

    def __repr__(self):
        return f"BoxCoder(weights={self.weights}, bbox_xform_clip={self.bbox_xform_clip})"

    def encode(self, reference_boxes, proposals):
        """``encode_single`` over a batch: two lists (one entry per image) of (K_i, 4) boxes;
        returns a tuple of (K_i, 4) targets."""
        op = "BoxCoder.encode"
        refs = _box_list(reference_boxes, "reference_boxes", op)
        props = _box_list(proposals, "proposals", op)
        if len(refs) != len(props):
            raise ValueError(f"{op}: {len(refs)} images of reference_boxes but "
                             f"{len(props)} of proposals")
        for i, (r, p) in enumerate(zip(refs, props)):
            if r.shape[0] != p.shape[0]:
                raise ValueError(f"{op}: image {i} has {r.shape[0]} reference_boxes but "
                                 f"{p.shape[0]} proposals")
        was_tensor = any(isinstance(v, Tensor) for v in (*reference_boxes, *proposals))
        if not refs:
            return ()
        xp = backend.get_array_module(refs[0])
        targets = self._encode(xp.concatenate(refs), xp.concatenate(props))
        return tuple(_like(was_tensor, t) for t in _split(targets, [len(r) for r in refs]))

    def encode_single(self, reference_boxes, proposals):
        """Regression targets (K, 4) of ``reference_boxes`` (K, 4) (the ground truth matched
        to each proposal) relative to ``proposals`` (K, 4), both xyxy; computed in the
        reference boxes' dtype, as torchvision (its weights take that dtype)."""
        op = "BoxCoder.encode_single"
        was_tensor = isinstance(reference_boxes, Tensor) or isinstance(proposals, Tensor)
        r = _coded_boxes(reference_boxes, "reference_boxes", op)
        p = _coded_boxes(proposals, "proposals", op)
        _same_device(op, reference_boxes=r, proposals=p)
        if r.shape[0] != p.shape[0]:
            raise ValueError(f"{op}: {r.shape[0]} reference_boxes but {p.shape[0]} proposals; "
                             "expected one reference box per proposal")
        return _like(was_tensor, self._encode(r, p))

    def decode(self, rel_codes, boxes):
        """``decode_single`` over a batch: ``rel_codes`` (sum K_i, 4·C) for the boxes of
        all images, ``boxes`` a list of (K_i, 4). Returns (sum K_i, C, 4)."""
        op = "BoxCoder.decode"
        if not isinstance(boxes, (list, tuple)):
            raise TypeError(f"{op}: boxes must be a list of (K_i, 4) boxes, one entry per "
                            f"image, got {type(boxes).__name__}")
        parts = _box_list(boxes, "boxes", op)
        codes = _array(rel_codes, "rel_codes", op)
        was_tensor = isinstance(rel_codes, Tensor) or any(isinstance(b, Tensor) for b in boxes)
        xp = backend.get_array_module(codes)
        total = sum(p.shape[0] for p in parts)
        concat = xp.concatenate(parts) if parts else xp.zeros((0, 4), dtype=codes.dtype)
        if total > 0:
            if codes.size % (4 * total):
                raise ValueError(f"{op}: rel_codes of shape {tuple(codes.shape)} cannot be "
                                 f"read as ({total}, 4·C) for the {total} boxes")
            codes = codes.reshape(total, -1)
        pred = self._decode(_check_codes(codes, concat, op), concat)
        return _like(was_tensor, pred.reshape(total, -1, 4) if total > 0 else pred)

    def decode_single(self, rel_codes, boxes):
        """Boxes (K, 4·C) xyxy from regression ``rel_codes`` (K, 4·C) (C box predictions per
        reference box, e.g. one per class) and reference ``boxes`` (K, 4); computed in
        ``rel_codes``' dtype."""
        op = "BoxCoder.decode_single"
        was_tensor = isinstance(rel_codes, Tensor) or isinstance(boxes, Tensor)
        codes = _array(rel_codes, "rel_codes", op)
        b = _coded_boxes(boxes, "boxes", op)
        return _like(was_tensor, self._decode(_check_codes(codes, b, op), b))

    # the arithmetic, in torchvision's order of operations (so the results agree with its to
    # the last bit or two: NumPy's log and exp may round differently from torch's)

    def _encode(self, reference, proposals):
        xp = backend.get_array_module(reference)
        # Python numbers take the boxes' float dtype, as torchvision's weights do
        wx, wy, ww, wh = (float(w) for w in self.weights)
        with _quiet(xp):
            ex_w = proposals[:, 2:3] - proposals[:, 0:1]              # (K, 1) each
            ex_h = proposals[:, 3:4] - proposals[:, 1:2]
            ex_x = proposals[:, 0:1] + 0.5 * ex_w
            ex_y = proposals[:, 1:2] + 0.5 * ex_h
            gt_w = reference[:, 2:3] - reference[:, 0:1]
            gt_h = reference[:, 3:4] - reference[:, 1:2]
            gt_x = reference[:, 0:1] + 0.5 * gt_w
            gt_y = reference[:, 1:2] + 0.5 * gt_h
            dx = wx * (gt_x - ex_x) / ex_w
            dy = wy * (gt_y - ex_y) / ex_h
            dw = ww * xp.log(gt_w / ex_w)
            dh = wh * xp.log(gt_h / ex_h)
        return xp.concatenate((dx, dy, dw, dh), axis=1)

    def _decode(self, codes, boxes):
        xp = backend.get_array_module(codes)
        boxes = boxes.astype(codes.dtype, copy=False)
        wx, wy, ww, wh = (float(w) for w in self.weights)
        with _quiet(xp):
            widths = (boxes[:, 2] - boxes[:, 0])[:, None]             # (K, 1)
            heights = (boxes[:, 3] - boxes[:, 1])[:, None]
            ctr_x = boxes[:, 0:1] + 0.5 * widths
            ctr_y = boxes[:, 1:2] + 0.5 * heights
            dx = codes[:, 0::4] / wx                                  # (K, C) each
            dy = codes[:, 1::4] / wy
            dw = xp.minimum(codes[:, 2::4] / ww, self.bbox_xform_clip)  # NaN stays NaN
            dh = xp.minimum(codes[:, 3::4] / wh, self.bbox_xform_clip)
            pred_x = dx * widths + ctr_x
            pred_y = dy * heights + ctr_y
            half_w = 0.5 * (xp.exp(dw) * widths)
            half_h = 0.5 * (xp.exp(dh) * heights)
        out = xp.stack((pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h),
                       axis=2)                                        # (K, C, 4)
        return out.reshape(codes.shape)                              # (K, 4·C)


class Matcher:
    """Assign each prediction (anchor, proposal) the ground-truth box it overlaps most, as
    ``torchvision.models.detection._utils.Matcher``.

    Called with the (M, N) ``match_quality_matrix`` (IoU of M ground-truth boxes with N
    predictions), it returns (N,) int64: the matched gt index in [0, M), or

    * ``BELOW_LOW_THRESHOLD`` (-1) where the best quality is < ``low_threshold``
      (a negative),
    * ``BETWEEN_THRESHOLDS`` (-2) where it is in [low_threshold, high_threshold)
      (ignored).

    ``allow_low_quality_matches`` (Faster R-CNN's RPN rule "the anchor with the highest IoU
    with a gt box is positive"): for each gt, every prediction that reaches that gt's
    highest quality (ties included, even when it is low) gets back its own best match --
    the gt *it* overlaps most, which with ties need not be the gt that chose it.

    Ties for the best gt of a prediction go to the lowest gt index (argmax's first maximum,
    torch's ``max(dim=0)``); a NaN quality wins the maximum and counts as a match, as in
    torch. An empty matrix is an error, as in torchvision (no boxes in an image during
    training).
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold, low_threshold, allow_low_quality_matches=False):
        for name, v in (("high_threshold", high_threshold), ("low_threshold", low_threshold)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise TypeError(f"{type(self).__name__}: {name} must be a number, got {v!r}")
        if not low_threshold <= high_threshold:
            raise ValueError(f"{type(self).__name__}: low_threshold must be <= high_threshold, "
                             f"got low {low_threshold} and high {high_threshold}")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __repr__(self):
        return (f"{type(self).__name__}(high_threshold={self.high_threshold}, low_threshold="
                f"{self.low_threshold}, allow_low_quality_matches="
                f"{self.allow_low_quality_matches})")

    def __call__(self, match_quality_matrix):
        was_tensor = isinstance(match_quality_matrix, Tensor)
        q = self._quality(match_quality_matrix)
        return _like(was_tensor, self._match(q))

    def _quality(self, match_quality_matrix):
        op = f"{type(self).__name__}"
        q = _array(match_quality_matrix, "match_quality_matrix", op)
        if q.ndim != 2:
            raise ValueError(f"{op}: expected match_quality_matrix of shape (M, N) (M ground-"
                             f"truth boxes, N predictions), got shape {tuple(q.shape)}")
        if q.shape[0] == 0:
            raise ValueError(f"{op}: no ground-truth boxes available for one of the images "
                             "during training (match_quality_matrix has 0 rows)")
        if q.shape[1] == 0:
            raise ValueError(f"{op}: no proposal boxes available for one of the images "
                             "during training (match_quality_matrix has 0 columns)")
        return q

    def _match(self, q):
        xp = backend.get_array_module(q)
        matches = xp.argmax(q, axis=0).astype(xp.int64)          # best gt per prediction
        best = xp.max(q, axis=0)
        below = best < self.low_threshold
        between = (best >= self.low_threshold) & (best < self.high_threshold)
        out = xp.where(below, self.BELOW_LOW_THRESHOLD,
                       xp.where(between, self.BETWEEN_THRESHOLDS, matches))
        if self.allow_low_quality_matches:
            highest_per_gt = xp.max(q, axis=1)                   # (M,)
            reaches = (q == highest_per_gt[:, None]).any(axis=0)  # (N,): some gt's best
            out = xp.where(reaches, matches, out)
        return out.astype(xp.int64)


class SSDMatcher(Matcher):
    """SSD's matching (Liu et al. 2016, section 2.2), as torchvision's ``SSDMatcher``: a
    default box matches the gt it overlaps most when that IoU is >= ``threshold`` (else -1),
    and each gt is in addition forced onto its own best default box, whatever the IoU, so
    that every gt has at least one match.

    Ties: a gt's best default box is the lowest index among equal IoUs; when several gts
    share one best default box, the highest gt index takes it (the last write of
    torchvision's ``matches[best] = arange(M)``, as NumPy and torch's CPU assignment do;
    made explicit here because CuPy leaves duplicate writes unordered).
    """

    def __init__(self, threshold):
        super().__init__(threshold, threshold, allow_low_quality_matches=False)

    def __repr__(self):
        return f"SSDMatcher(threshold={self.high_threshold})"

    def __call__(self, match_quality_matrix):
        was_tensor = isinstance(match_quality_matrix, Tensor)
        q = self._quality(match_quality_matrix)
        xp = backend.get_array_module(q)
        matches = self._match(q)
        m, n = q.shape
        best_pred = xp.argmax(q, axis=1)                          # (M,) each gt's best box
        chosen = best_pred[:, None] == xp.arange(n)[None, :]      # (M, N)
        gt = xp.arange(m, dtype=xp.int64)[:, None]
        forced = xp.max(xp.where(chosen, gt, -1), axis=0)         # (N,) highest gt, or -1
        return _like(was_tensor, xp.where(forced >= 0, forced, matches))


class BalancedPositiveNegativeSampler:
    """Draw a fixed-size training batch of positives and negatives per image, as
    ``torchvision.models.detection._utils.BalancedPositiveNegativeSampler``: at most
    ``int(batch_size_per_image · positive_fraction)`` positives, the rest of the batch
    negatives (fewer when an image lacks them), chosen uniformly at random.

    Called with a list (one entry per image) of (N,) label arrays -- values >= 1 positive,
    0 negative, anything below 0 ignored -- it returns two lists of uint8 masks, the
    positives and the negatives drawn. The draws come from minicnn's generator
    (``minicnn.randperm``), so ``minicnn.manual_seed`` makes them reproducible (the choices
    differ from torch's, which uses its own generator).
    """

    def __init__(self, batch_size_per_image, positive_fraction):
        op = "BalancedPositiveNegativeSampler"
        if isinstance(batch_size_per_image, bool) or not isinstance(batch_size_per_image,
                                                                    numbers.Integral) \
                or batch_size_per_image < 0:
            raise ValueError(f"{op}: batch_size_per_image must be a non-negative integer, got "
                             f"{batch_size_per_image!r}")
        if isinstance(positive_fraction, bool) or not isinstance(positive_fraction, numbers.Real) \
                or not 0 <= positive_fraction <= 1:
            raise ValueError(f"{op}: positive_fraction must be a number in [0, 1], got "
                             f"{positive_fraction!r}")
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = positive_fraction

    def __repr__(self):
        return (f"BalancedPositiveNegativeSampler(batch_size_per_image="
                f"{self.batch_size_per_image}, positive_fraction={self.positive_fraction})")

    def __call__(self, matched_idxs):
        op = "BalancedPositiveNegativeSampler"
        if not isinstance(matched_idxs, (list, tuple)):
            raise TypeError(f"{op}: expected a list of (N,) label arrays, one per image, got "
                            f"{type(matched_idxs).__name__}")
        pos_masks, neg_masks = [], []
        for i, labels in enumerate(matched_idxs):
            was_tensor = isinstance(labels, Tensor)
            a = _array(labels, f"matched_idxs[{i}]", op)
            if a.ndim != 1:
                raise ValueError(f"{op}: expected matched_idxs[{i}] of shape (N,), got shape "
                                 f"{tuple(a.shape)}")
            xp = backend.get_array_module(a)
            positive = xp.nonzero(a >= 1)[0]
            negative = xp.nonzero(a == 0)[0]
            num_pos = min(positive.shape[0],
                          int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.shape[0], self.batch_size_per_image - num_pos)
            pos_mask = xp.zeros(a.shape, dtype=xp.uint8)
            neg_mask = xp.zeros(a.shape, dtype=xp.uint8)
            pos_mask[positive[_draw(positive, num_pos)]] = 1
            neg_mask[negative[_draw(negative, num_neg)]] = 1
            pos_masks.append(_like(was_tensor, pos_mask))
            neg_masks.append(_like(was_tensor, neg_mask))
        return pos_masks, neg_masks


def hard_negative_mask(loss, positive, neg_pos_ratio=3):
    """SSD's hard-negative mining (Liu et al. 2016, section 2.2): per image, the negatives
    with the highest classification loss, ``neg_pos_ratio`` of them per positive.

    Args:
        loss: (N, A) or (A,) per-anchor classification loss (a Tensor's values are read; no
            gradient flows through the selection).
        positive: bool mask of the same shape, the anchors matched to a gt box.
        neg_pos_ratio: negatives kept per positive (SSD: 3, torchvision's
            (1 - positive_fraction) / positive_fraction with positive_fraction 0.25).

    Returns a bool mask of the same shape: the hard negatives. The loss SSD minimises is
    (loss[positive].sum() + loss[mask].sum()) / max(1, positive.sum()).

    The selection is torchvision's ``SSD.compute_loss``: positives' losses set to -inf, each
    row sorted by decreasing loss, and an anchor kept when its rank is < neg_pos_ratio ·
    (positives in its row) -- so a fractional product rounds up, and a row without positives
    keeps no negative. Ties in the loss go to the lower anchor index (a stable sort;
    torch's unstable sort leaves that order unspecified); a NaN loss ranks first, as in
    torch's sort.

    NOTE: torchvision's mask can also take positives (ranked last, at -inf) when
    neg_pos_ratio · positives exceeds the number of negatives, and its loss then counts
    those positives twice; here the mask holds negatives only. Otherwise the two agree.
    """
    op = "hard_negative_mask"
    if isinstance(neg_pos_ratio, bool) or not isinstance(neg_pos_ratio, numbers.Real) \
            or not neg_pos_ratio >= 0:
        raise ValueError(f"{op}: neg_pos_ratio must be a non-negative number, got "
                         f"{neg_pos_ratio!r}")
    was_tensor = isinstance(loss, Tensor) or isinstance(positive, Tensor)
    values = _array(loss, "loss", op)
    pos = _array(positive, "positive", op)
    _same_device(op, loss=values, positive=pos)
    if values.ndim not in (1, 2):
        raise ValueError(f"{op}: expected loss of shape (N, A) or (A,), got shape "
                         f"{tuple(values.shape)}")
    if pos.shape != values.shape:
        raise ValueError(f"{op}: expected positive of shape {tuple(values.shape)} (the "
                         f"loss's), got shape {tuple(pos.shape)}")
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{op}: loss must hold real numbers, got dtype {values.dtype}")
    xp = backend.get_array_module(values)
    pos = pos.astype(bool, copy=False)
    negatives_only = xp.where(pos, -xp.inf, values.astype(_float(values.dtype), copy=False))
    order = _descending_order(negatives_only)            # per row, hardest first
    rank = xp.argsort(order, axis=-1)                    # the inverse permutation
    budget = neg_pos_ratio * pos.sum(axis=-1, keepdims=True)
    return _like(was_tensor, (rank < budget) & ~pos)


# -------------------------------------------------------------------------------- helpers

def _draw(indices, k):
    """The first k of a random permutation of range(len(indices)), from minicnn's
    generator on the indices' device (torch.randperm(n)[:k])."""
    n = indices.shape[0]
    return randperm(n, device=backend.device_of(indices)).array[:k]


def _float(dtype):
    return dtype if dtype.kind == "f" else backend.float64


def _coded_boxes(value, name, op):
    """(K, 4) boxes of real numbers; their order is not checked (a degenerate proposal
    encodes to inf, as in torch)."""
    return _boxes(value, op, name, ordered=False)


def _box_list(values, name, op):
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{op}: {name} must be a list of (K_i, 4) boxes, one entry per image, "
                        f"got {type(values).__name__}")
    return [_coded_boxes(v, f"{name}[{i}]", op) for i, v in enumerate(values)]


def _check_codes(codes, boxes, op):
    if codes.ndim != 2 or codes.shape[1] % 4 or codes.shape[0] != boxes.shape[0]:
        raise ValueError(f"{op}: expected rel_codes of shape ({boxes.shape[0]}, 4·C), four "
                         f"codes per class for each of the {boxes.shape[0]} boxes, got shape "
                         f"{tuple(codes.shape)}")
    if codes.dtype.kind != "f":
        raise TypeError(f"{op}: rel_codes must be floats, got dtype {codes.dtype}")
    _same_device(op, rel_codes=codes, boxes=boxes)
    return codes


def _split(array, sizes):
    """``array`` cut along axis 0 into consecutive pieces of the given sizes."""
    pieces, start = [], 0
    for size in sizes:
        pieces.append(array[start:start + size])
        start += size
    return pieces
