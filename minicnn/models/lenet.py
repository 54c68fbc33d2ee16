"""LeNet-5 (LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998), in its 1998 form and in the modern form most
courses teach, from one class.

The network, named as in the paper (Fig. 2)::

    input  1 x 32 x 32
    C1     6 feature maps 28 x 28     5x5 convolution
    S2     6 maps 14 x 14             2x2 subsampling
    C3     16 maps 10 x 10            5x5 convolution
    S4     16 maps 5 x 5              2x2 subsampling
    C5     120 maps 1 x 1             5x5 convolution (a full connection on 5x5 maps)
    F6     84 units                   full connection
    output 10 units

``variant="1998"``: tanh after every convolution and F6, average pooling for S2/S4.
``variant="modern"``: ReLU and max pooling. ``input_size=28`` (MNIST's size) adds a
padding of 2 to C1 so the maps keep the paper's sizes; ``input_size=32`` uses none.

Where this departs from the paper (honestly, and as most re-implementations do):

* C3 connects every S2 map to every C3 map (16 x 6 kernels, 2,416 parameters); the
  paper's Table I connects each C3 map to only 3, 4 or 6 S2 maps (1,516 parameters),
  to break symmetry and save computation.
* S2/S4 are plain average pooling; the paper's subsampling units multiply the 2x2 sum by
  a trainable coefficient, add a trainable bias and apply a sigmoid.
* The activation is ``tanh``, not the paper's scaled ``1.7159 tanh(2a/3)``.
* The output layer is a linear layer producing logits for a softmax/cross-entropy loss;
  the paper used Euclidean RBF units with fixed 7x12 bitmap prototypes and an MAP-like
  loss.

Parameters: 61,706 for one input channel (61,706 - 156 + 456 = 62,006 for three).
"""
from __future__ import annotations

from .. import nn
from ..nn.activation import act_then_pool

__all__ = ["LeNet5", "lenet5", "lenet5_1998"]

_VARIANTS = {
    # variant: (activation module, pooling module)
    "1998": (nn.Tanh, nn.AvgPool2d),
    "modern": (nn.ReLU, nn.MaxPool2d),
}


class LeNet5(nn.Module):
    """LeNet-5; see the module docstring for the variants and departures from the paper.

    Shape: input ``(N, in_channels, input_size, input_size)``, output
    ``(N, num_classes)`` logits.
    """

    def __init__(self, num_classes=10, in_channels=1, variant="modern", input_size=None):
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"LeNet5: variant must be one of {sorted(_VARIANTS)}, got "
                             f"{variant!r}")
        if input_size is None:
            input_size = 32 if variant == "1998" else 28
        if input_size not in (28, 32):
            raise ValueError(f"LeNet5: input_size must be 28 (C1 padded by 2) or 32, got "
                             f"{input_size!r}")
        activation, pool = _VARIANTS[variant]
        self.variant, self.input_size = variant, input_size
        self.c1 = nn.Conv2d(in_channels, 6, kernel_size=5, padding=(32 - input_size) // 2)
        self.s2 = pool(kernel_size=2, stride=2)
        self.c3 = nn.Conv2d(6, 16, kernel_size=5)
        self.s4 = pool(kernel_size=2, stride=2)
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)
        self.act = activation()

    def forward(self, x):
        # act_then_pool(act, pool, x) is pool(act(x)): for ReLU and max pooling one op
        x = act_then_pool(self.act, self.s2, self.c1(x))     # (N, 6, 14, 14)
        x = act_then_pool(self.act, self.s4, self.c3(x))     # (N, 16, 5, 5)
        x = self.act(self.c5(x))                 # (N, 120, 1, 1)
        x = x.flatten(1)                         # (N, 120)
        x = self.act(self.f6(x))                 # (N, 84)
        return self.output(x)                    # (N, num_classes)

    def extra_repr(self):
        return f"variant={self.variant!r}, input_size={self.input_size}"


def lenet5(num_classes=10, in_channels=1, variant="modern", input_size=None):
    """LeNet-5: ``variant="modern"`` (ReLU, max pooling) or ``"1998"`` (tanh, average
    pooling); ``input_size`` 28 or 32 (default: 28 for modern, 32 for 1998)."""
    return LeNet5(num_classes, in_channels, variant, input_size)


def lenet5_1998(**kwargs):
    """LeNet-5 as in the 1998 paper: tanh, average pooling, 32x32 input."""
    return lenet5(variant="1998", **kwargs)
