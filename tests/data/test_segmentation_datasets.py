"""Segmentation data sets: the generated ShapesSegmentation, and the PASCAL VOC and
Cityscapes readers on tiny fake trees written under tmp_path (JPEG/PNG via Pillow)."""
import os

import numpy as np
import pytest
from PIL import Image         # pillow is in the test extras: required, never skipped

from minicnn.data import DataLoader, JointCompose, JointRandomHorizontalFlip, ToTensorPair
from minicnn.data.datasets import (CITYSCAPES_LABELS, CITYSCAPES_TRAIN_CLASSES, VOC_CLASSES,
                                   Cityscapes, ShapesSegmentation, VOCSegmentation,
                                   label_to_train_id, voc_colormap)



# ------------------------------------------------------------ ShapesSegmentation

def test_shapes_deterministic_per_seed_and_index():
    a = ShapesSegmentation(6, image_size=32, seed=3)
    b = ShapesSegmentation(10, image_size=32, seed=3)
    # sample i depends on (seed, i) only, not on how many samples were asked for
    assert np.array_equal(a.data, b.data[:6]) and np.array_equal(a.masks, b.masks[:6])
    picture, mask, instances = b.generate(8)
    assert np.array_equal(picture, b.data[8]) and np.array_equal(mask, b.masks[8])
    assert np.array_equal(instances, b.instances[8])
    other = ShapesSegmentation(6, image_size=32, seed=4)
    assert not np.array_equal(a.masks, other.masks)


def test_shapes_classes_instances_and_not_colour_alone():
    ds = ShapesSegmentation(150, image_size=48, num_classes=9, seed=0)
    assert ds.classes[0] == "background" and len(ds.classes) == 9
    assert set(np.unique(ds.masks)) == set(range(9))              # every class appears
    for mask, inst in zip(ds.masks, ds.instances):
        assert np.array_equal(mask > 0, inst > 0)
        ids = np.unique(inst[inst > 0])
        assert 1 <= len(ids) <= 3
        for k in ids:                                              # one class per instance
            assert len(np.unique(mask[inst == k])) == 1
    # colours are drawn per shape: the shapes of one class take colours all over the
    # range, centred mid-grey, so no colour tells the class
    colours = {c: [] for c in range(1, 9)}
    for picture, mask, inst in zip(ds.data, ds.masks, ds.instances):
        for k in np.unique(inst[inst > 0]):
            colours[int(mask[inst == k][0])].append(picture[inst == k].mean(axis=0) / 255)
    for values in colours.values():
        values = np.array(values)
        assert len(values) >= 15
        assert np.all(values.std(axis=0) > 0.2) and np.all(np.abs(values.mean(axis=0) - 0.5)
                                                           < 0.15)


def test_shapes_sample_types_arrays_and_loader():
    ds = ShapesSegmentation(8, image_size=32, num_classes=4, seed=1)
    image, mask = ds[2]
    assert image.shape == (3, 32, 32) and image.dtype == np.float32
    assert mask.shape == (32, 32) and mask.dtype == np.int64
    assert mask.min() >= 0 and mask.max() < 4
    expected = (ds.data[2].transpose(2, 0, 1) / 255.0 - 0.5) / 0.26
    np.testing.assert_allclose(image, expected, atol=1e-5)
    images, masks = ds.arrays()
    assert images.shape == (8, 3, 32, 32) and masks.dtype == np.int64
    np.testing.assert_allclose(images[2], image, atol=1e-6)
    x, y = next(iter(DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 3, 32, 32) and y.shape == (4, 32, 32)
    assert y.numpy().dtype == np.int64 and np.array_equal(y.numpy(), masks[:4])


def test_shapes_joint_transforms_get_the_raw_pair():
    seen = []

    def spy(image, mask):
        seen.append((image.dtype, image.shape, mask.dtype, mask.shape))
        return ToTensorPair()(image, mask)

    ds = ShapesSegmentation(2, image_size=24, channels=1, transforms=spy)
    image, _ = ds[0]
    assert seen == [(np.uint8, (24, 24, 1), np.int64, (24, 24))]
    assert image.shape == (1, 24, 24) and image.max() <= 1.0
    flipped = ShapesSegmentation(2, image_size=24, channels=1, transforms=JointCompose(
        [ToTensorPair(), JointRandomHorizontalFlip(p=1.0)]))
    assert np.array_equal(flipped[1][1], ds.masks[1][:, ::-1])


@pytest.mark.parametrize("kwargs, word", [({"num_classes": 1}, "num_classes"),
                                          ({"num_classes": 10}, "num_classes"),
                                          ({"channels": 2}, "channels"),
                                          ({"radius": (4, 40)}, "radius"),
                                          ({"max_shapes": 0}, "max_shapes")])
def test_shapes_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=f"ShapesSegmentation: {word}"):
        ShapesSegmentation(2, image_size=64, **kwargs)


# ------------------------------------------------------------------ VOC

def _save_palette_png(path, labels, size=None):
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette(voc_colormap().reshape(-1).tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _fake_voc(root, names=("2007_000032", "2007_000039"), rng=None):
    rng = rng or np.random.default_rng(0)
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    masks = {}
    for i, name in enumerate(names):
        h, w = 10 + i, 12 + i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{name}.jpg")
        labels = rng.choice([0, 1, 15, 255], size=(h, w))
        _save_palette_png(voc / "SegmentationClass" / f"{name}.png", labels)
        masks[name] = labels
    split = voc / "ImageSets" / "Segmentation"
    split.mkdir(parents=True)
    (split / "train.txt").write_text("\n".join(names) + "\n")
    (split / "val.txt").write_text(names[0] + "\n")
    return voc, masks


def test_voc_reads_palette_indices_and_keeps_255(tmp_path):
    voc, masks = _fake_voc(tmp_path)
    ds = VOCSegmentation(tmp_path, image_set="train")
    assert len(ds) == 2 and len(VOC_CLASSES) == 21 and ds.classes[15] == "person"
    image, mask = ds[1]
    assert image.shape == (3, 11, 13) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    # the palette indices, not the colours: 255 (the ignore band) is kept
    assert mask.dtype == np.int64 and np.array_equal(mask, masks["2007_000039"])
    assert 255 in mask
    assert len(VOCSegmentation(voc, image_set="val")) == 1          # root = VOC2012 itself
    got = []
    ds = VOCSegmentation(tmp_path, transforms=lambda i, m: got.append((i.dtype, i.shape,
                                                                        m.dtype)) or (i, m))
    ds[0]
    assert got == [(np.uint8, (10, 12, 3), np.int64)]


def test_voc_colormap_known_colours():
    palette = voc_colormap()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[0].tolist() == [0, 0, 0] and palette[1].tolist() == [128, 0, 0]
    assert palette[15].tolist() == [192, 128, 128] and palette[255].tolist() == [224, 224, 192]


def test_voc_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.txt"):
        VOCSegmentation(tmp_path)
    voc, _ = _fake_voc(tmp_path)
    os.remove(voc / "JPEGImages" / "2007_000039.jpg")
    with pytest.raises(FileNotFoundError, match="2007_000039.jpg"):
        VOCSegmentation(tmp_path)
    with pytest.raises(ValueError, match="image_set"):
        VOCSegmentation(tmp_path, image_set="test")


def test_voc_corrupt_truncated_and_mismatched_files(tmp_path):
    voc, _ = _fake_voc(tmp_path, names=("a", "b", "c", "d"))
    jpeg = voc / "JPEGImages" / "a.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:len(jpeg.read_bytes()) // 2])       # truncated
    (voc / "SegmentationClass" / "b.png").write_bytes(b"not a png at all" * 4)
    _save_palette_png(voc / "SegmentationClass" / "c.png", np.zeros((5, 5)))  # wrong size
    Image.new("RGB", (15, 13)).save(voc / "SegmentationClass" / "d.png")     # colours
    ds = VOCSegmentation(tmp_path)
    with pytest.raises(ValueError, match=r"a\.jpg.*truncated"):
        ds[0]
    with pytest.raises(ValueError, match=r"b\.png"):
        ds[1]
    with pytest.raises(ValueError, match=r"c\.png is 5x5 .*c\.jpg is 14x12"):
        ds[2]
    with pytest.raises(ValueError, match=r"d\.png is a 'RGB' image"):
        ds[3]


# ------------------------------------------------------------- Cityscapes

# cityscapesScripts' labels.py, written out by hand: label id -> train id
TRAIN_ID_FACTS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                  23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def test_cityscapes_table_against_facts():
    assert CITYSCAPES_TRAIN_CLASSES == (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
        "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
        "bus", "train", "motorcycle", "bicycle")
    assert [lb.id for lb in CITYSCAPES_LABELS] == list(range(34)) + [-1]
    by_name = {lb.name: lb for lb in CITYSCAPES_LABELS}
    assert (by_name["road"].id, by_name["road"].train_id) == (7, 0)
    assert (by_name["sky"].id, by_name["sky"].train_id) == (23, 10)
    assert (by_name["car"].id, by_name["car"].train_id, by_name["car"].category) == \
        (26, 13, "vehicle")
    assert by_name["license plate"].id == -1 and by_name["person"].category == "human"
    assert {lb.category for lb in CITYSCAPES_LABELS} == {
        "void", "flat", "construction", "object", "nature", "sky", "human", "vehicle"}
    ids = np.arange(-3, 300)
    expected = [TRAIN_ID_FACTS.get(int(i), 255) for i in ids]
    assert label_to_train_id(ids).tolist() == expected
    assert label_to_train_id(np.array([[7, 33], [9, 0]], dtype=np.uint8)).tolist() == \
        [[0, 18], [255, 255]]
    with pytest.raises(TypeError, match="label_to_train_id"):
        label_to_train_id(np.zeros(3))


def _fake_cityscapes(root, rng):
    ids = {}
    for city, frame in (("zurich", 5), ("aachen", 19), ("aachen", 21)):
        stem = f"{city}_000000_{frame:06d}"
        img_dir = root / "leftImg8bit" / "val" / city
        gt_dir = root / "gtFine" / "val" / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(
            img_dir / f"{stem}_leftImg8bit.png")
        labels = rng.choice([0, 7, 9, 23, 26, 33], size=(6, 8)).astype(np.uint8)
        Image.fromarray(labels, mode="L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
        ids[stem] = labels
    return ids


def test_cityscapes_reads_and_maps_train_ids(tmp_path, rng):
    ids = _fake_cityscapes(tmp_path, rng)
    ds = Cityscapes(tmp_path, split="val")
    assert len(ds) == 3
    assert [os.path.basename(p)[:20] for p in ds.images] == [
        "aachen_000000_000019", "aachen_000000_000021", "zurich_000000_000005"]
    image, mask = ds[2]
    assert image.shape == (3, 6, 8) and image.dtype == np.float32
    expected = np.vectorize(lambda i: TRAIN_ID_FACTS.get(int(i), 255))(
        ids["zurich_000000_000005"])
    assert mask.dtype == np.int64 and np.array_equal(mask, expected)
    raw = Cityscapes(tmp_path, split="val", train_ids=False)[2][1]
    assert np.array_equal(raw, ids["zurich_000000_000005"])


def test_cityscapes_missing_and_bad_files(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        Cityscapes(tmp_path, split="val")
    _fake_cityscapes(tmp_path, rng)
    with pytest.raises(ValueError, match="split"):
        Cityscapes(tmp_path, split="train_extra")
    with pytest.raises(ValueError, match="target_type"):
        Cityscapes(tmp_path, split="val", target_type="polygon")
    label = tmp_path / "gtFine" / "val" / "zurich" / "zurich_000000_000005_gtFine_labelIds.png"
    Image.fromarray(np.zeros((3, 3), np.uint8), mode="L").save(label)
    with pytest.raises(ValueError, match=r"labelIds\.png is 3x3 .*leftImg8bit\.png is 8x6"):
        Cityscapes(tmp_path, split="val")[2]
    os.remove(label)
    with pytest.raises(FileNotFoundError, match="zurich_000000_000005_gtFine_labelIds.png"):
        Cityscapes(tmp_path, split="val")
