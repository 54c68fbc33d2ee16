"""The two-stage detector's frame, as torchvision's ``models/detection/generalized_rcnn.py``:
:class:`GeneralizedRCNN`, which Faster R-CNN and Mask R-CNN fill in.

One forward pass, in four stages::

    images (list of (C, H_i, W_i)) --transform--> ImageList (N, C, H', W') + image sizes
        --backbone--> features (an ordered dict of maps; a single map becomes {'0': map})
        --rpn--> proposals (per image (P_i, 4)) + the RPN's losses
        --roi_heads--> detections (per image a dict) + the heads' losses
        --transform.postprocess--> boxes (and masks) back in each original image's pixels

Training mode returns one dict of losses (the heads', then the RPN's: ``loss_classifier``,
``loss_box_reg``, [``loss_mask``,] ``loss_objectness``, ``loss_rpn_box_reg``); eval mode
a list of dicts, one per image (``boxes``, ``labels``, ``scores``[, ``masks``]).

Targets are checked as torchvision checks them, with errors that name the class: in
training they are required; each ``boxes`` is a (K, 4) float tensor (K may be 0); after
resizing every box must have x2 > x1 and y2 > y1.
"""
from __future__ import annotations

from collections import OrderedDict

import minicnn
from minicnn import nn

__all__ = ["GeneralizedRCNN"]


class GeneralizedRCNN(nn.Module):
    """transform -> backbone -> rpn -> roi_heads -> postprocess.

    Args:
        backbone: images (N, C, H, W) -> a map or an ordered dict of maps.
        rpn: a :class:`~minicnn.models.detection.rpn.RegionProposalNetwork`.
        roi_heads: ``(features, proposals, image_sizes, targets) -> (detections, losses)``.
        transform: a :class:`~minicnn.models.detection.transform.GeneralizedRCNNTransform`.
    """

    def __init__(self, backbone, rpn, roi_heads, transform):
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads

    def eager_outputs(self, losses, detections):
        if self.training:
            return losses
        return detections

    def forward(self, images, targets=None):
        name = type(self).__name__
        if self.training:
            if targets is None:
                raise ValueError(f"{name}: targets should not be None in training mode (one "
                                 "dict with 'boxes' and 'labels' per image)")
        if targets is not None:
            _check_targets(name, targets)

        if not isinstance(images, (list, tuple)) and getattr(images, "ndim", 0) != 4:
            raise ValueError(f"{name}: expected images as a list of (C, H, W) tensors, got "
                             f"{type(images).__name__} of shape {getattr(images, 'shape', None)}")
        original_image_sizes = []
        for img in images:
            shape = getattr(img, "shape", ())
            if len(shape) != 3:
                raise ValueError(f"{name}: expected each image to be a (C, H, W) tensor, got "
                                 f"shape {tuple(shape)}")
            original_image_sizes.append((int(shape[-2]), int(shape[-1])))

        images, targets = self.transform(images, targets)

        # boxes that resizing left (or that were) empty or reversed
        if targets is not None:
            for target_idx, target in enumerate(targets):
                boxes = minicnn.as_tensor(target["boxes"]).array
                degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(axis=1)
                if bool(degenerate.any()):
                    first = int(degenerate.nonzero()[0][0])
                    raise ValueError(f"{name}: all bounding boxes should have positive height "
                                     f"and width; found invalid box {boxes[first].tolist()} "
                                     f"for target at index {target_idx}")

        features = self.backbone(images.tensors)
        if isinstance(features, minicnn.Tensor):
            features = OrderedDict([("0", features)])
        proposals, proposal_losses = self.rpn(images, features, targets)
        detections, detector_losses = self.roi_heads(features, proposals, images.image_sizes,
                                                     targets)
        detections = self.transform.postprocess(detections, images.image_sizes,
                                                original_image_sizes)

        losses = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        return self.eager_outputs(losses, detections)


def _check_targets(name, targets):
    if not isinstance(targets, (list, tuple)):
        raise TypeError(f"{name}: targets must be a list of dicts (one per image), got "
                        f"{type(targets).__name__}")
    for i, target in enumerate(targets):
        if not hasattr(target, "keys") or "boxes" not in target:
            raise ValueError(f"{name}: target {i} must be a dict with 'boxes' (K, 4), got "
                             f"{type(target).__name__}"
                             + (f" with keys {sorted(target.keys())}"
                                if hasattr(target, "keys") else ""))
        boxes = target["boxes"]
        if not hasattr(boxes, "shape") or not hasattr(boxes, "dtype"):
            raise TypeError(f"{name}: expected target boxes to be a tensor of shape (K, 4), "
                            f"got {type(boxes).__name__} for target {i}")
        if len(boxes.shape) != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"{name}: expected target boxes to be a tensor of shape (K, 4), "
                             f"got shape {tuple(boxes.shape)} for target {i}")
        if minicnn.as_tensor(boxes).dtype.kind != "f":
            raise TypeError(f"{name}: target boxes must be of a floating-point type, got "
                            f"dtype {boxes.dtype} for target {i}")
        if "labels" in target:
            labels = minicnn.as_tensor(target["labels"])
            if labels.ndim != 1 or labels.shape[0] != boxes.shape[0] \
                    or labels.dtype.kind not in "iu":
                raise ValueError(f"{name}: target labels must be ({boxes.shape[0]},) integers, "
                                 f"one per box, got shape {tuple(labels.shape)} and dtype "
                                 f"{labels.dtype} for target {i}")
