"""U-Net's weight map (eq. 2) and the exact distance transform, against brute force."""
import numpy as np
import pytest

from minicnn.data import unet_weight_map
from minicnn.data.weight_map import distance_transform


def _two_touching_discs(size=32, radius=7):
    """Instance labels: two discs side by side whose edges touch in the middle row."""
    ys, xs = np.mgrid[0:size, 0:size]
    labels = np.zeros((size, size), dtype=np.int64)
    labels[(ys - 16) ** 2 + (xs - 9) ** 2 <= radius ** 2] = 1
    labels[(ys - 16) ** 2 + (xs - 24) ** 2 <= radius ** 2] = 2
    return labels


def _brute_force(labels, w0, sigma, wc):
    """Eq. 2 pixel by pixel: distances to every pixel of every cell, two smallest."""
    h, w = labels.shape
    cells = [np.argwhere(labels == k) for k in np.unique(labels[labels > 0])]
    out = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            d = sorted(np.sqrt(((c - (i, j)) ** 2).sum(axis=1)).min() for c in cells)
            border = w0 * np.exp(-(d[0] + d[1]) ** 2 / (2 * sigma ** 2))
            out[i, j] = wc[int(labels[i, j] > 0)] + (border if labels[i, j] == 0 else 0.0)
    return out


def test_weight_map_equals_brute_force_on_touching_discs():
    labels = _two_touching_discs()
    assert labels[16, 16] == 1 and labels[16, 17] == 2            # the discs touch
    n, n_fg = labels.size, np.count_nonzero(labels)
    wc = (n / (2 * (n - n_fg)), n / (2 * n_fg))                  # balanced
    w = unet_weight_map(labels, w0=10, sigma=5)
    assert w.shape == (32, 32) and w.dtype == np.float32
    np.testing.assert_allclose(w, _brute_force(labels, 10.0, 5.0, wc), rtol=1e-6)
    # the background next to the contact is about w_c + w0; far away just w_c
    assert w[15, 16] - wc[0] > 0.85 * 10
    assert w[0, 31] == pytest.approx(wc[0], abs=1e-6)
    # over the whole map the border term peaks at the contact
    border = w - np.where(labels > 0, wc[1], wc[0])
    assert np.unravel_index(np.argmax(border), border.shape) in {(15, 16), (15, 17),
                                                                 (17, 16), (17, 17)}


def test_weight_map_everywhere_reaches_w0_on_the_shared_border():
    labels = _two_touching_discs()
    w = unet_weight_map(labels, w0=10, sigma=5, class_weights=(1.0, 1.0),
                        background_only=False)
    # on the contact pixel of disc 1: d1 = 0 (inside), d2 = 1 (the touching pixel of disc 2)
    assert w[16, 16] == pytest.approx(1.0 + 10 * np.exp(-1 / 50), rel=1e-6)
    assert w[16, 16] > 1.0 + 0.98 * 10


def test_class_weights_and_degenerate_cases():
    labels = _two_touching_discs()
    balanced = unet_weight_map(labels, w0=0)
    assert balanced.mean() == pytest.approx(1.0, rel=1e-6)          # scikit-learn "balanced"
    assert balanced[labels > 0].sum() == pytest.approx(balanced[labels == 0].sum(), rel=1e-5)
    given = unet_weight_map(labels, w0=0, class_weights={0: 0.5, 1: 3.0})
    assert set(np.unique(given).tolist()) == {0.5, 3.0}
    one_cell = np.where(labels == 1, 1, 0)
    assert np.array_equal(unet_weight_map(one_cell, class_weights=(1, 2)),
                          np.where(one_cell > 0, 2.0, 1.0).astype(np.float32))
    classes = np.where(labels == 2, 2, labels)                     # a semantic class map
    w = unet_weight_map(labels, w0=0, class_weights=(1, 2, 4), classes=classes)
    assert w[16, 24] == 4 and w[16, 9] == 2 and w[0, 0] == 1
    with pytest.raises(ValueError, match="unet_weight_map: class_weights has no weight"):
        unet_weight_map(labels, class_weights=(1.0,))
    with pytest.raises(ValueError, match="unet_weight_map: instance_labels must be an"):
        unet_weight_map(labels.astype(np.float32))
    with pytest.raises(ValueError, match="unet_weight_map: w0 must be a number and sigma"):
        unet_weight_map(labels, sigma=0)


@pytest.mark.parametrize("shape, density", [((13, 17), 0.05), ((20, 9), 0.3), ((1, 12), 0.2)])
def test_distance_transform_is_exact(rng, shape, density):
    features = rng.random(shape) < density
    features.flat[0] = True
    got = distance_transform(features, squared=True)
    points = np.argwhere(features)
    grid = np.indices(shape).reshape(2, -1).T
    expected = ((grid[:, None, :] - points[None]) ** 2).sum(-1).min(axis=1).reshape(shape)
    assert np.array_equal(got, expected)
    assert np.all(np.isinf(distance_transform(np.zeros((3, 4), bool))))
