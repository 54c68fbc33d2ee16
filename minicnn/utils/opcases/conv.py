"""Cases for convolution: conv2d (plain, stride/padding/dilation, groups, depthwise,
'same') and conv_transpose2d (stride, output_padding, groups, dilation)."""
import warnings

from minicnn import functional as F
from ..opcheck import register



def _n(*shapes):
    """Inputs: standard normal arrays of the given shapes (None for an absent bias)."""
    return lambda rng: [None if s is None else rng.standard_normal(s) for s in shapes]


def _tf():
    import torch
    return torch.nn.functional


def _conv(**kw):
    def torch_conv2d(x, w, b):
        with warnings.catch_warnings():
            # torch warns that even kernels with padding='same' copy the input; we know
            warnings.simplefilter("ignore", UserWarning)
            return _tf().conv2d(x, w, b, **kw)
    return (lambda x, w, b: F.conv2d(x, w, b, **kw), torch_conv2d)


def _convt(**kw):
    return (lambda x, w, b: F.conv_transpose2d(x, w, b, **kw),
            lambda x, w, b: _tf().conv_transpose2d(x, w, b, **kw))


register("conv2d", "3x3 no padding, bias", _n((2, 3, 6, 5), (4, 3, 3, 3), (4,)),
         *_conv())
register("conv2d", "stride=2 padding=1 dilation=(1,2)", _n((2, 2, 7, 8), (3, 2, 3, 2), (3,)),
         *_conv(stride=2, padding=1, dilation=(1, 2)))
register("conv2d", "groups=2 stride=(1,2) no bias", _n((1, 4, 5, 6), (6, 2, 2, 3), None),
         *_conv(stride=(1, 2), groups=2))
register("conv2d", "depthwise groups=C, multiplier 2", _n((2, 3, 5, 5), (6, 1, 3, 3), (6,)),
         *_conv(padding=1, groups=3))
register("conv2d", "padding='same' even kernel", _n((2, 2, 5, 6), (3, 2, 2, 4), (3,)),
         *_conv(padding="same"))
register("conv_transpose2d", "stride=2 padding=1 output_padding=1",
         _n((2, 3, 4, 3), (3, 2, 3, 3), (2,)),
         *_convt(stride=2, padding=1, output_padding=1))
register("conv_transpose2d", "groups=2 stride=(2,3) output_padding=(1,2)",
         _n((2, 4, 3, 4), (4, 3, 2, 3), (6,)),
         *_convt(stride=(2, 3), output_padding=(1, 2), groups=2))
register("conv_transpose2d", "dilation=2 output_padding=1 > stride-1",
         _n((1, 2, 4, 3), (2, 2, 3, 2), None),
         *_convt(dilation=2, output_padding=1))
