"""MNIST and Fashion-MNIST from the IDX files the user already has (gzipped or not).

The IDX format (LeCun et al.): a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then
``ndim`` big-endian uint32 sizes, then the values, row-major. MNIST's images are
``0x00000803`` (uint8, 3 dimensions: N x 28 x 28) and its labels ``0x00000801``
(uint8, N).
"""
from __future__ import annotations

import math

import numpy as np

from ._files import find_files, read_bytes
from .base import ArrayDataset

__all__ = ["MNIST", "FashionMNIST", "read_idx"]

# IDX type byte -> big-endian NumPy dtype
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path, expect_ndim=None):
    """The array stored in an IDX file (``.gz`` or not), validated against its header."""
    raw = read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    zero, type_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or type_code not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (magic number 0x{raw[:4].hex()}; expected "
                         f"0x0000 followed by a type byte in "
                         f"{[hex(t) for t in _IDX_TYPES]} and the number of dimensions)")
    if expect_ndim is not None and ndim != expect_ndim:
        raise ValueError(f"{path}: IDX file has {ndim} dimension(s), expected {expect_ndim} "
                         f"(magic number 0x{raw[:4].hex()}; images are 0x00000803, labels "
                         "0x00000801) -- are the image and label files swapped?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_TYPES[type_code]
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX header says shape {shape} ({expected} bytes in all) "
                         f"but the file has {len(raw)} bytes -- truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape) \
        .astype(dtype.newbyteorder("="))


class MNIST(ArrayDataset):
    """MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grey.

    ``root`` is a folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``),
    directly or in torchvision's ``MNIST/raw`` layout. A sample is ``(image, label)``
    with ``image`` a ``(28, 28)`` uint8 array (apply ``transforms.ToTensor()``), as
    torchvision's MNIST gives a PIL image. Nothing is downloaded.
    """

    folders = ("MNIST/raw", "MNIST", "mnist", "")
    source = ("http://yann.lecun.com/exdb/mnist/ (mirror: "
              "https://ossci-datasets.s3.amazonaws.com/mnist/)")
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five",
               "6 - six", "7 - seven", "8 - eight", "9 - nine"]

    def __init__(self, root, train=True, transform=None, target_transform=None):
        self.root, self.train = root, train
        self.transform, self.target_transform = transform, target_transform
        prefix = "train" if train else "t10k"
        names = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
        image_path, label_path = find_files(
            type(self).__name__, root, self.folders,
            [(n, n + ".gz", n.replace("-idx", ".idx")) for n in names], self.source)
        self.data = read_idx(image_path, expect_ndim=3)            # (N, 28, 28) uint8
        self.targets = read_idx(label_path, expect_ndim=1).astype(np.int64)
        if len(self.data) != len(self.targets):
            raise ValueError(f"{type(self).__name__}: {image_path} holds {len(self.data)} "
                             f"images but {label_path} holds {len(self.targets)} labels")
        if self.data.dtype != np.uint8:
            raise ValueError(f"{image_path}: expected uint8 pixels, got {self.data.dtype}")
        if len(self.targets) and not 0 <= self.targets.min() <= self.targets.max() < 10:
            raise ValueError(f"{label_path}: labels must lie in 0..9, got "
                             f"{self.targets.min()}..{self.targets.max()}")


class FashionMNIST(MNIST):
    """Fashion-MNIST (Xiao et al. 2017): Zalando article images in MNIST's format and file
    names (``root`` directly or torchvision's ``FashionMNIST/raw`` layout)."""

    folders = ("FashionMNIST/raw", "FashionMNIST", "fashion-mnist", "fashion", "")
    source = ("https://github.com/zalandoresearch/fashion-mnist (the four .gz files in "
              "data/fashion)")
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]
