"""minicnn.ops anchors against torch twins written here (torchvision's anchor_utils
algorithms in plain torch) and the published counts: AnchorGenerator (base anchors with
torchvision's rounding, the 20,646 anchors of a 600x1000 image on a stride-16 map, several
maps), DefaultBoxGenerator (SSD300's 8,732 boxes, [4, 6, 6, 6, 4, 4] per position, scales,
steps, clip), ImageList; the CuPy path (fake device arrays) and every bad-input error."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minicnn as mc
from minicnn import ops

from fake_cupy import FakeDeviceArray, install, refuse_host_conversion, to_device, to_host

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
SSD300 = dict(aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
              scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300])
SSD300_MAPS = (38, 19, 10, 5, 3, 1)


def batch(n, height, width, dtype=np.float32):
    return ops.ImageList(mc.zeros(n, 3, height, width, dtype=dtype), [(height, width)] * n)


def maps(shapes, dtype=np.float32, n=1):
    return [mc.zeros(n, 2, h, w, dtype=dtype) for h, w in shapes]


# ------------------------------------------------------------------ torch twins

def torch_anchors(torch, sizes, ratios, grid_sizes, image_size, dtype):
    """torchvision's AnchorGenerator: generate_anchors (float32, round), grid_anchors."""
    out = []
    for scales, aspect, (gh, gw) in zip(sizes, ratios, grid_sizes):
        scales = torch.as_tensor(scales, dtype=torch.float32)
        h_ratios = torch.sqrt(torch.as_tensor(aspect, dtype=torch.float32))
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales[None, :]).view(-1)
        base = (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round().to(dtype)
        stride_h = torch.tensor(image_size[0] // gh, dtype=torch.int64)
        stride_w = torch.tensor(image_size[1] // gw, dtype=torch.int64)
        shifts_x = torch.arange(0, gw, dtype=torch.int32) * stride_w
        shifts_y = torch.arange(0, gh, dtype=torch.int32) * stride_h
        shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
        shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
        out.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
    return torch.cat(out)


def torch_default_boxes(torch, aspect_ratios, scales, steps, clip, grid_sizes, image_size,
                        dtype):
    """torchvision's DefaultBoxGenerator: _generate_wh_pairs, _grid_default_boxes, forward."""
    boxes = []
    for k, (gh, gw) in enumerate(grid_sizes):
        s_k, s_prime = scales[k], math.sqrt(scales[k] * scales[k + 1])
        pairs = [[s_k, s_k], [s_prime, s_prime]]
        for ar in aspect_ratios[k]:
            w, h = s_k * math.sqrt(ar), s_k / math.sqrt(ar)
            pairs.extend([[w, h], [h, w]])
        pairs = torch.as_tensor(pairs, dtype=torch.float32)
        if steps is not None:
            x_f, y_f = image_size[1] / steps[k], image_size[0] / steps[k]
        else:
            y_f, x_f = gh, gw
        shifts_x = ((torch.arange(0, gw) + 0.5) / x_f).to(dtype=dtype)
        shifts_y = ((torch.arange(0, gh) + 0.5) / y_f).to(dtype=dtype)
        shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
        shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
        shifts = torch.stack((shift_x, shift_y) * len(pairs), dim=-1).reshape(-1, 2)
        wh = pairs.clamp(min=0, max=1) if clip else pairs
        boxes.append(torch.cat((shifts, wh.repeat(gh * gw, 1)), dim=1))
    boxes = torch.cat(boxes)
    size = torch.tensor([image_size[1], image_size[0]])
    return torch.cat([(boxes[:, :2] - 0.5 * boxes[:, 2:]) * size,
                      (boxes[:, :2] + 0.5 * boxes[:, 2:]) * size], -1)


def torch_dtype(torch, dtype):
    return torch.float32 if dtype == np.float32 else torch.float64


# ------------------------------------------------------------------ AnchorGenerator

def test_rpn_anchor_counts_and_the_rounded_base_anchor():
    gen = ops.AnchorGenerator()
    assert gen.num_anchors_per_location() == [9]
    np.testing.assert_array_equal(gen.cell_anchors[0][0], [-91, -45, 91, 45])   # 128², 1:2
    anchors = gen(batch(2, 600, 1000), maps([(37, 62)], n=2))
    assert len(anchors) == 2 and anchors[0].shape == (20646, 4)
    assert isinstance(anchors[0], mc.Tensor) and anchors[0].dtype == np.float32
    assert anchors[0] is not anchors[1]
    np.testing.assert_array_equal(anchors[0].numpy(), anchors[1].numpy())
    # position (1, 2) of the stride-16 map: the base anchors moved by (32, 16)
    a = anchors[0].numpy().reshape(37, 62, 9, 4)
    np.testing.assert_array_equal(a[1, 2], gen.cell_anchors[0] + [32, 16, 32, 16])


@SETTINGS
@given(st.lists(st.tuples(st.lists(st.sampled_from([16, 32, 45, 64, 100, 128]), min_size=1,
                                   max_size=3),
                          st.lists(st.sampled_from([0.5, 1.0, 2.0, 0.3, 3.0]), min_size=1,
                                   max_size=3),
                          st.integers(1, 7), st.integers(1, 7)), min_size=1, max_size=3),
       st.integers(20, 90), st.integers(20, 90), st.sampled_from([np.float32, np.float64]))
def test_anchors_equal_torch(torch, levels, height, width, dtype):
    sizes = tuple(tuple(s) for s, _, _, _ in levels)
    ratios = tuple(tuple(r) for _, r, _, _ in levels)
    grids = [(gh, gw) for _, _, gh, gw in levels]
    gen = ops.AnchorGenerator(sizes, ratios)
    got = gen(batch(1, height, width, dtype), maps(grids, dtype))[0]
    want = torch_anchors(torch, sizes, ratios, grids, (height, width), torch_dtype(torch, dtype))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert got.shape[0] == sum(n * gh * gw for n, (gh, gw) in
                               zip(gen.num_anchors_per_location(), grids))


def test_flat_sizes_mean_one_size_per_map():
    gen = ops.AnchorGenerator(sizes=(32, 64), aspect_ratios=(0.5, 1.0, 2.0))
    assert gen.sizes == ((32,), (64,)) and gen.num_anchors_per_location() == [3, 3]
    got = gen(batch(1, 64, 64), [np.zeros((1, 4, 8, 8)), np.zeros((1, 4, 4, 4))])
    assert type(got[0]) is np.ndarray and got[0].shape == ((64 + 16) * 3, 4)
    assert got[0].dtype == np.float64                 # the maps' dtype


# ------------------------------------------------------------------ DefaultBoxGenerator

def test_ssd300_default_boxes_count_and_equal_torch(torch):
    gen = ops.DefaultBoxGenerator(**SSD300)
    assert gen.num_anchors_per_location() == [4, 6, 6, 6, 4, 4]
    boxes = gen(batch(2, 300, 300), maps([(s, s) for s in SSD300_MAPS], n=2))
    assert len(boxes) == 2 and boxes[0].shape == (8732, 4) and boxes[0].dtype == np.float32
    want = torch_default_boxes(torch, SSD300["aspect_ratios"], SSD300["scales"], SSD300["steps"],
                               True, [(s, s) for s in SSD300_MAPS], (300, 300), torch.float32)
    np.testing.assert_array_equal(boxes[0].numpy(), want.numpy())
    # the first box: centre (0.5/37.5, 0.5/37.5) relative, side 0.07 -> 21 pixels
    centre = 0.5 / (300 / 8) * 300
    np.testing.assert_allclose(boxes[0].numpy()[0], [centre - 10.5, centre - 10.5,
                                                     centre + 10.5, centre + 10.5], rtol=1e-6)
    # the last map's (1x1) last box: ratio 2 transposed, s = 0.87, centred at 150; its
    # relative height 0.87·sqrt(2) = 1.23 is clipped to 1
    w, h = 0.87 / math.sqrt(2) * 300, 300
    np.testing.assert_allclose(boxes[0].numpy()[-1], [150 - w / 2, 150 - h / 2, 150 + w / 2,
                                                      150 + h / 2], rtol=1e-5)


def test_default_scales_from_min_and_max_ratio():
    gen = ops.DefaultBoxGenerator([[2], [2, 3], [2]], min_ratio=0.2, max_ratio=0.9)
    np.testing.assert_allclose(gen.scales, [0.2, 0.55, 0.9, 1.0])
    assert ops.DefaultBoxGenerator([[2]], min_ratio=0.2, max_ratio=0.9).scales == [0.2, 0.9]
    assert "steps=None" in repr(gen)


@SETTINGS
@given(st.lists(st.tuples(st.lists(st.sampled_from([2, 3, 1.5]), max_size=2),
                          st.integers(1, 6), st.integers(1, 6), st.sampled_from([4, 8, 13])),
                min_size=1, max_size=3),
       st.booleans(), st.booleans(), st.integers(10, 70), st.integers(10, 70),
       st.sampled_from([np.float32, np.float64]))
def test_default_boxes_equal_torch(torch, levels, use_steps, clip, height, width, dtype):
    ratios = [list(r) for r, _, _, _ in levels]
    grids = [(gh, gw) for _, gh, gw, _ in levels]
    steps = [s for _, _, _, s in levels] if use_steps else None
    gen = ops.DefaultBoxGenerator(ratios, min_ratio=0.3, max_ratio=1.4, steps=steps, clip=clip)
    got = gen(batch(1, height, width, dtype), maps(grids, dtype))[0]
    want = torch_default_boxes(torch, ratios, gen.scales, steps, clip, grids, (height, width),
                               torch_dtype(torch, dtype))
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert got.shape[0] == sum(n * gh * gw for n, (gh, gw) in
                               zip(gen.num_anchors_per_location(), grids))


def test_clip_bounds_widths_not_corners():
    gen = ops.DefaultBoxGenerator([[2]], scales=[1.2, 1.5], clip=True)
    boxes = gen(batch(1, 10, 10), maps([(1, 1)]))[0].numpy()
    np.testing.assert_allclose(boxes[0], [0, 0, 10, 10])        # side 1.2 clamped to 1
    unclipped = ops.DefaultBoxGenerator([[2]], scales=[1.2, 1.5], clip=False)
    np.testing.assert_allclose(unclipped(batch(1, 10, 10), maps([(1, 1)]))[0].numpy()[0],
                               [-1, -1, 11, 11], rtol=1e-6)


# ------------------------------------------------------------------ devices and errors

def test_generators_stay_on_the_device(monkeypatch):
    anchor_gen = ops.AnchorGenerator(((16, 32),), ((0.5, 1.0),))
    box_gen = ops.DefaultBoxGenerator([[2], [3]], steps=[8, 16])
    images = ops.ImageList(np.zeros((1, 3, 32, 48)), [(32, 48)])
    fmaps = [np.zeros((1, 4, 4, 6)), np.zeros((1, 4, 2, 3))]
    host_anchors = anchor_gen(images, fmaps[:1])[0]
    host_boxes = box_gen(images, fmaps)[0]
    install(monkeypatch)
    refuse_host_conversion(monkeypatch)
    device_maps = [to_device(f) for f in fmaps]
    got_anchors = anchor_gen(images, device_maps[:1])[0]
    got_boxes = box_gen(images, [mc.Tensor._wrap(f) for f in device_maps])[0].array
    for got, want in ((got_anchors, host_anchors), (got_boxes, host_boxes)):
        assert isinstance(got, FakeDeviceArray)
        np.testing.assert_array_equal(to_host(got), want)


def test_image_list():
    images = ops.ImageList(mc.zeros(2, 3, 8, 10), [(8, 9), (7, 10)])
    assert images.image_sizes == [(8, 9), (7, 10)]
    assert images.to("cpu").tensors.shape == (2, 3, 8, 10)
    with pytest.raises(ValueError, match=r"ImageList: image_sizes must be \(height, width\)"):
        ops.ImageList(mc.zeros(1, 3, 8, 8), [(8, 8, 3)])
    with pytest.raises(ValueError, match="ImageList: tensors must be an"):
        ops.ImageList(None, [])


def test_bad_input_errors_name_the_op():
    with pytest.raises(ValueError, match="AnchorGenerator: sizes and aspect_ratios must have one "
                                         "entry per feature map; got 2 sizes and 3"):
        ops.AnchorGenerator(((32,), (64,)), ((1.0,), (1.0,), (2.0,)))
    with pytest.raises(ValueError, match="AnchorGenerator: aspect_ratios must hold positive"):
        ops.AnchorGenerator(((32,),), ((0.0,),))
    with pytest.raises(ValueError, match="AnchorGenerator: got 2 feature maps but sizes and "
                                         "aspect_ratios describe 1"):
        ops.AnchorGenerator()(batch(1, 32, 32), maps([(4, 4), (2, 2)]))
    with pytest.raises(TypeError, match="AnchorGenerator: image_list must be an ImageList"):
        ops.AnchorGenerator()(mc.zeros(1, 3, 32, 32), maps([(4, 4)]))
    with pytest.raises(TypeError, match="AnchorGenerator: feature_maps must be a non-empty list"):
        ops.AnchorGenerator()(batch(1, 32, 32), mc.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"AnchorGenerator: feature_maps\[0\] must be an "
                                         r"\(N, C, H, W\) map"):
        ops.AnchorGenerator()(batch(1, 32, 32), [np.zeros((1, 2, 0, 4))])
    with pytest.raises(ValueError, match="DefaultBoxGenerator: aspect_ratios and steps must have "
                                         "the same length"):
        ops.DefaultBoxGenerator([[2], [2]], steps=[8])
    with pytest.raises(ValueError, match="DefaultBoxGenerator: scales must have one entry per "
                                         "feature map plus one"):
        ops.DefaultBoxGenerator([[2], [2]], scales=[0.1, 0.2])
    with pytest.raises(ValueError, match="DefaultBoxGenerator: aspect_ratios must be a non-empty"):
        ops.DefaultBoxGenerator([2, 3])
    with pytest.raises(ValueError, match="DefaultBoxGenerator: got 1 feature maps but "
                                         "aspect_ratios has 2"):
        ops.DefaultBoxGenerator([[2], [2]])(batch(1, 32, 32), maps([(4, 4)]))
