"""Test-time augmentation: predict on several crops of each image and average the class
probabilities, as AlexNet does at test time (Krizhevsky et al. 2012 §4.1: "the network
makes a prediction by extracting five 224x224 patches (the four corner patches and the
center patch) as well as their horizontal reflections ... and averaging the predictions
made by the network's softmax layer on the ten patches").
"""
from __future__ import annotations

from ..autograd import Tensor, no_grad
from ..data.transforms import TenCrop
from ..functional import softmax, stack
from .summary import _kept_state

__all__ = ["predict_tta"]


def predict_tta(model, images, crops=None):
    """The softmax of ``model`` averaged over the crops of each image.

    ``images``: ``(N, C, H, W)`` or one ``(C, H, W)`` image (a Tensor). ``crops``: a
    transform returning a tuple of same-sized crops of a ``(C, H, W)`` image (default
    ``TenCrop(224)``; ``FiveCrop`` for the corners and centre alone). The N·K crops go
    through the model as one batch, in eval mode (the model's modes are restored),
    without a graph. Returns probabilities ``(N, classes)`` (``(classes,)`` for one
    image)::

        p = mean_k softmax(model(crop_k(image)))
    """
    op = "predict_tta"
    if not isinstance(images, Tensor) or images.ndim not in (3, 4):
        raise ValueError(f"{op}: expected a Tensor image (C, H, W) or batch (N, C, H, W), got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    single = images.ndim == 3
    batch = images.unsqueeze(0) if single else images
    crops = TenCrop(224) if crops is None else crops
    per_image = [crops(image) for image in batch]            # N tuples of K (C, h, w)
    if not isinstance(per_image[0], (tuple, list)) or \
            any(len(c) != len(per_image[0]) for c in per_image):
        raise ValueError(f"{op}: crops must return a tuple of crops, got "
                         f"{type(per_image[0]).__name__}")
    k = len(per_image[0])
    flat = stack([c for image_crops in per_image for c in image_crops])   # (N*K, C, h, w)
    with _kept_state(model, "eval"), no_grad():
        logits = model(flat)                                              # (N*K, classes)
    probs = softmax(logits, dim=1)
    probs = probs.reshape(len(per_image), k, probs.shape[1]).mean(1)      # (N, classes)
    return probs[0] if single else probs
