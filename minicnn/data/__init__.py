"""Data: datasets, the DataLoader, transforms and augmentation (``torch.utils.data`` and
``torchvision`` names).

    from minicnn.data import DataLoader, datasets, transforms
    train = datasets.Digits(train=True, transform=transforms.ToTensor())
    for images, labels in DataLoader(train, batch_size=64, shuffle=True):
        ...   # images: Tensor (64, 1, 28, 28) float32, labels: Tensor (64,) int64
"""
from .dataset import Dataset, TensorDataset, Subset, ConcatDataset, random_split
from .dataloader import DataLoader, default_collate
from . import datasets, transforms, joint_transforms, detection_transforms
from .detection_transforms import detection_collate
from .joint_transforms import (JointCompose, ToTensorPair, JointNormalize, ImageOnly,
                               JointRandomHorizontalFlip, JointRandomVerticalFlip,
                               JointRandomCrop, JointCenterCrop, JointResize,
                               JointRandomRotation, JointElasticTransform)
from .elastic import ElasticTransform, elastic_transform
from .weight_map import unet_weight_map

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split",
           "DataLoader", "default_collate", "detection_collate", "datasets", "transforms",
           "joint_transforms", "detection_transforms",
           "JointCompose", "ToTensorPair", "JointNormalize", "ImageOnly",
           "JointRandomHorizontalFlip", "JointRandomVerticalFlip", "JointRandomCrop",
           "JointCenterCrop", "JointResize", "JointRandomRotation", "JointElasticTransform",
           "ElasticTransform", "elastic_transform", "unet_weight_map"]
