"""The base class of the data sets that hold all their images in memory (MNIST, CIFAR,
digits, generated shapes); torchvision's data sets share the same access code."""
from __future__ import annotations

from ..dataset import Dataset

__all__ = ["ArrayDataset"]


class ArrayDataset(Dataset):
    """A data set whose subclass fills ``data`` (``(N, ...)`` uint8 images) and
    ``targets`` (``(N,)`` integer labels) and sets ``transform`` and
    ``target_transform`` (``None`` or a callable).

    Sample ``i`` is ``(transform(data[i]), target_transform(int(targets[i])))``, each
    transform skipped when it is ``None``.
    """

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        # int(): a plain Python label, as torchvision gives, not a NumPy scalar
        image, target = self.data[index], int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target
