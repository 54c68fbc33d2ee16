"""Layers and models as in ``torch.nn``: Module, Parameter, containers, layers, losses,
initializers (``minicnn.nn.init``) and ``minicnn.nn.functional``."""
from .parameter import Parameter
from .module import Module
from .container import Sequential, ModuleList, ModuleDict
from .linear import Identity, Linear
from .conv import Conv2d, ConvTranspose2d
from .lazy import LazyLinear, LazyConv2d, UninitializedParameter
from .pooling import MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d, MaxUnpool2d
from .normalization import (BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm,
                            LocalResponseNorm, LocalResponseNormSpatial)
from .activation import ReLU, LeakyReLU, ELU, GELU, Sigmoid, Tanh, Softmax, LogSoftmax
from .dropout import Dropout, Dropout2d
from .flatten import Flatten, Unflatten
from .padding import ConstantPad2d, ZeroPad2d
from .vision import Upsample, PixelShuffle
from .loss import (CrossEntropyLoss, NLLLoss, MSELoss, L1Loss, SmoothL1Loss, BCELoss,
                   BCEWithLogitsLoss)
from . import functional
from . import init
