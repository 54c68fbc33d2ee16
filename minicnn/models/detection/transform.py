"""GeneralizedRCNNTransform: what torchvision's detectors do to images before the backbone
sees them, and to their boxes after the heads.

torchvision's ``models/detection/transform.py``, with its semantics:

1. **normalize** each (C, H, W) image: ``(image - mean) / std`` per channel;
2. **resize** it with bilinear interpolation (``align_corners=False``), and its target's
   boxes (and masks, nearest neighbour; keypoints) with it. Either to ``fixed_size``
   (width, height) -- SSD's 300x300 -- or by one scale factor that brings the shorter
   side to ``min_size`` unless the longer side would then pass ``max_size``:

       scale = min(min_size / min(H, W), max_size / max(H, W))
       OH, OW = floor(H · scale), floor(W · scale)

   NOTE: the factor goes to ``interpolate`` with ``recompute_scale_factor=True``, so the
   pixels are sampled at in/out, not 1/scale (the two differ once floor has cut a
   fraction of a pixel); a box coordinate is multiplied by OW / W (or OH / H) computed in
   float32, as torchvision's ``resize_boxes`` does;
3. **batch** the images into one (N, C, H', W') tensor, padded with zeros at the right
   and bottom so that H' and W' are the largest height and width rounded up to a multiple
   of ``size_divisible``. The sizes before padding travel with it in an
   :class:`~minicnn.ops.ImageList`: a detector's boxes live in those.
4. **postprocess** (eval mode): map predicted boxes from the resized image back to the
   original image, the inverse of 2.

In training mode, with several ``min_size`` values, each image draws one (minicnn's
seeded generator; torchvision draws with torch's), a multi-scale training augmentation.
Evaluation uses the last.

Everything runs on the images' device, and normalisation, resizing and padding are
differentiable (as in torchvision), although detectors never need the gradient of their
input.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

import minicnn
from minicnn import backend, nn
from minicnn.nn import functional as F
from minicnn.models.detection.roi_heads import paste_masks_in_image
from minicnn.ops import ImageList

__all__ = ["GeneralizedRCNNTransform", "resize_boxes", "resize_keypoints"]


class GeneralizedRCNNTransform(nn.Module):
    """Normalise, resize and batch images for a detector; map its boxes back.

    Args:
        min_size: the shorter side after resizing (an int, or a sequence of ints to draw
            from in training).
        max_size: the longest the longer side may become.
        image_mean, image_std: per-channel mean and standard deviation (C values each).
        size_divisible: the batch's height and width are rounded up to a multiple of it.
        fixed_size: ``(width, height)``: resize every image to exactly this size
            (torchvision's order; SSD uses it) instead of by ``min_size``/``max_size``.

    ``forward(images, targets=None)``: images a list of (C, H, W) Tensors or an
    (N, C, H, W) Tensor; targets a list of dicts with ``boxes`` (K, 4) xyxy and optional
    ``masks`` (K, H, W) and ``keypoints`` (K, P, 3). Returns ``(ImageList, targets)``;
    the targets are new dicts (the caller's are left as they are).
    """

    def __init__(self, min_size, max_size, image_mean, image_std, size_divisible=32,
                 fixed_size=None):
        super().__init__()
        name = type(self).__name__
        if not isinstance(min_size, (list, tuple)):
            min_size = (min_size,)
        if not min_size or not all(_positive_number(s) for s in min_size):
            raise ValueError(f"{name}: min_size must be a positive number or a non-empty "
                             f"sequence of them, got {min_size!r}")
        if not _positive_number(max_size):
            raise ValueError(f"{name}: max_size must be a positive number, got {max_size!r}")
        image_mean, image_std = list(image_mean), list(image_std)
        if len(image_mean) != len(image_std) or not image_mean:
            raise ValueError(f"{name}: image_mean and image_std must have one value per "
                             f"channel each, got {len(image_mean)} and {len(image_std)}")
        if any(s == 0 for s in image_std):
            raise ValueError(f"{name}: image_std must not contain 0, got {image_std}")
        if isinstance(size_divisible, bool) or not isinstance(size_divisible,
                                                              numbers.Integral) \
                or size_divisible < 1:
            raise ValueError(f"{name}: size_divisible must be a positive integer, got "
                             f"{size_divisible!r}")
        if fixed_size is not None:
            if not (isinstance(fixed_size, (list, tuple)) and len(fixed_size) == 2
                    and all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                            and s > 0 for s in fixed_size)):
                raise ValueError(f"{name}: fixed_size must be (width, height), two positive "
                                 f"integers, got {fixed_size!r}")
            fixed_size = (int(fixed_size[0]), int(fixed_size[1]))
        self.min_size = tuple(min_size)
        self.max_size = max_size
        self.image_mean = image_mean
        self.image_std = image_std
        self.size_divisible = int(size_divisible)
        self.fixed_size = fixed_size

    def forward(self, images, targets=None):
        images = image_sequence(type(self).__name__, images)
        if targets is not None:
            if len(targets) != len(images):
                raise ValueError(f"{type(self).__name__}: expected one target per image, "
                                 f"got {len(targets)} targets for {len(images)} images")
            targets = [dict(t) for t in targets]     # the caller's dicts stay untouched
        for i, image in enumerate(images):
            target = targets[i] if targets is not None else None
            image = self.normalize(image)
            image, target = self.resize(image, target)
            images[i] = image
            if target is not None:
                targets[i] = target
        image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batched = self.batch_images(images, size_divisible=self.size_divisible)
        return ImageList(batched, image_sizes), targets

    def normalize(self, image):
        """(image - mean) / std, per channel."""
        name = type(self).__name__
        if image.dtype.kind != "f":
            raise TypeError(f"{name}: expected input images of a floating-point type (in "
                            f"range [0, 1]), got dtype {image.dtype}")
        if image.shape[0] != len(self.image_mean):
            raise ValueError(f"{name}: image_mean and image_std have "
                             f"{len(self.image_mean)} values, but the image has "
                             f"{image.shape[0]} channels (shape {tuple(image.shape)})")
        mean = minicnn.tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = minicnn.tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean.reshape(-1, 1, 1)) / std.reshape(-1, 1, 1)

    def torch_choice(self, k):
        """One element of ``k``, drawn uniformly (minicnn's seeded generator)."""
        return k[int(backend.get_rng().integers(len(k)))]

    def resize(self, image, target=None):
        """The image resized (see the module docstring) and the target's boxes, masks and
        keypoints with it (``target`` is changed in place and returned)."""
        h, w = int(image.shape[-2]), int(image.shape[-1])
        size = self.torch_choice(self.min_size) if self.training else self.min_size[-1]
        image, target = _resize_image_and_masks(image, size, self.max_size, target,
                                                self.fixed_size)
        if target is None:
            return image, target
        new_size = (int(image.shape[-2]), int(image.shape[-1]))
        target["boxes"] = resize_boxes(target["boxes"], (h, w), new_size)
        if "keypoints" in target:
            target["keypoints"] = resize_keypoints(target["keypoints"], (h, w), new_size)
        return image, target

    def batch_images(self, images, size_divisible=32):
        """Stack (C, H, W) images into (N, C, H', W'), zero-padded at the right and bottom
        to the largest size rounded up to a multiple of ``size_divisible``."""
        largest = [max(int(img.shape[d]) for img in images) for d in range(3)]
        stride = float(size_divisible)
        largest[1] = int(math.ceil(largest[1] / stride) * stride)
        largest[2] = int(math.ceil(largest[2] / stride) * stride)
        padded = []
        for img in images:
            c, h, w = (int(s) for s in img.shape)
            if (c, h, w) != tuple(largest):
                img = F.pad(img, (0, largest[2] - w, 0, largest[1] - h, 0, largest[0] - c))
            padded.append(img)
        return minicnn.stack(padded)

    def postprocess(self, result, image_shapes, original_image_sizes):
        """Eval mode: each prediction's ``boxes`` (and ``keypoints``) scaled from the size
        the network saw to the original image size, and its ``masks`` (Mask R-CNN's
        per-box masks) pasted into an image of the original size. Training mode:
        unchanged."""
        if self.training:
            return result
        for pred, im_s, o_im_s in zip(result, image_shapes, original_image_sizes):
            pred["boxes"] = resize_boxes(pred["boxes"], im_s, o_im_s)
            if "masks" in pred:
                # Mask R-CNN's (D, 1, 28, 28) per-box masks, pasted at the boxes' places in
                # the original image: (D, 1, H, W)
                pred["masks"] = paste_masks_in_image(pred["masks"], pred["boxes"], o_im_s)
            if "keypoints" in pred:
                pred["keypoints"] = resize_keypoints(pred["keypoints"], im_s, o_im_s)
        return result

    def extra_repr(self):
        return (f"Normalize(mean={self.image_mean}, std={self.image_std}), "
                f"Resize(min_size={self.min_size}, max_size={self.max_size}, "
                f"fixed_size={self.fixed_size}, mode='bilinear')")


def image_sequence(op, images):
    """``images`` (a list of (C, H, W) Tensors or arrays, or one (N, C, H, W) Tensor) as
    a new list of 3-D Tensors; a ValueError naming ``op`` for anything else."""
    if isinstance(images, (list, tuple)):
        images = [minicnn.as_tensor(img) for img in images]
    else:
        images = minicnn.as_tensor(images)
        if images.ndim != 4:
            raise ValueError(f"{op}: expected images as a list of (C, H, W) tensors or one "
                             f"(N, C, H, W) tensor, got a tensor of shape "
                             f"{tuple(images.shape)}")
        images = [images[i] for i in range(images.shape[0])]
    if not images:
        raise ValueError(f"{op}: expected at least one image, got none")
    for img in images:
        if img.ndim != 3:
            raise ValueError(f"{op}: images is expected to be a list of 3-D tensors of "
                             f"shape (C, H, W), got one of shape {tuple(img.shape)}")
    return images


def resize_boxes(boxes, original_size, new_size):
    """xyxy ``boxes`` (K, 4) scaled from an image of ``original_size`` (h, w) to
    ``new_size``: x by new_w / w, y by new_h / h, the ratios computed in float32 (as
    torchvision)."""
    boxes = minicnn.as_tensor(boxes)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"resize_boxes: expected boxes of shape (K, 4), got "
                         f"{tuple(boxes.shape)}")
    ratio_h, ratio_w = _ratios(original_size, new_size)
    ratios = minicnn.tensor([ratio_w, ratio_h, ratio_w, ratio_h], dtype=boxes.dtype,
                            device=boxes.device)
    return boxes * ratios


def resize_keypoints(keypoints, original_size, new_size):
    """Keypoints (K, P, 3) of (x, y, visibility) scaled as :func:`resize_boxes` scales
    boxes; the visibility is kept."""
    keypoints = minicnn.as_tensor(keypoints)
    ratio_h, ratio_w = _ratios(original_size, new_size)
    ratios = minicnn.tensor([ratio_w, ratio_h, 1.0], dtype=keypoints.dtype,
                            device=keypoints.device)
    return keypoints * ratios


def _ratios(original_size, new_size):
    """new / original per side, each a float32 division (torchvision divides two float32
    tensors)."""
    return tuple(float(np.float32(s) / np.float32(s_orig))
                 for s, s_orig in zip(new_size, original_size))


def _resize_image_and_masks(image, self_min_size, self_max_size, target=None,
                            fixed_size=None):
    """torchvision's rule: ``fixed_size`` (w, h), or one factor for both sides."""
    h, w = int(image.shape[-2]), int(image.shape[-1])
    size = scale_factor = recompute = None
    if fixed_size is not None:
        size = (fixed_size[1], fixed_size[0])
        out_h, out_w = size
    else:
        scale_factor = min(self_min_size / min(h, w), self_max_size / max(h, w))
        recompute = True
        # interpolate's output size for a scale factor
        out_h, out_w = math.floor(h * scale_factor), math.floor(w * scale_factor)
    if (out_h, out_w) == (h, w):
        # the same size: interpolation would copy every pixel (as torch's does)
        return image, target
    image = F.interpolate(image[None], size=size, scale_factor=scale_factor,
                          mode="bilinear", recompute_scale_factor=recompute,
                          align_corners=False)[0]
    if target is None or "masks" not in target:
        return image, target
    masks = minicnn.as_tensor(target["masks"])
    if masks.shape[0] == 0:
        resized = minicnn.zeros(0, out_h, out_w, dtype=masks.dtype, device=masks.device)
    else:
        resized = F.interpolate(masks[:, None].float(), size=size, scale_factor=scale_factor,
                                recompute_scale_factor=recompute)[:, 0]
        resized = resized.to(dtype=minicnn.uint8)      # torchvision's .byte()
    target["masks"] = resized
    return image, target


def _positive_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value > 0
