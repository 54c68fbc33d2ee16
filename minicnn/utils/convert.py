"""Conversions: state dicts between minicnn, NumPy and PyTorch, and ``convolutionize``
(a classifier's linear layers rewritten as convolutions).

State dicts use PyTorch's dotted names, so moving weights is a matter of converting
arrays::

    model.load_state_dict({k: v.numpy() for k, v in torch_model.state_dict().items()})
    load_torch_state_dict(model, "resnet18.pth")          # the same, from a file
    torch_model.load_state_dict(to_torch_state_dict(model))

PyTorch is needed only by the helpers that make or read torch objects, and is imported
when they are called.
"""
from __future__ import annotations

import collections
import copy

import numpy as np

from .. import backend
from ..autograd import Tensor, no_grad

__all__ = ["to_numpy_state_dict", "to_torch_state_dict", "load_torch_state_dict",
           "save_npz", "load_npz", "convolutionize"]


def to_numpy_state_dict(model):
    """``model.state_dict()`` as an ordered dict of NumPy arrays (host copies, detached
    from the model: changing them changes nothing in it)."""
    return collections.OrderedDict(
        (k, np.array(backend.to_device(v.array, "cpu"), copy=True))
        for k, v in model.state_dict().items())


def to_torch_state_dict(model):
    """``model.state_dict()`` as torch tensors, for ``torch_model.load_state_dict``."""
    import torch
    return collections.OrderedDict((k, torch.from_numpy(v))
                                   for k, v in to_numpy_state_dict(model).items())


def load_torch_state_dict(model, source, strict=True):
    """Load PyTorch weights into a minicnn model with the same architecture.

    ``source``: a state dict of torch tensors (or NumPy arrays), a torch ``nn.Module``,
    or the path of a file saved with ``torch.save`` (a state dict, or a checkpoint dict
    holding one under "state_dict" or "model"). Keys and shapes are checked by
    ``model.load_state_dict`` (every mismatch is listed in one error).
    """
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        import torch
        source = torch.load(source, map_location="cpu", weights_only=True)
        if isinstance(source, dict):
            for key in ("state_dict", "model"):
                if key in source and isinstance(source[key], dict):
                    source = source[key]
                    break
    if hasattr(source, "state_dict") and callable(source.state_dict):
        source = source.state_dict()
    if not hasattr(source, "items"):
        raise TypeError(f"load_torch_state_dict: expected a state dict, a torch module or "
                        f"a file path, got {type(source).__name__}")
    arrays = collections.OrderedDict()
    for key, value in source.items():
        if hasattr(value, "detach") and hasattr(value, "numpy"):      # a torch tensor
            value = value.detach().cpu().numpy()
        arrays[key] = value
    return model.load_state_dict(arrays, strict=strict)


def save_npz(model, path):
    """Save the state dict as a NumPy ``.npz`` archive (no pickle, readable anywhere)."""
    np.savez(path, **to_numpy_state_dict(model))


def load_npz(model, path, strict=True):
    """Load a state dict saved by :func:`save_npz`."""
    with np.load(path, allow_pickle=False) as data:
        return model.load_state_dict({k: data[k] for k in data.files}, strict=strict)


# --------------------------------------------------------------------- convolutionize

def convolutionize(model, input_size, check=True, atol=1e-4):
    """A fully convolutional copy of a classifier: its Linear layers become convolutions.

    The first Linear, which reads a flattened (C, h, w) feature map, becomes a Conv2d
    with an h x w kernel holding the same weights; later Linears become 1x1 Conv2d.
    At ``input_size`` (C, H, W, the size the classifier was built for) the new network
    returns the same scores with shape (N, num_classes, 1, 1); on a larger input it
    slides the whole classifier over the image and returns a map of class scores
    (N, num_classes, OH, OW), as in OverFeat and FCN.

    Average pools just before the flatten (AlexNet's and VGG's adaptive pool, ResNet's
    global pool) are linear, so they are folded into the first convolution's weights
    (where a pool is the identity at ``input_size`` it simply disappears). A dropout
    among them moves in front of the folded convolution (the same in eval mode).

    Supported: models whose ``forward`` applies their children in registration order
    with a flatten before the first Linear (AlexNet, VGG, ResNet, Sequential models).
    With ``check`` (default) both networks run at ``input_size`` in eval mode and a
    ValueError is raised if their outputs differ by more than ``atol`` (relative to
    the largest score), which catches a model whose forward does something else.
    The original model is left untouched (the result holds copies).
    """
    from .. import nn
    from ..functional import flatten

    layers = _flatten_children(nn, copy.deepcopy(model).eval())
    linear_at = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    if not linear_at:
        raise ValueError(f"convolutionize: {type(model).__name__} has no Linear layer")
    first = next(iter(model.parameters()))
    x = Tensor(np.random.default_rng(0).standard_normal((1,) + tuple(input_size))
               .astype(first.dtype)).to(first.device)

    was_training = model.training
    model.eval()
    try:
        with no_grad():
            # 1. run the layers in order as the model would, noting each one's input shape
            in_shapes, h = [], x
            for m in layers[:linear_at[0]]:
                in_shapes.append(tuple(h.shape))
                h = m(h)
            # 2. the layers between the last feature map and the first Linear
            start = linear_at[0]
            while start > 0 and isinstance(layers[start - 1], _FOLDABLE(nn)):
                start -= 1
            map_shape = in_shapes[start] if start < linear_at[0] else tuple(h.shape)
            if len(map_shape) != 4:
                raise ValueError(f"convolutionize: the first Linear does not read a feature "
                                 f"map (the input before it has shape {map_shape})")
            between = layers[start:linear_at[0]]
            pools = [m for m in between if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d))]
            dropouts = [m for m in between if isinstance(m, nn.Dropout)]
            conv = _first_linear_as_conv(nn, layers[linear_at[0]], map_shape, pools, x)
            # 3. everything after: Linear -> 1x1 conv, flattens dropped
            rest = []
            for m in layers[linear_at[0] + 1:]:
                if isinstance(m, nn.Linear):
                    rest.append(_linear_as_1x1(nn, m))
                elif not isinstance(m, nn.Flatten):
                    rest.append(m)
            result = nn.Sequential(*(layers[:start] + dropouts + [conv] + rest))
            result.eval()
            if check:
                expected = model(x)
                expected = expected[0] if isinstance(expected, tuple) else expected
                got = result(x)
                if got.ndim != 4 or tuple(got.shape[2:]) != (1, 1) or \
                        tuple(flatten(got, 1).shape) != tuple(expected.shape):
                    raise ValueError(f"convolutionize: the converted network returns shape "
                                     f"{tuple(got.shape)} at {tuple(input_size)}, expected "
                                     f"{tuple(expected.shape)} + (1, 1)")
                a, b = flatten(got, 1).numpy(), expected.numpy()
                scale = max(1.0, float(np.abs(b).max()))
                if not np.allclose(a, b, rtol=0, atol=atol * scale):
                    raise ValueError(
                        f"convolutionize: the converted network's scores differ from "
                        f"{type(model).__name__}'s by up to {float(np.abs(a - b).max()):.3g}; "
                        f"its forward is probably not its children applied in order")
    finally:
        model.train(was_training)
    return result.train(was_training)


def _FOLDABLE(nn):
    return (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Flatten)


def _flatten_children(nn, module):
    """The modules a sequential forward applies, with Sequentials opened up."""
    out = []
    for child in module.children():
        if type(child) is nn.Sequential:
            out.extend(_flatten_children(nn, child))
        else:
            out.append(child)
    return out


def _first_linear_as_conv(nn, linear, map_shape, pools, like):
    """Conv2d equal to ``pools`` (linear maps), flatten, then ``linear``, on a map of
    ``map_shape`` = (N, C, hi, wi)."""
    _, c, hi, wi = map_shape
    xp = backend.get_array_module(like.array)
    # Apply the pools to one-hot maps: row j of the result is where pixel j goes.
    basis = Tensor(xp.eye(hi * wi, dtype=like.dtype).reshape(hi * wi, 1, hi, wi))
    for p in pools:
        basis = p(basis)
    _, _, h, w = basis.shape
    pool_matrix = basis.array.reshape(hi * wi, h * w)       # (hi*wi, h*w)
    if linear.in_features != c * h * w:
        raise ValueError(f"convolutionize: the first Linear expects {linear.in_features} "
                         f"features, the pooled map before it has {c}x{h}x{w} = {c * h * w}")
    # flatten order is (C, h, w), so the weight splits as (out, C, h*w)
    weight = linear.weight.array.reshape(linear.out_features, c, h * w)
    folded = (weight @ pool_matrix.T).reshape(linear.out_features, c, hi, wi)
    conv = nn.Conv2d(c, linear.out_features, kernel_size=(hi, wi),
                     bias=linear.bias is not None)
    return _take_weights(conv, linear, folded)


def _linear_as_1x1(nn, linear):
    conv = nn.Conv2d(linear.in_features, linear.out_features, kernel_size=1,
                     bias=linear.bias is not None)
    weight = linear.weight.array.reshape(linear.out_features, linear.in_features, 1, 1)
    return _take_weights(conv, linear, weight)


def _take_weights(conv, linear, weight):
    conv.weight.array = weight.astype(linear.weight.dtype, copy=True)
    conv.weight.requires_grad_(linear.weight.requires_grad)
    if linear.bias is not None:
        conv.bias.array = linear.bias.array.copy()
        conv.bias.requires_grad_(linear.bias.requires_grad)
    return conv
