"""ImageFolder: one sub-folder per class, images read with Pillow (torchvision's layout)::

    root/cat/001.png
    root/cat/002.jpg
    root/dog/xyz.png
"""
from __future__ import annotations

import os

from ..dataset import Dataset
from ._imagefiles import _open

__all__ = ["ImageFolder", "IMG_EXTENSIONS", "pil_loader"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def pil_loader(path):
    """Open an image file as an RGB PIL image (read fully, so the file is closed).

    A corrupt or truncated file raises an error naming it. A 16-bit greyscale image
    (PNG ``I;16``) is scaled to 8 bits by its depth (x 255/65535) first: Pillow's own
    conversion clips every value above 255, which turns most such images white.
    """
    img = _open(path, "ImageFolder")          # a clear ImportError without Pillow
    if img.mode.startswith("I;16") or img.mode == "I":
        import numpy as np
        from PIL import Image
        values = np.asarray(img, dtype=np.float64)
        if img.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"ImageFolder: {path}: 32-bit integer pixels outside 0..65535 "
                             "(mode I); convert the image to 8 or 16 bits")
        img = Image.fromarray(np.rint(values * (255.0 / 65535.0)).astype(np.uint8))   # "L"
    return img.convert("RGB")


class ImageFolder(Dataset):
    """Images in ``root/<class name>/**/<file>``; classes are the sorted folder names.

    A sample is ``(image, class_index)``, ``image`` a PIL RGB image by default (``loader``
    changes that; apply ``transforms.ToTensor()``). Attributes as in torchvision:
    ``classes``, ``class_to_idx``, ``samples`` (list of ``(path, class_index)``),
    ``targets``. Files are kept when their extension is in ``extensions`` (or when
    ``is_valid_file(path)`` says so).
    """

    def __init__(self, root, transform=None, target_transform=None, loader=None,
                 is_valid_file=None, extensions=IMG_EXTENSIONS, allow_empty=False):
        self.root = os.path.expanduser(os.fspath(root))
        self.transform, self.target_transform = transform, target_transform
        self.loader = pil_loader if loader is None else loader
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"ImageFolder: folder {self.root!r} does not exist")
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"ImageFolder: couldn't find any class folder in "
                                    f"{self.root!r} (expected root/<class>/<image files>)")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        if is_valid_file is None:
            lowered = tuple(e.lower() for e in extensions)
            is_valid_file = lambda path: path.lower().endswith(lowered)  # noqa: E731
        self.samples, empty = [], []
        for name in self.classes:
            found = []
            for folder, _, files in sorted(os.walk(os.path.join(self.root, name),
                                                   followlinks=True)):
                found += [os.path.join(folder, f) for f in sorted(files)
                          if is_valid_file(os.path.join(folder, f))]
            if not found:
                empty.append(name)
            self.samples += [(path, self.class_to_idx[name]) for path in found]
        if empty and not allow_empty:
            raise FileNotFoundError(f"ImageFolder: found no valid file for the class(es) "
                                    f"{', '.join(empty)} in {self.root!r}; supported "
                                    f"extensions are: {', '.join(extensions)}")
        self.imgs = self.samples
        self.targets = [t for _, t in self.samples]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        image = self.loader(path)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target
