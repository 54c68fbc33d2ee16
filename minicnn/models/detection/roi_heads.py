"""The second stage of Faster R-CNN and Mask R-CNN: what happens to the region proposals,
with torchvision's ``models/detection/roi_heads.py`` as the reference for every rule.

Girshick, "Fast R-CNN" (ICCV 2015, arXiv 1504.08083); Ren, He, Girshick & Sun, "Faster
R-CNN" (NeurIPS 2015, arXiv 1506.01497); He, Gkioxari, Dollár & Girshick, "Mask R-CNN"
(ICCV 2017, arXiv 1703.06870).

**Training** (``select_training_samples``), per image:

1. the ground-truth boxes join the proposals (so every object has at least one
   well-placed region to learn from);
2. each proposal is matched to the gt box it overlaps most (:class:`~minicnn.ops.Matcher`
   at 0.5 / 0.5, no low-quality matches): IoU >= 0.5 takes that gt's label, below 0.5
   is background (label 0);
3. 512 proposals are drawn, at most a quarter of them positive
   (:class:`~minicnn.ops.BalancedPositiveNegativeSampler`);
4. each drawn proposal's regression target is its gt box coded relative to it
   (:class:`~minicnn.ops.BoxCoder`, weights (10, 10, 5, 5)).

The drawn proposals are pooled (``box_roi_pool``, 7x7 RoIAlign on the FPN level that
suits their size), go through ``box_head`` and ``box_predictor`` (one score per class and
4 offsets per class) and into :func:`fastrcnn_loss`: cross-entropy over all drawn
proposals plus smooth-L1 (beta 1/9) on the positives' offsets *for their gt class*,
summed and divided by the number of drawn proposals.

Mask R-CNN adds a branch on the positives only: 14x14 RoIAlign, four 3x3 convolutions, a
2x2 transposed convolution to 28x28 and one mask logit map per class; the target is the
gt mask cropped to the proposal and resampled to 28x28 (:func:`project_masks_on_boxes`),
the loss binary cross-entropy on the channel of the gt class only (:func:`maskrcnn_loss`:
classes do not compete for pixels).

**Inference** (``postprocess_detections``), per image: softmax scores; every proposal
decoded once per class and clipped to the image; the background column dropped; each
(proposal, class) pair a candidate; candidates scoring <= 0.05 dropped, then boxes
thinner than 0.01 pixel, then non-maximum suppression per class at IoU 0.5; the 100 best
kept. Mask R-CNN then pools the detected boxes and keeps, for each, the sigmoid of the
mask channel of its predicted class (:func:`maskrcnn_inference`); the transform pastes
these 28x28 maps into the image (:func:`paste_masks_in_image`).

The code is plain PyTorch on ``import minicnn``, with the box operations imported by name
from :mod:`minicnn.ops`, so the tests run this very source on torch with torch versions
of those operations put in their place.

NOTE, where minicnn departs from torchvision: the keypoint branch (Keypoint R-CNN) is not
built (its arguments must stay None); torchvision's asserts on the targets are errors
naming RoIHeads; the sampler draws from minicnn's generator, not torch's.
"""
from __future__ import annotations

import minicnn
from minicnn import nn
from minicnn.nn import functional as F
from minicnn.ops import (BalancedPositiveNegativeSampler, BoxCoder, Matcher, batched_nms,
                         box_iou, clip_boxes_to_image, remove_small_boxes, roi_align)

__all__ = ["RoIHeads", "fastrcnn_loss", "maskrcnn_loss", "maskrcnn_inference",
           "project_masks_on_boxes", "paste_masks_in_image", "paste_mask_in_image",
           "expand_boxes", "expand_masks"]


# ====================================================================== losses

def fastrcnn_loss(class_logits, box_regression, labels, regression_targets):
    """Fast R-CNN's two losses over the drawn proposals of all images.

    Args:
        class_logits: (K, C) scores, C counting the background (class 0).
        box_regression: (K, 4·C) offsets, four per class.
        labels: a list of (K_i,) int64 labels per image (0 background), sum K_i = K.
        regression_targets: a list of (K_i, 4) coded gt boxes per image.

    Returns ``(classification_loss, box_loss)``: the mean cross-entropy, and
    ``Σ_positives smooth_l1(offsets of the gt class - target; beta=1/9) / K`` (summed over
    the 4 coordinates, divided by all K drawn proposals, positives or not).
    """
    labels = minicnn.cat(labels, dim=0)
    regression_targets = minicnn.cat(regression_targets, dim=0)
    classification_loss = F.cross_entropy(class_logits, labels)

    # the positives' offsets for their own class: row k of (P, C, 4), column labels[k]
    positive = labels > 0
    labels_pos = labels[positive]
    N, num_classes = class_logits.shape
    box_regression = box_regression.reshape(N, box_regression.shape[-1] // 4, 4)
    rows = minicnn.arange(labels_pos.shape[0], device=labels.device)
    box_loss = F.smooth_l1_loss(box_regression[positive][rows, labels_pos],
                                regression_targets[positive], beta=1 / 9, reduction="sum")
    box_loss = box_loss / labels.numel()
    return classification_loss, box_loss


def project_masks_on_boxes(gt_masks, boxes, matched_idxs, M):
    """Each proposal's target mask: its matched gt mask (``gt_masks`` (G, H, W)) cropped
    to the proposal (``boxes`` (K, 4) xyxy in the image's pixels) and resampled to M x M
    by RoIAlign (legacy alignment, adaptive sampling, as torchvision). Returns (K, M, M)
    in the boxes' dtype, values in [0, 1]."""
    matched_idxs = matched_idxs.to(dtype=boxes.dtype)
    rois = minicnn.cat([matched_idxs[:, None], boxes], dim=1)     # (K, 5)
    gt_masks = gt_masks[:, None].to(dtype=rois.dtype)             # (G, 1, H, W)
    return roi_align(gt_masks, rois, (M, M), 1.0)[:, 0]


def maskrcnn_loss(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs):
    """Mask R-CNN's mask loss: binary cross-entropy with logits, averaged over the
    pixels of every positive proposal, on the channel of its gt class alone.

    Args:
        mask_logits: (P, C, M, M) for the positives of all images.
        proposals: a list of (P_i, 4) positive proposals per image.
        gt_masks: a list of (G_i, H, W) gt masks per image (0/1).
        gt_labels: a list of (G_i,) gt labels per image.
        mask_matched_idxs: a list of (P_i,) indices of each positive's gt box.

    With no positive at all the loss is ``mask_logits.sum() * 0`` (a zero that still
    belongs to the graph), as torchvision.
    """
    discretization_size = mask_logits.shape[-1]
    labels = [gt_label[idxs] for gt_label, idxs in zip(gt_labels, mask_matched_idxs)]
    mask_targets = [project_masks_on_boxes(m, p, i, discretization_size)
                    for m, p, i in zip(gt_masks, proposals, mask_matched_idxs)]
    labels = minicnn.cat(labels, dim=0)
    mask_targets = minicnn.cat(mask_targets, dim=0)
    if mask_targets.numel() == 0:
        return mask_logits.sum() * 0
    rows = minicnn.arange(labels.shape[0], device=labels.device)
    return F.binary_cross_entropy_with_logits(mask_logits[rows, labels], mask_targets)


def maskrcnn_inference(x, labels):
    """The predicted masks: ``sigmoid`` of each detection's channel of its predicted
    class. ``x`` (D, C, M, M) mask logits of all images' detections, ``labels`` a list of
    (D_i,) labels per image; returns a tuple of (D_i, 1, M, M) probabilities per image."""
    mask_prob = x.sigmoid()
    num_masks = x.shape[0]
    boxes_per_image = [label.shape[0] for label in labels]
    labels = minicnn.cat(labels)
    index = minicnn.arange(num_masks, device=labels.device)
    mask_prob = mask_prob[index, labels][:, None]                 # (D, 1, M, M)
    return mask_prob.split(boxes_per_image, dim=0)


# ================================================================ pasting masks

def expand_masks(mask, padding):
    """``mask`` (..., M, M) padded with ``padding`` zeros on every side, and the factor
    (M + 2·padding) / M by which its box must grow to stay aligned with it."""
    M = mask.shape[-1]
    scale = float(M + 2 * padding) / M
    return F.pad(mask, (padding,) * 4), scale


def expand_boxes(boxes, scale):
    """xyxy ``boxes`` (K, 4) grown by ``scale`` about their centres."""
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    w_half = w_half * scale
    h_half = h_half * scale
    return minicnn.stack((x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half), dim=1)


def paste_mask_in_image(mask, box, im_h, im_w):
    """One M x M ``mask`` resized (bilinear, ``align_corners=False``) to its integer
    ``box`` (x1, y1, x2, y2, corners included: (x2 - x1 + 1) wide) and written into an
    ``im_h`` x ``im_w`` image of zeros, the parts outside the image cut off."""
    x1, y1, x2, y2 = (int(v) for v in box.tolist())
    # the box's pixels, both corners included (the legacy "+ 1" convention), at least one
    w = max(x2 - x1 + 1, 1)
    h = max(y2 - y1 + 1, 1)
    mask = F.interpolate(mask[None, None], size=(h, w), mode="bilinear",
                         align_corners=False)[0][0]
    im_mask = minicnn.zeros((im_h, im_w), dtype=mask.dtype, device=mask.device)
    x_0, x_1 = max(x1, 0), min(x2 + 1, im_w)
    y_0, y_1 = max(y1, 0), min(y2 + 1, im_h)
    im_mask[y_0:y_1, x_0:x_1] = mask[(y_0 - y1):(y_1 - y1), (x_0 - x1):(x_1 - x1)]
    return im_mask


def paste_masks_in_image(masks, boxes, img_shape, padding=1):
    """Per-box masks into full images, as torchvision's (its path without ONNX tracing).

    ``masks`` (D, 1, M, M) are first padded by ``padding`` pixels and ``boxes`` (D, 4)
    (xyxy, the image's pixels) grown to match (:func:`expand_masks`, :func:`expand_boxes`),
    so that the resized mask's border fades to 0 rather than being cut; the grown boxes are
    truncated to integers (toward zero, ``.to(int64)``) and each mask pasted with
    :func:`paste_mask_in_image`. Returns (D, 1, H, W), ``img_shape`` = (H, W).
    """
    masks, scale = expand_masks(masks, padding=padding)
    boxes = expand_boxes(boxes, scale).to(dtype=minicnn.int64)
    im_h, im_w = img_shape
    res = [paste_mask_in_image(m[0], b, im_h, im_w) for m, b in zip(masks, boxes)]
    if len(res) > 0:
        return minicnn.stack(res, dim=0)[:, None]
    return minicnn.zeros((0, 1, im_h, im_w), dtype=masks.dtype, device=masks.device)


# ===================================================================== the heads

class RoIHeads(nn.Module):
    """Fast R-CNN's box branch and, with the three mask modules, Mask R-CNN's mask branch
    (module docstring), with torchvision's arguments.

    Args:
        box_roi_pool: pools (K, C, 7, 7) features per box (``MultiScaleRoIAlign``).
        box_head: features -> representation (``TwoMLPHead``).
        box_predictor: representation -> ``(class_logits (K, C), box_regression
            (K, 4·C))`` (``FastRCNNPredictor``).
        fg_iou_thresh, bg_iou_thresh: the matcher's thresholds (0.5, 0.5).
        batch_size_per_image, positive_fraction: the sampler's (512, 0.25).
        bbox_reg_weights: the box coder's weights; None for (10, 10, 5, 5).
        score_thresh, nms_thresh, detections_per_img: inference (0.05, 0.5, 100).
        mask_roi_pool, mask_head, mask_predictor: Mask R-CNN's branch (all three or none).
        keypoint_roi_pool, keypoint_head, keypoint_predictor: not built in minicnn; must
            be None.

    ``forward(features, proposals, image_shapes, targets=None)``: ``features`` the
    backbone's dict of maps, ``proposals`` a list of (K_i, 4) boxes per image,
    ``image_shapes`` the (h, w) of each image as the backbone saw it. Returns
    ``(result, losses)``: in training mode ``result`` is empty and ``losses`` holds
    ``loss_classifier``, ``loss_box_reg`` (and ``loss_mask``); in eval mode ``losses`` is
    empty and ``result`` one dict per image of ``boxes``, ``labels``, ``scores`` (and
    ``masks`` (D, 1, 28, 28) probabilities).
    """

    def __init__(self, box_roi_pool, box_head, box_predictor,
                 # Faster R-CNN training
                 fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction,
                 bbox_reg_weights,
                 # Faster R-CNN inference
                 score_thresh, nms_thresh, detections_per_img,
                 # Mask R-CNN
                 mask_roi_pool=None, mask_head=None, mask_predictor=None,
                 keypoint_roi_pool=None, keypoint_head=None, keypoint_predictor=None):
        super().__init__()
        if any(m is not None for m in (keypoint_roi_pool, keypoint_head,
                                       keypoint_predictor)):
            raise NotImplementedError("RoIHeads: the keypoint branch (Keypoint R-CNN) is not "
                                      "built in minicnn; keypoint_roi_pool, keypoint_head "
                                      "and keypoint_predictor must be None")
        self.box_similarity = box_iou
        self.proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh,
                                        allow_low_quality_matches=False)
        self.fg_bg_sampler = BalancedPositiveNegativeSampler(batch_size_per_image,
                                                             positive_fraction)
        if bbox_reg_weights is None:
            bbox_reg_weights = (10.0, 10.0, 5.0, 5.0)
        self.box_coder = BoxCoder(bbox_reg_weights)

        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor

        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img

        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor

        self.keypoint_roi_pool = keypoint_roi_pool
        self.keypoint_head = keypoint_head
        self.keypoint_predictor = keypoint_predictor

    def has_mask(self):
        return (self.mask_roi_pool is not None and self.mask_head is not None
                and self.mask_predictor is not None)

    def has_keypoint(self):
        return False

    # ---------------------------------------------------------------- training
    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels):
        """Per image: the index of each proposal's matched gt box (0 for the unmatched)
        and its label (gt label, 0 background, -1 ignored)."""
        matched_idxs, labels = [], []
        for proposals_in_image, gt_boxes_in_image, gt_labels_in_image in zip(
                proposals, gt_boxes, gt_labels):
            n = proposals_in_image.shape[0]
            if gt_boxes_in_image.numel() == 0:
                # an image without objects: every proposal is background
                device = proposals_in_image.device
                clamped = minicnn.zeros((n,), dtype=minicnn.int64, device=device)
                labels_in_image = minicnn.zeros((n,), dtype=minicnn.int64, device=device)
            else:
                match_quality_matrix = box_iou(gt_boxes_in_image, proposals_in_image)
                matched = self.proposal_matcher(match_quality_matrix)     # (n,)
                clamped = matched.clamp(min=0)
                labels_in_image = gt_labels_in_image[clamped].to(dtype=minicnn.int64)
                labels_in_image[matched == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
                labels_in_image[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1
            matched_idxs.append(clamped)
            labels.append(labels_in_image)
        return matched_idxs, labels

    def subsample(self, labels):
        """Per image, a (K_i,) bool mask of the proposals the sampler drew.

        NOTE: torchvision returns the drawn indices (``where(pos | neg)``); a mask selects
        the same proposals in the same (increasing) order."""
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        return [(pos.to(dtype=minicnn.int64) + neg.to(dtype=minicnn.int64)) > 0
                for pos, neg in zip(sampled_pos, sampled_neg)]

    def add_gt_proposals(self, proposals, gt_boxes):
        return [minicnn.cat((proposal, gt_box)) for proposal, gt_box in zip(proposals,
                                                                            gt_boxes)]

    def check_targets(self, targets):
        if targets is None:
            raise ValueError("RoIHeads: targets should not be None in training mode")
        for i, t in enumerate(targets):
            if not isinstance(t, dict):
                raise TypeError(f"RoIHeads: each target must be a dict, got "
                                f"{type(t).__name__} for target {i}")
            keys = ("boxes", "labels", "masks") if self.has_mask() else ("boxes", "labels")
            for key in keys:
                if key not in t:
                    raise ValueError(f"RoIHeads: target {i} has no {key!r} (keys "
                                     f"{sorted(t)})")

    def select_training_samples(self, proposals, targets):
        """The drawn proposals per image (gt boxes included), the index of their matched
        gt, their labels and their regression targets."""
        self.check_targets(targets)
        dtype = proposals[0].dtype
        device = proposals[0].device
        gt_boxes = [minicnn.as_tensor(t["boxes"]).to(dtype=dtype) for t in targets]
        gt_labels = [minicnn.as_tensor(t["labels"]) for t in targets]

        proposals = self.add_gt_proposals(proposals, gt_boxes)
        matched_idxs, labels = self.assign_targets_to_proposals(proposals, gt_boxes,
                                                                gt_labels)
        sampled = self.subsample(labels)
        matched_gt_boxes = []
        for img_id in range(len(proposals)):
            drawn = sampled[img_id]
            proposals[img_id] = proposals[img_id][drawn]
            labels[img_id] = labels[img_id][drawn]
            matched_idxs[img_id] = matched_idxs[img_id][drawn]
            gt_boxes_in_image = gt_boxes[img_id]
            if gt_boxes_in_image.numel() == 0:
                # a dummy box for the background image's (unused) regression targets
                gt_boxes_in_image = minicnn.zeros((1, 4), dtype=dtype, device=device)
            matched_gt_boxes.append(gt_boxes_in_image[matched_idxs[img_id]])
        regression_targets = self.box_coder.encode(matched_gt_boxes, proposals)
        return proposals, matched_idxs, labels, regression_targets

    # --------------------------------------------------------------- inference
    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        """Boxes, scores and labels per image (module docstring, Inference)."""
        device = class_logits.device
        num_classes = class_logits.shape[-1]
        boxes_per_image = [boxes_in_image.shape[0] for boxes_in_image in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals)     # (K, C, 4)
        pred_scores = F.softmax(class_logits, -1)
        pred_boxes_list = pred_boxes.split(boxes_per_image, 0)
        pred_scores_list = pred_scores.split(boxes_per_image, 0)

        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, image_shape in zip(pred_boxes_list, pred_scores_list,
                                              image_shapes):
            boxes = clip_boxes_to_image(boxes, image_shape)
            labels = minicnn.arange(num_classes, device=device)
            labels = labels.view(1, -1).expand_as(scores)
            # no detections of the background class
            boxes, scores, labels = boxes[:, 1:], scores[:, 1:], labels[:, 1:]
            # every (proposal, class) pair is a candidate of its own, row-major
            boxes = boxes.reshape(-1, 4)
            scores = scores.reshape(-1)
            labels = labels.reshape(-1)
            confident = scores > self.score_thresh
            boxes, scores, labels = boxes[confident], scores[confident], labels[confident]
            keep = remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)
            keep = keep[:self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

    # ----------------------------------------------------------------- forward
    def forward(self, features, proposals, image_shapes, targets=None):
        if targets is not None:
            for i, t in enumerate(targets):
                if not isinstance(t, dict) or "boxes" not in t or "labels" not in t:
                    raise ValueError(f"RoIHeads: target {i} must be a dict with 'boxes' and "
                                     f"'labels'")
                if t["boxes"].dtype not in (minicnn.float16, minicnn.float32,
                                            minicnn.float64):
                    raise TypeError(f"RoIHeads: target boxes must be of a floating-point "
                                    f"type, got {t['boxes'].dtype} for target {i}")
                if t["labels"].dtype != minicnn.int64:
                    raise TypeError(f"RoIHeads: target labels must be of type int64, got "
                                    f"{t['labels'].dtype} for target {i}")

        if self.training:
            proposals, matched_idxs, labels, regression_targets = \
                self.select_training_samples(proposals, targets)
        else:
            labels = regression_targets = matched_idxs = None

        box_features = self.box_roi_pool(features, proposals, image_shapes)
        box_features = self.box_head(box_features)
        class_logits, box_regression = self.box_predictor(box_features)

        result, losses = [], {}
        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression,
                                                          labels, regression_targets)
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        else:
            boxes, scores, labels = self.postprocess_detections(
                class_logits, box_regression, proposals, image_shapes)
            for i in range(len(boxes)):
                result.append({"boxes": boxes[i], "labels": labels[i], "scores": scores[i]})

        if self.has_mask():
            if self.training:
                # the mask branch learns from the positives only
                mask_proposals, pos_matched_idxs = [], []
                for img_id in range(len(proposals)):
                    pos = labels[img_id] > 0
                    mask_proposals.append(proposals[img_id][pos])
                    pos_matched_idxs.append(matched_idxs[img_id][pos])
            else:
                mask_proposals = [p["boxes"] for p in result]
                pos_matched_idxs = None

            mask_features = self.mask_roi_pool(features, mask_proposals, image_shapes)
            mask_features = self.mask_head(mask_features)
            mask_logits = self.mask_predictor(mask_features)

            if self.training:
                gt_masks = [minicnn.as_tensor(t["masks"]) for t in targets]
                gt_labels = [minicnn.as_tensor(t["labels"]) for t in targets]
                losses["loss_mask"] = maskrcnn_loss(mask_logits, mask_proposals, gt_masks,
                                                    gt_labels, pos_matched_idxs)
            else:
                labels = [r["labels"] for r in result]
                masks_probs = maskrcnn_inference(mask_logits, labels)
                for mask_prob, r in zip(masks_probs, result):
                    r["masks"] = mask_prob
        return result, losses
