"""DCGAN: a generative adversarial network made of convolutions.

Goodfellow et al., "Generative Adversarial Nets" (NeurIPS 2014): a generator ``G`` maps
noise ``z`` to images, a discriminator ``D`` gives the probability that an image is real,
and the two play

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))].

Training alternates one step of ``D`` up this objective and one step of ``G`` down it.
Early on ``D`` rejects every fake and ``log(1 - D(G(z)))`` is flat, so ``G`` minimises the
*non-saturating* loss ``-log D(G(z))`` instead (same fixed point, strong gradients where
``G`` is bad): both are binary cross-entropies, ``D``'s with labels real = 1, fake = 0,
``G``'s with its fakes labelled real (:func:`gan_train_step`).

Radford, Metz, Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks" (ICLR 2016), the layout of PyTorch's examples/dcgan
(``main.0.weight`` ... are its state-dict keys)::

    G: z (N, nz, 1, 1)                          D: image (N, nc, 64, 64)
       ConvT 4x4/1  -> ngf*8 x  4 x  4  BN ReLU    Conv 4x4/2 -> ndf   x 32 x 32  LReLU 0.2
       ConvT 4x4/2  -> ngf*4 x  8 x  8  BN ReLU    Conv 4x4/2 -> ndf*2 x 16 x 16  BN LReLU
       ConvT 4x4/2  -> ngf*2 x 16 x 16  BN ReLU    Conv 4x4/2 -> ndf*4 x  8 x  8  BN LReLU
       ConvT 4x4/2  -> ngf   x 32 x 32  BN ReLU    Conv 4x4/2 -> ndf*8 x  4 x  4  BN LReLU
       ConvT 4x4/2  -> nc    x 64 x 64  Tanh       Conv 4x4/1 -> 1     x  1 x  1  Sigmoid

No pooling and no fully connected layer: strided convolutions learn their own down- and
upsampling; BatchNorm everywhere except G's output and D's input; no biases (BN's shift
takes their place). With nz = 100, ngf = ndf = 64, nc = 3: G 3,576,704 and D 2,765,568
parameters. Weights are drawn from N(0, 0.02), BN scales from N(1, 0.02)
(:func:`weights_init`).

Other sizes (``image_size``): the stack starts at 4x4 (or 7x7 for sizes 7·2^k) and doubles
until the image size, so 32x32 drops the first stride-2 stage and 28x28 grey images
(MNIST, the digits) go 7 -> 14 -> 28, with D mirroring G and ending in a 7x7
convolution. The widest layer is always ``ngf`` (``ndf``) times 2^(stages - 1).

NOTE: on scikit-learn's 1,438 training digits, the 28x28 stack at widths 16 and 32 often
collapsed within a few epochs (the generator drawing one flat grey image, torch's twin
alike), the 32x32 stack did not: ``minicnn train --task gan`` draws the digits at 32x32.

NOTE: the discriminator ends with a sigmoid and returns ``(N,)`` probabilities, as the
example (``output.view(-1, 1).squeeze(1)``), trained with ``binary_cross_entropy``, whose
logs are clamped at -100 (torch's rule), so a saturated D stays finite.

The code is plain PyTorch style (only the three imports below differ); the tests run this
source against ``torch.nn`` and a DCGAN step against torch's.
"""
from __future__ import annotations

import minicnn
from minicnn import nn
from minicnn.nn import functional as F

__all__ = ["Generator", "Discriminator", "dcgan_generator", "dcgan_discriminator",
           "weights_init", "gan_train_step", "GAN_LOSSES", "GANS"]

#: the generator losses :func:`gan_train_step` knows
GAN_LOSSES = ("non_saturating", "minimax")


def _stages(image_size, who):
    """``(start, stages)``: the stack begins at ``start`` x ``start`` (4, or 7 for sizes
    7·2^k) and doubles ``stages`` times to reach ``image_size``."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        for start in (4, 7):
            size, stages = image_size, 0
            while size > start and size % 2 == 0:
                size, stages = size // 2, stages + 1
            if size == start and stages >= 1:
                return start, stages
    raise ValueError(f"{who}: image_size must be 4·2^k or 7·2^k with k >= 1 (e.g. 64, 32, "
                     f"28), got {image_size!r}")


def _check_widths(who, **widths):
    for name, value in widths.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{who}: {name} must be a positive int, got {value!r}")


class Generator(nn.Module):
    """DCGAN's generator: noise ``(N, nz, 1, 1)`` -> images ``(N, nc, S, S)`` in [-1, 1].

    Each stage is ConvTranspose2d(4, stride 2, padding 1), which doubles the size
    (OH = (H - 1)·2 - 2 + 4 = 2H), then BN and ReLU; the first maps 1x1 to the start size
    with a kernel of that size; the last ends with Tanh, so the images should be
    normalised to [-1, 1]. Weights as built here are the layers' defaults: use
    :func:`dcgan_generator`, which applies :func:`weights_init`.
    """

    def __init__(self, nz=100, ngf=64, nc=3, image_size=64):
        super().__init__()
        _check_widths("Generator", nz=nz, ngf=ngf, nc=nc)
        start, stages = _stages(image_size, "Generator")
        self.nz, self.ngf, self.nc, self.image_size = nz, ngf, nc, image_size
        width = ngf * 2 ** (stages - 1)
        layers = [nn.ConvTranspose2d(nz, width, start, 1, 0, bias=False),   # start x start
                  nn.BatchNorm2d(width), nn.ReLU(True)]
        for _ in range(stages - 1):                                         # doubles
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, nc, 4, 2, 1, bias=False),      # S x S
                   nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, input):
        if input.ndim == 2:                     # (N, nz) is accepted as (N, nz, 1, 1)
            input = input.view(input.shape[0], input.shape[1], 1, 1)
        return self.main(input)


class Discriminator(nn.Module):
    """DCGAN's discriminator: images ``(N, nc, S, S)`` -> ``(N,)`` probabilities of being
    real. Each stage is Conv2d(4, stride 2, padding 1), which halves the size, then BN
    (not on the first) and LeakyReLU(0.2); a last convolution as large as the remaining
    map gives one number per image, squashed by a sigmoid. Use
    :func:`dcgan_discriminator` for DCGAN's initial weights.
    """

    def __init__(self, nc=3, ndf=64, image_size=64):
        super().__init__()
        _check_widths("Discriminator", nc=nc, ndf=ndf)
        start, stages = _stages(image_size, "Discriminator")
        self.nc, self.ndf, self.image_size = nc, ndf, image_size
        layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),                  # S/2
                  nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for _ in range(stages - 1):                                         # halves
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, inplace=True)]
            width *= 2
        layers += [nn.Conv2d(width, 1, start, 1, 0, bias=False),            # 1 x 1
                   nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, input):
        return self.main(input).view(-1)        # (N, 1, 1, 1) -> (N,)


def weights_init(m):
    """DCGAN's initialisation, for ``model.apply(weights_init)``: convolution weights
    N(0, 0.02), BatchNorm scales N(1, 0.02), biases 0, drawn from minicnn's generator
    (``minicnn.manual_seed``). The example tests the class name (``'Conv' in name``);
    the same layers are picked here by type."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def dcgan_generator(nz=100, ngf=64, nc=3, image_size=64):
    """DCGAN's generator with its initial weights: ``dcgan_generator()`` is the example's
    64x64 RGB one (3,576,704 parameters), ``dcgan_generator(nc=1, image_size=28)`` one for
    MNIST-sized grey images."""
    model = Generator(nz, ngf, nc, image_size)
    model.apply(weights_init)
    return model


def dcgan_discriminator(nc=3, ndf=64, image_size=64):
    """DCGAN's discriminator with its initial weights (2,765,568 parameters for the
    example's 64x64 RGB images)."""
    model = Discriminator(nc, ndf, image_size)
    model.apply(weights_init)
    return model


def gan_train_step(netG, netD, optimizerG, optimizerD, real, noise,
                   loss="non_saturating"):
    """One DCGAN update, in the example's order: D on a real and a fake batch, then G.

    (1) D maximises log D(x) + log(1 - D(G(z))): BCE of D(real) against 1 plus BCE of
        D(G(z)) against 0, with G(z) detached so no gradient reaches G; D steps.
    (2) G, through the updated D: ``"non_saturating"`` minimises -log D(G(z)) (BCE against
        1), ``"minimax"`` the original log(1 - D(G(z))) (minus BCE against 0); G steps.

    ``real`` (N, nc, S, S) in [-1, 1]; ``noise`` (N, nz, 1, 1). D runs in training mode on
    each batch separately (its BatchNorm sees real and fake apart, as in the example).
    Returns ``(numbers, fake)``: detached scalars ``loss_d``, ``loss_g``, ``d_real`` (mean
    D(x)), ``d_fake`` (mean D(G(z)) before D's step) and the fake batch (with its graph).
    NOTE: G's backward also leaves gradients in D's parameters; D's next ``zero_grad``
    clears them before they are used.
    """
    if loss not in GAN_LOSSES:
        raise ValueError(f"gan_train_step: loss must be one of {', '.join(GAN_LOSSES)}, "
                         f"got {loss!r}")
    optimizerD.zero_grad()
    output = netD(real)
    loss_d_real = F.binary_cross_entropy(output, minicnn.ones_like(output))
    d_x = output.detach().mean()
    fake = netG(noise)
    output = netD(fake.detach())
    loss_d_fake = F.binary_cross_entropy(output, minicnn.zeros_like(output))
    d_g_z = output.detach().mean()
    loss_d = loss_d_real + loss_d_fake
    loss_d.backward()
    optimizerD.step()

    optimizerG.zero_grad()
    output = netD(fake)
    if loss == "non_saturating":
        loss_g = F.binary_cross_entropy(output, minicnn.ones_like(output))
    else:
        loss_g = -F.binary_cross_entropy(output, minicnn.zeros_like(output))
    loss_g.backward()
    optimizerG.step()
    return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "d_real": d_x,
            "d_fake": d_g_z}, fake


#: the GANs by name, as ``(generator builder, discriminator builder)``: what
#: ``minicnn train --task gan --model`` accepts
GANS = {"dcgan": (dcgan_generator, dcgan_discriminator)}
