"""The region proposal network of Faster R-CNN, as torchvision's
``models/detection/rpn.py``: :class:`RPNHead` and :class:`RegionProposalNetwork`.

Ren, He, Girshick & Sun, "Faster R-CNN: Towards Real-Time Object Detection with Region
Proposal Networks" (NeurIPS 2015, arXiv 1506.01497), section 3.1.

At every position of every feature map sit A anchors (:class:`~minicnn.ops.AnchorGenerator`:
with an FPN one size per level, 32 to 512, times three aspect ratios). A small head, a
3x3 convolution + ReLU shared by all levels, then two 1x1 convolutions, predicts for each
anchor an objectness logit and four box offsets (:class:`~minicnn.ops.BoxCoder` with
weights (1, 1, 1, 1)). Shapes for one level of size H x W::

    feature (N, C, H, W) -> conv (N, C, H, W) -> cls_logits (N, A, H, W)
                                               -> bbox_pred  (N, 4A, H, W)
    flattened as (N, H, W, A) -> rows of the anchor order: (N·H·W·A, 1) and (N·H·W·A, 4)

**Proposals** (both modes; the offsets are detached, Faster R-CNN does not back-propagate
through the proposals): decode every anchor; per image and per level keep the
``pre_nms_top_n`` highest logits; sigmoid; clip to the image; drop boxes with a side
< 1e-3; drop scores < ``score_thresh``; NMS at ``nms_thresh`` within each level; keep the
``post_nms_top_n`` best. Those numbers differ between training and testing (dicts with
keys 'training' and 'testing'; torchvision's Faster R-CNN: 2000/1000 before NMS and
2000/1000 after, NMS 0.7).

**Losses** (training mode): anchors are matched to the ground truth by IoU
(:class:`~minicnn.ops.Matcher`, positive >= ``fg_iou_thresh`` (0.7), negative <
``bg_iou_thresh`` (0.3), and every gt box's best anchors positive too); a random batch of
``batch_size_per_image`` (256) anchors per image, at most ``positive_fraction`` (0.5)
positives (:class:`~minicnn.ops.BalancedPositiveNegativeSampler`, minicnn's generator);
``loss_objectness`` = binary cross-entropy with logits, mean over the sampled anchors;
``loss_rpn_box_reg`` = smooth L1 (beta 1/9) over the sampled positives' offsets, summed
and divided by the number of sampled anchors.

RPNHead's keys are torchvision's (version 2): ``conv.0.0.weight`` (a
:class:`~minicnn.ops.Conv2dNormActivation` per conv layer), ``cls_logits.weight``,
``bbox_pred.weight``; the released checkpoints' ``conv.weight`` loads too.

NOTE, where minicnn departs from torchvision:

* Among equal logits the per-level top-n keeps the lower anchor index first (torch's
  ``topk`` leaves that order unspecified).
* An image without boxes during training matches no anchor: its targets are zeros in the
  anchors' dtype (torchvision's are float32 whatever the model's dtype).

RPNHead is plain PyTorch code (the tests run it on ``torch.nn``); the proposal and
target bookkeeping works on the arrays (NumPy or CuPy) behind the tensors, through
``minicnn.ops``, and the losses are tensors with gradients to the head.
"""
from __future__ import annotations

import numbers

import minicnn
from minicnn import nn
from minicnn.nn import functional as F
from minicnn import backend
from minicnn.ops import boxes as box_ops
# AnchorGenerator also importable from here, as from torchvision's rpn.py
from minicnn.ops.anchors import AnchorGenerator, ImageList  # noqa: F401
from minicnn.ops.boxes import _descending_order, _quiet
from minicnn.ops.coding import BalancedPositiveNegativeSampler, BoxCoder, Matcher
from minicnn.ops.misc import Conv2dNormActivation

__all__ = ["RPNHead", "RegionProposalNetwork", "concat_box_prediction_layers",
           "permute_and_flatten"]


class RPNHead(nn.Module):
    """The RPN's head: ``conv_depth`` 3x3 convolutions + ReLU (shared by all levels), then
    a 1x1 convolution to ``num_anchors`` objectness logits and one to ``4·num_anchors``
    box offsets per position. Weights start N(0, 0.01²), biases 0.

    Forward: a list of (N, in_channels, H_i, W_i) maps -> (list of (N, A, H_i, W_i)
    logits, list of (N, 4A, H_i, W_i) offsets).
    """

    _version = 2

    def __init__(self, in_channels, num_anchors, conv_depth=1):
        super().__init__()
        convs = []
        for _ in range(conv_depth):
            convs.append(Conv2dNormActivation(in_channels, in_channels, kernel_size=3,
                                              norm_layer=None))
        self.conv = nn.Sequential(*convs)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)

        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:
                    nn.init.constant_(layer.bias, 0)

    def _upgrade_state_dict(self, state_dict, prefix):
        # version 1 (the released Faster/Mask R-CNN weights) held one bare Conv2d: conv.weight
        for kind in ("weight", "bias"):
            old, new = f"{prefix}conv.{kind}", f"{prefix}conv.0.0.{kind}"
            if old in state_dict and new not in state_dict:
                state_dict[new] = state_dict.pop(old)

    def forward(self, x):
        logits = []
        bbox_reg = []
        for feature in x:
            t = self.conv(feature)
            logits.append(self.cls_logits(t))
            bbox_reg.append(self.bbox_pred(t))
        return logits, bbox_reg


def permute_and_flatten(layer, N, A, C, H, W):
    """(N, A·C, H, W) -> (N, H·W·A, C): rows in the anchors' order (position, then
    anchor)."""
    layer = layer.view(N, -1, C, H, W)
    layer = layer.permute(0, 3, 4, 1, 2)          # (N, H, W, A, C)
    layer = layer.reshape(N, -1, C)
    return layer


def concat_box_prediction_layers(box_cls, box_regression):
    """The heads' per-level outputs as two tables over all anchors of all images, image
    by image and, within an image, level by level: (N·ΣH_iW_iA, C) class logits and
    (N·ΣH_iW_iA, 4) offsets (C = 1 for the RPN)."""
    box_cls_flattened = []
    box_regression_flattened = []
    for box_cls_per_level, box_regression_per_level in zip(box_cls, box_regression):
        N, AxC, H, W = box_cls_per_level.shape
        Ax4 = box_regression_per_level.shape[1]
        A = Ax4 // 4
        C = AxC // A
        box_cls_flattened.append(permute_and_flatten(box_cls_per_level, N, A, C, H, W))
        box_regression_flattened.append(
            permute_and_flatten(box_regression_per_level, N, A, 4, H, W))
    # levels side by side within each image, as the anchors are generated
    box_cls = minicnn.cat(box_cls_flattened, dim=1).flatten(0, -2)
    box_regression = minicnn.cat(box_regression_flattened, dim=1).reshape(-1, 4)
    return box_cls, box_regression


class RegionProposalNetwork(nn.Module):
    """Region proposals from feature maps, and the RPN's losses in training mode.

    Args:
        anchor_generator: an :class:`~minicnn.ops.AnchorGenerator` (one entry per level).
        head: an :class:`RPNHead` (or a module with its forward).
        fg_iou_thresh, bg_iou_thresh: anchors with IoU >= fg are positive, < bg negative.
        batch_size_per_image, positive_fraction: the sampled anchors per image.
        pre_nms_top_n, post_nms_top_n: dicts ``{"training": int, "testing": int}``.
        nms_thresh: IoU threshold of the per-level NMS.
        score_thresh: proposals with an objectness probability below it are dropped.

    Forward ``(images, features, targets=None)``: ``images`` an
    :class:`~minicnn.ops.ImageList`, ``features`` an ordered dict of maps (every level
    is used), ``targets`` one dict with ``"boxes"`` (K, 4) per image (training).
    Returns ``(boxes, losses)``: a list of (P_i, 4) proposals per image (Tensors without
    gradient, xyxy in the batch's pixels, by decreasing score) and a dict with
    ``loss_objectness`` and ``loss_rpn_box_reg`` (training mode; empty in eval mode).
    """

    def __init__(self, anchor_generator, head, fg_iou_thresh, bg_iou_thresh,
                 batch_size_per_image, positive_fraction, pre_nms_top_n, post_nms_top_n,
                 nms_thresh, score_thresh=0.0):
        super().__init__()
        op = "RegionProposalNetwork"
        for name, value in (("pre_nms_top_n", pre_nms_top_n),
                            ("post_nms_top_n", post_nms_top_n)):
            if not hasattr(value, "keys") or not {"training", "testing"} <= set(value.keys()) \
                    or not all(isinstance(value[k], numbers.Integral) and value[k] >= 0
                               for k in ("training", "testing")):
                raise ValueError(f"{op}: {name} must be a dict {{'training': int, 'testing': "
                                 f"int}} of non-negative counts, got {value!r}")
        for name, value in (("nms_thresh", nms_thresh), ("score_thresh", score_thresh)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{op}: {name} must be a number, got {value!r}")
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))

        # training
        self.box_similarity = box_ops.box_iou
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh,
                                        allow_low_quality_matches=True)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image,
                                                             positive_fraction)
        # proposals
        self._pre_nms_top_n = dict(pre_nms_top_n)
        self._post_nms_top_n = dict(post_nms_top_n)
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = 1e-3

    def pre_nms_top_n(self):
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self):
        return self._post_nms_top_n["training" if self.training else "testing"]

    def assign_targets_to_anchors(self, anchors, targets):
        """Per image: (A,) labels (1 positive, 0 negative, -1 ignored, in the anchors'
        dtype) and (A, 4) the gt box matched to each anchor (gt 0 where none is)."""
        labels, matched_gt_boxes = [], []
        for anchors_per_image, targets_per_image in zip(anchors, targets):
            a = _array(anchors_per_image)
            xp = backend.get_array_module(a)
            gt_boxes = _array(targets_per_image["boxes"])
            if gt_boxes.size == 0:
                # an image of background only: every anchor is a negative
                matched = xp.zeros(a.shape, dtype=a.dtype)
                labels_per_image = xp.zeros((a.shape[0],), dtype=a.dtype)
            else:
                match_quality_matrix = self.box_similarity(gt_boxes, a)
                matched_idxs = self.proposal_matcher(match_quality_matrix)
                # -1 and -2 read gt 0 (their targets are never used)
                matched = gt_boxes[xp.clip(matched_idxs, 0, None)]
                labels_per_image = (matched_idxs >= 0).astype(a.dtype)
                labels_per_image[matched_idxs == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
                labels_per_image[matched_idxs == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1
            labels.append(minicnn.as_tensor(labels_per_image))
            matched_gt_boxes.append(minicnn.as_tensor(matched))
        return labels, matched_gt_boxes

    def _get_top_n_idx(self, objectness, num_anchors_per_level):
        """(N, K) column indices of the ``pre_nms_top_n`` highest logits of each level
        (fewer on a level with fewer anchors), level by level, each by decreasing logit."""
        xp = backend.get_array_module(objectness)
        r, offset = [], 0
        for num_anchors in num_anchors_per_level:
            ob = objectness[:, offset:offset + num_anchors]
            pre_nms_top_n = min(self.pre_nms_top_n(), num_anchors)
            r.append(_descending_order(ob)[:, :pre_nms_top_n] + offset)
            offset += num_anchors
        return xp.concatenate(r, axis=1)

    def filter_proposals(self, proposals, objectness, image_shapes, num_anchors_per_level):
        """``proposals`` (N, ΣA, 4) decoded anchors and ``objectness`` (N·ΣA, 1) logits ->
        (boxes, scores): per image a (P, 4) Tensor and a (P,) Tensor of probabilities."""
        p = _array(proposals)
        xp = backend.get_array_module(p)
        num_images = p.shape[0]
        ob = _array(objectness).reshape(num_images, -1)            # no gradient here
        levels = xp.concatenate([xp.full((n,), idx, dtype=xp.int64)
                                 for idx, n in enumerate(num_anchors_per_level)])
        top_n_idx = self._get_top_n_idx(ob, num_anchors_per_level)       # (N, K)
        batch_idx = xp.arange(num_images)[:, None]
        ob = ob[batch_idx, top_n_idx]
        lvls = levels[top_n_idx]
        p = p[batch_idx, top_n_idx]
        with _quiet(xp):                            # exp overflow gives probability 0
            objectness_prob = 1 / (1 + xp.exp(-ob))

        final_boxes, final_scores = [], []
        for boxes, scores, lvl, img_shape in zip(p, objectness_prob, lvls, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, img_shape)
            keep = box_ops.remove_small_boxes(boxes, self.min_size)
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            # >= (torchvision keeps it for backward compatibility)
            keep = xp.nonzero(scores >= self.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = box_ops.batched_nms(boxes, scores, lvl, self.nms_thresh)
            keep = keep[:self.post_nms_top_n()]
            final_boxes.append(minicnn.as_tensor(boxes[keep]))
            final_scores.append(minicnn.as_tensor(scores[keep]))
        return final_boxes, final_scores

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        """(loss_objectness, loss_rpn_box_reg) over the sampled anchors (see the module
        docstring). ``objectness`` (N·ΣA, 1) and ``pred_bbox_deltas`` (N·ΣA, 4) Tensors;
        ``labels`` and ``regression_targets`` per image."""
        labels = [_array(v) for v in labels]
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        xp = backend.get_array_module(labels[0])
        sampled_pos_inds = xp.nonzero(xp.concatenate([_array(m) for m in sampled_pos]))[0]
        sampled_neg_inds = xp.nonzero(xp.concatenate([_array(m) for m in sampled_neg]))[0]
        sampled_inds = xp.concatenate([sampled_pos_inds, sampled_neg_inds])

        objectness = objectness.flatten()
        dtype = objectness.dtype
        labels = xp.concatenate(labels).astype(dtype)
        regression_targets = xp.concatenate([_array(t) for t in regression_targets])

        box_loss = F.smooth_l1_loss(
            pred_bbox_deltas[sampled_pos_inds],
            minicnn.as_tensor(regression_targets[sampled_pos_inds].astype(dtype)),
            beta=1 / 9, reduction="sum") / sampled_inds.shape[0]
        objectness_loss = F.binary_cross_entropy_with_logits(
            objectness[sampled_inds], minicnn.as_tensor(labels[sampled_inds]))
        return objectness_loss, box_loss

    def forward(self, images, features, targets=None):
        op = type(self).__name__
        if not isinstance(images, ImageList):
            raise TypeError(f"{op}: images must be an ImageList (the padded batch and its "
                            f"image sizes), got {type(images).__name__}")
        if not hasattr(features, "values"):
            raise TypeError(f"{op}: features must be an ordered dict of (N, C, H, W) maps, "
                            f"got {type(features).__name__}")
        if self.training:
            if targets is None:
                raise ValueError(f"{op}: targets should not be None in training mode (one "
                                 "dict with 'boxes' per image)")
            if len(targets) != len(images.image_sizes):
                raise ValueError(f"{op}: {len(targets)} targets for "
                                 f"{len(images.image_sizes)} images")
        features = list(features.values())
        objectness, pred_bbox_deltas = self.head(features)
        anchors = self.anchor_generator(images, features)

        num_images = len(anchors)
        num_anchors_per_level = [int(o.shape[1] * o.shape[2] * o.shape[3]) for o in objectness]
        objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness,
                                                                    pred_bbox_deltas)
        # the proposals carry no gradient back to the offsets
        proposals = self.box_coder.decode(_array(pred_bbox_deltas),
                                          [_array(a) for a in anchors])
        proposals = proposals.reshape(num_images, -1, 4)
        boxes, scores = self.filter_proposals(proposals, objectness, images.image_sizes,
                                              num_anchors_per_level)

        losses = {}
        if self.training:
            labels, matched_gt_boxes = self.assign_targets_to_anchors(anchors, targets)
            regression_targets = self.box_coder.encode(matched_gt_boxes, anchors)
            loss_objectness, loss_rpn_box_reg = self.compute_loss(
                objectness, pred_bbox_deltas, labels, regression_targets)
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
        return boxes, losses


def _array(value):
    """The backend array behind a Tensor (detached), or the value itself."""
    return value.array if isinstance(value, minicnn.Tensor) else minicnn.as_tensor(value).array
