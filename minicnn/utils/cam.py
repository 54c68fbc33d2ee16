"""Class activation maps (Zhou, Khosla, Lapedriza, Oliva, Torralba, "Learning Deep
Features for Discriminative Localization", CVPR 2016, arXiv 1512.04150).

A network that ends in global average pooling and one linear layer scores class c as

    logit_c = b_c + Σ_k w_ck · mean_{x,y} f_k(x, y) = b_c + mean_{x,y} M_c(x, y),
    M_c(x, y) = Σ_k w_ck f_k(x, y),

where f_k is the k-th map of the last convolutional block and w, b the linear layer's
weight ``(classes, K)`` and bias. ``M_c`` is the class activation map: where in the
image the evidence for class c lies. Because pooling and the linear layer commute, the
map's mean plus the bias *is* the logit (ResNet, GoogLeNet; not VGG or AlexNet, whose
fully connected layers see positions).
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..functional import interpolate
from .summary import _kept_state

__all__ = ["class_activation_map"]


def class_activation_map(model, image, class_idx=None, features="layer4", fc="fc",
                         upsample=False):
    """The class activation maps of ``image`` for ``class_idx``.

    ``model``: a classifier whose submodule ``features`` (a dotted name; ResNet's
    ``layer4``, GoogLeNet's ``inception5b``) gives the maps ``(N, K, h, w)`` that are
    globally average-pooled into the linear layer ``fc`` (``(classes, K)``).
    ``image``: ``(N, C, H, W)`` or one ``(C, H, W)`` image. ``class_idx``: an int, a
    sequence of one int per image, or None for each image's top-scoring class.
    ``upsample``: bilinear resize of the maps to the input's ``(H, W)``.

    Runs the model once in eval mode (its modes are restored), without a graph. Returns
    ``(cams, logits)``: cams ``(N, h, w)`` (``(N, H, W)`` upsampled) and the logits
    ``(N, classes)``; for one ``(C, H, W)`` image both lose the batch axis.
    """
    op = "class_activation_map"
    single = image.ndim == 3
    if single:
        image = image.unsqueeze(0)
    if image.ndim != 4:
        raise ValueError(f"{op}: expected an image (C, H, W) or a batch (N, C, H, W), got "
                         f"shape {tuple(image.shape)}")
    try:
        feature_layer, linear = model.get_submodule(features), model.get_submodule(fc)
    except AttributeError as exc:
        raise ValueError(f"{op}: {exc}; pass features= and fc= naming the last feature "
                         "block and the linear layer") from None
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"{op}: fc={fc!r} is a {type(linear).__name__}, not a Linear layer")

    captured = []
    handle = feature_layer.register_forward_hook(lambda m, i, out: captured.append(out))
    try:
        with _kept_state(model, "eval"), no_grad():
            logits = model(image)
    finally:
        handle.remove()
    maps = captured[-1]                                      # (N, K, h, w)
    if maps.ndim != 4 or maps.shape[1] != linear.in_features:
        raise ValueError(f"{op}: {features!r} gives shape {tuple(maps.shape)}, but {fc!r} "
                         f"reads {linear.in_features} features: not a (N, K, h, w) map "
                         "pooled into fc")

    n, k = maps.shape[:2]
    classes = _classes(class_idx, logits, n, op)             # (N,)
    weight = linear.weight.detach()[classes]                 # (N, K)
    cams = (maps * weight.reshape(n, k, 1, 1)).sum(1)        # (N, h, w)
    if upsample:
        cams = interpolate(cams.unsqueeze(1), size=tuple(image.shape[2:]), mode="bilinear",
                           align_corners=False).squeeze(1)   # (N, H, W)
    return (cams[0], logits[0]) if single else (cams, logits)


def _classes(class_idx, logits, n, op):
    if class_idx is None:
        return logits.detach().numpy().argmax(axis=1)
    classes = np.broadcast_to(np.asarray(class_idx), (n,)) if np.ndim(class_idx) == 0 \
        else np.asarray(class_idx)
    num_classes = logits.shape[1]
    if classes.shape != (n,) or not np.issubdtype(classes.dtype, np.integer) \
            or classes.min() < 0 or classes.max() >= num_classes:
        raise ValueError(f"{op}: class_idx must be an int or {n} ints in [0, {num_classes}), "
                         f"got {class_idx!r}")
    return classes
