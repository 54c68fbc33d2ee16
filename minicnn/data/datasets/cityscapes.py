"""Cityscapes (Cordts et al. 2016): street scenes from 50 cities, 2048x1024, with pixel
labels, read from the layout the user already has::

    root/leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png
    root/gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png

The label images hold one of 34 label ids per pixel (``CITYSCAPES_LABELS``). Training and
evaluation use 19 of them, renumbered 0..18 as *train ids*; every other label becomes 255,
to be ignored (``cross_entropy(..., ignore_index=255)``). The fine annotations split
2,975 train / 500 val / 1,525 test images (the test labels are not public: their label
images are blank). Nothing is downloaded.
"""
from __future__ import annotations

import collections
import os

import numpy as np

from ...autograd import Tensor
from ..dataset import Dataset
from ..joint_transforms import ToTensorPair
from ._imagefiles import check_same_size, missing_files, read_labels, read_rgb

__all__ = ["Cityscapes", "CityscapesLabel", "CITYSCAPES_LABELS", "CITYSCAPES_TRAIN_CLASSES",
           "label_to_train_id"]

CityscapesLabel = collections.namedtuple(
    "CityscapesLabel", ["name", "id", "train_id", "category", "category_id", "has_instances",
                        "ignore_in_eval", "color"])

# The labels of cityscapesScripts (helpers/labels.py): a label image stores `id`; `train_id`
# is 255 for the labels left out of training and evaluation ("license plate" has id -1 and
# train id -1 there: it never appears in a label image, and both mean "ignore").
_L = CityscapesLabel
CITYSCAPES_LABELS = (
    #  name                   id  train  category       cat  instances ignored  colour
    _L("unlabeled",             0, 255, "void",          0, False, True, (0, 0, 0)),
    _L("ego vehicle",           1, 255, "void",          0, False, True, (0, 0, 0)),
    _L("rectification border",  2, 255, "void",          0, False, True, (0, 0, 0)),
    _L("out of roi",            3, 255, "void",          0, False, True, (0, 0, 0)),
    _L("static",                4, 255, "void",          0, False, True, (0, 0, 0)),
    _L("dynamic",               5, 255, "void",          0, False, True, (111, 74, 0)),
    _L("ground",                6, 255, "void",          0, False, True, (81, 0, 81)),
    _L("road",                  7,   0, "flat",          1, False, False, (128, 64, 128)),
    _L("sidewalk",              8,   1, "flat",          1, False, False, (244, 35, 232)),
    _L("parking",               9, 255, "flat",          1, False, True, (250, 170, 160)),
    _L("rail track",           10, 255, "flat",          1, False, True, (230, 150, 140)),
    _L("building",             11,   2, "construction",  2, False, False, (70, 70, 70)),
    _L("wall",                 12,   3, "construction",  2, False, False, (102, 102, 156)),
    _L("fence",                13,   4, "construction",  2, False, False, (190, 153, 153)),
    _L("guard rail",           14, 255, "construction",  2, False, True, (180, 165, 180)),
    _L("bridge",               15, 255, "construction",  2, False, True, (150, 100, 100)),
    _L("tunnel",               16, 255, "construction",  2, False, True, (150, 120, 90)),
    _L("pole",                 17,   5, "object",        3, False, False, (153, 153, 153)),
    _L("polegroup",            18, 255, "object",        3, False, True, (153, 153, 153)),
    _L("traffic light",        19,   6, "object",        3, False, False, (250, 170, 30)),
    _L("traffic sign",         20,   7, "object",        3, False, False, (220, 220, 0)),
    _L("vegetation",           21,   8, "nature",        4, False, False, (107, 142, 35)),
    _L("terrain",              22,   9, "nature",        4, False, False, (152, 251, 152)),
    _L("sky",                  23,  10, "sky",           5, False, False, (70, 130, 180)),
    _L("person",               24,  11, "human",         6, True, False, (220, 20, 60)),
    _L("rider",                25,  12, "human",         6, True, False, (255, 0, 0)),
    _L("car",                  26,  13, "vehicle",       7, True, False, (0, 0, 142)),
    _L("truck",                27,  14, "vehicle",       7, True, False, (0, 0, 70)),
    _L("bus",                  28,  15, "vehicle",       7, True, False, (0, 60, 100)),
    _L("caravan",              29, 255, "vehicle",       7, True, True, (0, 0, 90)),
    _L("trailer",              30, 255, "vehicle",       7, True, True, (0, 0, 110)),
    _L("train",                31,  16, "vehicle",       7, True, False, (0, 80, 100)),
    _L("motorcycle",           32,  17, "vehicle",       7, True, False, (0, 0, 230)),
    _L("bicycle",              33,  18, "vehicle",       7, True, False, (119, 11, 32)),
    _L("license plate",        -1,  -1, "vehicle",       7, False, True, (0, 0, 142)),
)
del _L

# the 19 classes trained and scored, in train-id order
CITYSCAPES_TRAIN_CLASSES = tuple(label.name for label in sorted(
    (lb for lb in CITYSCAPES_LABELS if 0 <= lb.train_id < 255), key=lambda lb: lb.train_id))

IGNORE_INDEX = 255
SOURCE = "https://www.cityscapes-dataset.com/ (leftImg8bit_trainvaltest.zip, " \
         "gtFine_trainvaltest.zip; free registration)"

# label id (0..255) -> train id; ids not in the table map to 255
_TRAIN_ID_LOOKUP = np.full(256, IGNORE_INDEX, dtype=np.int64)
for _label in CITYSCAPES_LABELS:
    if _label.id >= 0 and 0 <= _label.train_id < 255:
        _TRAIN_ID_LOOKUP[_label.id] = _label.train_id


def label_to_train_id(mask):
    """Map an array (or Tensor) of Cityscapes label ids to train ids: ``road`` (7) -> 0 ...
    ``bicycle`` (33) -> 18, every other value (void, ``parking``, ``guard rail``, ...,
    ``license plate`` -1, anything out of range) -> 255. Returns int64, same shape (a
    Tensor for a Tensor)."""
    is_tensor = isinstance(mask, Tensor)
    ids = mask.numpy() if is_tensor else np.asarray(mask)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"label_to_train_id: mask must hold integer label ids, got dtype "
                        f"{ids.dtype}")
    inside = (ids >= 0) & (ids < 256)
    out = np.where(inside, _TRAIN_ID_LOOKUP[np.where(inside, ids, 0)], IGNORE_INDEX)
    return Tensor(out) if is_tensor else out


class Cityscapes(Dataset):
    """The images of one split with their semantic label images.

    ``root`` holds ``leftImg8bit/`` and ``gtFine/`` (``gtCoarse/`` for
    ``mode="coarse"``). ``split``: ``"train"``, ``"val"`` or ``"test"`` (fine), or
    ``"train"``, ``"train_extra"``, ``"val"`` (coarse). ``target_type``: ``"semantic"``
    (the ``*_labelIds.png`` images; the only kind read so far). ``train_ids``: map the
    label ids to the 19 train ids with :func:`label_to_train_id` (default), or keep the
    raw ids.

    A sample is ``(image, mask)``: by default (``transforms=None``) a ``(3, H, W)``
    float32 array in [0, 1] and an ``(H, W)`` int64 mask (train ids, 255 = ignore). A
    joint ``transforms(image, mask)`` gets the pair as read -- ``(H, W, 3)`` uint8 and
    ``(H, W)`` int64 -- and should start with ``ToTensorPair()``. ``images`` and
    ``targets`` list the file paths, cities and files in sorted order.
    """

    classes = CITYSCAPES_TRAIN_CLASSES

    def __init__(self, root, split="train", mode="fine", target_type="semantic",
                 transforms=None, train_ids=True):
        who = "Cityscapes"
        folders = {"fine": "gtFine", "gtFine": "gtFine", "coarse": "gtCoarse",
                   "gtCoarse": "gtCoarse"}
        if mode not in folders:
            raise ValueError(f"{who}: mode must be 'fine' or 'coarse', got {mode!r}")
        self.mode = folders[mode]
        splits = ("train", "val", "test") if self.mode == "gtFine" else \
            ("train", "train_extra", "val")
        if split not in splits:
            raise ValueError(f"{who}: split must be one of {', '.join(splits)} for mode "
                             f"{mode!r}, got {split!r}")
        if target_type != "semantic":
            raise ValueError(f"{who}: target_type must be 'semantic' (label-id masks), got "
                             f"{target_type!r}")
        if root is None:
            raise ValueError(f"{who}: root is required (the folder holding leftImg8bit/ and "
                             f"{self.mode}/); get the data from {SOURCE}")
        self.root = os.path.expanduser(os.fspath(root))
        self.split, self.target_type, self.train_ids = split, target_type, train_ids
        self.transforms = transforms
        self._default = ToTensorPair()
        images_dir = os.path.join(self.root, "leftImg8bit", split)
        targets_dir = os.path.join(self.root, self.mode, split)
        for folder in (images_dir, targets_dir):
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"{who}: folder {folder} does not exist (expected "
                                        f"root/leftImg8bit/{split}/<city>/ and "
                                        f"root/{self.mode}/{split}/<city>/); minicnn does not "
                                        f"download data sets; get them from {SOURCE}")
        suffix = "_leftImg8bit.png"
        self.images, self.targets = [], []
        for city in sorted(e.name for e in os.scandir(images_dir) if e.is_dir()):
            for file in sorted(os.listdir(os.path.join(images_dir, city))):
                if file.endswith(suffix):
                    stem = file[:-len(suffix)]
                    self.images.append(os.path.join(images_dir, city, file))
                    self.targets.append(os.path.join(targets_dir, city,
                                                     f"{stem}_{self.mode}_labelIds.png"))
        if not self.images:
            raise FileNotFoundError(f"{who}: no *{suffix} file in {images_dir}/<city>/")
        missing_files(self.targets, who, "label image(s)",
                      f"(each image needs its {self.mode}/{split}/<city>/<name>_"
                      f"{self.mode}_labelIds.png)")

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        who = "Cityscapes"
        image = read_rgb(self.images[index], who)
        mask = read_labels(self.targets[index], who)
        check_same_size(image, self.images[index], mask, self.targets[index], who)
        if self.train_ids:
            mask = label_to_train_id(mask)
        if self.transforms is None:
            return self._default(image, mask)
        return self.transforms(image, mask)

    def __repr__(self):
        return (f"Cityscapes(root={self.root!r}, split={self.split!r}, mode={self.mode!r}, "
                f"{len(self)} images)")
