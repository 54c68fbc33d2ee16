"""The handwritten digits that ship with scikit-learn, resized for LeNet: data that works
offline, with no download.

scikit-learn's ``load_digits`` holds 1,797 images of 8x8 pixels (16 grey levels) from
the UCI "Optical Recognition of Handwritten Digits" set, about 180 per class. Here they
are upsampled with bilinear interpolation to ``image_size`` (28 or 32, LeNet's inputs)
and split once, reproducibly: a stratified split with a fixed seed, so every run, on
every machine, trains and tests on the same images.
"""
from __future__ import annotations

import functools

import numpy as np

from ..imageops import resize
from .base import ArrayDataset

__all__ = ["Digits", "stratified_split"]


@functools.lru_cache(maxsize=4)
def _resized_digits(image_size):
    """All 1,797 digits as ``(N, S, S)`` uint8 and their ``(N,)`` int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits data set comes with scikit-learn: pip install "
                          "scikit-learn (or pip install minicnn[train])") from None
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0               # (N, 8, 8) in [0, 1]
    images = resize(images, (image_size, image_size))             # (N, S, S)
    images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    images.setflags(write=False)
    labels = bunch.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def stratified_split(labels, test_fraction, seed):
    """``(train_indices, test_indices)``: each class split in the same proportion, the
    members of a class chosen by a generator seeded with ``seed``; both sorted."""
    rng = np.random.Generator(np.random.PCG64(seed))
    train, test = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        n_test = int(round(test_fraction * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class Digits(ArrayDataset):
    """scikit-learn's 8x8 digits upsampled to ``image_size`` x ``image_size``.

    ``train=True`` gives the training part of a fixed stratified split (80/20 by
    default: 1,438 training and 359 test images; each class is
    rounded on its own), ``train=False`` the test part. A sample
    is ``(image, label)`` with ``image`` a ``(S, S)`` uint8 array (apply
    ``transforms.ToTensor()``), like MNIST's. Needs scikit-learn (no download).
    """

    classes = [str(d) for d in range(10)]

    def __init__(self, train=True, transform=None, target_transform=None, image_size=28,
                 test_fraction=0.2, split_seed=0):
        if not 0 < test_fraction < 1:
            raise ValueError(f"Digits: test_fraction must lie in (0, 1), got {test_fraction}")
        if int(image_size) < 8:
            raise ValueError(f"Digits: image_size must be at least 8, got {image_size}")
        self.train, self.image_size = train, int(image_size)
        self.transform, self.target_transform = transform, target_transform
        images, labels = _resized_digits(self.image_size)
        train_idx, test_idx = stratified_split(labels, test_fraction, split_seed)
        chosen = train_idx if train else test_idx
        self.data, self.targets = images[chosen], labels[chosen]
