"""Data sets: offline ones (scikit-learn's digits, generated shapes, generated shapes with
masks or with boxes) and readers for files the user already has (MNIST, Fashion-MNIST,
CIFAR-10/100, ImageFolder, PASCAL VOC segmentation and detection, Cityscapes
segmentation). Nothing here downloads."""
from .digits import Digits
from .synthetic import SyntheticShapes
from .mnist import MNIST, FashionMNIST, read_idx
from .cifar import CIFAR10, CIFAR100
from .folder import ImageFolder, IMG_EXTENSIONS
from ._files import RefusedPickleError, safe_pickle_load
from .segmentation import ShapesSegmentation
from .detection import ShapesDetection
from .voc import (VOCSegmentation, VOCDetection, VOC_CLASSES, voc_colormap,
                  parse_voc_xml)
from .cityscapes import (Cityscapes, CITYSCAPES_LABELS, CITYSCAPES_TRAIN_CLASSES,
                         label_to_train_id)

__all__ = ["Digits", "SyntheticShapes", "MNIST", "FashionMNIST", "read_idx", "CIFAR10",
           "CIFAR100", "ImageFolder", "IMG_EXTENSIONS", "RefusedPickleError",
           "safe_pickle_load", "ShapesSegmentation", "ShapesDetection", "VOCSegmentation",
           "VOCDetection", "VOC_CLASSES", "voc_colormap", "parse_voc_xml", "Cityscapes", "CITYSCAPES_LABELS",
           "CITYSCAPES_TRAIN_CLASSES", "label_to_train_id"]
