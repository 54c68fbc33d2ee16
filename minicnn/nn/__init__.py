"""Layers and models as in ``torch.nn``: Module, Parameter, containers, layers, losses,
initializers (``minicnn.nn.init``) and ``minicnn.nn.functional``."""
from .parameter import Parameter
from .module import Module
from .container import Sequential, ModuleList, ModuleDict
from . import functional
