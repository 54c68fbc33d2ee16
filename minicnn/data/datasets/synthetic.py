"""Generated images: simple shapes that a small CNN learns in seconds. For tests, demos,
and checking that a training setup works before pointing it at real data."""
from __future__ import annotations

import numpy as np

from .base import ArrayDataset

__all__ = ["SyntheticShapes"]

SHAPES = ("square", "disk", "triangle", "plus", "ring", "cross", "hbar", "vbar")


def _draw(shape, dx, dy, r, t):
    """Boolean mask of ``shape`` with half-size ``r`` and stroke ``t``, given every pixel's
    offset ``(dx, dy)`` from the shape's centre."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "square":
        return (ax <= r) & (ay <= r)
    if shape == "disk":
        return dx ** 2 + dy ** 2 <= r ** 2
    if shape == "triangle":                       # apex up, base at dy = r
        return (dy >= -r) & (dy <= r) & (ax <= (dy + r) / 2)
    if shape == "plus":
        return ((ax <= t) & (ay <= r)) | ((ay <= t) & (ax <= r))
    if shape == "ring":
        d = np.sqrt(dx ** 2 + dy ** 2)
        return (d <= r) & (d >= r - 1.5 * t)
    if shape == "cross":                          # an X
        return (np.abs(ax - ay) <= t) & (np.maximum(ax, ay) <= r)
    if shape == "hbar":
        return (ay <= t) & (ax <= r)
    return (ax <= t) & (ay <= r)                  # vbar


class SyntheticShapes(ArrayDataset):
    """``num_samples`` images of one of ``num_classes`` shapes (square, disk, triangle,
    plus, ring, X, horizontal bar, vertical bar, in that order), at a random position,
    size and brightness, with Gaussian noise.

    Deterministic for a given ``seed``. A sample is ``(image, label)``: an ``(S, S)``
    uint8 array (``channels=1``) or ``(S, S, 3)`` with a random colour per image
    (``channels=3``), like the other data sets (apply ``transforms.ToTensor()``).
    """

    def __init__(self, num_samples=1000, image_size=28, num_classes=4, channels=1,
                 noise=0.1, seed=0, transform=None, target_transform=None):
        if not 1 <= num_classes <= len(SHAPES):
            raise ValueError(f"SyntheticShapes: num_classes must be 1..{len(SHAPES)}, got "
                             f"{num_classes}")
        if channels not in (1, 3):
            raise ValueError(f"SyntheticShapes: channels must be 1 or 3, got {channels}")
        if image_size < 8:
            raise ValueError(f"SyntheticShapes: image_size must be at least 8, got {image_size}")
        self.classes = list(SHAPES[:num_classes])
        self.transform, self.target_transform = transform, target_transform
        rng = np.random.Generator(np.random.PCG64(seed))
        s = image_size
        self.targets = rng.permutation(np.arange(num_samples) % num_classes).astype(np.int64)
        ys, xs = np.mgrid[0:s, 0:s].astype(np.float64)              # (S, S) each
        images = np.empty((num_samples, s, s, channels), dtype=np.uint8)
        for i, label in enumerate(self.targets):
            r = rng.uniform(0.2, 0.35) * s
            cx, cy = rng.uniform(r, s - 1 - r, size=2)
            t = max(1.0, r / 4)
            mask = _draw(SHAPES[label], xs - cx, ys - cy, r, t)
            colour = rng.uniform(0.6, 1.0, size=channels)
            picture = mask[:, :, None] * colour + rng.normal(0.0, noise, (s, s, channels))
            images[i] = np.clip(np.rint(picture * 255), 0, 255)
        self.data = images[..., 0] if channels == 1 else images
