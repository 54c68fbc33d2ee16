"""Taps on intermediate layers: :class:`IntermediateLayerGetter`, as torchvision's.

Dense prediction re-uses a classification network and reads its feature maps part way
through: FCN's skips read VGG's pool3 and pool4, torchvision's FCN and DeepLab read
ResNet's layer3 and layer4, detectors read several stages at once. A forward hook can
record them (``module.register_forward_hook``); this wrapper does it as a module, whose
output is the dict of the maps asked for, and which drops the layers after the last one
asked for (a ResNet's pool and ``fc``), so their parameters are not carried along.

The code is plain PyTorch style (only the three imports differ); the tests run this
source against ``torch.nn`` to check that both agree.
"""
from __future__ import annotations

from collections import OrderedDict

import minicnn  # noqa: F401  (kept so the file reads as torch code)
from minicnn import nn
from minicnn.nn import functional as F  # noqa: F401

__all__ = ["IntermediateLayerGetter"]


class IntermediateLayerGetter(nn.ModuleDict):
    """The direct children of ``model`` up to the last one named in ``return_layers``,
    applied in registration order; the forward returns an ordered dict
    ``{new_name: output of that child}`` in the order the children run.

    ``return_layers``: ``{child name: name in the output}``, e.g.
    ``{"layer3": "aux", "layer4": "out"}`` on a ResNet gives
    ``{"aux": (N, 1024, H/16, W/16), "out": (N, 2048, H/32, W/32)}`` (without dilation).

    It assumes what torchvision's does: ``model.forward`` applies its direct children
    one after the other in the order they were registered, each exactly once, and does
    nothing else in between that matters (a ResNet's ``flatten`` before ``fc`` is never
    reached). Only direct children can be named (``"layer4"``, not ``"layer4.2"``). The
    children are shared with ``model``, not copied: training one trains the other.
    """

    def __init__(self, model, return_layers):
        children = [name for name, _ in model.named_children()]
        missing = [name for name in return_layers if str(name) not in children]
        if missing:
            raise ValueError(f"IntermediateLayerGetter: return_layers {missing} are not "
                             f"children of {type(model).__name__}; its children are "
                             f"{children}")
        wanted = {str(k): str(v) for k, v in return_layers.items()}
        layers = OrderedDict()
        for name, module in model.named_children():
            layers[name] = module
            wanted.pop(name, None)
            if not wanted:          # nothing after the last tap is needed
                break
        super().__init__(layers)
        self.return_layers = {str(k): str(v) for k, v in return_layers.items()}

    def forward(self, x):
        out = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out
