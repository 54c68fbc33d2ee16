"""U-Net: a contracting path, an expanding path, and skips joined by concatenation.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation" (MICCAI 2015, arXiv 1505.04597), figure 1.

* Contracting path: four levels of two 3x3 convolutions + ReLU, then a 2x2/2 max pool,
  doubling the channels each level (64, 128, 256, 512), and a fifth level of two
  convolutions at 1024 channels (the bottom of the "U").
* Expanding path: at each level a 2x2 up-convolution (ConvTranspose2d, stride 2) doubles
  the size and halves the channels, the feature map of the same level of the
  contracting path is centre-cropped to its size and *concatenated* (FCN sums its skips;
  U-Net keeps both and lets the next convolutions combine them), then two 3x3
  convolutions + ReLU.
* A 1x1 convolution maps the 64 channels to the classes. 23 convolutional layers in all
  (19 Conv2d + 4 ConvTranspose2d), 31,030,658 parameters for 1 input channel and 2
  classes.

The convolutions are *valid* (no padding): each loses a 1-pixel border, so the output
is smaller than the input and only holds pixels whose whole context was in the input.
The paper's tile: 572x572 in, 388x388 out::

    572 -> 568 (64)  ---------------------------------- crop 392 -> concat -> 388 -> 1x1
    pool 284 -> 280 (128)  ------------------ crop 200 -> concat -> 196 ^ up 392
      pool 140 -> 136 (256)  -------- crop 104 -> concat -> 100 ^ up 200
        pool 68 -> 64 (512)  --- crop 56 -> concat -> 52 ^ up 104
          pool 32 -> 28 (1024) -------> up 56 ^

Large images are segmented tile by tile ("overlap-tile": each 388x388 output tile is
predicted from a 572x572 input tile, the image being mirrored at its border). For that
to work every 2x2 pool must see an even size, which allows the input sizes 188, 204,
..., 124 + 16k (k >= 4), with output = input - 184; :func:`unet_valid_sizes` lists them,
and the forward refuses other sizes with the nearest valid ones.

``padding=True`` pads the convolutions by 1 (a common variant, e.g. milesial's
Pytorch-UNet): the output then has the input's size, for any size divisible by 16.

NOTE, departures from the paper: the paper adds "drop-out layers at the end of the
contracting path" without giving a rate: ``dropout`` (default 0, none) puts one after the
bottom level. Weights start with He initialisation (the paper's N(0, 2/fan_in) on the
input side, ``kaiming_normal_``), biases at 0. ``base_channels`` (64) scales every width,
for small experiments.

The code is plain PyTorch style (only the three imports below differ); the tests run
this source against ``torch.nn`` to check that both agree.
"""
from __future__ import annotations

import minicnn
from minicnn import nn
from minicnn.functional._checks import positive_int
from minicnn.nn import functional as F

__all__ = ["UNet", "DoubleConv", "Up", "unet", "unet_valid_sizes"]

_LEVELS = 4     # max pools on the contracting path (and up-convolutions on the other)


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by ReLU: the unit of both paths.

    Shape: (N, in, H, W) -> (N, out, H - 4, W - 4) (valid), or (N, out, H, W) (padded).
    """

    def __init__(self, in_channels, out_channels, padding=False):
        p = 1 if padding else 0
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=p),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=p),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """One level of the expanding path: up-convolution 2x2/2 (in -> in/2 channels),
    concatenation with the centre-cropped skip (in/2 channels), two 3x3 convolutions.

    Shape: (N, in, h, w), skip (N, in/2, hs, ws) -> (N, out, 2h - 4, 2w - 4) (valid).
    """

    def __init__(self, in_channels, out_channels, padding=False):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels, padding)

    def forward(self, x, skip):
        x = self.up(x)                                   # (N, in/2, 2h, 2w)
        skip = F.center_crop(skip, x.shape[-2:])         # (N, in/2, 2h, 2w)
        return self.conv(minicnn.cat([skip, x], 1))      # (N, in, ...) -> (N, out, ...)


class UNet(nn.Module):
    """U-Net (see the module docstring).

    Shape: (N, in_channels, H, W) -> (N, num_classes, H - 184, W - 184) with valid
    convolutions (H, W in 188, 204, ..., 124 + 16k), or (N, num_classes, H, W) with
    ``padding=True`` (H, W multiples of 16).
    """

    def __init__(self, in_channels=1, num_classes=2, padding=False, base_channels=64,
                 dropout=0.0):
        super().__init__()
        if padding not in (False, True, 0, 1):
            raise ValueError(f"unet: padding must be False (valid convolutions, the "
                             f"paper's) or True (size-preserving), got {padding!r}")
        self.padding = bool(padding)
        in_channels = positive_int("unet", "in_channels", in_channels)
        num_classes = positive_int("unet", "num_classes", num_classes)
        c = base_channels = positive_int("unet", "base_channels", base_channels)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.enc1 = DoubleConv(in_channels, c, padding)
        self.enc2 = DoubleConv(c, 2 * c, padding)
        self.enc3 = DoubleConv(2 * c, 4 * c, padding)
        self.enc4 = DoubleConv(4 * c, 8 * c, padding)
        self.bottom = DoubleConv(8 * c, 16 * c, padding)
        self.dropout = nn.Dropout(dropout)
        self.dec4 = Up(16 * c, 8 * c, padding)
        self.dec3 = Up(8 * c, 4 * c, padding)
        self.dec2 = Up(4 * c, 2 * c, padding)
        self.dec1 = Up(2 * c, c, padding)
        self.head = nn.Conv2d(c, num_classes, 1)

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        _check_size(x.shape[-2:], self.padding)
        # shapes for the paper's 572x572 tile, base_channels 64
        e1 = self.enc1(x)                           # (N, 64, 568, 568)
        e2 = self.enc2(self.pool(e1))               # (N, 128, 280, 280)
        e3 = self.enc3(self.pool(e2))               # (N, 256, 136, 136)
        e4 = self.enc4(self.pool(e3))               # (N, 512, 64, 64)
        x = self.bottom(self.pool(e4))              # (N, 1024, 28, 28)
        x = self.dropout(x)
        x = self.dec4(x, e4)                        # up 56, crop 64 -> 56: (N, 512, 52, 52)
        x = self.dec3(x, e3)                        # up 104, crop 136:     (N, 256, 100, 100)
        x = self.dec2(x, e2)                        # up 200, crop 280:     (N, 128, 196, 196)
        x = self.dec1(x, e1)                        # up 392, crop 568:     (N, 64, 388, 388)
        return self.head(x)                         # (N, num_classes, 388, 388)


def unet(in_channels=1, num_classes=2, padding=False, base_channels=64, dropout=0.0):
    """U-Net as in the paper (1 input channel, 2 classes, valid convolutions; designed
    for 572x572 tiles, giving 388x388); see :class:`UNet`."""
    return UNet(in_channels, num_classes, padding, base_channels, dropout)


def unet_valid_sizes(up_to=1024):
    """The input sizes (per side) that valid convolutions take, up to ``up_to``:
    188, 204, ..., i.e. 124 + 16k for k >= 4 (output = input - 184).

    Why: going down, each level takes 4 pixels (two valid 3x3 convs) and the pool then
    needs an even size; the bottom ends at b = (s - 124) / 16, which must be a whole
    number, and coming up each level gives 2h - 4, positive all the way for b >= 4.
    """
    return list(range(188, up_to + 1, 16))


def _check_size(size, padding):
    """A clear error for an input size this U-Net cannot take, naming the nearest ones
    it can."""
    for s in size:
        s = int(s)
        if padding:
            if s % 16 or s < 16:
                below, above = s // 16 * 16, (s // 16 + 1) * 16
                nearest = f"{below} or {above}" if below else f"{above}"
                raise ValueError(
                    f"unet (padding=True): input size {tuple(int(v) for v in size)} "
                    f"cannot be pooled {_LEVELS} times: each side must be a multiple of "
                    f"16; nearest to {s}: {nearest}")
        elif s < 188 or (s - 188) % 16:
            above = 188 if s < 188 else 188 + ((s - 188) // 16 + 1) * 16
            below = above - 16 if above > 188 else None
            nearest = f"{below} or {above}" if below else f"{above}"
            raise ValueError(
                f"unet (valid convolutions): input size {tuple(int(v) for v in size)} "
                f"does not fit: every 2x2 max pool needs an even size and the output must "
                f"be at least 1 pixel, so each side must be 124 + 16k with k >= 4 (188, "
                f"204, ..., 572, ...); nearest to {s}: {nearest} (output = input - 184); "
                f"or build with padding=True")
