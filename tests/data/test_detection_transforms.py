"""Box- and mask-aware transforms (minicnn.data.detection_transforms): boxes against hand
values computed with torchvision v2's formulas for the same parameters, the random draws
against a step-by-step twin of torchvision's ``make_params`` fed the same numbers, masks
moving with their boxes, photometric transforms leaving boxes alone."""
import numpy as np
import pytest

from minicnn.autograd import Tensor
from minicnn.data import detection_transforms as D
from minicnn.data import imageops
from minicnn.data._random import using_generator
from minicnn.data.datasets import ShapesDetection


def _rng(seed):
    return np.random.default_rng(seed)


def _sample(size=(10, 12), seed=0):
    """A uint8 picture and a target of two boxes with their (rectangle) masks."""
    h, w = size
    picture = _rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = np.array([[3, 2, 8, 5], [1, 4, 6, 10]], dtype=np.float32)
    masks = np.zeros((2, h, w), dtype=np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.astype(int)):
        mask[y1:y2, x1:x2] = 1
    return picture, {"boxes": boxes, "labels": np.array([1, 2]), "masks": masks,
                     "difficult": np.array([False, True]), "image_id": 42}


def _mask_boxes(masks):
    out = []
    for mask in masks:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        out.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    return np.array(out, dtype=np.float32).reshape(-1, 4)


def _chw(picture):
    return picture.transpose(2, 0, 1).astype(np.float32) / 255


# ------------------------------------------------------------------ flip

def test_horizontal_flip_boxes_masks_and_image_in_every_layout():
    picture, target = _sample()
    out, t = D.horizontal_flip(picture, target)
    # torchvision: x1' = W - x2, x2' = W - x1 (W = 12)
    np.testing.assert_array_equal(t["boxes"], [[4, 2, 9, 5], [6, 4, 11, 10]])
    np.testing.assert_array_equal(out, picture[:, ::-1])
    np.testing.assert_array_equal(t["masks"], target["masks"][:, :, ::-1])
    np.testing.assert_array_equal(_mask_boxes(t["masks"]), t["boxes"])
    assert t["labels"].tolist() == [1, 2] and t["image_id"] == 42
    np.testing.assert_array_equal(target["boxes"][0], [3, 2, 8, 5])    # input untouched
    flipped, t2 = D.horizontal_flip(_chw(picture), target)
    np.testing.assert_array_equal(flipped, _chw(picture)[..., ::-1])
    np.testing.assert_array_equal(t2["boxes"], t["boxes"])
    as_tensor, _ = D.horizontal_flip(Tensor(_chw(picture)), target)
    assert isinstance(as_tensor, Tensor)
    np.testing.assert_array_equal(as_tensor.numpy(), flipped)


def test_random_horizontal_flip_probability():
    picture, target = _sample()
    flips = 0
    with using_generator(_rng(1)):
        for _ in range(400):
            _, t = D.RandomHorizontalFlip(p=0.3)(picture, target)
            flips += int(t["boxes"][0, 0] != 3)
    assert 90 < flips < 150
    same, t = D.RandomHorizontalFlip(p=0.0)(picture, target)
    assert same is picture and np.array_equal(t["boxes"], target["boxes"])


# ---------------------------------------------------------------- resize

def test_resize_scales_boxes_by_the_size_ratios():
    picture, target = _sample()                                   # 10 x 12
    out, t = D.resize(picture, target, (5, 24))
    assert out.shape == (5, 24, 3) and out.dtype == np.uint8
    # boxes * (W'/W, H'/H, W'/W, H'/H) = (2, 0.5, 2, 0.5)
    np.testing.assert_allclose(t["boxes"], [[6, 1, 16, 2.5], [2, 2, 12, 5]])
    np.testing.assert_array_equal(out.transpose(2, 0, 1),
                                  imageops.resize(picture.transpose(2, 0, 1), (5, 24)))
    assert t["masks"].shape == (2, 5, 24) and t["masks"].dtype == np.uint8
    # an exact 2x enlargement moves the masks' tight boxes exactly as the boxes
    _, up = D.resize(picture, target, (20, 24))
    np.testing.assert_array_equal(_mask_boxes(up["masks"]), up["boxes"])
    # an int resizes the shorter side, the longer one int(size * long / short)
    out, t = D.Resize(7)(picture, target)
    assert out.shape == (7, 8, 3)
    np.testing.assert_allclose(t["boxes"][0], [3 * 8 / 12, 2 * 0.7, 8 * 8 / 12, 5 * 0.7],
                               rtol=1e-6)
    assert D.Resize(20, max_size=22).output_size(10, 12) == (18, 22)
    assert D.Resize((3, 4)).output_size(10, 12) == (3, 4)


# ------------------------------------------------------------ crop and pad

def test_crop_shifts_and_clamps_boxes():
    picture, target = _sample()
    out, t = D.crop(picture, target, top=3, left=2, height=5, width=7)
    # minus (left, top, left, top), clamped to [0, 7] x [0, 5]
    # (3, 2, 8, 5) -> (1, -1, 6, 2) -> (1, 0, 6, 2)
    # (1, 4, 6, 10) -> (-1, 1, 4, 7) -> (0, 1, 4, 5)
    np.testing.assert_array_equal(t["boxes"], [[1, 0, 6, 2], [0, 1, 4, 5]])
    np.testing.assert_array_equal(out, picture[3:8, 2:9])
    np.testing.assert_array_equal(t["masks"], target["masks"][:, 3:8, 2:9])
    np.testing.assert_array_equal(_mask_boxes(t["masks"]), t["boxes"])
    # beyond the image: zeros in the image and the masks
    out, t = D.crop(_chw(picture), target, top=-2, left=8, height=4, width=6)
    assert out.shape == (3, 4, 6) and np.all(out[:, :2] == 0) and np.all(out[:, :, 4:] == 0)
    np.testing.assert_array_equal(t["boxes"], [[0, 4, 0, 4], [0, 4, 0, 4]])   # left empty


def test_pad_moves_boxes_and_fills_per_channel():
    picture, target = _sample()
    out, t = D.pad(picture, target, (2, 1, 3, 4), fill=(10, 20, 30))
    assert out.shape == (15, 17, 3)
    np.testing.assert_array_equal(out[1:11, 2:14], picture)
    assert out[0, 0].tolist() == [10, 20, 30] and out[14, 16].tolist() == [10, 20, 30]
    np.testing.assert_array_equal(t["boxes"], target["boxes"] + [2, 1, 2, 1])
    np.testing.assert_array_equal(_mask_boxes(t["masks"]), t["boxes"])
    assert t["masks"][:, :1].sum() == 0


# -------------------------------------------------------------- IoU crop

def _iou(boxes, window):
    x1, y1, x2, y2 = window
    iw = np.clip(np.minimum(boxes[:, 2], x2) - np.maximum(boxes[:, 0], x1), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], y2) - np.maximum(boxes[:, 1], y1), 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return iw * ih / (area + (x2 - x1) * (y2 - y1) - iw * ih)


def _iou_crop_twin(rng, h, w, boxes, options, min_scale=0.3, max_scale=1.0, trials=40):
    """torchvision's RandomIoUCrop.make_params, line by line, drawing from ``rng``."""
    while True:
        min_iou = options[int(rng.integers(0, len(options)))]
        if min_iou >= 1.0:
            return None
        for _ in range(trials):
            r = min_scale + (max_scale - min_scale) * rng.random(2)
            new_w, new_h = int(w * r[0]), int(h * r[1])
            if not 0.5 <= new_w / new_h <= 2.0:
                continue
            r = rng.random(2)
            left, top = int((w - new_w) * r[0]), int((h - new_h) * r[1])
            right, bottom = left + new_w, top + new_h
            if left == right or top == bottom:
                continue
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            inside = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
            if not inside.any():
                continue
            if _iou(boxes[inside], (left, top, right, bottom)).max() < min_iou:
                continue
            return top, left, new_h, new_w, inside


def test_random_iou_crop_draws_and_boxes():
    picture, target = _sample((40, 48))
    target["boxes"] = np.array([[3, 2, 20, 15], [25, 20, 46, 38], [10, 25, 16, 31]],
                               dtype=np.float32)
    target["labels"], target["difficult"] = np.array([1, 2, 3]), np.zeros(3, bool)
    target["masks"] = np.zeros((3, 40, 48), np.uint8)
    for mask, (x1, y1, x2, y2) in zip(target["masks"], target["boxes"].astype(int)):
        mask[y1:y2, x1:x2] = 1
    transform = D.RandomIoUCrop()
    cropped = 0
    for seed in range(40):
        with using_generator(_rng(seed)):
            out, t = transform(picture, target)
        expected = _iou_crop_twin(_rng(seed), 40, 48, target["boxes"].astype(np.float64),
                                  transform.options)
        if expected is None:
            assert out is picture and np.array_equal(t["boxes"], target["boxes"])
            continue
        cropped += 1
        top, left, h, w, inside = expected
        assert out.shape == (h, w, 3)
        np.testing.assert_array_equal(out, picture[top:top + h, left:left + w])
        kept = target["boxes"][inside] - [left, top, left, top]
        kept[:, 0::2] = kept[:, 0::2].clip(0, w)
        kept[:, 1::2] = kept[:, 1::2].clip(0, h)
        np.testing.assert_array_equal(t["boxes"], kept)
        assert t["labels"].tolist() == target["labels"][inside].tolist()
        assert t["difficult"].shape == t["labels"].shape and t["image_id"] == 42
        np.testing.assert_array_equal(_mask_boxes(t["masks"]), t["boxes"])
    assert 20 < cropped < 40


def test_random_iou_crop_hand_case_and_edge_cases():
    picture, target = _sample((40, 48))
    out, t = D.crop(picture, D._select(target, np.array([False, True])), 3, 2, 20, 30)
    np.testing.assert_array_equal(t["boxes"], [[0, 1, 4, 7]])
    empty = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
    same, t = D.RandomIoUCrop()(picture, empty)
    assert same is picture and t["boxes"].shape == (0, 4)
    with using_generator(_rng(0)):      # no option leaves it as is and no crop can fit
        same, _ = D.RandomIoUCrop(sampler_options=[0.999], max_rounds=3)(picture, target)
    assert same is picture
    with pytest.raises(ValueError, match="RandomIoUCrop: need 0 < min_scale"):
        D.RandomIoUCrop(min_scale=0.0)


# -------------------------------------------------------------- zoom out

def test_random_zoom_out_draws_boxes_and_fill():
    picture, target = _sample()
    transform = D.RandomZoomOut(fill=(1, 2, 3), side_range=(1.0, 4.0), p=0.5)
    zoomed = 0
    for seed in range(20):
        with using_generator(_rng(seed)):
            out, t = transform(picture, target)
        rng = _rng(seed)                    # torchvision's draws, in its order
        if rng.random() >= 0.5:
            assert out is picture
            continue
        zoomed += 1
        r = 1.0 + rng.random() * 3.0
        canvas_w, canvas_h = int(12 * r), int(10 * r)
        u = rng.random(2)
        left, top = int((canvas_w - 12) * u[0]), int((canvas_h - 10) * u[1])
        assert out.shape == (canvas_h, canvas_w, 3)
        np.testing.assert_array_equal(out[top:top + 10, left:left + 12], picture)
        assert out.reshape(-1, 3).tolist().count([1, 2, 3]) == canvas_h * canvas_w - 120
        np.testing.assert_array_equal(t["boxes"], target["boxes"] + [left, top, left, top])
        np.testing.assert_array_equal(_mask_boxes(t["masks"]), t["boxes"])
    assert 5 < zoomed < 15
    with pytest.raises(ValueError, match="side_range"):
        D.RandomZoomOut(side_range=(0.5, 2.0))


# ---------------------------------------------------------- scale/translate

def test_scale_translate_by_hand():
    picture, target = _sample()                               # 10 x 12, centre (6, 5)
    # an integer shift moves every pixel exactly
    out, t = D.scale_translate(picture, target, 1.0, (3, -2), fill=7)
    np.testing.assert_array_equal(out[:8, 3:], picture[2:, :9])
    assert np.all(out[8:] == 7) and np.all(out[:, :3] == 7)
    np.testing.assert_array_equal(t["boxes"], [[6, 0, 11, 3], [4, 2, 9, 8]])
    np.testing.assert_array_equal(t["masks"][:, :8, 3:], target["masks"][:, 2:, :9])
    np.testing.assert_array_equal(_mask_boxes(t["masks"]), t["boxes"])
    # x' = (x - W/2) s + W/2 + tx: s = 2 about (6, 5), then (1, 0)
    _, t = D.scale_translate(_chw(picture), target, 2.0, (1, 0))
    np.testing.assert_array_equal(t["boxes"], [[1, 0, 11, 5], [0, 3, 7, 10]])
    np.testing.assert_array_equal(_mask_boxes(t["masks"]), [[1, 0, 11, 5], [0, 3, 7, 10]])
    # bilinear: halving about the centre averages pixel pairs, the border gets the fill
    flat = np.arange(16, dtype=np.float64).reshape(1, 4, 4) * np.ones((3, 1, 1))
    out, _ = D.scale_translate(flat, {"boxes": np.zeros((0, 4))}, 0.5, (0, 0), fill=9.0)
    # output column 1 (centre 1.5) samples 2 * (1.5 - 2) + 2 = 1, pixel index 0.5: the
    # mean of columns 0 and 1; column 0 samples index -1.5, outside: the fill
    np.testing.assert_allclose(out[0, 1:3, 1:3], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(out[:, 0], 9.0)
    np.testing.assert_array_equal(out[:, :, 3], 9.0)


def test_random_scale_translate_draws_and_drops_boxes_pushed_out():
    picture, target = _sample((40, 50))
    target["boxes"] = target["boxes"] + 14
    target["masks"] = np.roll(target["masks"], (14, 14), axis=(1, 2))
    transform = D.RandomScaleTranslate(scale=0.2, translate=0.2)
    kept = 0
    for seed in range(20):
        with using_generator(_rng(seed)):
            s, (tx, ty) = transform.get_params((40, 50))
        rng = _rng(seed)
        assert s == rng.uniform(0.8, 1.2)
        assert (tx, ty) == (round(rng.uniform(-10, 10)), round(rng.uniform(-8, 8)))
        with using_generator(_rng(seed)):
            out, t = transform(picture, target)
        expected, _ = D.scale_translate(picture, target, s, (tx, ty))
        np.testing.assert_array_equal(out, expected)
        moved = (target["boxes"] - [25, 20, 25, 20]) * s + [25 + tx, 20 + ty] * 2
        clipped = np.clip(moved, 0, [50, 40, 50, 40])
        area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        keep = (area > 0) & (area >= 0.25 * (moved[:, 2] - moved[:, 0])
                             * (moved[:, 3] - moved[:, 1]))
        np.testing.assert_allclose(t["boxes"], clipped[keep], rtol=1e-6)
        assert t["labels"].tolist() == target["labels"][keep].tolist()
        kept += int(keep.sum())
    assert kept > 20          # the dropping itself: the hand case below
    # a box pushed mostly out of the image is dropped with its rows
    target["boxes"] = np.array([[2, 2, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    keep = D.RandomScaleTranslate(min_visible=0.5)
    keep.get_params = lambda size: (1.0, (-8, 0))       # box 0 keeps 2/8 of its width
    _, t = keep(picture, target)
    np.testing.assert_array_equal(t["boxes"], [[12, 20, 22, 30]])
    assert t["labels"].tolist() == [2] and t["masks"].shape == (1, 40, 50)
    assert t["difficult"].tolist() == [True]
    keep.min_visible = 0.2
    assert len(keep(picture, target)[1]["boxes"]) == 2


# ------------------------------------------------------------------ colour

def test_photometric_transforms_leave_boxes_and_masks_alone():
    picture, target = _sample()
    for transform in (D.RandomPhotometricDistort(p=1.0), D.RandomHSV(hue=0.1),
                      D.Normalize((0.5,) * 3, (0.2,) * 3)):
        image = _chw(picture) if isinstance(transform, D.Normalize) else picture
        with using_generator(_rng(3)):
            out, t = transform(image, target)
        assert out.shape == image.shape and out.dtype == image.dtype
        assert not np.array_equal(out, image)
        for key in ("boxes", "labels", "masks", "difficult"):
            np.testing.assert_array_equal(t[key], target[key])


def test_photometric_distort_draws_and_order():
    image = _rng(0).random((3, 6, 7)).astype(np.float32)
    transform = D.RandomPhotometricDistort(p=0.5)
    orders = set()
    for seed in range(12):
        with using_generator(_rng(seed)):
            out, _ = transform(image, {"boxes": np.zeros((0, 4))})
        rng = _rng(seed)                    # torchvision's draws, in its order
        factors = {}
        for key, (low, high) in (("b", (0.875, 1.125)), ("c", (0.5, 1.5)),
                                 ("s", (0.5, 1.5)), ("h", (-0.05, 0.05))):
            factors[key] = rng.uniform(low, high) if rng.random() < 0.5 else None
        before = rng.random() < 0.5
        permutation = rng.permutation(3) if rng.random() < 0.5 else None
        x = image
        if factors["b"] is not None:
            x = imageops.adjust_brightness(x, factors["b"])
        if factors["c"] is not None and before:
            x = imageops.adjust_contrast(x, factors["c"])
        if factors["s"] is not None:
            x = imageops.adjust_saturation(x, factors["s"])
        if factors["h"] is not None:
            x = imageops.adjust_hue(x, factors["h"])
        if factors["c"] is not None and not before:
            x = imageops.adjust_contrast(x, factors["c"])
        if permutation is not None:
            x = x[permutation]
        np.testing.assert_allclose(out, x, atol=1e-6)
        orders.add((before, permutation is None))
    assert len(orders) == 4


def test_hsv_factor_one_is_the_identity_and_factors_scale_s_and_v():
    picture, target = _sample()
    same, _ = D.RandomHSV(saturation=1.0, exposure=1.0)(picture, target)
    np.testing.assert_array_equal(same, picture)
    image = _chw(picture)
    np.testing.assert_allclose(D.adjust_hsv(image, 1.0, 1.0, 0.0), image, atol=1e-6)
    # exposure scales V exactly (no clipping below 1), saturation scales S
    dim = image * 0.5
    hsv = imageops.rgb_to_hsv(dim)
    out = imageops.rgb_to_hsv(D.adjust_hsv(dim, 1.0, 1.5))
    np.testing.assert_allclose(out[2], hsv[2] * 1.5, atol=1e-6)
    np.testing.assert_allclose(out[1], hsv[1], atol=1e-6)
    out = imageops.rgb_to_hsv(D.adjust_hsv(dim, 0.6, 1.0))
    np.testing.assert_allclose(out[1], hsv[1] * 0.6, atol=1e-6)
    np.testing.assert_allclose(out[2], hsv[2], atol=1e-6)
    grey = image[:1]
    np.testing.assert_allclose(D.adjust_hsv(grey, 2.0, 0.5), grey * 0.5, atol=1e-7)


def test_hsv_draws_factors_in_the_darknet_way():
    transform = D.RandomHSV(saturation=1.5, exposure=2.0)
    with using_generator(_rng(0)):
        draws = np.array([transform.get_params() for _ in range(2000)])
    assert np.all(draws[:, 0] == 0)
    for column, s in ((1, 1.5), (2, 2.0)):
        assert np.all((draws[:, column] >= 1 / s) & (draws[:, column] <= s))
        assert 0.45 < np.mean(draws[:, column] < 1) < 0.55      # a factor or its inverse
    rng = _rng(0)                                              # hue, sat, exposure
    rng.uniform(0, 0)
    factor = rng.uniform(1.0, 1.5)
    assert draws[0, 1] == (factor if rng.random() < 0.5 else 1 / factor)
    with pytest.raises(ValueError, match="RandomHSV: saturation must be a number >= 1"):
        D.RandomHSV(saturation=0.5)


# -------------------------------------------------------------- sanitize

def test_sanitize_drops_degenerate_boxes_with_their_rows():
    picture, target = _sample()                                # 10 x 12
    target["boxes"] = np.array([[3, 2, 8, 5],                   # fine
                                [4, 4, 4.5, 9],                  # 0.5 wide
                                [-1, 2, 5, 6],                   # x1 < 0
                                [2, 2, 13, 6]], dtype=np.float32)  # x2 > W
    target["labels"], target["difficult"] = np.arange(1, 5), np.array([0, 1, 0, 1], bool)
    target["masks"] = np.stack([target["masks"][0]] * 4)
    _, t = D.SanitizeBoundingBoxes()(picture, target)
    np.testing.assert_array_equal(t["boxes"], [[3, 2, 8, 5]])
    assert t["labels"].tolist() == [1] and t["difficult"].tolist() == [False]
    assert t["masks"].shape == (1, 10, 12) and t["image_id"] == 42
    _, t = D.SanitizeBoundingBoxes(min_size=4, min_area=1)(picture, target)
    assert t["labels"].tolist() == []
    _, t = D.SanitizeBoundingBoxes(min_size=1, min_area=16)(picture, target)
    assert len(t["labels"]) == 0
    with pytest.raises(ValueError, match="min_size should be >= 1"):
        D.SanitizeBoundingBoxes(min_size=0.5)


# ------------------------------------------------------------ conversion

def test_to_tensor_normalize_and_compose():
    picture, target = _sample()
    image, t = D.ToTensor()(picture, target)
    assert image.shape == (3, 10, 12) and image.dtype == np.float32
    np.testing.assert_allclose(image, _chw(picture))
    assert t["boxes"].dtype == np.float32 and t["labels"].dtype == np.int64
    assert t["masks"].dtype == np.uint8 and t["difficult"].dtype == np.bool_
    again, _ = D.ToTensor()(image, t)                     # a tensor image passes through
    np.testing.assert_array_equal(again, image)
    pipeline = D.Compose([D.RandomHorizontalFlip(1.0), D.ToTensor(),
                          D.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])
    out, t = pipeline(picture, target)
    np.testing.assert_allclose(out, (_chw(picture)[..., ::-1] - 0.5) / 0.25, atol=1e-6)
    np.testing.assert_array_equal(t["boxes"], [[4, 2, 9, 5], [6, 4, 11, 10]])
    with pytest.raises(TypeError, match="ToTensor"):
        D.Normalize((0.5,), (0.5,))(picture, target)


def test_every_geometric_transform_keeps_masks_on_their_boxes():
    """On generated shapes: after each transform the tight box of each mask is its box
    (exactly where pixels map to pixels, within a pixel where they are resampled)."""
    ds = ShapesDetection(6, image_size=32, seed=0, max_shapes=2)
    # (transform, tolerance, whether it can clip a box, then looser than its visible part)
    transforms = [(D.RandomHorizontalFlip(1.0), 0, False),
                  (D.RandomZoomOut(p=1.0), 0, False),
                  (D.Resize((48, 40)), 1, False), (D.RandomIoUCrop(), 0, True),
                  (D.RandomScaleTranslate(), 1, True)]
    with using_generator(_rng(0)):
        for i in range(len(ds)):
            picture, target = ds.data[i], dict(ds.targets[i], masks=ds.instance_masks(i))
            for transform, tolerance, clips in transforms:
                out, t = D.SanitizeBoundingBoxes()(*transform(picture, target))
                assert t["masks"].shape == (len(t["boxes"]),) + out.shape[:2]
                keep = t["masks"].reshape(len(t["masks"]), -1).any(axis=1)
                found, boxes = _mask_boxes(t["masks"][keep]), t["boxes"][keep]
                if not clips:
                    assert keep.all()
                    np.testing.assert_allclose(found, boxes, atol=tolerance)
                else:
                    # a shape cut by the border may show less than its clamped box
                    assert np.all(found[:, :2] >= boxes[:, :2] - tolerance)
                    assert np.all(found[:, 2:] <= boxes[:, 2:] + tolerance)


def test_bad_targets_are_refused():
    picture, target = _sample()
    with pytest.raises(TypeError, match="horizontal_flip: the target must be a dict"):
        D.horizontal_flip(picture, [1, 2])
    with pytest.raises(KeyError, match="no 'boxes'"):
        D.horizontal_flip(picture, {"labels": np.zeros(2)})
    with pytest.raises(ValueError, match=r"boxes must have shape \(K, 4\)"):
        D.RandomHorizontalFlip(1.0)(picture, {"boxes": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="2 boxes but 3 labels"):
        D.resize(picture, dict(target, labels=np.arange(3)), (5, 5))
    with pytest.raises(ValueError, match=r"masks are \(9, 12\)"):
        D.crop(picture, dict(target, masks=target["masks"][:, 1:]), 0, 0, 4, 4)
    with pytest.raises(TypeError, match="integers .* or floats"):
        D.horizontal_flip(np.zeros((4, 4, 3), bool), target)
    with pytest.raises(ValueError, match="p must be a probability"):
        D.RandomHorizontalFlip(p=2)
