"""Reading the picture and the label image of a segmentation sample with Pillow, with
errors that name the file.

Pillow is optional (the "train" extra), imported only when a file is read, as in
``folder.py``.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["read_rgb", "read_labels", "check_same_size", "missing_files"]


def _open(path, who):
    """The image at ``path``, fully decoded; a missing, unreadable, corrupt or truncated
    file raises an error naming it."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"{who} needs Pillow to read its images: pip install pillow "
                          "(or pip install minicnn[train])") from None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{who}: file not found: {path}")
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            img.load()                 # decode now: a truncated file fails here, not later
        return img
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports a file it cannot identify or decode as OSError
        # (UnidentifiedImageError, "image file is truncated"), SyntaxError (broken PNG
        # chunks) or ValueError
        raise ValueError(f"{who}: cannot read {path}: not an image, or a corrupt or "
                         f"truncated one ({type(exc).__name__}: {exc})") from None


def read_rgb(path, who):
    """``(H, W, 3)`` uint8 picture."""
    img = _open(path, who)
    return np.asarray(img.convert("RGB"))


def read_labels(path, who):
    """``(H, W)`` int64 labels from a label image: the palette indices of a palette
    ("P") PNG, or the values of a greyscale one ("L", "I", "I;16"); never colours."""
    img = _open(path, who)
    if img.mode not in ("P", "L", "I", "I;16"):
        raise ValueError(f"{who}: {path} is a {img.mode!r} image; a label image must be a "
                         "palette (P) or greyscale (L, I) PNG whose pixel values are the "
                         "class indices")
    return np.asarray(img).astype(np.int64)


def check_same_size(image, image_path, mask, mask_path, who):
    """Refuse a label image whose size differs from its picture's."""
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"{who}: the mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} "
                         f"(W x H) but its image {image_path} is {image.shape[1]}x"
                         f"{image.shape[0]}")


def missing_files(paths, who, what, hint=""):
    """Raise FileNotFoundError naming the first few of ``paths`` that do not exist."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = "\n  ".join(missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(f"{who}: {len(missing)} {what} missing:\n  {shown}{more}"
                                + (f"\n{hint}" if hint else ""))
