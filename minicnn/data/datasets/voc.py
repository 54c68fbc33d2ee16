"""PASCAL VOC semantic segmentation (Everingham et al. 2010), read from the devkit layout
the user already has::

    root/VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg
    root/VOCdevkit/VOC2012/SegmentationClass/2007_000032.png     palette PNG
    root/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt      one name per line

A label PNG stores the class of each pixel as its palette index: 0 background, 1..20 the
classes of :data:`VOC_CLASSES`, and 255 on the thin band drawn around each object and on
regions too hard to label. 255 is kept: train with ``cross_entropy(...,
ignore_index=255)`` and score with the same ignore index, as the VOC devkit does.
VOC2012 has 1,464 train and 1,449 val segmentation images. Nothing is downloaded.
"""
from __future__ import annotations

import os

import numpy as np

from ..dataset import Dataset
from ..joint_transforms import ToTensorPair
from ._imagefiles import check_same_size, missing_files, read_labels, read_rgb

__all__ = ["VOCSegmentation", "VOC_CLASSES", "voc_colormap"]

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")

SOURCE = "http://host.robots.ox.ac.uk/pascal/VOC/ (VOCtrainval_11-May-2012.tar for 2012)"


def voc_colormap(n=256):
    """The ``(n, 3)`` uint8 palette of VOC's label PNGs: the bits of class index ``c``,
    taken three at a time from the lowest, fill the red, green and blue channels from
    their highest bit down (1 = (128, 0, 0), 2 = (0, 128, 0), 15 person = (192, 128, 128),
    255 = (224, 224, 192))."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for c in range(n):
        value, r, g, b = c, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[c] = (r, g, b)
    return palette


class VOCSegmentation(Dataset):
    """The images of ``ImageSets/Segmentation/<image_set>.txt`` with their class masks.

    ``root``: the folder holding ``VOCdevkit/`` (``VOCdevkit/VOC<year>`` or
    ``VOC<year>`` itself are found too). ``image_set``: ``"train"``, ``"val"`` or
    ``"trainval"`` (``"test"`` for 2007, whose test set has masks).

    A sample is ``(image, mask)``: by default (``transforms=None``) a ``(3, H, W)``
    float32 array in [0, 1] and an ``(H, W)`` int64 array of class indices (255 =
    ignore); sizes vary from image to image, so crop or resize them
    (``joint_transforms``) before batching. A joint ``transforms(image, mask)`` gets the
    pair as read -- ``(H, W, 3)`` uint8 and ``(H, W)`` int64 -- and should start with
    ``ToTensorPair()``. ``images`` and ``masks`` list the file paths.
    """

    classes = VOC_CLASSES

    def __init__(self, root, year="2012", image_set="train", transforms=None):
        who = "VOCSegmentation"
        year = str(year)
        if year not in ("2007", "2008", "2009", "2010", "2011", "2012"):
            raise ValueError(f"{who}: year must be one of 2007..2012, got {year!r}")
        allowed = ("train", "val", "trainval") + (("test",) if year == "2007" else ())
        if image_set not in allowed:
            raise ValueError(f"{who}: image_set must be one of {', '.join(allowed)} for "
                             f"{year}, got {image_set!r}")
        if root is None:
            raise ValueError(f"{who}: root is required (the folder holding VOCdevkit/); "
                             f"get the data from {SOURCE}")
        self.root, self.year, self.image_set = os.path.expanduser(os.fspath(root)), year, \
            image_set
        self.transforms = transforms
        self._default = ToTensorPair()
        self.voc_root = self._find_voc_root(who)
        split_file = os.path.join(self.voc_root, "ImageSets", "Segmentation",
                                  image_set + ".txt")
        with open(split_file, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        if not names:
            raise ValueError(f"{who}: {split_file} lists no image")
        self.images = [os.path.join(self.voc_root, "JPEGImages", n + ".jpg") for n in names]
        self.masks = [os.path.join(self.voc_root, "SegmentationClass", n + ".png")
                      for n in names]
        missing_files(self.images, who, "image(s) listed in " + split_file)
        missing_files(self.masks, who, "mask(s) listed in " + split_file)

    def _find_voc_root(self, who):
        base = f"VOC{self.year}"
        candidates = [os.path.join(self.root, "VOCdevkit", base),
                      os.path.join(self.root, "TrainVal", "VOCdevkit", base),
                      os.path.join(self.root, base), self.root]
        for folder in candidates:
            if os.path.isfile(os.path.join(folder, "ImageSets", "Segmentation",
                                           self.image_set + ".txt")):
                return folder
        looked = "\n  ".join(os.path.join(c, "ImageSets", "Segmentation",
                                          self.image_set + ".txt") for c in candidates)
        raise FileNotFoundError(f"{who}: no split file {self.image_set}.txt; looked for:\n"
                                f"  {looked}\nminicnn does not download data sets; get "
                                f"VOC{self.year} from {SOURCE} and extract it under root")

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        who = "VOCSegmentation"
        image = read_rgb(self.images[index], who)
        mask = read_labels(self.masks[index], who)
        check_same_size(image, self.images[index], mask, self.masks[index], who)
        if self.transforms is None:
            return self._default(image, mask)
        return self.transforms(image, mask)

    def __repr__(self):
        return (f"VOCSegmentation(root={self.root!r}, year={self.year!r}, image_set="
                f"{self.image_set!r}, {len(self)} images)")
