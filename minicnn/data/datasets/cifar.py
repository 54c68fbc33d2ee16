"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from the files the user already has.

Two official distributions exist and both are read:

* the *binary version* (preferred): fixed-size records of ``label byte(s)`` followed by
  3,072 pixel bytes -- 1,024 red, then green, then blue, each row-major 32x32. CIFAR-10
  records have one label byte, CIFAR-100 two (coarse, then fine).
* the *python version*: pickled dicts written by Python 2. Plain ``pickle.load`` could
  run arbitrary code from a tampered file, so they are read with a restricted unpickler
  that admits only NumPy arrays and plain data (``_files.safe_pickle_load``).
"""
from __future__ import annotations

import os

import numpy as np

from ._files import find_files, read_bytes, safe_pickle_load
from .base import ArrayDataset

__all__ = ["CIFAR10", "CIFAR100"]

_PIXELS = 3 * 32 * 32


class CIFAR10(ArrayDataset):
    """CIFAR-10: 50,000 training and 10,000 test 32x32 colour images in 10 classes.

    ``root`` holds ``cifar-10-batches-bin/`` (binary version) or ``cifar-10-batches-py/``
    (python version), or their files directly. A sample is ``(image, label)`` with
    ``image`` a ``(32, 32, 3)`` uint8 array (apply ``transforms.ToTensor()``); ``data`` is
    ``(N, 32, 32, 3)`` uint8 and ``targets`` int64, as in torchvision. Nothing is
    downloaded.
    """

    source = "https://www.cs.toronto.edu/~kriz/cifar.html"
    binary_folder, python_folder = "cifar-10-batches-bin", "cifar-10-batches-py"
    train_names, test_names = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]
    label_bytes, num_classes = 1, 10
    label_key = b"labels"
    default_classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                       "horse", "ship", "truck"]
    meta_text, meta_pickle, meta_key = "batches.meta.txt", "batches.meta", b"label_names"

    def __init__(self, root, train=True, transform=None, target_transform=None):
        self.root, self.train = root, train
        self.transform, self.target_transform = transform, target_transform
        names = self.train_names if train else self.test_names
        name = type(self).__name__
        try:
            paths = find_files(name, root, (self.binary_folder, ""),
                               [(n + ".bin",) for n in names], self.source)
            self.data, self.targets, self.coarse_targets = self._read_binary(paths)
            meta = os.path.join(os.path.dirname(paths[0]), self.meta_text)
        except FileNotFoundError as binary_missing:
            try:
                paths = find_files(name, root, (self.python_folder, ""),
                                   [(n,) for n in names], self.source)
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"{binary_missing}\n(the python version, "
                    f"{self.python_folder}/{', '.join(names)}, was not found either)") from None
            self.data, self.targets, self.coarse_targets = self._read_python(paths)
            meta = os.path.join(os.path.dirname(paths[0]), self.meta_pickle)
        self.classes = self._class_names(meta)

    # ------------------------------------------------------------------ readers
    def _read_binary(self, paths):
        record = self.label_bytes + _PIXELS
        images, fine, coarse = [], [], []
        for path in paths:
            raw = read_bytes(path)
            if len(raw) == 0 or len(raw) % record:
                hint = (f"records are {record} bytes in the {type(self).__name__} binary "
                        f"version (CIFAR-10: 3073, CIFAR-100: 3074)")
                raise ValueError(f"{path}: size {len(raw)} bytes is not a positive multiple of "
                                 f"{record} -- truncated, or not this data set ({hint})")
            rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
            fine.append(rows[:, self.label_bytes - 1].astype(np.int64))
            coarse.append(rows[:, 0].astype(np.int64))
            images.append(rows[:, self.label_bytes:])
        return self._finish(paths, np.concatenate(images), np.concatenate(fine),
                            np.concatenate(coarse) if self.label_bytes == 2 else None)

    def _read_python(self, paths):
        images, fine, coarse = [], [], []
        for path in paths:
            batch = safe_pickle_load(path)
            if not isinstance(batch, dict) or b"data" not in batch or \
                    self.label_key not in batch:
                keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
                raise ValueError(f"{path}: expected a dict with b'data' and "
                                 f"{self.label_key!r}, found {keys}")
            data = batch[b"data"]
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or \
                    data.ndim != 2 or data.shape[1] != _PIXELS:
                raise ValueError(f"{path}: b'data' should be a uint8 array (N, {_PIXELS}), "
                                 f"got {getattr(data, 'dtype', type(data).__name__)} "
                                 f"{getattr(data, 'shape', '')}")
            images.append(data)
            fine.append(self._labels(path, batch[self.label_key], len(data)))
            if b"coarse_labels" in batch:
                coarse.append(self._labels(path, batch[b"coarse_labels"], len(data)))
        return self._finish(paths, np.concatenate(images), np.concatenate(fine),
                            np.concatenate(coarse) if coarse else None)

    @staticmethod
    def _labels(path, labels, n):
        labels = np.asarray(labels)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise ValueError(f"{path}: expected {n} integer labels, got {labels.dtype} "
                             f"{labels.shape}")
        return labels.astype(np.int64)

    def _finish(self, paths, flat, targets, coarse):
        if targets.size and (targets.min() < 0 or targets.max() >= self.num_classes):
            raise ValueError(f"{type(self).__name__}: labels in {paths[0]}... lie in "
                             f"{targets.min()}..{targets.max()}, expected 0..{self.num_classes - 1}")
        # (N, 3072) channel-planar -> (N, 3, 32, 32) -> (N, 32, 32, 3) like an RGB picture
        images = np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        return images, targets, coarse

    def _class_names(self, meta_path):
        try:
            if meta_path.endswith(".txt"):
                with open(meta_path, encoding="utf-8") as f:
                    names = [line.strip() for line in f if line.strip()]
            else:
                names = [n.decode() if isinstance(n, bytes) else str(n)
                         for n in safe_pickle_load(meta_path)[self.meta_key]]
        except (OSError, KeyError, TypeError, ValueError):
            names = []
        return names if len(names) == self.num_classes else list(self.default_classes)


class CIFAR100(CIFAR10):
    """CIFAR-100: like CIFAR-10 with 100 fine classes (``targets``) grouped in 20 coarse
    ones (``coarse_targets``). Folders ``cifar-100-binary/`` or ``cifar-100-python/``."""

    binary_folder, python_folder = "cifar-100-binary", "cifar-100-python"
    train_names, test_names = ["train"], ["test"]
    label_bytes, num_classes = 2, 100
    label_key = b"fine_labels"
    default_classes = [f"class_{i}" for i in range(100)]
    meta_text, meta_pickle, meta_key = "fine_label_names.txt", "meta", b"fine_label_names"
