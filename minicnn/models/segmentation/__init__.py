"""Semantic segmentation models, as torchvision's ``models.segmentation`` (plus the
paper forms torchvision lacks): every one maps (N, C, H, W) to per-pixel class scores.

* ``fcn32s``, ``fcn16s``, ``fcn8s`` (fcn.py): Long, Shelhamer & Darrell's FCNs on VGG16,
  in the reference Caffe layout (500x500 VOC images; any size works).
* ``fcn_resnet50`` (fcn_resnet.py): torchvision's FCN on a dilated ResNet-50, returning
  {"out"[, "aux"]} (VOC-style images around 520x520).
* ``unet`` (unet.py): Ronneberger et al.'s U-Net, valid convolutions (572x572 -> 388x388)
  or padded.
"""
from .fcn import *          # noqa: F401,F403
from .fcn_resnet import *   # noqa: F401,F403
from .unet import *         # noqa: F401,F403
