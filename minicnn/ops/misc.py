"""Small layers the detection models are assembled from, as ``torchvision.ops.misc``:
:class:`FrozenBatchNorm2d` and :class:`Conv2dNormActivation`.

The code is plain PyTorch style (only the relative imports differ), so the tests run this
source against ``torch.nn`` too (``model_twin.ops_twin``).
"""
from __future__ import annotations

from .. import nn
from ..creation import ones, zeros

__all__ = ["FrozenBatchNorm2d", "Conv2dNormActivation"]


class FrozenBatchNorm2d(nn.Module):
    """Batch normalisation with fixed statistics and affine parameters, as torchvision's.

    ``y = (x - running_mean) / sqrt(running_var + eps) · weight + bias``, per channel,
    computed as ``x · scale + shift`` with ``scale = weight / sqrt(running_var + eps)``
    and ``shift = bias - running_mean · scale``. All four are buffers, not parameters:
    nothing here is trained, and the training mode changes nothing (detectors train with
    batches of one or two images, too few for batch statistics). The gradient reaches
    ``x`` only: dL/dx = dL/dy · scale.

    Loading a BatchNorm2d state dict works: its ``num_batches_tracked`` key is dropped
    (torchvision's override of ``_load_from_state_dict``; here ``_upgrade_state_dict``).
    Shape: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", ones(num_features))
        self.register_buffer("bias", zeros(num_features))
        self.register_buffer("running_mean", zeros(num_features))
        self.register_buffer("running_var", ones(num_features))

    def _upgrade_state_dict(self, state_dict, prefix):
        state_dict.pop(prefix + "num_batches_tracked", None)

    def forward(self, x):
        # the per-channel vectors as (1, C, 1, 1), broadcast over N, H, W
        w = self.weight.reshape(1, -1, 1, 1)
        b = self.bias.reshape(1, -1, 1, 1)
        rv = self.running_var.reshape(1, -1, 1, 1)
        rm = self.running_mean.reshape(1, -1, 1, 1)
        scale = w / (rv + self.eps).sqrt()
        shift = b - rm * scale
        return x * scale + shift

    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}"


class Conv2dNormActivation(nn.Sequential):
    """Convolution, then normalisation, then activation, as torchvision's
    ``Conv2dNormActivation``: an ``nn.Sequential`` whose state-dict keys are ``0.weight``
    (the convolution), ``1.*`` (the norm, when there is one).

    ``padding=None`` keeps the size at stride 1: (kernel_size - 1) // 2 · dilation per
    side. ``bias=None`` gives the convolution a bias only when there is no norm layer.
    ``norm_layer`` / ``activation_layer`` None leave that stage out; the activation is
    built with ``inplace=inplace`` (unless ``inplace`` is None).

    Shape: (N, in_channels, H, W) -> (N, out_channels, OH, OW), OH = floor((H + 2·padding
    - dilation·(kernel_size - 1) - 1) / stride) + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None,
                 groups=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, dilation=1,
                 inplace=True, bias=None, conv_layer=nn.Conv2d):
        if padding is None:
            if isinstance(kernel_size, int) and isinstance(dilation, int):
                padding = (kernel_size - 1) // 2 * dilation
            else:
                dims = len(kernel_size) if isinstance(kernel_size, (list, tuple)) \
                    else len(dilation)
                kernel_size = _ntuple(kernel_size, dims)
                dilation = _ntuple(dilation, dims)
                padding = tuple((k - 1) // 2 * d for k, d in zip(kernel_size, dilation))
        if bias is None:
            bias = norm_layer is None
        layers = [conv_layer(in_channels, out_channels, kernel_size, stride, padding,
                             dilation=dilation, groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            kwargs = {} if inplace is None else {"inplace": inplace}
            layers.append(activation_layer(**kwargs))
        super().__init__(*layers)
        self.out_channels = out_channels


def _ntuple(value, n):
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n
