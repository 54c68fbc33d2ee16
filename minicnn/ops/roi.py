"""RoI pooling and RoI align, as ``torchvision.ops``: roi_pool, roi_align and the modules
RoIPool, RoIAlign and MultiScaleRoIAlign.

Both ops cut a fixed-size (OH, OW) feature out of a feature map for each region of
interest, whatever the region's size, so that a detector's head can classify it with
fully connected layers.

Notation: N images, C channels, H×W feature map, K regions (RoIs), OH×OW output.

Boxes come in either of torchvision's forms:

* a (K, 5) Tensor ``[batch_index, x1, y1, x2, y2]``: the image each box belongs to, then
  its corners;
* a list of (L, 4) Tensors ``[x1, y1, x2, y2]``, one per image (entry i's boxes belong to
  image i).

Corners are in image pixels; ``spatial_scale`` maps them onto the map (1/16 for a
stride-16 map). torchvision requires boxes of the input's dtype; here they are converted
to it (so integer boxes work), and every coordinate is then computed in that dtype as
torchvision's CPU kernels compute it. Boxes with x2 < x1 or y2 < y1 are accepted, as
torchvision accepts them: roi_pool and the unaligned roi_align treat such a box as one
cell wide; the aligned roi_align samples it mirrored (negative bin size) with an explicit
``sampling_ratio``, and not at all (output 0) with the adaptive one.

Gradients flow to ``input`` only; the boxes get none, as in torchvision (a detector's
proposals are not differentiated through the pooling).

The window arithmetic lives in ``kernels/roi.py`` (the portable reference: every RoI's bins
at once for roi_pool, two small matrix products per RoI for roi_align); on the CPU,
float32/float64 NumPy inputs run the compiled loops of ``kernels/numba_roi.py`` (same
results; ``kernels/dispatch.py`` decides, ``MINICNN_KERNELS=reference`` turns it off).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from kernels import dispatch, numba_roi
from kernels import roi as _kr

from .. import backend
from ..autograd import Function, Tensor, as_tensor
from ..functional import cat
from ..functional._checks import check_float, pair
from ..nn.module import Module
from .boxes import _quiet, box_area

__all__ = ["roi_pool", "roi_align", "RoIPool", "RoIAlign", "MultiScaleRoIAlign"]


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """The maximum over an OH×OW grid of bins laid on each box, as
    ``torchvision.ops.roi_pool`` (Fast R-CNN's RoI pooling layer, Girshick 2015 §2.1).

    The box is snapped to the map (``x1' = round(x1·scale)``, halves away from zero, ...),
    ``rh = max(y2' - y1' + 1, 1)`` cells tall (``rw`` likewise), and bin (ph, pw) covers

        rows  y1' + floor(ph·rh/OH) <= h < y1' + ceil((ph+1)·rh/OH)

    (columns likewise), clamped to the map::

        out[k, c, ph, pw] = max over the bin of input[b_k, c, h, w]

    Args:
        input: (N, C, H, W) floating-point feature maps.
        boxes: (K, 5) ``[batch_index, x1, y1, x2, y2]``, or a list of (L, 4) per image.
        output_size: OH (square) or (OH, OW), each >= 1.
        spatial_scale: > 0, map cells per image pixel (1/16 for a stride-16 map).

    Shape: output (K, C, OH, OW).

    Conventions, each torchvision's: bins may share a row or column; a bin clamped to
    nothing (a box partly off the map) outputs 0; the maximum starts from -FLT_MAX, so a
    bin of -inf outputs -FLT_MAX (and passes no gradient); ties go to the first maximum
    in row-major order within the bin; NaN never wins.
    Gradient: dL/dinput[b, c, h, w] = Σ dL/dout[k, c, ph, pw] over the bins (of every RoI
    on image b) whose maximum is (h, w).
    """
    op = "roi_pool"
    x = _feature_map(op, input)
    rois = _rois(op, boxes, x)
    out_size = pair(op, "output_size", output_size, minimum=1)
    scale = _spatial_scale(op, spatial_scale)
    return RoIPoolFunction(rois, out_size, scale)(x)


class RoIPoolFunction(Function):
    """roi_pool's Function: the boxes (a raw (K, 5) array in x's dtype) are a setting, not
    an input, since they receive no gradient."""

    def __init__(self, rois, out_size, spatial_scale):
        self.rois, self.out_size, self.spatial_scale = rois, out_size, spatial_scale

    def forward(self, x):
        need_grad = self.needs_input_grad[0]
        args = (self.rois, self.spatial_scale, self.out_size)
        self.fast = dispatch.use_fast(x, self.rois)
        if self.fast:
            out, argmax = numba_roi.roi_pool_forward(x, *args, with_argmax=need_grad)
        else:
            out, argmax = _kr.roi_pool_forward(x, *args, with_argmax=need_grad)
        if need_grad:
            # the flat position of each bin's winner in its plane (int32, -1: none)
            self.argmax, self.in_shape = argmax, x.shape
        return out

    def backward(self, g):
        if self.fast:
            return numba_roi.roi_pool_backward(g, self.argmax, self.rois, self.in_shape)
        return _kr.roi_pool_backward(g, self.argmax, self.rois, self.in_shape)


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """The average of bilinearly interpolated samples over an OH×OW grid of bins laid on
    each box, as ``torchvision.ops.roi_align`` (Mask R-CNN's RoIAlign, He et al. 2017 §3:
    no snapping of the box or the bins to the map's cells).

    With ``o = 0.5`` if ``aligned`` else 0, the box on the map is ``y1' = y1·scale - o``,
    ``rh = y2' - y1'`` (forced to >= 1 unless ``aligned``), bins ``bh = rh / OH`` tall;
    each bin is sampled on a ``gh × gw`` grid (``gh = sampling_ratio`` if it is > 0, else
    ``ceil(rh / OH)``; columns likewise)::

        y(ph, iy) = y1' + ph·bh + (iy + 0.5)·bh / gh
        out[k, c, ph, pw] = Σ_{iy, ix} bilinear(input[b_k, c], y(ph, iy), x(pw, ix))
                            / max(gh·gw, 1)

    ``bilinear`` is torchvision's: a point outside [-1, H] × [-1, W] reads 0, otherwise its
    coordinates are clamped to >= 0 and a point at or past the last row (column) reads
    that row (column) alone.

    Args:
        input: (N, C, H, W) floating-point feature maps.
        boxes: (K, 5) ``[batch_index, x1, y1, x2, y2]``, or a list of (L, 4) per image.
        output_size: OH (square) or (OH, OW), each >= 1.
        spatial_scale: > 0, map cells per image pixel.
        sampling_ratio: samples per bin along each axis; <= 0 for the adaptive
            ``ceil(roi_size / output_size)``.
        aligned: shift the box by -0.5 cell (Detectron2's alignment), and allow boxes
            thinner than a cell; False is the legacy behaviour.

    Shape: output (K, C, OH, OW).

    Gradient: each sample passes dL/dout[k, c, ph, pw] / max(gh·gw, 1) times its four
    bilinear weights to the four cells it read (the transpose of the forward sum).
    """
    op = "roi_align"
    x = _feature_map(op, input)
    rois = _rois(op, boxes, x)
    out_size = pair(op, "output_size", output_size, minimum=1)
    scale = _spatial_scale(op, spatial_scale)
    if not _is_int(sampling_ratio):
        raise TypeError(f"{op}: sampling_ratio must be an int (<= 0 for adaptive sampling), "
                        f"got {sampling_ratio!r}")
    return RoIAlignFunction(rois, out_size, scale, int(sampling_ratio), bool(aligned))(x)


class RoIAlignFunction(Function):
    """roi_align's Function (the boxes are a setting, as in :class:`RoIPoolFunction`).
    Backward recomputes the sample points from the boxes, as torchvision's does."""

    def __init__(self, rois, out_size, spatial_scale, sampling_ratio, aligned):
        self.rois = rois
        self.settings = (spatial_scale, out_size, sampling_ratio, aligned)

    def forward(self, x):
        self.in_shape = x.shape
        self.fast = dispatch.use_fast(x, self.rois)
        if self.fast:
            return numba_roi.roi_align_forward(x, self.rois, *self.settings)
        return _kr.roi_align_forward(x, self.rois, *self.settings)

    def backward(self, g):
        if self.fast:
            return numba_roi.roi_align_backward(g, self.rois, self.in_shape, *self.settings)
        return _kr.roi_align_backward(g, self.rois, self.in_shape, *self.settings)


class RoIPool(Module):
    """See :func:`roi_pool`. ``forward(input, rois)``."""

    def __init__(self, output_size, spatial_scale):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input, rois):
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self):
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class RoIAlign(Module):
    """See :func:`roi_align`. ``forward(input, rois)``."""

    def __init__(self, output_size, spatial_scale, sampling_ratio, aligned=False):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input, rois):
        return roi_align(input, rois, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned)

    def extra_repr(self):
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


class MultiScaleRoIAlign(Module):
    """RoI align over several feature maps of one pyramid, each box pooled from the map
    that suits its size, as ``torchvision.ops.MultiScaleRoIAlign`` (FPN, Lin et al. 2017,
    eq. 1)::

        level(box) = floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6)

    clamped to the levels present. A map's level is ``-log2(scale)``, its scale inferred
    from its size and the largest image size as ``2 ** round(log2(map_h / image_h))``
    (torchvision's assumption: scales are powers of two). ``roi_align`` runs with
    ``aligned=False``, as torchvision's.

    Args:
        featmap_names: the keys of the maps to pool from (others are ignored). The maps
            are taken in the dict's order, which must run from the finest to the coarsest
            (the first sets the lowest level, the last the highest).
        output_size: OH or (OH, OW).
        sampling_ratio: as in :func:`roi_align`.
        canonical_scale, canonical_level: the box size that maps to the canonical level
            (224 and 4: an ImageNet-sized box goes to level 4).

    ``forward(x, boxes, image_shapes)``: ``x`` a dict of (N, C, H_l, W_l) maps, ``boxes`` a
    list of (L, 4) boxes per image in image pixels, ``image_shapes`` the (height, width) of
    each image before the backbone. Returns (K, C, OH, OW), the boxes in order.

    NOTE: as in torchvision, the scales are inferred on the first call and kept: later
    calls with other image sizes reuse them. With several levels, a box with x2 < x1 or
    y2 < y1 is refused (its area would be negative).
    """

    def __init__(self, featmap_names, output_size, sampling_ratio, *, canonical_scale=224,
                 canonical_level=4):
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.featmap_names = featmap_names
        self.sampling_ratio = sampling_ratio
        self.output_size = tuple(output_size)
        self.scales = None
        self.map_levels = None
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(self, x, boxes, image_shapes):
        op = "MultiScaleRoIAlign"
        if not isinstance(x, dict):
            raise TypeError(f"{op}: x must be a dict of feature maps, got {type(x).__name__}")
        features = [v for k, v in x.items() if k in self.featmap_names]
        if not features:
            raise ValueError(f"{op}: none of featmap_names {list(self.featmap_names)} is a key "
                             f"of x (keys {list(x)})")
        if not isinstance(boxes, (list, tuple)):
            raise TypeError(f"{op}: boxes must be a list of (L, 4) Tensors, one per image, "
                            f"got {type(boxes).__name__}")
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level)
        return self._pool(features, boxes)

    def _pool(self, features, boxes):
        """roi_align from each box's level, the results put back in the boxes' order."""
        kw = dict(output_size=self.output_size, sampling_ratio=self.sampling_ratio)
        rois = _rois("MultiScaleRoIAlign", boxes, as_tensor(features[0]))
        if len(features) == 1 or rois.shape[0] == 0:
            return roi_align(features[0], rois, spatial_scale=self.scales[0], **kw)
        xp = backend.get_array_module(rois)
        levels = self.map_levels([as_tensor(b).array for b in boxes])           # (K,)
        order, pieces = [], []
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            idx = xp.nonzero(levels == level)[0]
            if idx.size:
                order.append(idx)
                pieces.append(roi_align(feature, rois[idx], spatial_scale=scale, **kw))
        # the pieces hold the boxes level by level; the inverse permutation restores them
        back = xp.argsort(xp.concatenate(order))
        return cat(pieces, 0)[back]

    def extra_repr(self):
        return (f"featmap_names={self.featmap_names}, output_size={self.output_size}, "
                f"sampling_ratio={self.sampling_ratio}")


class LevelMapper:
    """Which pyramid level each box is pooled from (FPN eq. 1), as torchvision's
    ``poolers.LevelMapper``: ``floor(lvl0 + log2(sqrt(area) / s0) + eps)`` clamped to
    [k_min, k_max], minus k_min. ``__call__(boxlists)`` takes a list of (L, 4) box arrays
    and returns the (K,) int64 level index of each, in order (computed in the boxes'
    dtype)."""

    def __init__(self, k_min, k_max, canonical_scale=224, canonical_level=4, eps=1e-6):
        self.k_min, self.k_max = k_min, k_max
        self.s0, self.lvl0, self.eps = canonical_scale, canonical_level, eps

    def __call__(self, boxlists):
        xp = backend.get_array_module(*boxlists)
        areas = xp.concatenate([box_area(b) for b in boxlists])
        T = areas.dtype.type if areas.dtype.kind == "f" else np.float32
        s = xp.sqrt(areas.astype(T, copy=False))
        with _quiet(xp):                    # a box of no area: log2(0) = -inf, level k_min
            levels = xp.floor(self.lvl0 + xp.log2(s / self.s0) + T(self.eps))
        levels = xp.clip(levels, self.k_min, self.k_max)
        return levels.astype(np.int64) - self.k_min


# ------------------------------------------------------------------------ helpers

def _feature_map(op, input):
    """``input`` as a Tensor: 4-D (N, C, H, W), floating point, H and W >= 1."""
    x = as_tensor(input)
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D (N, C, H, W) input, got shape "
                         f"{tuple(x.shape)}")
    if 0 in x.shape[2:]:
        raise ValueError(f"{op}: the feature map must have height and width >= 1, got shape "
                         f"{tuple(x.shape)}")
    check_float(op, x)
    return x


def _rois(op, boxes, x):
    """The boxes as one (K, 5) array ``[batch_index, x1, y1, x2, y2]`` in x's dtype on x's
    device, checked: the right shape, finite, batch indices whole numbers in [0, N)."""
    xp = backend.get_array_module(x.array)
    dtype = x.dtype
    if isinstance(boxes, (list, tuple)):
        parts = []
        for i, b in enumerate(boxes):
            a = _box_array(op, b, f"boxes[{i}]", xp)
            if a.ndim != 2 or a.shape[1] != 4:
                raise ValueError(f"{op}: boxes[{i}] must have shape (L, 4), one (x1, y1, x2, "
                                 f"y2) box per row for image {i}, got shape {tuple(a.shape)} "
                                 f"(a list holds one box tensor per image; (K, 5) rows with "
                                 f"batch indices go in one Tensor or array)")
            index = xp.full((a.shape[0], 1), i, dtype=dtype)
            parts.append(xp.concatenate([index, a.astype(dtype, copy=False)], axis=1))
        rois = xp.concatenate(parts, axis=0) if parts else xp.zeros((0, 5), dtype=dtype)
    elif isinstance(boxes, Tensor) or hasattr(boxes, "__array__") or hasattr(boxes, "shape"):
        a = _box_array(op, boxes, "boxes", xp)
        if a.ndim != 2 or a.shape[1] != 5:
            raise ValueError(f"{op}: boxes must have shape (K, 5), [batch_index, x1, y1, x2, "
                             f"y2] per row (or be a list of (L, 4) boxes, one per image), got "
                             f"shape {tuple(a.shape)}")
        rois = a.astype(dtype, copy=False)
    else:
        raise TypeError(f"{op}: boxes must be a Tensor[K, 5] ([batch_index, x1, y1, x2, y2]) "
                        f"or a list of Tensor[L, 4] (one per image), got "
                        f"{type(boxes).__name__}")
    _check_rois(op, rois, x.shape[0])
    return rois


def _box_array(op, value, name, xp):
    """A Tensor or array of boxes as a raw array of real numbers on the input's device."""
    a = as_tensor(value).array
    if backend.get_array_module(a) is not xp:
        raise ValueError(f"{op}: {name} must be on the input's device "
                         f"({backend.device_of(a)} given, input on the other)")
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{op}: {name} must hold real numbers, got dtype {a.dtype}")
    return a


def _check_rois(op, rois, batch_size):
    """Finite coordinates and whole batch indices in [0, N); one scalar to the host when
    all is well, the offending row when not."""
    if rois.shape[0] == 0:
        return
    xp = backend.get_array_module(rois)
    bad = ~xp.isfinite(rois).all(axis=1)
    if bool(bad.any()):
        k = int(xp.argmax(bad))
        raise ValueError(f"{op}: boxes must be finite; row {k} is {rois[k].tolist()}")
    index = rois[:, 0]
    bad = (index != xp.floor(index)) | (index < 0) | (index >= batch_size)
    if bool(bad.any()):
        k = int(xp.argmax(bad))
        value = float(index[k])
        what = ("is not a whole number" if value != math.floor(value) else
                f"is out of range for an input of {batch_size} image(s) (expected 0 <= index "
                f"< {batch_size})")
        raise ValueError(f"{op}: the batch index of box {k} ({value:g}) {what}")


def _spatial_scale(op, value):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{op}: spatial_scale must be a positive number (map cells per image "
                         f"pixel, e.g. 1/16), got {value!r}")
    return float(value)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _infer_scale(feature, original_size):
    """torchvision's guess of a map's scale: ``2 ** round(log2(map_h / image_h))``, the
    logarithm taken in float32 and rounded half to even (as torch's)."""
    ratio = np.float32(float(feature.shape[-2]) / float(original_size[0]))
    return 2.0 ** float(np.round(np.log2(ratio)))


def _setup_scales(features, image_shapes, canonical_scale, canonical_level):
    """The scale of each map (from the largest image size) and the level mapper between
    the first map's level and the last's."""
    if not image_shapes:
        raise ValueError("MultiScaleRoIAlign: image_shapes should not be empty (one "
                         "(height, width) per image)")
    original = tuple(max(s[i] for s in image_shapes) for i in range(2))
    scales = [_infer_scale(f, original) for f in features]
    lvl_min = -float(np.log2(np.float32(scales[0])))
    lvl_max = -float(np.log2(np.float32(scales[-1])))
    mapper = LevelMapper(int(lvl_min), int(lvl_max), canonical_scale=canonical_scale,
                         canonical_level=canonical_level)
    return scales, mapper
