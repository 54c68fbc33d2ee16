"""PASCAL VOC semantic segmentation (Everingham et al. 2010), read from the devkit layout
the user already has::

    root/VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg
    root/VOCdevkit/VOC2012/SegmentationClass/2007_000032.png     palette PNG
    root/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt      one name per line

A label PNG stores the class of each pixel as its palette index: 0 background, 1..20 the
classes of :data:`VOC_CLASSES`, and 255 on the thin band drawn around each object and on
regions too hard to label. 255 is kept: train with ``cross_entropy(...,
ignore_index=255)`` and score with the same ignore index, as the VOC devkit does.
VOC2012 has 1,464 train and 1,449 val segmentation images.

Detection (:class:`VOCDetection`) reads the same tree's ``Annotations/<name>.xml`` for
the images of ``ImageSets/Main/<image_set>.txt`` (VOC2007: 5,011 trainval and 4,952
test images; VOC2012: 5,717 train and 5,823 val). The annotation files are parsed
without a DOCTYPE: no entity is ever expanded and nothing outside the file is read
(:func:`read_voc_xml`), so a crafted file can neither blow up in memory nor reach other
files. Nothing is downloaded.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from xml.parsers import expat

import numpy as np

from ..dataset import Dataset
from ..joint_transforms import ToTensorPair
from ..transforms import ToTensor
from ._imagefiles import check_same_size, missing_files, read_labels, read_rgb

__all__ = ["VOCSegmentation", "VOCDetection", "VOC_CLASSES", "voc_colormap", "parse_voc_xml",
           "read_voc_xml", "RefusedXMLError"]

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")

_TO_TENSOR = ToTensor()

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
        year = _check_split(root, year, image_set, who)
        self.root, self.year, self.image_set = os.path.expanduser(os.fspath(root)), year, \
            image_set
        self.transforms = transforms
        self._default = ToTensorPair()
        self.voc_root, self.images, self.masks = _split_files(
            self.root, year, image_set, "Segmentation", ("SegmentationClass", ".png", "mask"),
            who)

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


class VOCDetection(Dataset):
    """The images of ``ImageSets/Main/<image_set>.txt`` with their objects' boxes.

    ``root``, ``year`` and ``image_set`` as :class:`VOCSegmentation` (``"test"`` for 2007
    only). ``classes``: the class names, index 0 the background (default
    :data:`VOC_CLASSES`; another list reads other annotations in VOC's format).

    A sample is ``(image, target)``: by default (``transforms=None``) a ``(3, H, W)``
    float32 array in [0, 1] and a dict of NumPy arrays, one row per object (K):

    * ``"boxes"``: ``(K, 4)`` float32 ``(x1, y1, x2, y2)`` in pixel-edge coordinates.
      VOC numbers pixels from 1 and its ``xmax`` is the last pixel inside the box, so the
      box covering pixel columns ``xmin..xmax`` is ``x1 = xmin - 1``, ``x2 = xmax``: the
      whole image is ``(0, 0, W, H)``, the width ``xmax - xmin + 1`` (VOC's devkit's);
    * ``"labels"``: ``(K,)`` int64 indices into ``classes`` (1..20 for VOC);
    * ``"difficult"``: ``(K,)`` bool, VOC's ``difficult`` flag (absent means 0). Metrics
      ignore these objects; ``keep_difficult=False`` drops them here instead.

    A joint ``transforms(image, target)`` (see ``minicnn.data.detection_transforms``) gets
    the picture as read, ``(H, W, 3)`` uint8, and should end with ``ToTensor()``. Batch
    with ``minicnn.data.detection_collate`` (sizes differ from image to image).

    An annotation is checked when its sample is read; each error names the file. An
    unknown class name, a missing ``name`` or ``bndbox`` field and a size that disagrees
    with the image's are always errors. ``invalid_boxes`` says what to do with a box that
    reaches outside the image or has ``xmax < xmin`` (or ``ymax < ymin``): ``"error"``
    (the default: fix the annotation, or choose one of the others), ``"clip"`` (clip it
    to the image, drop it if nothing is left) or ``"drop"``.

    ``images`` and ``annotations`` list the file paths; :meth:`annotation` gives a file's
    whole content as :func:`parse_voc_xml` reads it.
    """

    classes = VOC_CLASSES

    def __init__(self, root, year="2012", image_set="train", transforms=None,
                 keep_difficult=True, classes=None, invalid_boxes="error"):
        who = "VOCDetection"
        year = _check_split(root, year, image_set, who)
        if invalid_boxes not in ("error", "clip", "drop"):
            raise ValueError(f"{who}: invalid_boxes must be 'error', 'clip' or 'drop', got "
                             f"{invalid_boxes!r}")
        if classes is not None:
            classes = tuple(str(c) for c in classes)
            if len(classes) < 2 or len(set(classes)) != len(classes):
                raise ValueError(f"{who}: classes must list distinct names, the background "
                                 f"first and at least one class, got {classes!r}")
            self.classes = classes
        self._index = {name: i for i, name in enumerate(self.classes)}
        self.root, self.year, self.image_set = os.path.expanduser(os.fspath(root)), year, \
            image_set
        self.transforms, self.keep_difficult = transforms, bool(keep_difficult)
        self.invalid_boxes = invalid_boxes
        self.voc_root, self.images, self.annotations = _split_files(
            self.root, year, image_set, "Main", ("Annotations", ".xml", "annotation"), who)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = read_rgb(self.images[index], "VOCDetection")
        target = self.target(index, image.shape[:2])
        if self.transforms is None:
            return _TO_TENSOR(image), target
        return self.transforms(image, target)

    def annotation(self, index):
        """The annotation file of sample ``index`` as :func:`parse_voc_xml`'s dict."""
        return parse_voc_xml(read_voc_xml(self.annotations[index], "VOCDetection"))

    def target(self, index, image_size=None):
        """The target dict of sample ``index`` (boxes checked against ``image_size = (H,
        W)``, by default the annotation's own ``size``)."""
        path = self.annotations[index]
        root = read_voc_xml(path, "VOCDetection")
        if root.tag != "annotation":
            raise ValueError(f"VOCDetection: {path}: the root element is <{root.tag}>, "
                             "expected <annotation>")
        annotation = parse_voc_xml(root).get("annotation")
        annotation = annotation if isinstance(annotation, dict) else {}
        size = _annotated_size(annotation, path)
        if image_size is not None:
            if size is not None and tuple(size) != tuple(image_size):
                raise ValueError(f"VOCDetection: {path} gives the image size "
                                 f"{size[1]}x{size[0]} (W x H) but {self.images[index]} is "
                                 f"{image_size[1]}x{image_size[0]}")
            size = image_size
        if size is None:
            raise ValueError(f"VOCDetection: {path} has no <size> (width, height) and no "
                             "image was given to check its boxes against")
        boxes, labels, difficult = [], [], []
        for k, obj in enumerate(annotation.get("object", [])):
            name = _text(obj, "name", path, k)
            if name not in self._index:
                raise ValueError(f"VOCDetection: {path}, object {k}: unknown class name "
                                 f"{name!r}; the classes are {', '.join(self.classes[1:])} "
                                 "(pass classes=[...] for other names)")
            box = self._box(obj, path, k, size)
            flag = _text(obj, "difficult", path, k, default="0")
            if flag not in ("0", "1"):
                raise ValueError(f"VOCDetection: {path}, object {k}: difficult must be 0 or "
                                 f"1, got {flag!r}")
            if box is None or (flag == "1" and not self.keep_difficult):
                continue
            boxes.append(box)
            labels.append(self._index[name])
            difficult.append(flag == "1")
        return {"boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
                "labels": np.array(labels, dtype=np.int64),
                "difficult": np.array(difficult, dtype=bool)}

    def _box(self, obj, path, k, size):
        """``(x1, y1, x2, y2)`` pixel edges of the object's ``bndbox``, or ``None`` when
        ``invalid_boxes`` drops it."""
        where = f"VOCDetection: {path}, object {k}"
        bndbox = obj.get("bndbox") if isinstance(obj, dict) else None
        if not isinstance(bndbox, dict):
            raise ValueError(f"{where}: missing <bndbox> (with xmin, ymin, xmax, ymax)")
        values = []
        for key in ("xmin", "ymin", "xmax", "ymax"):
            text = _text(bndbox, key, path, k)
            try:
                values.append(float(text))
            except ValueError:
                raise ValueError(f"{where}: bndbox {key} is not a number: {text!r}") from None
        xmin, ymin, xmax, ymax = values
        h, w = size
        box = [xmin - 1.0, ymin - 1.0, xmax, ymax]         # 1-based pixels -> pixel edges
        inverted = xmax < xmin or ymax < ymin
        outside = box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h
        if not (inverted or outside):
            return box
        if self.invalid_boxes == "error":
            problem = "has xmax < xmin or ymax < ymin" if inverted else \
                f"reaches outside the {w}x{h} image (1 <= xmin <= xmax <= {w}, " \
                f"1 <= ymin <= ymax <= {h})"
            raise ValueError(f"{where}: the box (xmin, ymin, xmax, ymax) = "
                             f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) {problem}; fix the "
                             "annotation, or pass invalid_boxes='clip' or 'drop'")
        if self.invalid_boxes == "drop":
            return None
        box = [min(max(box[0], 0.0), w), min(max(box[1], 0.0), h),
               min(max(box[2], 0.0), w), min(max(box[3], 0.0), h)]
        return box if box[2] > box[0] and box[3] > box[1] else None

    def __repr__(self):
        return (f"VOCDetection(root={self.root!r}, year={self.year!r}, image_set="
                f"{self.image_set!r}, {len(self)} images)")


# ------------------------------------------------------------ annotation files

class RefusedXMLError(ValueError):
    """An annotation file with a DOCTYPE or entity declaration, which is refused."""


def read_voc_xml(path, who="read_voc_xml"):
    """The root element of the XML file at ``path``, parsed safely.

    The file may hold elements, attributes, text, comments and processing instructions
    -- everything a VOC annotation uses -- but no DOCTYPE: a DOCTYPE, an entity
    declaration or a reference to an external entity raises :class:`RefusedXMLError`
    before anything is expanded or fetched (so "billion laughs" and external-entity
    files are refused, not parsed). A file that is not well-formed raises a ValueError
    naming it and the line and column (expat's message).
    """
    with open(path, "rb") as f:
        data = f.read()
    return _parse_xml(data, path, who)


def _parse_xml(data, source, who):
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()

    def refuse(what):
        def handler(*args):
            raise RefusedXMLError(f"{who}: {source}: refused to parse an XML file with "
                                  f"{what} (annotation files need none; entities could "
                                  "expand without bound or read other files)")
        return handler
    parser.StartDoctypeDeclHandler = refuse("a DOCTYPE declaration")
    parser.EntityDeclHandler = refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = refuse("an unparsed entity declaration")
    parser.ExternalEntityRefHandler = refuse("an external entity reference")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise ValueError(f"{who}: {source} is not well-formed XML ({exc})") from None
    return builder.close()


def parse_voc_xml(node):
    """A VOC annotation element as nested dicts, as torchvision's
    ``VOCDetection.parse_voc_xml``: a leaf becomes ``{tag: stripped text}`` (an empty
    leaf contributes nothing); an element with children ``{tag: {child tag: value}}``,
    a value a list where a tag repeats; under ``annotation``, ``object`` is always a
    list (empty when there is no object). Attributes are ignored. For the seed's
    annotation (``n02123394_2084``)::

        {"annotation": {"folder": "n02123394", "filename": "n02123394_2084",
                        "source": {"database": "ImageNet database"},
                        "size": {"width": "500", "height": "375", "depth": "3"},
                        "segmented": "0",
                        "object": [{"name": "n02123394", "pose": "Unspecified",
                                    "truncated": "0", "difficult": "0",
                                    "bndbox": {"xmin": "265", "ymin": "185",
                                               "xmax": "470", "ymax": "374"}}, ...]}}
    """
    children = list(node)
    if not children:
        return {node.tag: node.text.strip()} if node.text else {}
    grouped = {}
    for child in children:
        for tag, value in parse_voc_xml(child).items():
            grouped.setdefault(tag, []).append(value)
    if node.tag == "annotation":
        grouped["object"] = [grouped.get("object", [])]
    return {node.tag: {tag: values[0] if len(values) == 1 else values
                       for tag, values in grouped.items()}}


# torchvision's spelling works too: VOCDetection.parse_voc_xml(node)
VOCDetection.parse_voc_xml = staticmethod(parse_voc_xml)


def _text(fields, key, path, k, default=None):
    """The text of the single field ``key`` of object ``k``."""
    value = fields.get(key, default) if isinstance(fields, dict) else default
    if value is None:
        raise ValueError(f"VOCDetection: {path}, object {k}: missing <{key}>")
    if not isinstance(value, str):
        raise ValueError(f"VOCDetection: {path}, object {k}: <{key}> should hold one text "
                         f"value, got {value!r}")
    return value


def _annotated_size(annotation, path):
    """``(H, W)`` from the annotation's ``size``, or ``None`` when it has none."""
    size = annotation.get("size")
    if size is None:
        return None
    try:
        return int(size["height"]), int(size["width"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"VOCDetection: {path}: <size> should hold integer <width> and "
                         f"<height>, got {size!r}") from None


# ------------------------------------------------------------------ the tree

def _check_split(root, year, image_set, who):
    """The year as a string, after checking the year, the split and the root."""
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
    return year


def _split_files(root, year, image_set, kind, labels, who):
    """``(voc_root, images, label files)`` of a split, every file checked to exist;
    ``labels = (folder, extension, what they are)``."""
    voc_root, split_file = _find_split(root, year, image_set, kind, who)
    names = _read_split(split_file, who)
    folder, extension, what = labels
    images = [os.path.join(voc_root, "JPEGImages", n + ".jpg") for n in names]
    others = [os.path.join(voc_root, folder, n + extension) for n in names]
    missing_files(images, who, "image(s) listed in " + split_file)
    missing_files(others, who, f"{what}(s) listed in " + split_file)
    return voc_root, images, others


def _find_split(root, year, image_set, kind, who):
    """``(voc_root, split file)``: the first of ``root/VOCdevkit/VOC<year>``,
    ``root/TrainVal/VOCdevkit/VOC<year>``, ``root/VOC<year>`` and ``root`` holding
    ``ImageSets/<kind>/<image_set>.txt``."""
    base = f"VOC{year}"
    candidates = [os.path.join(root, "VOCdevkit", base),
                  os.path.join(root, "TrainVal", "VOCdevkit", base),
                  os.path.join(root, base), root]
    splits = [os.path.join(c, "ImageSets", kind, image_set + ".txt") for c in candidates]
    for folder, split in zip(candidates, splits):
        if os.path.isfile(split):
            return folder, split
    looked = "\n  ".join(splits)
    raise FileNotFoundError(f"{who}: no split file {image_set}.txt; looked for:\n"
                            f"  {looked}\nminicnn does not download data sets; get "
                            f"VOC{year} from {SOURCE} and extract it under root")


def _read_split(split_file, who):
    """The image names a split file lists (the first word of each line)."""
    with open(split_file, encoding="utf-8") as f:
        names = [line.split()[0] for line in f if line.strip()]
    if not names:
        raise ValueError(f"{who}: {split_file} lists no image")
    return names
