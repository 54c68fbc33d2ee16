"""Transfer learning: reuse the first layers of a trained network under new layers.

The first layers of a network trained on a large data set learn generic filters (edges,
colour blobs, textures); the last ones are specific to its classes. So a new task with
little data starts from a trained network's first layers, keeps them fixed at first
(``requires_grad = False``: no gradient is computed for them and the optimizer leaves
them alone) while the randomly initialised new layers settle, then unfreezes them to
fine-tune everything, usually with a smaller learning rate for the old layers.

The classic recipe, built by :func:`alexnet_residual_transfer`::

    pretrained AlexNet: features[0:3] = conv1 11x11/4 (64) + ReLU + max pool 3x3/2
    new:                residual blocks -> global average pool -> linear

Typical use (see ``examples/transfer_learning.py``)::

    model = alexnet_residual_transfer(trained_alexnet, num_classes=5, freeze_epochs=2)
    optimizer = minicnn.optim.SGD(model.param_groups(lr=0.05, backbone_lr=0.005), ...)
    for epoch in range(epochs):
        model.epoch_start(epoch)          # unfreezes the backbone when its time comes
        ...train one epoch...
"""
from __future__ import annotations

import collections
import copy

from minicnn import nn

from .resnet import BasicBlock, conv1x1

__all__ = ["take_layers", "freeze", "unfreeze", "is_frozen", "TransferNet", "residual_head",
           "alexnet_residual_transfer"]


def take_layers(model, count, copy_weights=True):
    """The first ``count`` layers of ``model`` as a Sequential.

    Layers are counted in the order a sequential forward applies them, with nested
    Sequentials opened (so for AlexNet or VGG, ``features.0``, ``features.1``, ...).
    With ``copy_weights`` (default) the result holds copies, so training it leaves
    ``model`` as it was; otherwise the layers are shared.
    """
    layers = []

    def collect(module):
        for child in module.children():
            if type(child) is nn.Sequential:
                collect(child)
            else:
                layers.append(child)

    collect(model)
    if not 0 < count <= len(layers):
        raise ValueError(f"take_layers: count must be between 1 and {len(layers)} for "
                         f"{type(model).__name__}, got {count}")
    taken = layers[:count]
    if copy_weights:
        taken = [copy.deepcopy(m) for m in taken]
    return nn.Sequential(*taken)


def freeze(module):
    """Stop training ``module``: ``requires_grad = False`` on all its parameters.

    Backward then computes no gradient for them (and, when nothing before them needs
    one, skips their layers altogether), and optimizers skip parameters without a
    gradient. Returns ``module``.
    """
    for p in module.parameters():
        p.requires_grad = False
    return module


def unfreeze(module):
    """Train ``module`` again: ``requires_grad = True`` on all its parameters."""
    for p in module.parameters():
        p.requires_grad = True
    return module


def is_frozen(module):
    """True when ``module`` has parameters and none of them requires a gradient."""
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def _out_channels(module):
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"cannot tell how many channels {type(module).__name__} returns "
                         f"(no Conv2d in it); pass in_channels")
    return convs[-1].out_channels


class TransferNet(nn.Module):
    """``head(backbone(x))``: a pretrained ``backbone`` under new ``head`` layers.

    ``freeze_epochs``: the backbone starts frozen and :meth:`epoch_start` unfreezes it
    at that epoch (0: train everything from the start; None: never unfreeze). While
    frozen, the backbone also stays in eval mode, so its BatchNorm statistics and
    dropout do not change either.
    """

    def __init__(self, backbone, head, freeze_epochs=None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.freeze_epochs = freeze_epochs
        if freeze_epochs != 0:
            freeze(self.backbone)

    @property
    def backbone_frozen(self):
        return is_frozen(self.backbone)

    def freeze_backbone(self):
        freeze(self.backbone)
        self.backbone.eval()
        return self

    def unfreeze_backbone(self):
        unfreeze(self.backbone)
        self.backbone.train(self.training)
        return self

    def epoch_start(self, epoch):
        """Call at the start of each epoch (counting from 0); returns True when this
        call unfroze the backbone."""
        if (self.freeze_epochs is not None and epoch >= self.freeze_epochs
                and self.backbone_frozen):
            self.unfreeze_backbone()
            return True
        return False

    def train(self, mode=True):
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.train(False)
        return self

    def param_groups(self, lr, backbone_lr=None):
        """Optimizer parameter groups: the head at ``lr``, the backbone at
        ``backbone_lr`` (default lr / 10). Frozen parameters may be included: they get
        no gradient, so they are skipped until unfrozen."""
        return [{"params": list(self.backbone.parameters()),
                 "lr": lr / 10 if backbone_lr is None else backbone_lr},
                {"params": list(self.head.parameters()), "lr": lr}]

    def forward(self, x):
        x = self.backbone(x)
        return self.head(x)


def residual_head(in_channels, num_classes, channels=(128, 256), blocks_per_stage=1):
    """New layers for a pretrained stem: residual stages (the first at stride 1, the
    others at stride 2; a projection shortcut wherever the width or size changes),
    then global average pooling and a linear layer.

    Shape: (N, in_channels, H, W) -> (N, num_classes), for any H, W.
    """
    layers = collections.OrderedDict()
    inplanes = in_channels
    for i, planes in enumerate(channels):
        blocks = []
        for j in range(blocks_per_stage):
            stride = 2 if i > 0 and j == 0 else 1
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(conv1x1(inplanes, planes, stride),
                                           nn.BatchNorm2d(planes))
            blocks.append(BasicBlock(inplanes, planes, stride, downsample))
            inplanes = planes
        layers["layer%d" % (i + 1)] = nn.Sequential(*blocks)
    layers["avgpool"] = nn.AdaptiveAvgPool2d((1, 1))
    layers["flatten"] = nn.Flatten(1)
    layers["fc"] = nn.Linear(inplanes, num_classes)
    head = nn.Sequential(layers)
    for m in head.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return head


def alexnet_residual_transfer(pretrained, num_classes, num_layers=3, channels=(128, 256),
                              blocks_per_stage=1, freeze_epochs=2):
    """AlexNet's first layers (default 3: conv1, ReLU, max pool -> 64 channels at
    1/8 of the input size) + :func:`residual_head` + a linear layer, in a
    :class:`TransferNet` whose backbone is frozen for ``freeze_epochs`` epochs.

    ``pretrained``: a trained :class:`~minicnn.models.AlexNet` (or any model whose
    first layers are the stem to reuse; their weights are copied).
    """
    backbone = take_layers(pretrained, num_layers)
    head = residual_head(_out_channels(backbone), num_classes, channels, blocks_per_stage)
    return TransferNet(backbone, head, freeze_epochs=freeze_epochs)

