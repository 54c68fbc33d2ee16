"""metrics.mask_iou: hand values, rectangles against box_iou of their pixel-edge boxes,
probability masks read as non-zero, empty masks, and errors naming the function."""
import numpy as np
import pytest

import minicnn as mc
from minicnn.metrics import mask_iou
from minicnn.ops import box_iou


def test_hand_values():
    a = np.zeros((2, 4, 4), bool)
    a[0, :2, :2] = True                      # 4 pixels
    a[1] = True                              # 16 pixels
    b = np.zeros((3, 4, 4), bool)
    b[0, :2, :] = True                       # 8 pixels: 4 shared with a[0]
    b[2, 0, 0] = True                        # 1 pixel
    np.testing.assert_array_equal(mask_iou(a, b), [[4 / 8, 0, 1 / 4], [8 / 16, 0, 1 / 16]])
    assert mask_iou(a, b).dtype == np.float64


def test_rectangles_agree_with_box_iou():
    rng = np.random.default_rng(0)
    corners = np.sort(rng.integers(0, 32, (10, 2, 2)), axis=1)      # (x1, x2), (y1, y2)
    corners[:, 1] += 1                                               # non-empty
    boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0],
                      corners[:, 1, 1]], 1).astype(np.float64)      # xyxy pixel edges
    masks = np.zeros((10, 33, 33), np.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.astype(int)):
        m[y1:y2, x1:x2] = 1
    np.testing.assert_allclose(mask_iou(masks[:4], mc.tensor(masks)), box_iou(boxes[:4], boxes),
                               rtol=1e-14)


def test_probabilities_and_empty_masks():
    p = np.array([[[0.0, 0.2], [0.7, 0.0]]])
    empty = np.zeros((1, 2, 2))
    assert mask_iou(p >= 0.5, p).item() == 0.5           # 1 pixel of the 2 non-zero
    assert mask_iou(empty, empty).item() == 0.0
    assert mask_iou(np.zeros((0, 2, 2)), p).shape == (0, 1)


def test_errors_name_mask_iou():
    with pytest.raises(ValueError, match=r"mask_iou: expected masks1 of shape \(K, H, W\)"):
        mask_iou(np.zeros((2, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="mask_iou: masks1 and masks2 must have one size"):
        mask_iou(np.zeros((1, 2, 2)), np.zeros((1, 3, 2)))
