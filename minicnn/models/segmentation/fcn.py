"""FCN-32s, FCN-16s and FCN-8s: VGG16 made fully convolutional, scoring every pixel.

Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic Segmentation"
(CVPR 2015); Shelhamer, Long & Darrell (TPAMI 2016, arXiv 1605.06211). The layout is
the reference Caffe nets' (``voc-fcn32s``, ``voc-fcn16s``, ``voc-fcn8s`` in
shelhamer/fcn.berkeleyvision.org) with the attribute names of their PyTorch port
(wkentaro/pytorch-fcn: ``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``, ``score_fr``,
``score_pool4``, ``upscore2`` ...), so its state dicts load unchanged.

The recipe, on VGG16 (Simonyan & Zisserman 2015, configuration D):

1. Keep the 13 convolutions and 5 max pools. The pools are ceil-mode (Caffe rounds up),
   and conv1_1 pads by 100 pixels instead of 1 (see 4.).
2. Convolutionize the classifier: fc6, a Linear on the 512x7x7 pool5 map, becomes a 7x7
   convolution with 4096 filters and fc7 a 1x1 convolution (``minicnn.convolutionize``;
   :meth:`copy_params_from_vgg16` does this to a trained VGG16). The last Linear (the
   1000 ImageNet classes) is discarded and ``score_fr``, a 1x1 convolution to the
   classes, scores every position of the map (1/32 of the input).
3. Upsample the scores back to the input with a transposed convolution ("deconvolution")
   of kernel 2f and stride f, initialised to bilinear interpolation
   (``nn.init.bilinear_``): FCN-32s upsamples by 32 in one step. FCN-16s first upsamples
   by 2 and *adds* scores computed from pool4 (``score_pool4``, 1/16), then upsamples by
   16; FCN-8s adds scores from pool3 (1/8) too, then upsamples by 8. Fine layers tell
   "where", coarse layers "what"; the sum lets the net make local predictions that
   respect the global structure.
4. Crop. The 100-pixel pad makes the trunk big enough for any input (pool5 is at least
   7x7, so fc6 fits even on a 1x1 image) and every map then covers more than the image.
   The crops cut out the part aligned with the input; their offsets follow from each
   layer's map of coordinates (a kxk conv with padding p moves centres by (k-1)/2 - p, a
   2x2/2 pool maps u -> 2u + 1/2, a deconvolution with kernel 2f, stride f maps
   u -> f·u + f - 1/2). conv1_1 shifts by 99 and the trunk, fc6 and a 64/32 deconvolution
   take back 80, hence 32s's crop of 19; score_pool4 sits 5 cells beyond upscore2 and
   score_pool3 9 beyond upscore_pool4; the final crops are 27 (16s) and 31 (8s).

Shapes for a 500x500 VOC image (the size the reference nets were trained on)::

    input (N, 3, 500, 500) -> conv1_1 (pad 100) 698 -> pool1 349 -> pool2 175
    -> pool3 (256 ch) 88 -> pool4 (512 ch) 44 -> pool5 (512 ch) 22 -> fc6 (7x7) 16 -> fc7 16
    -> score_fr (N, classes, 16, 16)
    32s: upscore (64/32) 544 -> crop 19 -> 500
    16s: upscore2 (4/2) 34 + score_pool4 44 cropped at 5 to 34 -> upscore16 (32/16) 560
         -> crop 27 -> 500
    8s:  ... 34 -> upscore_pool4 (4/2) 70 + score_pool3 88 cropped at 9 to 70
         -> upscore8 (16/8) 568 -> crop 31 -> 500

Every input size works (the output has the input's size); the reference trains one
image at a time because sizes differ.

Parameters for 21 classes: 134,346,581 / 134,357,354 / 134,362,751 learnable (32s /
16s / 8s) with the deconvolutions fixed to bilinear (``learnable_upsampling=False``, the
reference code's choice: ``lr_mult: 0``), or 136,152,917 / 134,815,994 / 134,489,759 with
them learned (the CVPR paper learns the 2x steps). Fixed, they stay parameters (with
``requires_grad=False``) so state dicts keep their keys.

NOTE, where this departs from the paper or the reference:

* dropout after fc6 and fc7 drops single values (Caffe's Dropout layer, p = 0.5);
  pytorch-fcn uses Dropout2d (whole channels). No parameters, so no effect on state dicts.
* Without a trained VGG16 the weights are initialised as minicnn's VGG does (He normal
  for the convolutions, N(0, 0.01) for fc6/fc7); the score layers start at zero, as in
  the paper ("zero-initialize the class scoring layer"). The paper always starts from
  ImageNet weights (:meth:`copy_params_from_vgg16`) and trains 16s from a trained 32s,
  8s from a trained 16s (``copy_params_from_fcn32s`` / ``copy_params_from_fcn16s``).
* ``voc-fcn8s-atonce`` (all three streams trained at once, pool4 scaled by 0.01 and
  pool3 by 1e-4 before scoring) is not built here.
* ``in_channels``, ``base_channels`` (64: widths 64-128-256-512-512) and
  ``fc_channels`` (4096) are additions for small experiments; the defaults give the
  paper's network.

The code is plain PyTorch style (only the three imports below differ); the tests run
this source against ``torch.nn`` to check that both agree.
"""
from __future__ import annotations

import minicnn
from minicnn import nn
from minicnn.functional._checks import positive_int
from minicnn.nn import functional as F  # noqa: F401  (kept so the file reads as torch code)

__all__ = ["FCN32s", "FCN16s", "FCN8s", "fcn32s", "fcn16s", "fcn8s"]

# VGG16 (configuration D): the number of 3x3 convolutions in each of its five blocks
# and their widths in units of base_channels; block b holds conv{b}_1, conv{b}_2, ...
_VGG16_BLOCKS = ((2, 1), (2, 2), (3, 4), (3, 8), (3, 8))


class _FCNVGG16(nn.Module):
    """The trunk the three FCNs share: VGG16's convolutions (conv1_1 padded by 100,
    ceil-mode pools), fc6 and fc7 as convolutions, and score_fr.

    ``_trunk(x)`` returns (score_fr, pool3, pool4): the 1/32 class scores and the two
    maps the skips read.
    """

    def __init__(self, num_classes, learnable_upsampling, in_channels, base_channels,
                 fc_channels):
        super().__init__()
        name = type(self).__name__
        num_classes = positive_int(name, "num_classes", num_classes)
        in_channels = positive_int(name, "in_channels", in_channels)
        base_channels = positive_int(name, "base_channels", base_channels)
        fc_channels = positive_int(name, "fc_channels", fc_channels)
        self.num_classes = num_classes
        self.learnable_upsampling = learnable_upsampling
        channels = in_channels
        for b, (convs, width) in enumerate(_VGG16_BLOCKS, start=1):
            for i in range(1, convs + 1):
                # the 100-pixel pad of conv1_1 lets any input size through (docstring, 4.)
                padding = 100 if (b, i) == (1, 1) else 1
                setattr(self, f"conv{b}_{i}", nn.Conv2d(channels, base_channels * width, 3,
                                                        padding=padding))
                setattr(self, f"relu{b}_{i}", nn.ReLU(inplace=True))
                channels = base_channels * width
            setattr(self, f"pool{b}", nn.MaxPool2d(2, stride=2, ceil_mode=True))

        self.fc6 = nn.Conv2d(channels, fc_channels, 7)      # VGG's first Linear, as a conv
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)   # its second Linear
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(0.5)
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)

    def _upsampling(self, factor):
        """ConvTranspose2d(classes, classes, 2·factor, stride=factor, no bias) initialised
        to bilinear interpolation; fixed (requires_grad False) unless learnable."""
        up = nn.ConvTranspose2d(self.num_classes, self.num_classes, 2 * factor,
                                stride=factor, bias=False)
        nn.init.bilinear_(up.weight)
        up.weight.requires_grad_(self.learnable_upsampling)
        return up

    def _init_weights(self):
        for name, m in self.named_modules():
            if isinstance(m, nn.ConvTranspose2d):
                continue                      # bilinear, set by _upsampling
            if isinstance(m, nn.Conv2d):
                if name.startswith("score"):
                    nn.init.zeros_(m.weight)              # the paper's zero-initialised scores
                elif name in ("fc6", "fc7"):
                    nn.init.normal_(m.weight, 0, 0.01)    # VGG's Linear initialisation
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def _trunk(self, x):
        # shapes for a 500x500 input (docstring): conv1_1 makes it 698x698
        for b, (convs, _) in enumerate(_VGG16_BLOCKS, start=1):
            for i in range(1, convs + 1):
                x = getattr(self, f"relu{b}_{i}")(getattr(self, f"conv{b}_{i}")(x))
            x = getattr(self, f"pool{b}")(x)
            if b == 3:
                pool3 = x                     # (N, 256, 88, 88)    1/8
            elif b == 4:
                pool4 = x                     # (N, 512, 44, 44)    1/16
        # pool5: (N, 512, 22, 22)             1/32
        x = self.drop6(self.relu6(self.fc6(x)))        # (N, 4096, 16, 16)
        x = self.drop7(self.relu7(self.fc7(x)))        # (N, 4096, 16, 16)
        return self.score_fr(x), pool3, pool4          # (N, classes, 16, 16)

    def copy_params_from_vgg16(self, vgg16):
        """Start from a trained VGG16 (``minicnn.models.vgg16``, torchvision's layout):
        its 13 convolutions become conv1_1 ... conv5_3, its first two Linear layers
        become fc6 (7x7) and fc7 (1x1) through ``minicnn.convolutionize``; its last
        Linear (the ImageNet classes) is dropped. Returns ``self``."""
        name = type(self).__name__
        features = getattr(vgg16, "features", None)
        classifier = getattr(vgg16, "classifier", None)
        if features is None or classifier is None:
            raise TypeError(f"{name}.copy_params_from_vgg16: expected a VGG16 with "
                            f"features and classifier, got {type(vgg16).__name__}")
        if any(isinstance(m, nn.BatchNorm2d) for m in features.modules()):
            raise ValueError(f"{name}.copy_params_from_vgg16: expected a VGG16 without "
                             f"batch normalisation (vgg16, not vgg16_bn)")
        convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
        names = [f"conv{b}_{i}" for b, (n, _) in enumerate(_VGG16_BLOCKS, start=1)
                 for i in range(1, n + 1)]
        got = [tuple(m.weight.shape) for m in convs]
        want = [tuple(getattr(self, n).weight.shape) for n in names]
        if got != want:
            raise ValueError(f"{name}.copy_params_from_vgg16: expected VGG16's 13 "
                             f"convolutions with weights {want}, got {got}")
        for n, conv in zip(names, convs):
            getattr(self, n).load_state_dict(conv.state_dict())

        # the classifier up to its last Linear, read from the 7x7 pool5 map, as convs
        layers = list(classifier.children())
        last = max(i for i, m in enumerate(layers) if isinstance(m, nn.Linear))
        pool = [vgg16.avgpool] if hasattr(vgg16, "avgpool") else []
        head = nn.Sequential(*pool, nn.Flatten(), *layers[:last])
        fc = [m for m in minicnn.convolutionize(head, (self.fc6.in_channels, 7, 7))
              if isinstance(m, nn.Conv2d)]
        if [tuple(m.weight.shape) for m in fc] != [tuple(self.fc6.weight.shape),
                                                   tuple(self.fc7.weight.shape)]:
            raise ValueError(f"{name}.copy_params_from_vgg16: the classifier converts to "
                             f"{[tuple(m.weight.shape) for m in fc]}, expected fc6 "
                             f"{tuple(self.fc6.weight.shape)} and fc7 "
                             f"{tuple(self.fc7.weight.shape)}")
        self.fc6.load_state_dict(fc[0].state_dict())
        self.fc7.load_state_dict(fc[1].state_dict())
        return self

    def _copy_params_from_coarser(self, other):
        """Every parameter of ``other`` whose name and shape this net shares (the trunk,
        score_fr, score_pool4, upscore2): the paper trains 16s from 32s, 8s from 16s."""
        own = self.state_dict()
        shared = {k: v for k, v in other.state_dict().items()
                  if k in own and tuple(v.shape) == tuple(own[k].shape)}
        self.load_state_dict(shared, strict=False)
        return self

    def _crop(self, score, offset, size, what):
        """``score[..., offset:offset + h, offset:offset + w]``, with an error naming the
        model when the map is too small for the crop."""
        h, w = size[0], size[1]
        if score.shape[2] < offset + h or score.shape[3] < offset + w:
            raise ValueError(
                f"{type(self).__name__}: {what} is {score.shape[2]}x{score.shape[3]}, too "
                f"small for a {h}x{w} crop at offset {offset}. With conv1_1's padding of "
                f"100 every input size works; this one has padding "
                f"{self.conv1_1.padding}")
        return score[:, :, offset:offset + h, offset:offset + w]


class FCN32s(_FCNVGG16):
    """FCN-32s: score_fr upsampled by 32 in one step (upscore, 64/32), cropped at 19.

    Shape: (N, in_channels, H, W) -> (N, num_classes, H, W).
    """

    def __init__(self, num_classes=21, learnable_upsampling=False, in_channels=3,
                 base_channels=64, fc_channels=4096):
        super().__init__(num_classes, learnable_upsampling, in_channels, base_channels,
                         fc_channels)
        self.upscore = self._upsampling(32)
        self._init_weights()

    def forward(self, x):
        size = x.shape[-2:]
        score, _, _ = self._trunk(x)                       # (N, classes, 16, 16)
        x = self.upscore(score)                            # (N, classes, 544, 544)
        return self._crop(x, 19, size, "upscore")          # (N, classes, 500, 500)


class FCN16s(_FCNVGG16):
    """FCN-16s: score_fr upsampled by 2, plus the pool4 scores, upsampled by 16.

    Shape: (N, in_channels, H, W) -> (N, num_classes, H, W).
    """

    def __init__(self, num_classes=21, learnable_upsampling=False, in_channels=3,
                 base_channels=64, fc_channels=4096):
        super().__init__(num_classes, learnable_upsampling, in_channels, base_channels,
                         fc_channels)
        self.score_pool4 = nn.Conv2d(8 * base_channels, num_classes, 1)
        self.upscore2 = self._upsampling(2)
        self.upscore16 = self._upsampling(16)
        self._init_weights()

    def forward(self, x):
        size = x.shape[-2:]
        score, _, pool4 = self._trunk(x)                   # (N, classes, 16, 16), pool4 44
        upscore2 = self.upscore2(score)                    # (N, classes, 34, 34)   1/16
        score_pool4 = self.score_pool4(pool4)              # (N, classes, 44, 44)
        score_pool4c = self._crop(score_pool4, 5, upscore2.shape[-2:], "score_pool4")
        x = self.upscore16(upscore2 + score_pool4c)        # (N, classes, 560, 560)
        return self._crop(x, 27, size, "upscore16")        # (N, classes, 500, 500)

    def copy_params_from_fcn32s(self, fcn32s):
        """The trunk and score_fr of a trained FCN-32s (score_pool4 keeps its zeros, so
        the new net starts out computing what the 32s did, only upsampled in two steps)."""
        return self._copy_params_from_coarser(fcn32s)


class FCN8s(_FCNVGG16):
    """FCN-8s: FCN-16s's 1/16 sum upsampled by 2, plus the pool3 scores, upsampled by 8.

    Shape: (N, in_channels, H, W) -> (N, num_classes, H, W).
    """

    def __init__(self, num_classes=21, learnable_upsampling=False, in_channels=3,
                 base_channels=64, fc_channels=4096):
        super().__init__(num_classes, learnable_upsampling, in_channels, base_channels,
                         fc_channels)
        self.score_pool4 = nn.Conv2d(8 * base_channels, num_classes, 1)
        self.score_pool3 = nn.Conv2d(4 * base_channels, num_classes, 1)
        self.upscore2 = self._upsampling(2)
        self.upscore_pool4 = self._upsampling(2)
        self.upscore8 = self._upsampling(8)
        self._init_weights()

    def forward(self, x):
        size = x.shape[-2:]
        score, pool3, pool4 = self._trunk(x)               # 16x16; pool3 88, pool4 44
        upscore2 = self.upscore2(score)                    # (N, classes, 34, 34)   1/16
        score_pool4 = self.score_pool4(pool4)              # (N, classes, 44, 44)
        score_pool4c = self._crop(score_pool4, 5, upscore2.shape[-2:], "score_pool4")
        upscore_pool4 = self.upscore_pool4(upscore2 + score_pool4c)   # (N, c, 70, 70) 1/8
        score_pool3 = self.score_pool3(pool3)              # (N, classes, 88, 88)
        score_pool3c = self._crop(score_pool3, 9, upscore_pool4.shape[-2:], "score_pool3")
        x = self.upscore8(upscore_pool4 + score_pool3c)    # (N, classes, 568, 568)
        return self._crop(x, 31, size, "upscore8")         # (N, classes, 500, 500)

    def copy_params_from_fcn16s(self, fcn16s):
        """The trunk, score_fr, score_pool4 and upscore2 of a trained FCN-16s."""
        return self._copy_params_from_coarser(fcn16s)


def _build(cls, num_classes, learnable_upsampling, backbone, kwargs):
    model = cls(num_classes=num_classes, learnable_upsampling=learnable_upsampling, **kwargs)
    if backbone is not None:
        model.copy_params_from_vgg16(backbone)
    return model


def fcn32s(num_classes=21, learnable_upsampling=False, backbone=None, **kwargs):
    """FCN-32s on VGG16 (designed for 500x500 VOC images; any size works).
    ``backbone``: a trained VGG16 whose weights to start from (see
    :meth:`FCN32s.copy_params_from_vgg16`); other keywords (``in_channels``,
    ``base_channels``, ``fc_channels``) go to :class:`FCN32s`."""
    return _build(FCN32s, num_classes, learnable_upsampling, backbone, kwargs)


def fcn16s(num_classes=21, learnable_upsampling=False, backbone=None, **kwargs):
    """FCN-16s on VGG16 (designed for 500x500; any size works); arguments as
    :func:`fcn32s`."""
    return _build(FCN16s, num_classes, learnable_upsampling, backbone, kwargs)


def fcn8s(num_classes=21, learnable_upsampling=False, backbone=None, **kwargs):
    """FCN-8s on VGG16 (designed for 500x500; any size works); arguments as
    :func:`fcn32s`."""
    return _build(FCN8s, num_classes, learnable_upsampling, backbone, kwargs)
