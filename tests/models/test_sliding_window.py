"""Sliding-window detection (naive crops vs one dense pass) and OverFeat's greedy merge."""
import numpy as np
import pytest

import minicnn
from minicnn import nn
from minicnn.models.detection import greedy_merge, sliding_window, window_scores


def _valid_classifier():
    """Valid convolutions only: 14x14 crops -> 3 classes, total stride 4."""
    minicnn.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 3))


def test_dense_pass_gives_the_scores_of_every_crop():
    model = _valid_classifier()
    image = minicnn.tensor(np.random.default_rng(1).standard_normal((3, 30, 26))
                           .astype(np.float32))
    naive = window_scores(model, image, window=14, stride=4)
    dense = window_scores(model, image, window=14, stride=4, dense=True)
    assert naive.shape == dense.shape == (3, 5, 4)
    np.testing.assert_allclose(dense.numpy(), naive.numpy(), rtol=1e-5, atol=1e-6)
    # one crop by hand: the window at map cell (2, 1) starts at row 8, column 4
    crop = image[:, 8:22, 4:18].unsqueeze(0)
    with minicnn.no_grad():
        direct = model.eval()(crop).softmax(dim=1)[0]
    np.testing.assert_allclose(naive.numpy()[:, 2, 1], direct.numpy(), rtol=1e-6)


def test_dense_pass_refuses_a_stride_that_is_not_the_networks():
    model = _valid_classifier()
    image = minicnn.zeros(3, 30, 26)
    with pytest.raises(ValueError, match="network's total stride"):
        window_scores(model, image, window=14, stride=2, dense=True)


def _brightness_detector(window):
    """Background logit 0, object logit 10 * mean(crop) - 5: a crop filled by a bright
    square scores p(object) = 0.993, a crop half on it 0.5."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(window * window, 2))
    model[1].weight.data[...] = 0.0
    model[1].weight.data[1] = 10.0 / window ** 2
    model[1].bias.data[...] = np.array([0.0, -5.0], dtype=np.float32)
    return model


@pytest.mark.parametrize("dense", [False, True])
def test_sliding_window_finds_the_square(dense):
    image = np.zeros((1, 32, 40), np.float32)
    image[0, 8:16, 16:24] = 1.0                      # an 8x8 square: rows 8-15, cols 16-23
    # stride 1 (the dense pass's step for this one-layer network): windows shifted by a
    # pixel or two also pass the threshold, and NMS keeps the exact one
    found = sliding_window(_brightness_detector(8), minicnn.tensor(image), window=8,
                           stride=1, dense=dense, score_threshold=0.9)
    np.testing.assert_array_equal(found["boxes"].numpy(), [[16, 8, 24, 16]])
    assert found["labels"].tolist() == [1]
    assert found["scores"].item() == pytest.approx(1 / (1 + np.exp(-5)), rel=1e-5)


def test_sliding_window_at_half_scale_finds_a_square_twice_the_window():
    image = np.zeros((1, 48, 48), np.float32)
    image[0, 16:32, 8:24] = 1.0                      # 16x16: found by 8x8 windows at 1/2
    found = sliding_window(_brightness_detector(8), minicnn.tensor(image), window=8,
                           stride=4, scales=(0.5,), score_threshold=0.9)
    np.testing.assert_allclose(found["boxes"].numpy(), [[8, 16, 24, 32]])
    # at scale 1 the same windows see only parts of the square: 8x8 boxes inside it
    both = sliding_window(_brightness_detector(8), minicnn.tensor(image), window=8,
                          stride=4, scales=(1.0, 0.5), score_threshold=0.9)
    sides = (both["boxes"][:, 2] - both["boxes"][:, 0]).numpy()
    assert set(sides.tolist()) == {8.0, 16.0}


def test_sliding_window_bad_input():
    model = _brightness_detector(8)
    with pytest.raises(ValueError, match=r"sliding_window: image must be a \(C, H, W\)"):
        sliding_window(model, minicnn.zeros(1, 1, 16, 16), window=8, stride=4)
    with pytest.raises(ValueError, match="sliding_window: stride must be a positive"):
        sliding_window(model, minicnn.zeros(1, 16, 16), window=8, stride=0)
    with pytest.raises(ValueError, match="sliding_window: scales must be positive"):
        sliding_window(model, minicnn.zeros(1, 16, 16), window=8, stride=4, scales=(0,))
    with pytest.raises(ValueError, match="smaller than the window"):
        window_scores(model, minicnn.zeros(1, 6, 16), window=8, stride=4)


def test_greedy_merge_averages_overlapping_boxes_and_adds_their_scores():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40]], np.float64)
    scores = np.array([0.6, 0.7, 0.9])
    # IoU of the first two: 90 / 110 = 0.818 -> match score 0.18 < 0.5: merged
    merged, merged_scores = greedy_merge(boxes, scores, threshold=0.5)
    np.testing.assert_allclose(merged, [[0.5, 0, 10.5, 10], [30, 30, 40, 40]])
    np.testing.assert_allclose(merged_scores, [1.3, 0.9])
    # a threshold below the pair's match score keeps all three, by score
    kept, kept_scores = greedy_merge(boxes, scores, threshold=0.1)
    np.testing.assert_allclose(kept_scores, [0.9, 0.7, 0.6])
    assert kept.shape == (3, 4)


def test_greedy_merge_bad_input():
    with pytest.raises(ValueError, match="greedy_merge: 2 boxes but 1 scores"):
        greedy_merge(np.zeros((2, 4)), np.zeros(1))
    with pytest.raises(ValueError, match="x2 >= x1"):
        greedy_merge(np.array([[5.0, 0, 1, 1]]), np.ones(1))
