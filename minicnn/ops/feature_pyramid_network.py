"""Feature Pyramid Network, as ``torchvision.ops.feature_pyramid_network``.

Lin, Dollár, Girshick, He, Hariharan & Belongie, "Feature Pyramid Networks for Object
Detection" (CVPR 2017, arXiv 1612.03144).

A backbone's maps get coarser and semantically stronger with depth. FPN gives every
scale the strong semantics of the deepest map: a 1x1 "lateral" convolution brings each
map C_i to ``out_channels``; starting from the deepest, the running top-down map is
upsampled (nearest neighbour, to the next finer map's size) and added to that map's
lateral; a 3x3 convolution on each sum gives the output P_i. For ResNet-50's layer1..4
(256, 512, 1024, 2048 channels at strides 4..32)::

    inner_i = lateral_i(C_i)                       (N, 256, H_i, W_i)
    top_4 = inner_4;  top_i = inner_i + upsample(top_{i+1}, size of C_i)
    P_i = smooth_i(top_i)                          (N, 256, H_i, W_i)

and an extra block may append more levels: :class:`LastLevelMaxPool` adds 'pool', P5
subsampled by 2 (Faster and Mask R-CNN's anchors of size 512 sit there).

State-dict keys are torchvision's (version 2): ``inner_blocks.{i}.0.weight``,
``layer_blocks.{i}.0.bias`` (each block a :class:`Conv2dNormActivation`); the old keys
``inner_blocks.{i}.weight`` load too (``_upgrade_state_dict``). Convolutions start with
kaiming_uniform_(a=1) weights and zero biases.

The code is plain PyTorch style (only the relative imports differ); the tests run this
source on ``torch.nn``.
"""
from __future__ import annotations

from collections import OrderedDict

from ..nn import functional as F
from .. import nn
from .misc import Conv2dNormActivation

__all__ = ["FeaturePyramidNetwork", "ExtraFPNBlock", "LastLevelMaxPool", "LastLevelP6P7"]


class ExtraFPNBlock(nn.Module):
    """Base class of the blocks that add levels after the FPN's own.

    ``forward(results, x, names)``: ``results`` the FPN's output maps (finest first),
    ``x`` the backbone maps it was given, ``names`` their names; returns the extended
    ``(results, names)``.
    """

    def forward(self, results, x, names):
        raise NotImplementedError(f"{type(self).__name__} must define forward(results, x, "
                                  "names)")


class LastLevelMaxPool(ExtraFPNBlock):
    """Appends level 'pool': the last map subsampled by 2 (``max_pool2d`` with kernel 1,
    stride 2, i.e. every other row and column, sizes rounded up: 25 -> 13)."""

    def forward(self, x, y, names):
        names.append("pool")
        x.append(F.max_pool2d(x[-1], kernel_size=1, stride=2, padding=0))
        return x, names


class LastLevelP6P7(ExtraFPNBlock):
    """RetinaNet's levels P6 = conv3x3/2(P5 or C5) and P7 = conv3x3/2(relu(P6)); P5 is
    used when ``in_channels == out_channels``, else C5."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for module in [self.p6, self.p7]:
            nn.init.kaiming_uniform_(module.weight, a=1)
            nn.init.constant_(module.bias, 0)
        self.use_P5 = in_channels == out_channels

    def forward(self, p, c, names):
        p5, c5 = p[-1], c[-1]
        x = p5 if self.use_P5 else c5
        p6 = self.p6(x)
        p7 = self.p7(F.relu(p6))
        p.extend([p6, p7])
        names.extend(["p6", "p7"])
        return p, names


class FeaturePyramidNetwork(nn.Module):
    """FPN on top of an ordered dict of feature maps (finest first, deepest last).

    Args:
        in_channels_list: channels of each input map, in the order they come.
        out_channels: channels of every output map.
        extra_blocks: an :class:`ExtraFPNBlock` adding levels (None: none).
        norm_layer: a norm after each convolution (None: none, torchvision's default).

    Forward: ``{name: (N, in_channels_list[i], H_i, W_i)}`` -> an OrderedDict with the
    same names (then the extra block's) of (N, out_channels, H_i, W_i) maps.
    """

    def __init__(self, in_channels_list, out_channels, extra_blocks=None, norm_layer=None):
        super().__init__()
        self.inner_blocks = nn.ModuleList()
        self.layer_blocks = nn.ModuleList()
        for in_channels in in_channels_list:
            if in_channels == 0:
                raise ValueError("FeaturePyramidNetwork: in_channels=0 is not supported "
                                 f"(in_channels_list {list(in_channels_list)})")
            self.inner_blocks.append(Conv2dNormActivation(
                in_channels, out_channels, kernel_size=1, padding=0, norm_layer=norm_layer,
                activation_layer=None))
            self.layer_blocks.append(Conv2dNormActivation(
                out_channels, out_channels, kernel_size=3, norm_layer=norm_layer,
                activation_layer=None))

        # before the extra blocks exist, so that their own initialisation stands
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

        if extra_blocks is not None and not isinstance(extra_blocks, ExtraFPNBlock):
            raise TypeError(f"FeaturePyramidNetwork: extra_blocks must be an ExtraFPNBlock, "
                            f"got {type(extra_blocks).__name__}")
        self.extra_blocks = extra_blocks

    def _upgrade_state_dict(self, state_dict, prefix):
        # version 1 held a bare Conv2d per block: inner_blocks.0.weight -> inner_blocks.0.0.weight
        for block in ("inner_blocks", "layer_blocks"):
            for i in range(len(self.inner_blocks)):
                for kind in ("weight", "bias"):
                    old, new = f"{prefix}{block}.{i}.{kind}", f"{prefix}{block}.{i}.0.{kind}"
                    if old in state_dict and new not in state_dict:
                        state_dict[new] = state_dict.pop(old)

    def forward(self, x):
        if not hasattr(x, "keys") or len(x) != len(self.inner_blocks):
            raise ValueError(f"FeaturePyramidNetwork: expected an ordered dict of "
                             f"{len(self.inner_blocks)} feature maps (one per in_channels_list "
                             f"entry), got {type(x).__name__} of "
                             f"{len(x) if hasattr(x, '__len__') else '?'}")
        names = list(x.keys())
        x = list(x.values())

        last_inner = self.inner_blocks[-1](x[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(x) - 2, -1, -1):           # from the deepest map up
            inner_lateral = self.inner_blocks[idx](x[idx])
            feat_shape = inner_lateral.shape[-2:]
            inner_top_down = F.interpolate(last_inner, size=feat_shape, mode="nearest")
            last_inner = inner_lateral + inner_top_down
            results.insert(0, self.layer_blocks[idx](last_inner))

        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, x, names)
        return OrderedDict(zip(names, results))
