"""The benchmark's model definitions, written once in PyTorch style for both libraries.

Each builder takes the library module, ``torch`` or ``minicnn``, and uses only names the
two share (``lib.nn.Conv2d``, ``lib.nn.functional.relu``, ...), so the same lines build
the same network in both. They serve two purposes:

* the PyTorch side of the model workloads (torchvision is not a dependency);
* the reference the minicnn zoo is checked against before it is timed: the parameter
  names and shapes of ``minicnn.models.vgg16()`` must equal those of ``vgg16(torch)``,
  otherwise the two sides would not be doing the same work (see ``workloads.py``).

The CIFAR ResNet-18 has no exact twin in ``minicnn.models`` (whose ResNets are the
ImageNet ones), so both sides use ``cifar_resnet18`` from here.

U-Net and FCN-8s are not written again: their model files (``minicnn/models/
segmentation/``) are plain PyTorch code but for three imports, and torchvision has
neither, so their torch side is *the same source file* run with those imports answered
by torch (:func:`source_twin`, as the model tests do), plus the two functions torch
lacks (``F.center_crop``, ``nn.init.bilinear_``), written here.

``count_flops`` counts a model's forward FLOPs with hooks, on PyTorch's ``meta`` device
(shapes only, no memory, no arithmetic).
"""
from __future__ import annotations

import builtins
import collections
import importlib
import inspect
import types

__all__ = ["lenet5", "alexnet", "vgg16", "cifar_resnet18", "unet", "fcn8s", "source_twin",
           "count_flops", "param_shapes"]


def lenet5(lib, num_classes=10):
    """LeNet-5 as ``minicnn.models.lenet5()`` builds it: the modern variant (ReLU, max
    pooling) for 1x28x28 inputs, with the paper's layer names (same state-dict keys).

    Shapes: (N, 1, 28, 28) -c1 (pad 2)-> (N, 6, 28, 28) -s2-> (N, 6, 14, 14)
    -c3-> (N, 16, 10, 10) -s4-> (N, 16, 5, 5) -c5-> (N, 120, 1, 1) -> (N, 120)
    -f6-> (N, 84) -output-> (N, num_classes).
    """
    nn = lib.nn
    return nn.Sequential(collections.OrderedDict([
        ("c1", nn.Conv2d(1, 6, kernel_size=5, padding=2)), ("relu1", nn.ReLU()),
        ("s2", nn.MaxPool2d(kernel_size=2, stride=2)),
        ("c3", nn.Conv2d(6, 16, kernel_size=5)), ("relu3", nn.ReLU()),
        ("s4", nn.MaxPool2d(kernel_size=2, stride=2)),
        ("c5", nn.Conv2d(16, 120, kernel_size=5)), ("relu5", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("f6", nn.Linear(120, 84)), ("relu6", nn.ReLU()),
        ("output", nn.Linear(84, num_classes)),
    ]))


def alexnet(lib, num_classes=1000):
    """AlexNet as torchvision builds it (the one-GPU variant of the 2014 "one weird trick"
    paper: 64-192-384-256-256 filters, no LRN), so state-dict keys match torchvision's.

    Shapes: (N, 3, 224, 224) -features-> (N, 256, 6, 6) -> (N, 9216) -> (N, num_classes).
    """
    nn = lib.nn
    return nn.Sequential(collections.OrderedDict([
        ("features", nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2))),
        ("avgpool", nn.AdaptiveAvgPool2d((6, 6))),
        ("flatten", nn.Flatten()),
        ("classifier", nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))),
    ]))


# VGG-16 is configuration "D" of Simonyan & Zisserman (2014): channels per 3x3 conv,
# "M" a 2x2 max pool.
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"]


def vgg16(lib, num_classes=1000):
    """VGG-16 without batch norm, laid out as torchvision's ``vgg16`` (same keys).

    Shapes: (N, 3, 224, 224) -features-> (N, 512, 7, 7) -> (N, 25088) -> (N, num_classes).
    """
    nn = lib.nn
    layers, channels = [], 3
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    return nn.Sequential(collections.OrderedDict([
        ("features", nn.Sequential(*layers)),
        ("avgpool", nn.AdaptiveAvgPool2d((7, 7))),
        ("flatten", nn.Flatten()),
        ("classifier", nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(4096, num_classes))),
    ]))


def cifar_resnet18(lib, num_classes=10):
    """ResNet-18 for 32x32 images (He et al. 2016, section 4.2 style stem): a 3x3 stem
    convolution with no max pool, four stages of two BasicBlocks with 64-128-256-512
    channels (stride 2 from the second stage on, 1x1 projection shortcuts where the shape
    changes), global average pooling and one linear layer. About 11.2M parameters.

    Shapes: (N, 3, 32, 32) -stem-> (N, 64, 32, 32) -stages-> (N, 512, 4, 4)
    -pool-> (N, 512) -> (N, num_classes).
    """
    nn, F = lib.nn, lib.nn.functional
    norm_then_act = _norm_then_act(lib)

    class BasicBlock(nn.Module):
        def __init__(self, in_planes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or in_planes != planes:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes))

        def forward(self, x):
            out = norm_then_act(self.bn1, self.relu, self.conv1(x))   # relu(bn1(conv1(x)))
            out = self.bn2(self.conv2(out))
            shortcut = x if self.downsample is None else self.downsample(x)
            return F.relu(out + shortcut)

    class CifarResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU()
            blocks, in_planes = [], 64
            for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                blocks.append(nn.Sequential(BasicBlock(in_planes, planes, stride),
                                            BasicBlock(planes, planes, 1)))
                in_planes = planes
            self.layer1, self.layer2, self.layer3, self.layer4 = blocks
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            x = norm_then_act(self.bn1, self.relu, self.conv1(x))    # (N, 64, 32, 32)
            x = self.layer1(x)                      # (N, 64, 32, 32)
            x = self.layer2(x)                      # (N, 128, 16, 16)
            x = self.layer3(x)                      # (N, 256, 8, 8)
            x = self.layer4(x)                      # (N, 512, 4, 4)
            x = F.adaptive_avg_pool2d(x, 1)         # (N, 512, 1, 1)
            return self.fc(x.flatten(1))            # (N, num_classes)

    return CifarResNet18()


def _norm_then_act(lib):
    """``norm_then_act(norm, act, x)``, which is ``act(norm(x))``: minicnn's, which runs a
    plain BatchNorm2d and ReLU as one fused op (``minicnn.nn.activation``, as its own
    ResNets do), or the two calls for torch (whose eager mode does not fuse them)."""
    if lib.__name__ == "minicnn":
        from minicnn.nn.activation import norm_then_act
        return norm_then_act
    return lambda norm, act, x: act(norm(x))


# ------------------------------------------------ segmentation: the model files on torch

def source_twin(module, torch, functional=None, init=None):
    """A new module holding ``module``'s source (a minicnn model file) executed with
    ``import minicnn``, ``from minicnn import nn`` and ``from minicnn.nn import
    functional as F`` answered by ``torch``, ``torch.nn`` and ``torch.nn.functional``:
    the same lines then build the same network on torch. ``functional`` / ``init``:
    {name: function} added to the twin's ``F`` / ``nn.init`` where torch has no such
    function. Other imports (``from minicnn.functional._checks import positive_int``)
    stay minicnn's: argument checks, no arrays.
    """
    nn_twin = types.ModuleType("nn_twin")
    nn_twin.__dict__.update(vars(torch.nn))
    nn_twin.functional = types.ModuleType("F_twin")
    nn_twin.functional.__dict__.update(vars(torch.nn.functional), **(functional or {}))
    nn_twin.init = types.ModuleType("init_twin")
    nn_twin.init.__dict__.update(vars(torch.nn.init), **(init or {}))
    lib_twin = types.ModuleType("torch_as_minicnn")
    lib_twin.__dict__.update(vars(torch))
    lib_twin.nn = nn_twin
    answers = {"minicnn": lib_twin, "minicnn.nn": nn_twin}

    def twin_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name in answers:
            # ``import minicnn.nn`` binds the top package; ``from minicnn.nn import F``
            # reads F from the named one
            return answers[name] if fromlist else lib_twin
        return builtins.__import__(name, globals, locals, fromlist, level)

    twin = types.ModuleType(f"torch_twin_{module.__name__.rsplit('.', 1)[-1]}")
    twin.__dict__["__builtins__"] = dict(vars(builtins), __import__=twin_import)
    exec(compile(inspect.getsource(module), module.__file__, "exec"), twin.__dict__)
    return twin


def _center_crop(x, size):
    """torchvision's ``center_crop`` of the last two dimensions, by slicing (U-Net's skips
    are never smaller than the crop): top = round((H - h) / 2), left likewise."""
    h, w = int(size[0]), int(size[1])
    top, left = int(round((x.shape[-2] - h) / 2)), int(round((x.shape[-1] - w) / 2))
    return x[..., top:top + h, left:left + w]


def _bilinear_(weight):
    """``minicnn.nn.init.bilinear_`` for a torch weight: minicnn fills a NumPy copy (on the
    ``meta`` device, shapes only, there is nothing to fill)."""
    import torch
    import minicnn
    if weight.device.type != "meta":
        filled = minicnn.nn.init.bilinear_(minicnn.zeros(*weight.shape)).numpy()
        with torch.no_grad():
            weight.copy_(torch.from_numpy(filled))
    return weight


def _segmentation(lib, module_name):
    """``minicnn.models.segmentation.<module_name>`` for minicnn, its torch twin for torch."""
    module = importlib.import_module(f"minicnn.models.segmentation.{module_name}")
    if lib.__name__ == "minicnn":
        return module
    return source_twin(module, lib, functional={"center_crop": _center_crop},
                       init={"bilinear_": _bilinear_})


def unet(lib, **kwargs):
    """Ronneberger et al.'s U-Net (``minicnn.models.segmentation.unet``: 1 input channel,
    2 classes, valid convolutions; 572x572 -> 388x388) in either library."""
    return _segmentation(lib, "unet").unet(**kwargs)


def fcn8s(lib, **kwargs):
    """FCN-8s on VGG16 (``minicnn.models.segmentation.fcn8s``: 21 classes, fixed bilinear
    upsampling, conv1_1 padded by 100) in either library."""
    return _segmentation(lib, "fcn").fcn8s(**kwargs)


def param_shapes(model):
    """``[(name, shape), ...]`` of a model's state dict: equal lists mean the same layers."""
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def count_flops(build, input_shape):
    """Forward FLOPs of ``build(torch)`` on one input of ``input_shape`` (batch included).

    Only convolutions and linear layers are counted, 2 FLOPs per multiply-add:
    a conv makes 2·(C/groups)·KH·KW FLOPs per output element, a transposed conv
    2·(K/groups)·KH·KW per *input* element, a linear layer 2·in_features.
    Activations, pooling and normalisation add well under 1% to these networks and are
    left out. Runs on the ``meta`` device: no memory, no arithmetic.
    """
    import torch

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, torch.nn.ConvTranspose2d):
            kh, kw = module.kernel_size
            total += (2 * inputs[0].numel() * (module.out_channels // module.groups)
                      * kh * kw)
        elif isinstance(module, torch.nn.Linear):
            total += 2 * output.numel() * module.in_features

    with torch.device("meta"):
        model = build(torch)
        for m in model.modules():
            m.register_forward_hook(hook)
        with torch.no_grad():
            model(torch.empty(input_shape))
    return total
