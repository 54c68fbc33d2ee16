"""ShapesDetection (generated boxes, classes and instance masks) and detection_collate."""
import numpy as np
import pytest

from minicnn.autograd import Tensor
from minicnn.data import DataLoader, detection_collate
from minicnn.data import detection_transforms as D
from minicnn.data.datasets import ShapesDetection, ShapesSegmentation


def _tight_box_by_loops(mask):
    """The pixel-edge box of a mask, by scanning every pixel."""
    x1 = y1 = np.inf
    x2 = y2 = -np.inf
    for row in range(mask.shape[0]):
        for col in range(mask.shape[1]):
            if mask[row, col]:
                x1, y1 = min(x1, col), min(y1, row)
                x2, y2 = max(x2, col + 1), max(y2, row + 1)
    return [x1, y1, x2, y2]


def test_boxes_are_the_tight_boxes_of_the_masks_and_labels_match_the_classes():
    ds = ShapesDetection(30, image_size=40, num_classes=6, seed=2)
    seen_classes = set()
    for i in range(len(ds)):
        image, target = ds[i]
        boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
        k = len(labels)
        assert 1 <= k <= 3
        assert boxes.shape == (k, 4) and boxes.dtype == np.float32
        assert labels.dtype == np.int64 and masks.shape == (k, 40, 40)
        assert masks.dtype == np.uint8
        for box, label, mask in zip(boxes, labels, masks):
            assert box.tolist() == _tight_box_by_loops(mask)
            # the instance's pixels are all of its class in the semantic mask
            assert np.all(ds.masks[i][mask == 1] == label)
            assert 1 <= label <= 5
            seen_classes.add(int(label))
        # the instance masks are disjoint and together cover every shape pixel
        assert masks.sum(axis=0).max() <= 1
        assert np.array_equal(masks.sum(axis=0) > 0, ds.masks[i] > 0)
    assert seen_classes == {1, 2, 3, 4, 5}


def test_box_convention_by_hand():
    """A mask on columns 3..7 and rows 2..4 has the box (3, 2, 8, 5): x2 is one past the
    last column (torchvision's masks_to_boxes would say 7)."""
    ds = ShapesDetection(1, image_size=16, seed=0)
    ds.instances[0] = 0
    ds.instances[0][2:5, 3:8] = 1
    ds.masks[0] = 0
    ds.masks[0][2:5, 3:8] = 2
    _, boxes, labels = ds._objects(0)
    assert boxes.tolist() == [[3.0, 2.0, 8.0, 5.0]] and labels.tolist() == [2]


def test_same_pictures_as_segmentation_and_deterministic_per_seed():
    kwargs = dict(image_size=32, num_classes=5, max_shapes=2)
    a = ShapesDetection(6, seed=3, **kwargs)
    b = ShapesDetection(9, seed=3, **kwargs)
    seg = ShapesSegmentation(6, seed=3, **kwargs)
    assert np.array_equal(a.data, seg.data) and np.array_equal(a.instances, seg.instances)
    assert np.array_equal(a.data, b.data[:6])
    for i in range(6):
        for key in ("boxes", "labels", "masks"):
            assert np.array_equal(a[i][1][key], b[i][1][key])
        np.testing.assert_array_equal(a[i][0], b[i][0])
    other = ShapesDetection(6, seed=4, **kwargs)
    assert not all(np.array_equal(a.targets[i]["boxes"], other.targets[i]["boxes"])
                   for i in range(6))
    picture, _, instances = a.generate(2)
    assert np.array_equal(picture, a.data[2]) and np.array_equal(instances, a.instances[2])


def test_default_image_is_normalised_and_transforms_get_the_stored_picture():
    ds = ShapesDetection(3, image_size=24, seed=1)
    image, _ = ds[1]
    expected = (ds.data[1].transpose(2, 0, 1) / 255.0 - 0.5) / 0.26
    assert image.shape == (3, 24, 24) and image.dtype == np.float32
    np.testing.assert_allclose(image, expected, atol=1e-5)
    seen = []

    def spy(picture, target):
        seen.append((picture.dtype, picture.shape, sorted(target)))
        target["boxes"][:] = -1                       # a copy: the data set is untouched
        return picture, target
    ds.transforms = spy
    ds[0]
    assert seen == [(np.uint8, (24, 24, 3), ["boxes", "labels", "masks"])]
    assert ds.targets[0]["boxes"].min() >= 0
    # a flip through the detection transforms moves boxes and masks together
    ds.transforms = D.Compose([D.RandomHorizontalFlip(p=1.0), D.ToTensor()])
    image, target = ds[2]
    np.testing.assert_allclose(image, ds.data[2][:, ::-1].transpose(2, 0, 1) / 255.0,
                               atol=1e-6)
    for box, mask in zip(target["boxes"], target["masks"]):
        assert box.tolist() == _tight_box_by_loops(mask)


def test_hidden_instances_are_dropped():
    ds = ShapesDetection(40, image_size=32, seed=0, max_covered=1.0, min_visible=1)
    strict = ShapesDetection(40, image_size=32, seed=0, max_covered=1.0, min_visible=60)
    dropped = 0
    for i in range(40):
        areas = ds.instance_masks(i).sum(axis=(1, 2))
        assert np.all(areas >= 1)
        assert np.all(strict.instance_masks(i).sum(axis=(1, 2)) >= 60)
        dropped += int(np.sum(areas < 60))
        assert len(strict.targets[i]["labels"]) == int(np.sum(areas >= 60))
    assert dropped > 0


def test_without_masks():
    ds = ShapesDetection(2, image_size=16, seed=0, with_masks=False)
    assert sorted(ds[0][1]) == ["boxes", "labels"]


@pytest.mark.parametrize("kwargs, word", [({"num_classes": 1}, "num_classes"),
                                          ({"max_shapes": 0}, "max_shapes"),
                                          ({"min_visible": 0}, "min_visible")])
def test_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=f"ShapesDetection: {word}"):
        ShapesDetection(2, image_size=16, **kwargs)


# ------------------------------------------------------------ detection_collate

def _sample(k, size=(8, 8), channels=3):
    rng = np.random.default_rng(k)
    image = rng.random((channels,) + size, dtype=np.float32)
    boxes = np.tile(np.array([[1, 1, 4, 5]], dtype=np.float64), (k, 1))
    target = {"boxes": boxes, "labels": np.arange(1, k + 1), "image_id": 7,
              "masks": np.ones((k,) + size, dtype=bool), "difficult": np.zeros(k, np.uint8)}
    return image, target


def test_collate_stacks_same_size_images_and_keeps_box_counts():
    samples = [_sample(0), _sample(3), _sample(1)]
    images, targets = detection_collate(samples)
    assert isinstance(images, Tensor) and images.shape == (3, 3, 8, 8)
    np.testing.assert_array_equal(images.numpy()[1], samples[1][0])
    assert [len(t["labels"]) for t in targets] == [0, 3, 1]
    for t in targets:
        assert t["boxes"].shape[1:] == (4,) and t["boxes"].numpy().dtype == np.float32
        assert t["labels"].numpy().dtype == np.int64
        assert t["masks"].numpy().dtype == np.uint8
        assert t["difficult"].numpy().dtype == np.bool_
        assert t["image_id"] == 7                      # not an array: passed unchanged
    assert targets[0]["boxes"].shape == (0, 4)
    np.testing.assert_array_equal(targets[1]["boxes"].numpy(), [[1, 1, 4, 5]] * 3)


def test_collate_gives_a_list_for_different_image_sizes():
    samples = [_sample(2, (8, 8)), _sample(1, (6, 10))]
    images, targets = detection_collate(samples)
    assert isinstance(images, list) and [i.shape for i in images] == [(3, 8, 8), (3, 6, 10)]
    assert all(isinstance(i, Tensor) for i in images)
    assert targets[1]["masks"].shape == (1, 6, 10)


def test_collate_errors():
    with pytest.raises(ValueError, match="empty batch"):
        detection_collate([])
    image, target = _sample(1)
    with pytest.raises(TypeError, match="sample 1 should be a pair"):
        detection_collate([(image, target), (image,)])
    with pytest.raises(TypeError, match="ToTensor"):
        detection_collate([(np.zeros((8, 8, 3), np.uint8), target)])
    with pytest.raises(TypeError, match="target of sample 0 should be a dict"):
        detection_collate([(image, [1, 2])])
    with pytest.raises(ValueError, match=r"boxes of sample 0 .*\(K, 4\)"):
        detection_collate([(image, {"boxes": np.zeros((2, 3))})])


def test_loader_with_workers_is_reproducible():
    ds = ShapesDetection(12, image_size=16, seed=0,
                         transforms=D.Compose([D.RandomHorizontalFlip(), D.ToTensor()]))

    def run(workers):
        loader = DataLoader(ds, batch_size=4, shuffle=True, collate_fn=detection_collate,
                            num_workers=workers, seed=5)
        return [(x.numpy(), [t["boxes"].numpy() for t in ts]) for x, ts in loader]
    a, b = run(0), run(2)
    for (xa, ba), (xb, bb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        for p, q in zip(ba, bb):
            np.testing.assert_array_equal(p, q)
