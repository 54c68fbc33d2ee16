"""GeneralizedRCNNTransform (minicnn/models/detection/transform.py) against a torch twin of
torchvision's transform written here (normalize, the min/max-size rule with
``recompute_scale_factor``, fixed_size (width, height), boxes and masks resized with the
image, zero padding to size_divisible, postprocess back to the original sizes) on small
images; the caller's targets untouched; training draws among min sizes; errors."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from minicnn.models.detection import GeneralizedRCNNTransform, resize_boxes
from minicnn.ops import ImageList

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# ------------------------------------------------------------ the torch twin

def tv_transform(torch, images, targets, min_size, max_size, mean, std, size_divisible,
                 fixed_size=None):
    """torchvision's GeneralizedRCNNTransform.forward in eval mode (one min size), in
    torch: returns (batched, image_sizes, targets)."""
    TF = torch.nn.functional
    out_images, out_targets = [], None if targets is None else [dict(t) for t in targets]
    for i, image in enumerate(images):
        m = torch.as_tensor(mean, dtype=image.dtype)[:, None, None]
        s = torch.as_tensor(std, dtype=image.dtype)[:, None, None]
        image = (image - m) / s
        h, w = image.shape[-2:]
        size = scale = recompute = None
        if fixed_size is not None:
            size = [fixed_size[1], fixed_size[0]]
        else:
            scale = min(min_size / min(h, w), max_size / max(h, w))
            recompute = True
        image = TF.interpolate(image[None], size=size, scale_factor=scale, mode="bilinear",
                               recompute_scale_factor=recompute, align_corners=False)[0]
        if out_targets is not None:
            t = out_targets[i]
            if "masks" in t:
                t["masks"] = TF.interpolate(t["masks"][:, None].float(), size=size,
                                            scale_factor=scale,
                                            recompute_scale_factor=recompute)[:, 0].byte()
            t["boxes"] = tv_resize_boxes(torch, t["boxes"], (h, w), image.shape[-2:])
        out_images.append(image)
    sizes = [tuple(int(v) for v in img.shape[-2:]) for img in out_images]
    largest = [max(img.shape[d] for img in out_images) for d in range(3)]
    largest[1] = int(math.ceil(float(largest[1]) / size_divisible) * size_divisible)
    largest[2] = int(math.ceil(float(largest[2]) / size_divisible) * size_divisible)
    batched = out_images[0].new_full([len(out_images)] + largest, 0)
    for img, pad in zip(out_images, batched):
        pad[:img.shape[0], :img.shape[1], :img.shape[2]].copy_(img)
    return batched, sizes, out_targets


def tv_resize_boxes(torch, boxes, original_size, new_size):
    ratio_h, ratio_w = [torch.tensor(s, dtype=torch.float32) /
                        torch.tensor(s_orig, dtype=torch.float32)
                        for s, s_orig in zip(new_size, original_size)]
    xmin, ymin, xmax, ymax = boxes.unbind(1)
    return torch.stack((xmin * ratio_w, ymin * ratio_h, xmax * ratio_w, ymax * ratio_h), dim=1)


# ------------------------------------------------------------------- helpers

def _images(rng, sizes, channels=3, dtype=np.float64):
    return [rng.random((channels, h, w)).astype(dtype) for h, w in sizes]


def _targets(rng, sizes, k=3, masks=False):
    out = []
    for h, w in sizes:
        xy = rng.uniform(0, 0.5, (k, 2)) * [w, h]
        wh = rng.uniform(0.1, 0.5, (k, 2)) * [w, h]
        t = {"boxes": np.concatenate([xy, xy + wh], 1).astype(np.float32),
             "labels": rng.integers(1, 5, k)}
        if masks:
            t["masks"] = (rng.random((k, h, w)) > 0.5).astype(np.uint8)
        out.append(t)
    return out


def _run_both(torch, images, targets, min_size, max_size, size_divisible=32,
              fixed_size=None, mean=MEAN, std=STD):
    transform = GeneralizedRCNNTransform(min_size, max_size, mean, std,
                                         size_divisible=size_divisible,
                                         fixed_size=fixed_size).eval()
    m_targets = None if targets is None else \
        [{k: mc.tensor(v) for k, v in t.items()} for t in targets]
    image_list, m_out = transform([mc.tensor(img) for img in images], m_targets)
    t_targets = None if targets is None else \
        [{k: torch.from_numpy(v) for k, v in t.items()} for t in targets]
    batched, sizes, t_out = tv_transform(torch, [torch.from_numpy(img) for img in images],
                                         t_targets, min_size, max_size, mean, std,
                                         size_divisible, fixed_size)
    assert isinstance(image_list, ImageList)
    assert image_list.image_sizes == sizes
    assert tuple(image_list.tensors.shape) == tuple(batched.shape)
    tight = images[0].dtype == np.float64
    np.testing.assert_allclose(image_list.tensors.numpy(), batched.numpy(),
                               rtol=1e-12 if tight else 1e-5, atol=1e-12 if tight else 1e-5)
    if targets is not None:
        for m, t in zip(m_out, t_out):
            assert m["boxes"].dtype == np.float32
            np.testing.assert_array_equal(m["boxes"].numpy(), t["boxes"].numpy())
            if "masks" in t:
                assert m["masks"].dtype == np.uint8
                np.testing.assert_array_equal(m["masks"].numpy(), t["masks"].numpy())
    return transform, image_list, m_out


# --------------------------------------------------------------------- tests

def test_min_max_rule_pads_and_moves_boxes_as_torchvision(torch):
    rng = np.random.default_rng(0)
    sizes = [(13, 21), (17, 9), (20, 20)]
    _, image_list, _ = _run_both(torch, _images(rng, sizes), _targets(rng, sizes, masks=True),
                                 20, 30, size_divisible=8)
    # 13x21: 30/21 wins (min(20/13, 30/21)); 17x9: 30/17; 20x20: 1 -> all within 30
    assert image_list.image_sizes[2] == (20, 20)
    assert max(max(s) for s in image_list.image_sizes) <= 30
    assert tuple(image_list.tensors.shape) == (3, 3, 32, 32)


def test_recompute_scale_factor_floors_the_scaled_size(torch):
    # 11 * (15 / 11) is 14.999999999999998 in floating point: torchvision's image is 14
    # rows high, not 15 (the shorter side misses min_size), and its pixels are sampled at
    # in/out = 11/14, not at 1/scale
    rng = np.random.default_rng(1)
    _, image_list, _ = _run_both(torch, _images(rng, [(11, 16)]), None, 15, 40,
                                 size_divisible=1)
    assert image_list.image_sizes == [(14, 21)]


def test_fixed_size_is_width_then_height(torch):
    rng = np.random.default_rng(2)
    sizes = [(13, 21), (30, 11)]
    _, image_list, _ = _run_both(torch, _images(rng, sizes), _targets(rng, sizes, masks=True),
                                 16, 24, size_divisible=1, fixed_size=(24, 16))
    assert image_list.image_sizes == [(16, 24), (16, 24)]
    assert tuple(image_list.tensors.shape) == (2, 3, 16, 24)


def test_float32_images(torch):
    rng = np.random.default_rng(3)
    sizes = [(11, 15), (8, 19)]
    _run_both(torch, _images(rng, sizes, dtype=np.float32), _targets(rng, sizes), 12, 20,
              size_divisible=4)


def test_same_size_is_left_alone(torch):
    rng = np.random.default_rng(4)
    sizes = [(16, 16), (16, 16)]
    _, image_list, out = _run_both(torch, _images(rng, sizes), _targets(rng, sizes,
                                                                        masks=True),
                                   16, 16, size_divisible=1, mean=[0, 0, 0], std=[1, 1, 1])
    assert image_list.image_sizes == [(16, 16), (16, 16)]


@SETTINGS
@given(h=st.integers(1, 40), w=st.integers(1, 40), min_size=st.integers(4, 40),
       extra=st.integers(0, 30), divisible=st.sampled_from([1, 2, 8, 32]),
       seed=st.integers(0, 2**16))
def test_drawn_sizes_match_torchvision(torch, h, w, min_size, extra, divisible, seed):
    max_size = min_size + extra
    scale = min(min_size / min(h, w), max_size / max(h, w))
    if math.floor(h * scale) < 1 or math.floor(w * scale) < 1:
        return                       # an empty image: interpolate refuses it in both
    rng = np.random.default_rng(seed)
    _run_both(torch, _images(rng, [(h, w)]), _targets(rng, [(h, w)]), min_size, max_size,
              size_divisible=divisible)


def test_postprocess_maps_boxes_back_to_the_original_sizes(torch):
    rng = np.random.default_rng(5)
    sizes = [(13, 21), (17, 9)]
    transform, image_list, _ = _run_both(torch, _images(rng, sizes), None, 20, 30)
    boxes = [rng.uniform(0, 20, (4, 4)).astype(np.float32) for _ in sizes]
    result = [{"boxes": mc.tensor(b), "labels": mc.tensor(np.arange(4)),
               "scores": mc.tensor(np.ones(4, dtype=np.float32))} for b in boxes]
    out = transform.postprocess(result, image_list.image_sizes, sizes)
    for b, o, im_s, o_s in zip(boxes, out, image_list.image_sizes, sizes):
        want = tv_resize_boxes(torch, torch.from_numpy(b), im_s, o_s).numpy()
        np.testing.assert_array_equal(o["boxes"].numpy(), want)
        assert o["labels"].tolist() == [0, 1, 2, 3]
    # a round trip lands within float32 rounding of where it started
    there = resize_boxes(mc.tensor(boxes[0]), sizes[0], image_list.image_sizes[0])
    back = resize_boxes(there, image_list.image_sizes[0], sizes[0])
    np.testing.assert_allclose(back.numpy(), boxes[0], rtol=1e-6)
    # training mode: postprocess returns its input unchanged
    transform.train()
    same = [{"boxes": mc.tensor(boxes[0])}]
    assert transform.postprocess(same, [(5, 5)], [(10, 10)])[0]["boxes"] is same[0]["boxes"]


def test_targets_are_copied_not_changed():
    rng = np.random.default_rng(6)
    boxes = mc.tensor(np.array([[1, 2, 5, 6]], dtype=np.float32))
    target = {"boxes": boxes, "labels": mc.tensor(np.array([1]))}
    transform = GeneralizedRCNNTransform(20, 40, MEAN, STD)
    _, out = transform([mc.tensor(rng.random((3, 10, 10)))], [target])
    assert target["boxes"] is boxes and out[0] is not target
    np.testing.assert_array_equal(out[0]["boxes"].numpy(), [[2, 4, 10, 12]])


def test_a_batch_tensor_is_a_list_of_images():
    rng = np.random.default_rng(7)
    x = rng.random((2, 3, 9, 12))
    transform = GeneralizedRCNNTransform(12, 20, MEAN, STD).eval()
    a, _ = transform(mc.tensor(x))
    b, _ = transform([mc.tensor(x[0]), mc.tensor(x[1])])
    np.testing.assert_array_equal(a.tensors.numpy(), b.tensors.numpy())
    assert a.image_sizes == b.image_sizes == [(12, 16), (12, 16)]


def test_empty_masks_and_keypoints_follow_the_image():
    transform = GeneralizedRCNNTransform(20, 40, [0.0], [1.0], size_divisible=1)
    target = {"boxes": mc.zeros(0, 4), "masks": mc.zeros(0, 10, 5, dtype=mc.uint8),
              "keypoints": mc.tensor([[[1.0, 2.0, 1.0], [3.0, 4.0, 0.0]]])}
    image_list, out = transform([mc.ones(1, 10, 5)], [target])
    assert image_list.image_sizes == [(40, 20)]
    assert tuple(out[0]["masks"].shape) == (0, 40, 20)
    assert tuple(out[0]["boxes"].shape) == (0, 4)
    np.testing.assert_array_equal(out[0]["keypoints"].numpy(),
                                  [[[4.0, 8.0, 1.0], [12.0, 16.0, 0.0]]])


def test_training_draws_one_of_the_min_sizes():
    transform = GeneralizedRCNNTransform((8, 12, 16), 100, [0.0], [1.0], size_divisible=1)
    seen = set()
    mc.manual_seed(0)
    for _ in range(30):
        image_list, _ = transform([mc.ones(1, 4, 4)])
        seen.add(image_list.image_sizes[0])
    assert seen == {(8, 8), (12, 12), (16, 16)}
    transform.eval()
    assert transform([mc.ones(1, 4, 4)])[0].image_sizes == [(16, 16)]   # the last one


def test_normalize_and_gradient_reach_the_input():
    transform = GeneralizedRCNNTransform(6, 6, [0.5, 0.25], [2.0, 4.0], size_divisible=4)
    x = mc.tensor(np.ones((2, 3, 6)), requires_grad=True)
    image_list, _ = transform.eval()([x])
    y = image_list.tensors.numpy()
    assert y.shape == (1, 2, 4, 8)                 # 3x6 -> 3x6 (scale 1), padded to 4x8
    np.testing.assert_allclose(y[0, :, :3, :6], np.array([0.25, 0.1875])[:, None, None] *
                               np.ones((2, 3, 6)))
    assert np.all(y[0, :, 3:, :] == 0) and np.all(y[0, :, :, 6:] == 0)
    image_list.tensors.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.array([0.5, 0.25])[:, None, None] *
                               np.ones((2, 3, 6)))


@pytest.mark.parametrize("images, error, words", [
    ([np.ones((4, 4))], ValueError, "3-D tensors of shape"),
    (np.ones((3, 4, 4)), ValueError, "list of \\(C, H, W\\) tensors or one"),
    ([], ValueError, "at least one image"),
    ([np.ones((2, 4, 4))], ValueError, "image has 2 channels"),
    ([np.ones((3, 4, 4), dtype=np.int64)], TypeError, "floating-point"),
])
def test_bad_images_name_the_transform(images, error, words):
    transform = GeneralizedRCNNTransform(8, 8, MEAN, STD)
    with pytest.raises(error, match=f"GeneralizedRCNNTransform: .*{words}"):
        transform(images)


def test_bad_targets_and_arguments_name_the_transform():
    transform = GeneralizedRCNNTransform(8, 8, MEAN, STD)
    with pytest.raises(ValueError, match="GeneralizedRCNNTransform: expected one target"):
        transform([np.ones((3, 4, 4))], [])
    with pytest.raises(ValueError, match="resize_boxes: expected boxes of shape \\(K, 4\\)"):
        transform([np.ones((3, 4, 4))], [{"boxes": mc.zeros(2, 5)}])
    for kwargs, words in ((dict(min_size=0), "min_size"), (dict(max_size=-1), "max_size"),
                          (dict(image_std=[1, 0, 1]), "image_std must not contain 0"),
                          (dict(image_mean=[0, 0]), "one value per channel"),
                          (dict(size_divisible=0), "size_divisible"),
                          (dict(fixed_size=(300,)), "fixed_size")):
        args = {**dict(min_size=8, max_size=8, image_mean=MEAN, image_std=STD), **kwargs}
        with pytest.raises(ValueError, match=f"GeneralizedRCNNTransform: .*{words}"):
            GeneralizedRCNNTransform(**args)
