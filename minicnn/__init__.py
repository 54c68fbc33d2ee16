"""minicnn: a convolutional-network engine written from scratch on NumPy and CuPy.

Every op has a hand-written forward and backward pass (``minicnn/functional/``) and is
checked against PyTorch. Names follow PyTorch, so ``import minicnn as torch`` runs much
PyTorch model code unchanged.
"""
from . import backend
from .backend import (Device, device, manual_seed, get_default_dtype, set_default_dtype,
                      is_cuda_available, float16, float32, float64, int8, int32, int64,
                      uint8, bool_)
from .autograd import (Tensor, Function, tensor, as_tensor, no_grad, enable_grad,
                       set_grad_enabled, is_grad_enabled)
from . import functional
from .functional import *                 # noqa: F401,F403  torch.relu, torch.cat, ...
from .functional import reshape, flatten, cat, stack, split, where, pad  # noqa: F401
from .creation import *                   # noqa: F401,F403
from . import _tensor_api                 # noqa: F401  attaches Tensor operators/methods
from .utils.gradcheck import gradcheck, GradcheckError
from . import nn, optim                   # minicnn.nn, minicnn.optim as torch.nn, torch.optim
from .utils.serialization import save, load   # noqa: F401  minicnn.save / minicnn.load
from .utils.summary import summary           # noqa: F401  layer table of a model
from .utils.convert import convolutionize    # noqa: F401  Linear layers -> convolutions
from .utils.torch_checkpoint import load_torch_checkpoint  # noqa: F401  .pt/.pth, no torch

__version__ = "0.1.0"

float = float32       # torch.float
double = float64      # torch.double
long = int64          # torch.long
bool = bool_          # torch.bool


class _CudaNamespace:
    """``minicnn.cuda.is_available()``, as ``torch.cuda``."""

    @staticmethod
    def is_available():
        return is_cuda_available()


cuda = _CudaNamespace()
