"""Generated images with boxes, classes and instance masks: the shapes of
``ShapesSegmentation`` seen as objects to detect, so that detectors (YOLO, SSD) train and
are tested offline in minutes (``minicnn train --task detection --dataset shapes``).

The pictures are exactly ``ShapesSegmentation``'s for the same arguments: this data set
draws them with that class and reads each visible shape off its instance map.

Box convention (the one every detection transform here follows, as torchvision's
``transforms.v2`` geometry does): a box is ``(x1, y1, x2, y2)`` in pixel-edge
coordinates, pixel ``(row, col)`` covering ``[col, col + 1) x [row, row + 1)``. A mask
whose pixels fill columns 3..7 and rows 2..4 has the box ``(3, 2, 8, 5)``: width 5,
height 3, the number of pixels it spans. ``torchvision.ops.masks_to_boxes`` gives the
index of the last column and row instead (``(3, 2, 7, 4)``); add 1 to its ``x2, y2`` to
get these. Edges are what flips and resizes move exactly: flipping a W-wide image maps a
box ``[x1, x2)`` to ``[W - x2, W - x1)``, which is the flipped mask's box again.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..dataset import Dataset
from ..detection_transforms import Compose, Normalize, ToTensor
from .segmentation import ShapesSegmentation

__all__ = ["ShapesDetection"]


class ShapesDetection(Dataset):
    """``num_samples`` generated ``image_size`` x ``image_size`` images, each with 1 to 3
    shapes (``min_shapes``..``max_shapes``) to detect.

    ``num_classes`` counts the background: class 0 is background, class ``k >= 1`` is
    shape ``classes[k]`` (``num_classes=4``: background, square, disk, triangle; at most
    9). Sample ``i`` depends only on ``(seed, i)``: use another ``seed`` for a test set.
    The other arguments (``channels``, ``radius``, ``max_rotation``, ``noise``,
    ``max_covered``) are ``ShapesSegmentation``'s, and give the same pictures.

    A sample is ``(image, target)``. By default (``transforms=None``) ``image`` is a
    ``(C, H, W)`` float32 array normalised with the data set's ``mean`` and ``std``, and
    ``target`` a dict of NumPy arrays, one row per visible shape (K of them):

    * ``"boxes"``: ``(K, 4)`` float32 ``(x1, y1, x2, y2)``, the tight box of the shape's
      visible pixels in pixel-edge coordinates (see the module's docstring);
    * ``"labels"``: ``(K,)`` int64 classes in ``1..num_classes - 1``;
    * ``"masks"``: ``(K, H, W)`` uint8, 1 on the shape's visible pixels (left out with
      ``with_masks=False``).

    A later shape may cover part of an earlier one (at most ``max_covered`` of it): the
    box and mask are those of what is still seen. A shape with fewer than
    ``min_visible`` pixels left in view is dropped (its pixels stay in the picture).
    Batch with ``minicnn.data.detection_collate``.

    A joint ``transforms(image, target)`` (see ``minicnn.data.detection_transforms``)
    gets instead the stored picture -- ``(H, W, C)`` uint8 -- and a fresh copy of the
    target, and should end with ``ToTensor()`` and ``Normalize(ds.mean, ds.std)``.

    ``data`` (``(N, H, W, C)`` uint8), ``masks`` (``(N, H, W)`` semantic classes) and
    ``instances`` (``(N, H, W)``, 0 background, ``1..`` each drawn shape) are
    ``ShapesSegmentation``'s arrays; ``targets`` lists each sample's boxes and labels.
    """

    def __init__(self, num_samples=1000, image_size=64, num_classes=4, seed=0,
                 transforms=None, min_shapes=1, max_shapes=3, channels=3, radius=None,
                 max_rotation=0.0, noise=0.04, max_covered=0.3, min_visible=4,
                 with_masks=True):
        if not isinstance(min_visible, numbers.Integral) or isinstance(min_visible, bool) \
                or min_visible < 1:
            raise ValueError(f"ShapesDetection: min_visible must be an integer >= 1, got "
                             f"{min_visible!r}")
        try:
            shapes = ShapesSegmentation(num_samples, image_size, num_classes, channels, seed,
                                        None, min_shapes, max_shapes, radius, max_rotation,
                                        noise, max_covered)
        except ValueError as exc:       # the same checks, reported under this name
            raise ValueError(str(exc).replace("ShapesSegmentation:", "ShapesDetection:", 1)) \
                from None
        self._shapes = shapes
        self.num_samples, self.image_size = shapes.num_samples, shapes.image_size
        self.num_classes, self.channels, self.seed = shapes.num_classes, shapes.channels, \
            shapes.seed
        self.classes, self.mean, self.std = list(shapes.classes), shapes.mean, shapes.std
        self.data, self.masks, self.instances = shapes.data, shapes.masks, shapes.instances
        self.transforms, self.min_visible = transforms, int(min_visible)
        self.with_masks = bool(with_masks)
        self._default = Compose([ToTensor(), Normalize(self.mean, self.std)])
        # per sample: the instance ids kept, their boxes and their labels
        self._kept, self.targets = [], []
        for i in range(self.num_samples):
            ids, boxes, labels = self._objects(i)
            self._kept.append(ids)
            self.targets.append({"boxes": boxes, "labels": labels})

    def __len__(self):
        return self.num_samples

    def __getitem__(self, index):
        target = {key: value.copy() for key, value in self.targets[index].items()}
        if self.with_masks:
            target["masks"] = self.instance_masks(index)
        picture = self.data[index]
        if self.transforms is None:
            return self._default(picture, target)
        return self.transforms(picture.copy(), target)

    def instance_masks(self, index):
        """``(K, H, W)`` uint8: 1 on each kept shape's visible pixels, in box order."""
        ids = self._kept[index]
        return (self.instances[index][None, :, :] == ids[:, None, None]).astype(np.uint8)

    def generate(self, index):
        """Sample ``index`` drawn afresh as ``ShapesSegmentation.generate`` draws it:
        ``(picture (H, W, C) uint8, mask (H, W) uint8, instances (H, W) uint8)``."""
        return self._shapes.generate(index)

    def _objects(self, index):
        """``(instance ids (K,), boxes (K, 4) float32, labels (K,) int64)`` of the shapes
        of sample ``index`` with at least ``min_visible`` pixels in view."""
        instances, semantic = self.instances[index], self.masks[index]
        ids = np.unique(instances[instances > 0])
        counts = np.array([np.count_nonzero(instances == k) for k in ids], dtype=np.int64)
        ids = ids[counts >= self.min_visible]
        masks = instances[None, :, :] == ids[:, None, None]                   # (K, H, W)
        boxes = _tight_boxes(masks)
        # every pixel of one instance carries its shape's class in the semantic mask
        labels = np.array([semantic[m][0] for m in masks], dtype=np.int64)
        return ids.astype(np.int64), boxes, labels

    def __repr__(self):
        return (f"ShapesDetection(num_samples={self.num_samples}, image_size="
                f"{self.image_size}, num_classes={self.num_classes}, seed={self.seed})")


def _tight_boxes(masks):
    """``(K, 4)`` float32 tight boxes of ``(K, H, W)`` masks, in pixel-edge coordinates:
    ``x1`` the first column with a pixel set, ``x2`` one past the last (torchvision's
    ``masks_to_boxes`` plus 1 on ``x2`` and ``y2``). An empty mask has no box: an error."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"ShapesDetection: expected masks of shape (K, H, W), got "
                         f"{masks.shape}")
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for k, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            raise ValueError(f"ShapesDetection: mask {k} is empty, it has no box")
        boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes
