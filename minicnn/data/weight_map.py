"""U-Net's pixel weights (Ronneberger et al. 2015, eq. 2), and the exact Euclidean distance
transform they need, in NumPy.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

``w_c`` balances the class frequencies; ``d1`` and ``d2`` are the distances from ``x`` to
the nearest and the second-nearest cell. The second term is large only in the thin gaps
between two cells that almost touch, so a loss weighted by ``w``
(``(cross_entropy(logits, target, reduction="none") * w).mean()``) makes the network learn
to keep touching cells apart. The paper used ``w0 = 10`` and ``sigma`` about 5 pixels.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["unet_weight_map", "distance_transform"]


def unet_weight_map(instance_labels, w0=10.0, sigma=5.0, class_weights=None, classes=None,
                    background_only=True):
    """The ``(H, W)`` float32 weight map of U-Net's eq. 2 for one image.

    ``instance_labels``: ``(H, W)`` integers, 0 for background and one positive id per cell
    (object instance). ``d1(x)``, ``d2(x)``: Euclidean distances, in pixels, from pixel
    ``x`` to the nearest pixel of the nearest and of the second-nearest cell (0 inside a
    cell). With fewer than two cells the border term is 0. ``background_only`` (default)
    keeps the border term on background pixels only -- the gaps between cells, as in the
    paper's Fig. 3d; ``False`` applies the formula everywhere.

    ``w_c``: the class of a pixel is ``classes[x]`` when an ``(H, W)`` integer map is
    given, else foreground (1) for a cell and background (0). ``class_weights``: a
    sequence or dict, class -> weight; ``None`` balances the classes present so each holds
    the same total weight and the mean weight is 1 (``N / (K * N_c)`` for ``K`` classes
    with ``N_c`` of the ``N`` pixels each, scikit-learn's "balanced").
    """
    name = "unet_weight_map"
    labels = _integer_map(instance_labels, name, "instance_labels")
    if not isinstance(w0, numbers.Real) or not isinstance(sigma, numbers.Real) or sigma <= 0:
        raise ValueError(f"{name}: w0 must be a number and sigma a positive number, got "
                         f"w0={w0!r}, sigma={sigma!r}")
    if classes is None:
        class_map = (labels > 0).astype(np.int64)
    else:
        class_map = _integer_map(classes, name, "classes")
        if class_map.shape != labels.shape:
            raise ValueError(f"{name}: classes has shape {class_map.shape} but "
                             f"instance_labels has shape {labels.shape}")
    weights = _class_weight_map(class_map, class_weights, name)

    ids = np.unique(labels[labels > 0])
    if len(ids) >= 2 and w0 != 0:
        # keep the two smallest distances seen so far, cell by cell: O(H W) memory
        d1 = np.full(labels.shape, np.inf)
        d2 = np.full(labels.shape, np.inf)
        for cell in ids:
            d = np.sqrt(distance_transform(labels == cell, squared=True))
            d2 = np.minimum(d2, np.maximum(d1, d))
            d1 = np.minimum(d1, d)
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma ** 2))
        if background_only:
            border = np.where(labels == 0, border, 0.0)
        weights = weights + border
    return weights.astype(np.float32)


def distance_transform(features, squared=False):
    """For every pixel of the ``(H, W)`` boolean array ``features``, the Euclidean distance
    (in pixels, between pixel centres) to the nearest True pixel: 0 on True pixels,
    ``inf`` everywhere when there is none. ``squared`` gives the squared distance (exact
    integers).

    Exact and separable (as Meijster et al. 2000, or ``scipy.ndimage.distance_transform_edt``
    on ``~features``): first along each column the distance ``g`` to the nearest True pixel
    of that column, then along each row ``D^2(i, j) = min_k (j - k)^2 + g(i, k)^2`` -- the
    nearest feature reached by going along the row to column ``k``, then up or down.
    The row step is done for all ``k`` at once, ``O(H W^2)`` time.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"distance_transform: features must be a 2-D (H, W) array, got "
                         f"shape {features.shape}")
    features = features.astype(bool)
    h, w = features.shape
    # column pass: row index of the nearest feature above (or at) and below (or at) each pixel
    rows = np.arange(h, dtype=np.float64)[:, None]
    above = np.where(features, rows, -np.inf)
    above = np.maximum.accumulate(above, axis=0)
    below = np.where(features, rows, np.inf)
    below = np.minimum.accumulate(below[::-1], axis=0)[::-1]
    g = np.minimum(rows - above, below - rows)                          # (H, W), may be inf
    g2 = g * g
    # row pass, a band of rows at a time so the (rows, W, W) temporary stays small
    offsets2 = (np.arange(w)[:, None] - np.arange(w)[None, :]) ** 2.0  # (W_j, W_k)
    out = np.empty((h, w))
    band = max(1, (1 << 22) // max(1, w * w))
    for start in range(0, h, band):
        stop = min(h, start + band)
        out[start:stop] = (offsets2[None] + g2[start:stop, None, :]).min(axis=-1)
    return out if squared else np.sqrt(out)


# ---------------------------------------------------------------------- helpers

def _integer_map(value, name, what):
    array = np.asarray(value)
    if array.ndim != 2 or array.dtype.kind not in "iub":
        raise ValueError(f"{name}: {what} must be an (H, W) integer array, got "
                         f"{array.dtype} of shape {array.shape}")
    return array.astype(np.int64)


def _class_weight_map(class_map, class_weights, name):
    present, counts = np.unique(class_map, return_counts=True)
    if class_weights is None:
        table = {int(c): class_map.size / (len(present) * n) for c, n in zip(present, counts)}
    elif isinstance(class_weights, dict):
        table = {int(k): float(v) for k, v in class_weights.items()}
    else:
        table = {k: float(v) for k, v in enumerate(np.asarray(class_weights, dtype=np.float64)
                                                   .reshape(-1))}
    missing = [int(c) for c in present if int(c) not in table]
    if missing:
        raise ValueError(f"{name}: class_weights has no weight for class(es) {missing} "
                         f"(it covers {sorted(table)})")
    lookup = np.zeros(int(present.max()) + 1 - min(0, int(present.min())))
    offset = -min(0, int(present.min()))
    for c in present:
        lookup[int(c) + offset] = table[int(c)]
    return lookup[class_map + offset]
