"""The model zoo: one file per architecture family, PyTorch-compatible state dicts.

:data:`MODELS` is the zoo by name, the one table that ``minicnn train --model``,
``minicnn summary`` and ``minicnn summary --list`` read (as torchvision's
``list_models``/``get_model``). Every builder in it takes ``num_classes`` and
``in_channels`` keywords; helpers that are not models (``make_layers``, ``freeze``, ...)
are not in it.
"""
from .lenet import *        # noqa: F401,F403
from .alexnet import *      # noqa: F401,F403
from .vgg import *          # noqa: F401,F403
from .nin import *          # noqa: F401,F403
from .googlenet import *    # noqa: F401,F403
from .inception import *    # noqa: F401,F403
from .resnet import *       # noqa: F401,F403
from .densenet import *     # noqa: F401,F403
from .transfer import *     # noqa: F401,F403
from .seed_variants import *  # noqa: F401,F403
from .ensemble import Ensemble, load_model_state                       # noqa: F401
from ._utils import IntermediateLayerGetter                            # noqa: F401
from . import segmentation                                             # noqa: F401
from .segmentation import fcn32s, fcn16s, fcn8s, fcn_resnet50, unet    # noqa: F401
from . import detection                                                # noqa: F401
from .detection import yolo_v1, yolo_v1_small, ssd300_vgg16, ssd_small  # noqa: F401
from .detection import rcnn_small, fast_rcnn_small, faster_rcnn_small, maskrcnn_small  # noqa: F401,E501
from .detection import fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn  # noqa: F401
from . import gan                                                      # noqa: F401
from .gan import dcgan_generator, dcgan_discriminator                  # noqa: F401

_CIFAR, _IMAGENET = (3, 32, 32), (3, 224, 224)

# name -> (builder, the input (C, H, W) it was designed for), in reading order, per task
_CLASSIFIERS = {
    "lenet5": (lenet5, (1, 28, 28)),                       # noqa: F405
    "lenet5-1998": (lenet5_1998, (1, 32, 32)),             # noqa: F405
    "alexnet": (alexnet, _IMAGENET),                       # noqa: F405
    "alexnet_paper": (alexnet_paper, (3, 227, 227)),       # noqa: F405
    **{name: (globals()[name], _IMAGENET) for name in (
        "vgg11", "vgg11_bn", "vgg11_lrn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
        "vgg16_c", "vgg16_c_bn", "vgg19", "vgg19_bn")},
    "nin": (nin, _IMAGENET),                               # noqa: F405
    "nin_cifar": (nin_cifar, _CIFAR),                      # noqa: F405
    # the seeds' own listings (models/seed_variants.py)
    "lenet5_fleuret": (lenet5_fleuret, (1, 28, 28)),       # noqa: F405
    "lenet5_d2l": (lenet5_d2l, (1, 28, 28)),               # noqa: F405
    "nin_d2l": (nin_d2l, (1, 224, 224)),                   # noqa: F405
    "monster": (monster, _CIFAR),                          # noqa: F405
    "googlenet": (googlenet, _IMAGENET),                   # noqa: F405
    "googlenet_paper": (googlenet_paper, _IMAGENET),       # noqa: F405
    "inception_v3": (inception_v3, (3, 299, 299)),         # noqa: F405
    **{name: (globals()[name], _IMAGENET) for name in (
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
        "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2")},
    **{name: (globals()[name], _CIFAR) for name in (
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110")},
    **{name: (globals()[name], _IMAGENET) for name in (
        "densenet121", "densenet161", "densenet169", "densenet201")},
}
_SEGMENTERS = {
    "fcn32s": (fcn32s, (3, 500, 500)),                     # VOC images are up to 500x500
    "fcn16s": (fcn16s, (3, 500, 500)),
    "fcn8s": (fcn8s, (3, 500, 500)),
    "fcn_resnet50": (fcn_resnet50, (3, 520, 520)),         # torchvision's training crop
    "unet": (unet, (1, 572, 572)),                         # the paper's input tile
}

# detectors take ``image_size`` too: YOLO's fully connected head and SSD's default boxes
# are laid out for one input size
_DETECTORS = {
    "yolo_v1": (yolo_v1, (3, 448, 448)),                   # the paper's input
    "yolo_v1_small": (yolo_v1_small, (3, 64, 64)),         # the generated shapes
    "ssd300_vgg16": (ssd300_vgg16, (3, 300, 300)),
    "ssd_small": (ssd_small, (3, 64, 64)),
    # the two-stage teaching path (models/detection/rcnn.py), for the generated shapes
    "rcnn_small": (rcnn_small, (3, 64, 64)),
    "fast_rcnn_small": (fast_rcnn_small, (3, 64, 64)),
    "faster_rcnn_small": (faster_rcnn_small, (3, 64, 64)),
    "maskrcnn_small": (maskrcnn_small, (3, 64, 64)),      # torchvision's MaskRCNN, small
    # torchvision's two-stage detectors: any image, resized to a shorter side of 800
    "fasterrcnn_resnet50_fpn": (fasterrcnn_resnet50_fpn, (3, 800, 800)),
    "maskrcnn_resnet50_fpn": (maskrcnn_resnet50_fpn, (3, 800, 800)),
}

_ZOO = {name: (builder, size, task)
        for task, table in (("classification", _CLASSIFIERS), ("segmentation", _SEGMENTERS),
                            ("detection", _DETECTORS))
        for name, (builder, size) in table.items()}

#: every model of the zoo by name: ``MODELS["resnet20"](num_classes=10)``
MODELS = {name: builder for name, (builder, _, _) in _ZOO.items()}

TASKS = ("classification", "segmentation", "detection")


def list_models(task=None):
    """The names of the zoo's models, in reading order; ``task`` keeps those of one task
    (``"classification"``: logits ``(N, classes)``; ``"segmentation"``: scores
    ``(N, classes, H, W)`` or torchvision's dict with ``"out"``; ``"detection"``: in
    eval mode one dict of ``boxes``, ``labels``, ``scores`` per image, in training mode
    a dict of losses)."""
    if task is not None and task not in TASKS:
        raise ValueError(f"list_models: task must be one of {', '.join(TASKS)}, got {task!r}")
    return [name for name, (_, _, t) in _ZOO.items() if task is None or t == task]


def model_task(name):
    """The task model ``name`` is built for."""
    get_model_builder(name)
    return _ZOO[name][2]


def get_model_builder(name):
    """The builder registered as ``name``; a ValueError naming the choices otherwise."""
    if name not in MODELS:
        close = [n for n in MODELS if str(name).lower() in n]
        raise ValueError(f"unknown model {name!r}; "
                         + (f"did you mean {', '.join(close)}? " if close else "")
                         + f"choose from {', '.join(MODELS)}")
    return MODELS[name]


def get_model(name, **kwargs):
    """``get_model("resnet20", num_classes=10)``: build a model of the zoo by name."""
    return get_model_builder(name)(**kwargs)


def input_size(name):
    """The input ``(C, H, W)`` that model ``name`` was designed for."""
    get_model_builder(name)
    return _ZOO[name][1]
