"""Generated images with per-pixel labels: shapes on textured backgrounds, for semantic
segmentation that trains offline in minutes (``minicnn train --task segmentation
--dataset shapes``), and for tests.

Each image holds 1 to 3 shapes (square, disk, triangle, plus, ring, X, horizontal bar,
vertical bar -- the shapes of ``SyntheticShapes``), each of a random size, position
and colour (a tilt too, if asked); a later shape may cover part of an earlier one. The mask gives
every pixel the class of the shape seen there, 0 for the background. Backgrounds are a
colour gradient, often with stripes, and every pixel gets noise, so no colour belongs to
one class: the network has to recognise outlines.
"""
from __future__ import annotations

import numbers

import numpy as np

from .._random import derived_generator
from ..dataset import Dataset
from ..joint_transforms import JointCompose, JointNormalize, ToTensorPair
from .synthetic import SHAPES, _draw

__all__ = ["ShapesSegmentation"]


class ShapesSegmentation(Dataset):
    """``num_samples`` generated ``image_size`` x ``image_size`` images with masks.

    ``num_classes`` counts the background: class 0 is background, class ``k >= 1`` is
    shape ``classes[k]`` (``num_classes=4``: background, square, disk, triangle; at most
    9). Sample ``i`` depends only on ``(seed, i)``: use another ``seed`` for a test set
    (``minicnn train`` trains on seed 0 and tests on seed 1).

    A sample is ``(image, mask)``: by default (``transforms=None``) ``image`` is a
    ``(C, H, W)`` float32 array normalised with the data set's ``mean`` and ``std``, and
    ``mask`` an ``(H, W)`` int64 array; the DataLoader stacks them into Tensors. A joint
    ``transforms(image, mask)`` (see ``minicnn.data.joint_transforms``) gets instead the
    stored pair -- an ``(H, W, C)`` uint8 picture and an ``(H, W)`` int64 mask -- and
    should start with ``ToTensorPair()``.

    Everything is generated once and kept in memory (``data``: ``(N, H, W, C)`` uint8,
    ``masks``: ``(N, H, W)`` uint8, ``instances``: ``(N, H, W)`` uint8 with 0 for
    background and ``1..`` for each visible shape, for ``unet_weight_map``), about 16 KB
    per 64x64 image; :meth:`arrays` gives the whole set as two ready arrays for a
    ``TensorDataset``.

    ``radius``: the shapes' half-size range in pixels (default ``(S/8, 5S/16)``, 8 to 20
    at 64); ``max_rotation``: tilt range in degrees (0: upright shapes; a tilt of 15 makes
    small squares and disks harder to tell apart; keep it under 45, where a plus becomes
    an X); ``noise``: standard deviation of the pixel noise (images in [0, 1]);
    ``max_covered``: the largest fraction of a shape a later one may hide.
    """

    # channel statistics of the generated pictures (measured on 4,000 images; the same
    # for every seed and size to two decimals)
    mean, std = (0.5, 0.5, 0.5), (0.26, 0.26, 0.26)

    def __init__(self, num_samples=1000, image_size=64, num_classes=4, channels=3, seed=0,
                 transforms=None, min_shapes=1, max_shapes=3, radius=None, max_rotation=0.0,
                 noise=0.04, max_covered=0.3):
        name = "ShapesSegmentation"
        _check_int(num_samples, name, "num_samples", 0)
        _check_int(image_size, name, "image_size", 16)
        if not isinstance(num_classes, numbers.Integral) or \
                not 2 <= num_classes <= len(SHAPES) + 1:
            raise ValueError(f"{name}: num_classes (background included) must be an integer "
                             f"in 2..{len(SHAPES) + 1}, got {num_classes!r}")
        if channels not in (1, 3):
            raise ValueError(f"{name}: channels must be 1 or 3, got {channels!r}")
        _check_int(min_shapes, name, "min_shapes", 1)
        _check_int(max_shapes, name, "max_shapes", min_shapes)
        s = int(image_size)
        radius = (s / 8.0, 5.0 * s / 16.0) if radius is None else tuple(radius)
        if len(radius) != 2 or not 2 <= radius[0] <= radius[1] or 2 * radius[1] >= s:
            raise ValueError(f"{name}: radius must be a pair (min, max) with 2 <= min <= max "
                             f"< image_size / 2 = {s / 2}, got {radius!r}")
        if not 0 < max_covered <= 1:
            raise ValueError(f"{name}: max_covered must lie in (0, 1], got {max_covered!r}")
        self.num_samples, self.image_size, self.num_classes = int(num_samples), s, num_classes
        self.channels, self.seed, self.transforms = channels, int(seed), transforms
        self.min_shapes, self.max_shapes = int(min_shapes), int(max_shapes)
        self.radius, self.max_rotation = (float(radius[0]), float(radius[1])), max_rotation
        self.noise, self.max_covered = float(noise), float(max_covered)
        self.classes = ["background"] + list(SHAPES[:num_classes - 1])
        self.mean, self.std = self.mean[:channels], self.std[:channels]
        self._default = JointCompose([ToTensorPair(), JointNormalize(self.mean, self.std)])

        self.data = np.empty((self.num_samples, s, s, channels), dtype=np.uint8)
        self.masks = np.empty((self.num_samples, s, s), dtype=np.uint8)
        self.instances = np.empty((self.num_samples, s, s), dtype=np.uint8)
        for i in range(self.num_samples):
            self.data[i], self.masks[i], self.instances[i] = self.generate(i)

    def __len__(self):
        return self.num_samples

    def __getitem__(self, index):
        image, mask = self.data[index], self.masks[index].astype(np.int64)
        if self.transforms is None:
            return self._default(image, mask)
        return self.transforms(image, mask)

    def arrays(self):
        """``(images, masks)``: every image as the default pipeline gives it, stacked
        ``(N, C, H, W)`` float32, and the masks ``(N, H, W)`` int64 -- one vectorised pass
        (``TensorDataset(*ds.arrays())`` then skips the per-sample work)."""
        images = self.data.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return (images - mean) / std, self.masks.astype(np.int64)

    # --------------------------------------------------------------- drawing

    def generate(self, index):
        """Sample ``index`` drawn afresh: ``(picture (H, W, C) uint8, mask (H, W) uint8,
        instances (H, W) uint8)``; the same for the same ``(seed, index)``."""
        rng = derived_generator(self.seed, index)
        s, c = self.image_size, self.channels
        ys, xs = np.mgrid[0:s, 0:s].astype(np.float64)                     # (S, S) each
        picture = _background(rng, xs, ys, c)                              # (S, S, C)
        mask = np.zeros((s, s), dtype=np.uint8)
        instances = np.zeros((s, s), dtype=np.uint8)
        areas = []
        count = int(rng.integers(self.min_shapes, self.max_shapes + 1))
        for _ in range(count):
            label = int(rng.integers(1, self.num_classes))
            for _attempt in range(30):
                shape = self._place(rng, SHAPES[label - 1], xs, ys)
                # a later shape may hide part of the earlier ones, never most of one
                if all(np.count_nonzero((instances == k + 1) & ~shape)
                       >= (1.0 - self.max_covered) * area for k, area in enumerate(areas)):
                    break
            else:
                continue                      # no room left for this one: fewer shapes
            colour = _contrasting_colour(rng, picture[shape].mean(axis=0), c)
            picture[shape] = _fill(rng, colour, xs[shape], ys[shape])
            mask[shape] = label
            areas.append(np.count_nonzero(shape))
            instances[shape] = len(areas)
        picture = picture + rng.normal(0.0, self.noise, picture.shape)
        picture = np.clip(np.rint(picture * 255.0), 0, 255).astype(np.uint8)
        return picture, mask, instances

    def _place(self, rng, shape_name, xs, ys):
        """Boolean mask of one shape at a random size, tilt and position, wholly inside."""
        s = self.image_size
        r = rng.uniform(*self.radius)
        # a square tilted by up to m reaches r (cos m + sin m) along x and y: keep the
        # centre that far inside
        m = np.deg2rad(min(abs(self.max_rotation), 45.0))
        reach = min(r * (np.cos(m) + np.sin(m)), (s - 1) / 2.0)
        cx, cy = rng.uniform(reach, s - 1 - reach, size=2)
        angle = np.deg2rad(rng.uniform(-self.max_rotation, self.max_rotation))
        cos, sin = np.cos(angle), np.sin(angle)
        dx, dy = xs - cx, ys - cy
        return _draw(shape_name, dx * cos + dy * sin, -dx * sin + dy * cos, r,
                     max(1.5, r / 4.0))

    def __repr__(self):
        return (f"ShapesSegmentation(num_samples={self.num_samples}, image_size="
                f"{self.image_size}, num_classes={self.num_classes}, seed={self.seed})")


def _background(rng, xs, ys, channels):
    """A gradient between two random colours in a random direction, and with probability
    2/3 stripes of random period, direction and colour: ``(S, S, C)`` in about [0, 1]."""
    s = xs.shape[0]
    start, end = rng.uniform(0.0, 1.0, (2, channels))
    theta = rng.uniform(0.0, 2 * np.pi)
    t = ((xs - s / 2) * np.cos(theta) + (ys - s / 2) * np.sin(theta)) / s + 0.5  # ~[0, 1]
    picture = start + (end - start) * np.clip(t, 0.0, 1.0)[..., None]
    if rng.random() < 2 / 3:
        period = rng.uniform(4.0, 16.0)
        phi = rng.uniform(0.0, np.pi)
        wave = np.sin(2 * np.pi * (xs * np.cos(phi) + ys * np.sin(phi)) / period
                      + rng.uniform(0.0, 2 * np.pi))
        picture = picture + rng.uniform(0.08, 0.25) * wave[..., None] \
            * rng.uniform(-1.0, 1.0, channels)
    return picture


def _contrasting_colour(rng, behind, channels, min_distance=0.3):
    """A random colour at least ``min_distance`` (Euclidean, on [0, 1] channels scaled to
    one channel's range) from ``behind``, the mean colour it will cover; after 20 tries
    the farthest one drawn."""
    best, best_distance = None, -1.0
    for _ in range(20):
        colour = rng.uniform(0.0, 1.0, channels)
        distance = np.linalg.norm(colour - behind) / np.sqrt(channels)
        if distance >= min_distance:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def _fill(rng, colour, xs, ys):
    """A shape's pixels: its colour, with a faint gradient across it so the shape is not
    one flat value either."""
    theta = rng.uniform(0.0, 2 * np.pi)
    ramp = (xs * np.cos(theta) + ys * np.sin(theta))
    ramp = (ramp - ramp.mean()) / max(1.0, np.ptp(ramp))                     # [-0.5, 0.5]
    return colour + rng.uniform(0.0, 0.2) * ramp[:, None]


def _check_int(value, name, what, low):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}: {what} must be an integer >= {low}, got {value!r}")
