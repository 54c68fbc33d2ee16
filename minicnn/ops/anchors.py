"""Anchors and default boxes, as ``torchvision.models.detection.anchor_utils``:
``AnchorGenerator`` (Faster R-CNN's RPN anchors, Ren et al. 2015) and
``DefaultBoxGenerator`` (SSD's default boxes, Liu et al. 2016), with the ``ImageList``
that carries a padded batch and the sizes of its images
(``torchvision.models.detection.image_list``).

Both are Modules without parameters: ``forward(image_list, feature_maps)`` returns, for
each image of the batch, one (A, 4) array of xyxy boxes in the batch's pixels, the
feature maps' boxes one after the other, each map's in row-major order of its positions
and, at one position, in the generator's order of shapes. So the k-th anchor lines up
with the k-th prediction of a head that flattens (N, A·4, H, W) map by map as
torchvision's heads do. They take the dtype and device of the first feature map and
return Tensors when it is a Tensor (arrays otherwise); no gradient.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..nn import Module

__all__ = ["ImageList", "AnchorGenerator", "DefaultBoxGenerator"]


class ImageList:
    """A batch of images padded to one size, and the size of each image before padding,
    as ``torchvision.models.detection.image_list.ImageList``.

    ``tensors``: (N, C, H, W); ``image_sizes``: N (height, width) pairs.
    """

    def __init__(self, tensors, image_sizes):
        shape = getattr(tensors, "shape", None)
        if shape is None or len(shape) < 2:
            raise ValueError(f"ImageList: tensors must be an (N, C, H, W) batch, got "
                             f"{type(tensors).__name__} of shape {shape}")
        sizes = [tuple(int(v) for v in size) for size in image_sizes]
        if any(len(size) != 2 for size in sizes):
            raise ValueError(f"ImageList: image_sizes must be (height, width) pairs, got "
                             f"{list(image_sizes)!r}")
        self.tensors = tensors
        self.image_sizes = sizes

    def to(self, device):
        """The same batch on ``device`` (``tensors`` must be a Tensor)."""
        return ImageList(self.tensors.to(device), self.image_sizes)

    def __repr__(self):
        return (f"ImageList(tensors of shape {tuple(self.tensors.shape)}, image_sizes="
                f"{self.image_sizes})")


class AnchorGenerator(Module):
    """Anchors of several sizes and aspect ratios at every position of each feature map,
    as torchvision's ``AnchorGenerator``.

    ``sizes[i]`` and ``aspect_ratios[i]`` belong to feature map i (a flat tuple of sizes
    means one size per map; a flat tuple of ratios is shared by all maps). Map i gets
    ``len(sizes[i]) · len(aspect_ratios[i])`` anchors per position.

    Base anchors, centred on (0, 0), for size s and ratio r = height / width::

        w = s / sqrt(r),  h = s · sqrt(r),  anchor = round([-w, -h, w, h] / 2)

    computed in float32 and rounded half to even, as torchvision: size 128 with ratio 0.5
    gives [-91, -45, 91, 45]. They are ordered ratio-major (all sizes of the first ratio
    first). A map of GH×GW positions over an H×W batch has strides
    SH = H // GH, SW = W // GW (integer division), and its anchors are the base anchors
    shifted by (x·SW, y·SH) for every position (y, x) -- the anchor centres sit on the
    positions' top-left pixels, not at their centres, as in torchvision.

    Example: the RPN of Faster R-CNN on a 600×1000 image with a stride-16 VGG map (37×62)
    has 37 · 62 · 9 = 20,646 anchors.
    """

    def __init__(self, sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),)):
        super().__init__()
        op = "AnchorGenerator"
        if not isinstance(sizes, (list, tuple)) or not sizes:
            raise ValueError(f"{op}: sizes must be a non-empty tuple (of tuples) of sizes, got "
                             f"{sizes!r}")
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((s,) for s in sizes)
        if not isinstance(aspect_ratios, (list, tuple)) or not aspect_ratios:
            raise ValueError(f"{op}: aspect_ratios must be a non-empty tuple (of tuples) of "
                             f"ratios, got {aspect_ratios!r}")
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (aspect_ratios,) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"{op}: sizes and aspect_ratios must have one entry per feature "
                             f"map; got {len(sizes)} sizes and {len(aspect_ratios)} "
                             "aspect_ratios")
        for name, groups in (("sizes", sizes), ("aspect_ratios", aspect_ratios)):
            for group in groups:
                if not group or any(isinstance(v, bool) or not isinstance(v, numbers.Real)
                                    or not v > 0 for v in group):
                    raise ValueError(f"{op}: {name} must hold positive numbers, got "
                                     f"{tuple(group)!r}")
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(a) for a in aspect_ratios)
        self.cell_anchors = [self.generate_anchors(s, a)
                             for s, a in zip(self.sizes, self.aspect_ratios)]

    @staticmethod
    def generate_anchors(scales, aspect_ratios, dtype=np.float32):
        """The zero-centred base anchors (len(aspect_ratios) · len(scales), 4), ratio-major,
        as host constants (built once from the constructor's numbers)."""
        scales = np.asarray(scales, dtype=dtype)
        h_ratios = np.sqrt(np.asarray(aspect_ratios, dtype=dtype))
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
        return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2)

    def num_anchors_per_location(self):
        """Anchors per position of each feature map."""
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def forward(self, image_list, feature_maps):
        op = "AnchorGenerator"
        grid_sizes, (height, width), xp, dtype, device = _geometry(op, image_list, feature_maps)
        if len(grid_sizes) != len(self.cell_anchors):
            raise ValueError(f"{op}: got {len(grid_sizes)} feature maps but sizes and "
                             f"aspect_ratios describe {len(self.cell_anchors)}; there must be "
                             "one (sizes, aspect_ratios) entry per feature map")
        per_map = []
        for (gh, gw), base in zip(grid_sizes, self.cell_anchors):
            stride_h, stride_w = height // gh, width // gw
            base = backend.to_device(base.astype(dtype), device)            # (P, 4)
            shift_x = xp.arange(gw, dtype=xp.int64) * stride_w
            shift_y = xp.arange(gh, dtype=xp.int64) * stride_h
            shift_y, shift_x = xp.meshgrid(shift_y, shift_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)     # (GH·GW,)
            shifts = xp.stack((shift_x, shift_y, shift_x, shift_y), axis=1).astype(dtype)
            # every (position, base anchor) pair: the anchor moved to the position
            per_map.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
        anchors = xp.concatenate(per_map, axis=0)
        return _per_image(anchors, image_list, feature_maps)

    def extra_repr(self):
        return f"sizes={self.sizes}, aspect_ratios={self.aspect_ratios}"


class DefaultBoxGenerator(Module):
    """SSD's default boxes, as torchvision's ``DefaultBoxGenerator``.

    Feature map k (of m) has scale s_k and, at each position, the boxes (relative width,
    height) (s_k, s_k), (s'_k, s'_k) with s'_k = sqrt(s_k · s_{k+1}), and for every
    ratio a in ``aspect_ratios[k]`` the pair (s_k·sqrt(a), s_k/sqrt(a)) and its
    transpose: ``2 + 2·len(aspect_ratios[k])`` boxes per position.

    Scales: ``scales`` (m + 1 numbers) if given, else s_k = min_ratio + (max_ratio -
    min_ratio)·k/(m - 1) for k < m and s_m = 1 (for m = 1: [min_ratio, max_ratio]).
    torchvision's SSD300 passes [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05] (COCO's scales).

    Centres: the position (i, j) of a GH×GW map has the relative centre
    ((j + 0.5) / x_k, (i + 0.5) / y_k), with x_k = GW, y_k = GH, or with ``steps``
    x_k = W / steps[k], y_k = H / steps[k] for an H×W batch (SSD300's steps
    [8, 16, 32, 64, 100, 300]). ``clip`` clamps the relative widths and heights to [0, 1]
    (not the corners: a box may still reach outside the image). The relative boxes
    (cx, cy, w, h) become corners (cx ∓ w/2, cy ∓ h/2) scaled by (W, H).

    Arithmetic as torchvision's: the width-height pairs are float32 constants, centres are
    computed in float32 then cast to the feature maps' dtype.

    Example: SSD300 (aspect_ratios [[2], [2, 3], [2, 3], [2, 3], [2], [2]], maps 38, 19,
    10, 5, 3, 1) has [4, 6, 6, 6, 4, 4] boxes per position, 8,732 in all.
    """

    def __init__(self, aspect_ratios, min_ratio=0.15, max_ratio=0.9, scales=None, steps=None,
                 clip=True):
        super().__init__()
        op = "DefaultBoxGenerator"
        if not isinstance(aspect_ratios, (list, tuple)) or not aspect_ratios or not all(
                isinstance(r, (list, tuple)) for r in aspect_ratios):
            raise ValueError(f"{op}: aspect_ratios must be a non-empty list with one list of "
                             f"ratios per feature map, e.g. [[2], [2, 3]]; got {aspect_ratios!r}")
        for ratios in aspect_ratios:
            if any(isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0
                   for v in ratios):
                raise ValueError(f"{op}: aspect ratios must be positive numbers, got "
                                 f"{list(ratios)!r}")
        num_outputs = len(aspect_ratios)
        if steps is not None and len(steps) != num_outputs:
            raise ValueError(f"{op}: aspect_ratios and steps must have the same length (one "
                             f"entry per feature map); got {num_outputs} and {len(steps)}")
        if scales is None:
            if num_outputs > 1:
                span = max_ratio - min_ratio
                scales = [min_ratio + span * k / (num_outputs - 1.0) for k in range(num_outputs)]
                scales.append(1.0)
            else:
                scales = [min_ratio, max_ratio]
        elif len(scales) != num_outputs + 1:
            raise ValueError(f"{op}: scales must have one entry per feature map plus one (s'_k "
                             f"uses the next scale): expected {num_outputs + 1}, got "
                             f"{len(scales)}")
        self.aspect_ratios = [list(r) for r in aspect_ratios]
        self.steps = None if steps is None else list(steps)
        self.clip = bool(clip)
        self.scales = list(scales)
        self._wh_pairs = [self._wh_pairs_of(k) for k in range(num_outputs)]

    def _wh_pairs_of(self, k):
        """Map k's (relative width, height) pairs, (2 + 2·len(aspect_ratios[k]), 2) float32."""
        s_k = self.scales[k]
        s_prime = math.sqrt(self.scales[k] * self.scales[k + 1])
        pairs = [[s_k, s_k], [s_prime, s_prime]]
        for ratio in self.aspect_ratios[k]:
            root = math.sqrt(ratio)
            pairs += [[s_k * root, s_k / root], [s_k / root, s_k * root]]
        return np.asarray(pairs, dtype=np.float32)

    def num_anchors_per_location(self):
        """Default boxes per position of each feature map."""
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def forward(self, image_list, feature_maps):
        op = "DefaultBoxGenerator"
        grid_sizes, (height, width), xp, dtype, device = _geometry(op, image_list, feature_maps)
        if len(grid_sizes) != len(self._wh_pairs):
            raise ValueError(f"{op}: got {len(grid_sizes)} feature maps but aspect_ratios has "
                             f"{len(self._wh_pairs)} entries, one per feature map")
        per_map = []
        for k, (gh, gw) in enumerate(grid_sizes):
            if self.steps is None:
                y_k, x_k = gh, gw
            else:
                y_k, x_k = height / self.steps[k], width / self.steps[k]
            # centres in float32 first (torch's arange + 0.5 is float32), then the dtype
            cx = ((xp.arange(gw, dtype=xp.float32) + 0.5) / x_k).astype(dtype)
            cy = ((xp.arange(gh, dtype=xp.float32) + 0.5) / y_k).astype(dtype)
            cy, cx = xp.meshgrid(cy, cx, indexing="ij")
            centres = xp.stack((cx.reshape(-1), cy.reshape(-1)), axis=1)     # (GH·GW, 2)
            wh = self._wh_pairs[k].clip(0, 1) if self.clip else self._wh_pairs[k]
            wh = backend.to_device(wh, device).astype(dtype)                 # (P, 2)
            p = wh.shape[0]
            centres = xp.repeat(centres, p, axis=0)                           # (GH·GW·P, 2)
            wh = xp.tile(wh, (gh * gw, 1))
            per_map.append(xp.concatenate((centres, wh), axis=1))             # cx, cy, w, h
        boxes = xp.concatenate(per_map, axis=0)
        scale = xp.asarray([width, height], dtype=dtype)
        corners = xp.concatenate(((boxes[:, :2] - 0.5 * boxes[:, 2:]) * scale,
                                  (boxes[:, :2] + 0.5 * boxes[:, 2:]) * scale), axis=1)
        return _per_image(corners, image_list, feature_maps)

    def extra_repr(self):
        return (f"aspect_ratios={self.aspect_ratios}, clip={self.clip}, scales={self.scales}, "
                f"steps={self.steps}")


# -------------------------------------------------------------------------------- helpers

def _geometry(op, image_list, feature_maps):
    """(grid sizes, batch (H, W), array module, dtype, device) from the forward's inputs."""
    if not isinstance(image_list, ImageList):
        raise TypeError(f"{op}: image_list must be an ImageList (the padded batch and its "
                        f"image sizes), got {type(image_list).__name__}")
    if isinstance(feature_maps, (Tensor,)) or not isinstance(feature_maps, (list, tuple)) \
            or not feature_maps:
        raise TypeError(f"{op}: feature_maps must be a non-empty list of (N, C, H, W) maps, "
                        f"got {type(feature_maps).__name__}")
    grid_sizes = []
    for i, fmap in enumerate(feature_maps):
        shape = getattr(fmap, "shape", None)
        if shape is None or len(shape) < 2 or shape[-2] < 1 or shape[-1] < 1:
            raise ValueError(f"{op}: feature_maps[{i}] must be an (N, C, H, W) map with H, W "
                             f">= 1, got shape {shape}")
        grid_sizes.append((int(shape[-2]), int(shape[-1])))
    height, width = (int(v) for v in image_list.tensors.shape[-2:])
    first = feature_maps[0]
    array = first.array if isinstance(first, Tensor) else first
    dtype = array.dtype if array.dtype.kind == "f" else backend.get_default_dtype()
    return grid_sizes, (height, width), backend.get_array_module(array), dtype, \
        backend.device_of(array)


def _per_image(boxes, image_list, feature_maps):
    """One copy of ``boxes`` per image of the batch, as Tensors when the maps are."""
    as_tensor = isinstance(feature_maps[0], Tensor)
    return [Tensor._wrap(boxes.copy()) if as_tensor else boxes.copy()
            for _ in image_list.image_sizes]
