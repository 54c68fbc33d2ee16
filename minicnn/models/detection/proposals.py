"""Region proposals without a CNN: selective search, as R-CNN and Fast R-CNN used it.

Uijlings, van de Sande, Gevers & Smeulders, "Selective Search for Object Recognition"
(IJCV 104(2), 2013). An object is a group of image regions that belong together, at some
scale; instead of sliding windows of every size, selective search

1. **over-segments** the image into small, uniform regions with the graph-based method of
   Felzenszwalb & Huttenlocher (IJCV 59(2), 2004; :func:`felzenszwalb_segmentation`):
   pixels are nodes, neighbouring pixels are joined by edges weighted by their colour
   difference, and edges are visited from the lightest; two components merge when the
   edge between them is no heavier than the heaviest edge inside either, plus a slack
   ``k / size`` that lets small components grow (larger ``k``: larger regions);
2. **groups** them hierarchically (:func:`hierarchical_grouping`): repeatedly merge the two
   *neighbouring* regions that are most similar, until one region covers the image. The
   similarity adds three measures, each in [0, 1]: colour (intersection of the two
   regions' colour histograms, 25 bins per channel), size (small regions merge first, so
   that the hierarchy grows evenly over the image) and fill (regions whose bounding box
   they would fill well merge first, so holes are closed early);
3. **proposes** the bounding box of every region ever formed, over several
   diversification strategies (here: several ``k``), duplicates removed.

NOTE, where this departs from the paper: no texture similarity (SIFT-like gradient
histograms) and one colour space (the image's own channels) instead of eight; the
strategies vary the segmentation's ``k`` only. The boxes are in pixel-edge coordinates:
a region over columns 3..7 gives x1 = 3, x2 = 8 (as ``ShapesDetection``'s boxes).

Everything runs on the host in NumPy (the seeds' point: "non-convolutional and
non-GPUified"); a 64x64 image takes a few tens of milliseconds per strategy.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["selective_search", "felzenszwalb_segmentation", "hierarchical_grouping"]


def selective_search(image, scales=(50, 100, 200), sigma=0.8, min_size=10, bins=25,
                     max_proposals=None):
    """Selective search's proposals for one image: (P, 4) float32 xyxy boxes, in the order
    they were formed (strategy by strategy: the initial regions, then each merge),
    duplicates dropped.

    Args:
        image: (C, H, W) (or (H, W)) array of any real range; it is rescaled to
            [0, 255] (one minimum and maximum for all channels) so that ``scales`` mean
            what they mean on 8-bit images.
        scales: the Felzenszwalb ``k`` of each strategy.
        sigma: the Gaussian smoothing before segmenting (0: none).
        min_size: components smaller than this many pixels are merged into a neighbour.
        bins: histogram bins per channel for the colour similarity.
        max_proposals: keep at most this many (the first formed).
    """
    image = _as_image("selective_search", image)
    if not isinstance(scales, (list, tuple)) or not scales:
        raise ValueError(f"selective_search: scales must be a non-empty sequence of "
                         f"positive numbers, got {scales!r}")
    boxes, seen = [], set()
    for k in scales:
        labels = felzenszwalb_segmentation(image, k, sigma, min_size)
        for box in hierarchical_grouping(image, labels, bins):
            key = tuple(int(v) for v in box)
            if key not in seen:
                seen.add(key)
                boxes.append(key)
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    if max_proposals is not None:
        boxes = boxes[:int(max_proposals)]
    return boxes


def felzenszwalb_segmentation(image, k=100, sigma=0.8, min_size=10):
    """Felzenszwalb & Huttenlocher's graph-based segmentation: an (H, W) int64 array of
    region ids 0..R-1 (numbered in raster order of their first pixel).

    ``image`` (C, H, W) in [0, 255] (or (H, W)); edges join each pixel to its 8
    neighbours, weighted by the Euclidean colour distance after Gaussian smoothing with
    ``sigma``. Edges are visited by increasing weight (ties in raster order); components
    A and B merge over an edge of weight w when ``w <= min(Int(A) + k/|A|, Int(B) +
    k/|B|)``, Int the heaviest edge inside a component (the paper's MInt). Afterwards,
    edges are visited again in the same order and any component smaller than
    ``min_size`` joins its neighbour.
    """
    image = _as_image("felzenszwalb_segmentation", image, rescale=False)
    if isinstance(k, bool) or not isinstance(k, numbers.Real) or not k >= 0:
        raise ValueError(f"felzenszwalb_segmentation: k must be a number >= 0, got {k!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, numbers.Integral) \
            or min_size < 0:
        raise ValueError(f"felzenszwalb_segmentation: min_size must be an integer >= 0, "
                         f"got {min_size!r}")
    C, H, W = image.shape
    smooth = _gaussian_blur(image, sigma)
    # the edges of the 8-connected grid: right, down, down-right, down-left
    index = np.arange(H * W).reshape(H, W)
    pairs = [(index[:, :-1], index[:, 1:]), (index[:-1, :], index[1:, :]),
             (index[:-1, :-1], index[1:, 1:]), (index[:-1, 1:], index[1:, :-1])]
    a = np.concatenate([p[0].ravel() for p in pairs])
    b = np.concatenate([p[1].ravel() for p in pairs])
    flat = smooth.reshape(C, -1)
    weight = np.sqrt(((flat[:, a] - flat[:, b]) ** 2).sum(axis=0))
    order = np.argsort(weight, kind="stable")
    a, b, weight = a[order].tolist(), b[order].tolist(), weight[order].tolist()

    # union-find over the pixels; union by size keeps every tree O(log n) deep, so the
    # roots are found by walking up (written inline: this loop is the method's cost)
    parent = list(range(H * W))
    size = [1] * (H * W)
    threshold = [float(k)] * (H * W)          # Int(C) + k / |C|, Int = 0 for one pixel
    for u, v, w in zip(a, b, weight):
        while parent[u] != u:
            u = parent[u]
        while parent[v] != v:
            v = parent[v]
        if u != v and w <= threshold[u] and w <= threshold[v]:
            if size[u] < size[v]:
                u, v = v, u
            parent[v] = u
            size[u] += size[v]
            threshold[u] = w + k / size[u]
    if min_size > 1:
        for u, v in zip(a, b):
            while parent[u] != u:
                u = parent[u]
            while parent[v] != v:
                v = parent[v]
            if u != v and (size[u] < min_size or size[v] < min_size):
                if size[u] < size[v]:
                    u, v = v, u
                parent[v] = u
                size[u] += size[v]
    roots = np.array(parent)
    while True:                                # pointer jumping to every pixel's root
        up = roots[roots]
        if (up == roots).all():
            break
        roots = up
    _, labels = np.unique(roots, return_inverse=True)       # ids by root order
    # renumber in raster order of each region's first pixel
    first = np.full(labels.max() + 1, H * W)
    np.minimum.at(first, labels, np.arange(H * W))
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(first.shape[0])
    return rank[labels].reshape(H, W).astype(np.int64)


def hierarchical_grouping(image, labels, bins=25):
    """Selective search's grouping of an over-segmentation ``labels`` (H, W) of ``image``
    (C, H, W) in [0, 255]: a list of xyxy boxes (pixel edges), first one per initial
    region (by id), then one per merge, the last covering every region.

    Similarity of neighbouring regions i and j (Uijlings et al. §3.2; image of A pixels)::

        s_colour = Σ_k min(h_i[k], h_j[k])            (L1-normalised colour histograms)
        s_size   = 1 - (|i| + |j|) / A
        s_fill   = 1 - (|box(i ∪ j)| - |i| - |j|) / A

    The most similar pair (ties: the pair met first) becomes a new region whose histogram
    is the size-weighted mean of the two, and which neighbours theirs.
    """
    image = _as_image("hierarchical_grouping", image, rescale=False)
    labels = np.asarray(labels)
    if labels.shape != image.shape[1:] or labels.dtype.kind not in "iu":
        raise ValueError(f"hierarchical_grouping: labels must be an integer (H, W) array "
                         f"of the image's size {image.shape[1:]}, got {labels.dtype} of "
                         f"shape {labels.shape}")
    C, H, W = image.shape
    A = float(H * W)
    R = int(labels.max()) + 1
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=R).astype(np.float64)
    if (sizes == 0).any():
        raise ValueError("hierarchical_grouping: labels must number the regions 0..R-1 "
                         "without gaps")
    # bounding boxes of the regions, pixel edges
    rows, cols = np.divmod(np.arange(H * W), W)
    x1 = np.full(R, W); y1 = np.full(R, H); x2 = np.zeros(R, int); y2 = np.zeros(R, int)
    np.minimum.at(x1, flat, cols); np.minimum.at(y1, flat, rows)
    np.maximum.at(x2, flat, cols + 1); np.maximum.at(y2, flat, rows + 1)
    # colour histograms, bins per channel, L1-normalised over all channels
    edges = np.clip((image.reshape(C, -1) / 256.0 * bins).astype(int), 0, bins - 1)
    hist = np.zeros((R, C * bins))
    for c in range(C):
        np.add.at(hist, (flat, c * bins + edges[c]), 1.0)
    hist /= hist.sum(axis=1, keepdims=True)

    regions = {r: (sizes[r], [int(x1[r]), int(y1[r]), int(x2[r]), int(y2[r])], hist[r])
               for r in range(R)}
    boxes = [regions[r][1] for r in range(R)]
    # neighbours: regions that touch horizontally or vertically
    touching = np.concatenate([np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()]),
                               np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()])], 1)
    touching = np.sort(touching[:, touching[0] != touching[1]], axis=0)
    neighbours = {r: set() for r in range(R)}
    for i, j in np.unique(touching, axis=1).T.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)

    def similarity(i, j):
        si, bi, hi = regions[i]
        sj, bj, hj = regions[j]
        box = (max(bi[2], bj[2]) - min(bi[0], bj[0])) * (max(bi[3], bj[3]) - min(bi[1], bj[1]))
        return (float(np.minimum(hi, hj).sum()) + 1.0 - (si + sj) / A
                + 1.0 - (box - si - sj) / A)

    sims = {(i, j): similarity(i, j) for i in range(R) for j in neighbours[i] if i < j}
    next_id = R
    while sims:
        i, j = max(sims, key=sims.get)        # first maximum in insertion order
        si, bi, hi = regions[i]
        sj, bj, hj = regions[j]
        t = next_id
        next_id += 1
        box = [min(bi[0], bj[0]), min(bi[1], bj[1]), max(bi[2], bj[2]), max(bi[3], bj[3])]
        regions[t] = (si + sj, box, (si * hi + sj * hj) / (si + sj))
        boxes.append(box)
        neighbours[t] = (neighbours.pop(i) | neighbours.pop(j)) - {i, j}
        for pair in [p for p in sims if i in p or j in p]:
            del sims[pair]
        for n in neighbours[t]:
            neighbours[n] -= {i, j}
            neighbours[n].add(t)
            sims[(n, t)] = similarity(n, t)
    return boxes


def _as_image(op, image, rescale=True):
    """(C, H, W) float64, rescaled to [0, 255] when ``rescale``."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or min(image.shape) < 1:
        raise ValueError(f"{op}: expected a (C, H, W) or (H, W) image, got shape "
                         f"{image.shape}")
    if not np.isfinite(image).all():
        raise ValueError(f"{op}: the image holds NaN or infinite values")
    if rescale:
        low, high = image.min(), image.max()
        image = (image - low) * (255.0 / (high - low)) if high > low else image * 0.0
    return image


def _gaussian_blur(image, sigma):
    """Separable Gaussian smoothing of each channel (edge pixels repeated)."""
    if sigma <= 0:
        return image
    radius = int(np.ceil(4 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    H, W = image.shape[1:]
    rows = sum(kernel[i] * padded[:, i:i + H, :] for i in range(2 * radius + 1))
    return sum(kernel[i] * rows[:, :, i:i + W] for i in range(2 * radius + 1))
