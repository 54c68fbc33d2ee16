"""DCGAN (minicnn.models.gan): parameter counts and shapes, the layer list of PyTorch's
examples/dcgan written out by hand, DCGAN's initialisation, and training steps of both
networks equal to torch's with the same weights and the same batches."""
import numpy as np
import pytest

import minicnn
import minicnn.optim
from minicnn import nn
from minicnn.models import gan

from model_twin import count, torch_twin


@pytest.mark.parametrize("nc,image_size,g_params,d_params", [
    # the example's 64x64 RGB networks (nz 100, ngf = ndf = 64)
    (3, 64, 3_576_704, 2_765_568),
    # 28x28 grey: ConvT 100->128 k7 (627,200) + BN (256) + ConvT 128->64 k4 (131,072)
    # + BN (128) + ConvT 64->1 k4 (1,024); D: 1,024 + 131,072 + 256 + 128*49 (6,272)
    (1, 28, 759_680, 138_624),
    # 32x32 RGB: the 64x64 stack without its first stride-2 stage
    (3, 32, 100 * 256 * 16 + 512 + 256 * 128 * 16 + 256 + 128 * 64 * 16 + 128 + 64 * 3 * 16,
     3 * 64 * 16 + 64 * 128 * 16 + 256 + 128 * 256 * 16 + 512 + 256 * 16),
])
def test_parameter_counts_and_shapes(nc, image_size, g_params, d_params):
    G = gan.dcgan_generator(nz=100, ngf=64, nc=nc, image_size=image_size)
    D = gan.dcgan_discriminator(nc=nc, ndf=64, image_size=image_size)
    assert (count(G), count(D)) == (g_params, d_params)
    with minicnn.no_grad():
        fake = G(minicnn.randn(2, 100, 1, 1))
        assert fake.shape == (2, nc, image_size, image_size)
        assert float(fake.abs().max().item()) <= 1.0            # Tanh
        p = D(fake)
    assert p.shape == (2,)
    assert 0.0 < float(p.min().item()) and float(p.max().item()) < 1.0
    assert G(minicnn.randn(3, 100)).shape == (3, nc, image_size, image_size)   # (N, nz)


def _example_layers(torch, nz=100, ngf=64, ndf=64, nc=3):
    """examples/dcgan's Generator.main and Discriminator.main, written out."""
    tnn = torch.nn
    G = tnn.Sequential(
        tnn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), tnn.BatchNorm2d(ngf * 8),
        tnn.ReLU(True),
        tnn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), tnn.BatchNorm2d(ngf * 4),
        tnn.ReLU(True),
        tnn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), tnn.BatchNorm2d(ngf * 2),
        tnn.ReLU(True),
        tnn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), tnn.BatchNorm2d(ngf),
        tnn.ReLU(True),
        tnn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), tnn.Tanh())
    D = tnn.Sequential(
        tnn.Conv2d(nc, ndf, 4, 2, 1, bias=False), tnn.LeakyReLU(0.2, inplace=True),
        tnn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), tnn.BatchNorm2d(ndf * 2),
        tnn.LeakyReLU(0.2, inplace=True),
        tnn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), tnn.BatchNorm2d(ndf * 4),
        tnn.LeakyReLU(0.2, inplace=True),
        tnn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), tnn.BatchNorm2d(ndf * 8),
        tnn.LeakyReLU(0.2, inplace=True),
        tnn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), tnn.Sigmoid())
    return G.double(), D.double()


def _load_into(torch, module, state):
    """minicnn state dict -> torch module (keys and shapes must agree exactly)."""
    theirs = module.state_dict()
    assert list(theirs) == list(state)
    for k, v in state.items():
        assert tuple(theirs[k].shape) == tuple(v.shape), k
    module.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in state.items()})


def test_layout_equals_the_pytorch_example(torch):
    """Keys ``main.0.weight`` ..., shapes and forward (train and eval mode) equal the
    example's layer list with the same weights: small widths, the example's structure."""
    G = gan.dcgan_generator(nz=12, ngf=4, nc=3, image_size=64).double()
    D = gan.dcgan_discriminator(nc=3, ndf=4, image_size=64).double()
    tG, tD = _example_layers(torch, nz=12, ngf=4, ndf=4, nc=3)
    _load_into(torch, tG, G.main.state_dict())
    _load_into(torch, tD, D.main.state_dict())
    assert [k for k in G.state_dict()][:2] == ["main.0.weight", "main.1.weight"]
    z = np.random.default_rng(0).standard_normal((3, 12, 1, 1))
    for training in (True, False):
        G.train(training), D.train(training), tG.train(training), tD.train(training)
        fake, tfake = G(minicnn.tensor(z)), tG(torch.from_numpy(z))
        np.testing.assert_allclose(fake.numpy(), tfake.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(D(fake).numpy(), tD(tfake).view(-1).detach().numpy(),
                                   rtol=1e-10, atol=1e-12)


def test_weights_init_draws_dcgan_statistics_from_minicnns_generator():
    minicnn.manual_seed(5)
    G = gan.dcgan_generator(image_size=32)
    minicnn.manual_seed(5)
    again = gan.dcgan_generator(image_size=32)
    state, other = G.state_dict(), again.state_dict()
    assert all(np.array_equal(state[k].numpy(), other[k].numpy()) for k in state)
    conv = np.concatenate([m.weight.numpy().ravel() for m in G.modules()
                           if isinstance(m, nn.ConvTranspose2d)])
    scales = np.concatenate([m.weight.numpy().ravel() for m in G.modules()
                             if isinstance(m, nn.BatchNorm2d)])
    shifts = np.concatenate([m.bias.numpy().ravel() for m in G.modules()
                             if isinstance(m, nn.BatchNorm2d)])
    assert abs(conv.mean()) < 1e-3 and abs(conv.std() - 0.02) < 1e-3       # ~1 M draws
    assert abs(scales.mean() - 1) < 4e-3 and abs(scales.std() - 0.02) < 4e-3
    assert not shifts.any()
    # a layer with a bias gets it zeroed
    layer = nn.Conv2d(2, 3, 3)
    gan.weights_init(layer)
    assert not layer.bias.numpy().any() and abs(layer.weight.numpy().std() - 0.02) < 0.01


def _torch_step(torch, netG, netD, optimizerG, optimizerD, real, noise, loss):
    """examples/dcgan's loop body (the generator loss as asked)."""
    criterion = torch.nn.BCELoss()
    netD.zero_grad()
    output = netD(real).view(-1)
    errD_real = criterion(output, torch.ones_like(output))
    errD_real.backward()
    D_x = output.mean().item()
    fake = netG(noise)
    output = netD(fake.detach()).view(-1)
    errD_fake = criterion(output, torch.zeros_like(output))
    errD_fake.backward()
    D_G_z1 = output.mean().item()
    optimizerD.step()
    netG.zero_grad()
    output = netD(fake).view(-1)
    if loss == "non_saturating":
        errG = criterion(output, torch.ones_like(output))
    else:
        errG = -criterion(output, torch.zeros_like(output))
    errG.backward()
    optimizerG.step()
    return (errD_real + errD_fake).item(), errG.item(), D_x, D_G_z1


@pytest.mark.parametrize("nc,image_size,width,loss", [
    (1, 28, 8, "non_saturating"), (3, 32, 4, "minimax"),
    pytest.param(3, 64, 64, "non_saturating", marks=pytest.mark.slow)])
def test_training_steps_equal_torchs(torch, nc, image_size, width, loss):
    """Two DCGAN steps (D on real + fake with BCE, then G; Adam(2e-4, (0.5, 0.999))) from
    the same weights on the same batches: both networks' weights, BN statistics and the
    losses equal torch's in float64 after each step."""
    minicnn.manual_seed(0)
    G = gan.dcgan_generator(nz=10, ngf=width, nc=nc, image_size=image_size).double()
    D = gan.dcgan_discriminator(nc=nc, ndf=width, image_size=image_size).double()
    twin = torch_twin(gan, torch)
    tG = twin.Generator(10, width, nc, image_size).double()
    tD = twin.Discriminator(nc, width, image_size).double()
    _load_into(torch, tG, G.state_dict())
    _load_into(torch, tD, D.state_dict())
    adam = dict(lr=2e-4, betas=(0.5, 0.999))
    opt_g, opt_d = minicnn.optim.Adam(G.parameters(), **adam), \
        minicnn.optim.Adam(D.parameters(), **adam)
    topt_g, topt_d = torch.optim.Adam(tG.parameters(), **adam), \
        torch.optim.Adam(tD.parameters(), **adam)
    initial = G.state_dict()["main.0.weight"].numpy().copy()
    rng = np.random.default_rng(1)
    for step in range(2):
        real = np.tanh(rng.standard_normal((4, nc, image_size, image_size)))
        noise = rng.standard_normal((4, 10, 1, 1))
        numbers, fake = gan.gan_train_step(G, D, opt_g, opt_d, minicnn.tensor(real),
                                           minicnn.tensor(noise), loss=loss)
        expected = _torch_step(torch, tG, tD, topt_g, topt_d, torch.from_numpy(real),
                                     torch.from_numpy(noise), loss)
        np.testing.assert_allclose([numbers[k].item() for k in ("loss_d", "loss_g", "d_real",
                                                                "d_fake")], expected,
                                   rtol=1e-10)
        assert fake.shape == (4, nc, image_size, image_size)
        for ours, theirs in ((G, tG), (D, tD)):
            reference = theirs.state_dict()
            for key, value in ours.state_dict().items():
                np.testing.assert_allclose(value.numpy(), reference[key].numpy(), rtol=1e-9,
                                           atol=1e-12, err_msg=f"step {step + 1}: {key}")
    # the step moved the weights (a comparison of two frozen networks proves nothing)
    assert not np.allclose(G.state_dict()["main.0.weight"].numpy(), initial, rtol=0,
                           atol=1e-6)


def test_a_discriminator_step_leaves_the_generator_alone():
    """With G's learning rate 0 only D moves, and G gets no gradient from D's loss."""
    G = gan.dcgan_generator(nz=4, ngf=4, nc=1, image_size=28)
    D = gan.dcgan_discriminator(nc=1, ndf=4, image_size=28)
    before_g = {k: v.numpy().copy() for k, v in G.named_parameters()}
    before_d = {k: v.numpy().copy() for k, v in D.state_dict().items()}
    opt_g = minicnn.optim.Adam(G.parameters(), lr=0.0)
    opt_d = minicnn.optim.Adam(D.parameters(), lr=1e-2)
    gan.gan_train_step(G, D, opt_g, opt_d, minicnn.rand(4, 1, 28, 28) * 2 - 1,
                       minicnn.randn(4, 4, 1, 1))
    assert all(np.array_equal(p.numpy(), before_g[k]) for k, p in G.named_parameters())
    assert not np.array_equal(D.state_dict()["main.0.weight"].numpy(),
                              before_d["main.0.weight"])


@pytest.mark.parametrize("build,kwargs,match", [
    (gan.Generator, {"image_size": 30}, r"Generator: image_size must be 4·2\^k or 7·2\^k"),
    (gan.Generator, {"image_size": 4}, r"Generator: image_size"),
    (gan.Discriminator, {"image_size": 28.0}, r"Discriminator: image_size"),
    (gan.Generator, {"nz": 0}, r"Generator: nz must be a positive int, got 0"),
    (gan.Discriminator, {"ndf": 2.5}, r"Discriminator: ndf must be a positive int"),
])
def test_bad_sizes_are_refused_by_name(build, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


def test_an_unknown_generator_loss_is_refused():
    G, D = gan.Generator(4, 4, 1, 28), gan.Discriminator(1, 4, 28)
    opt = minicnn.optim.SGD(G.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="gan_train_step: loss must be one of "
                                         "non_saturating, minimax, got 'wasserstein'"):
        gan.gan_train_step(G, D, opt, opt, minicnn.zeros(2, 1, 28, 28),
                           minicnn.zeros(2, 4, 1, 1), loss="wasserstein")
