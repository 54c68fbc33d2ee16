"""FCN-32s/16s/8s on VGG16 (minicnn/models/segmentation/fcn.py): the paper's parameter
counts, the 500x500 size chain, state-dict layout, forward and gradients against the
torch twin (the same source run on torch.nn, see model_twin.py) on reduced widths,
weights taken from a VGG16 and from a coarser FCN, errors."""
import types

import numpy as np
import pytest

import minicnn
from minicnn import nn
from minicnn.models.segmentation import fcn
from minicnn.nn import functional as F

from model_twin import (cheap_init, compare_backward, compare_forward, copy_weights,
                        count, torch_twin)

NAMES = ["fcn32s", "fcn16s", "fcn8s"]
SMALL = dict(num_classes=3, base_channels=4, fc_channels=16)
# VGG16 (configuration D) at base width 4: the trunk of an FCN with base_channels=4
SMALL_D = [4, 4, "M", 8, 8, "M", 16, 16, 16, "M", 32, 32, 32, "M", 32, 32, 32, "M"]


def _twin(torch):
    """The torch twin of fcn.py; torch.nn.init has no bilinear_, so the twin gets one
    that fills the same kernel (a no-op on the meta device)."""
    twin = torch_twin(fcn, torch)
    namespace = twin.FCN8s.__init__.__globals__
    init_twin = types.ModuleType("init_twin")
    init_twin.__dict__.update(torch.nn.init.__dict__)

    def bilinear_(weight):
        if weight.device.type != "meta":
            filled = nn.init.bilinear_(nn.Parameter(np.zeros(tuple(weight.shape))))
            with torch.no_grad():
                weight.copy_(torch.from_numpy(filled.numpy()))
        return weight

    init_twin.bilinear_ = bilinear_
    nn_twin = types.ModuleType("nn_twin")
    nn_twin.__dict__.update(namespace["nn"].__dict__)
    nn_twin.init = init_twin
    namespace["nn"] = nn_twin
    return twin


def _pair(torch, name, dtype=np.float64, **kwargs):
    """A minicnn FCN and its torch twin with the same weights; the score layers (zero
    at initialisation, as in the paper) get random values so the skips matter."""
    twin = _twin(torch)
    torch.manual_seed(0)
    tm = getattr(twin, name)(**kwargs)
    with torch.no_grad():
        for module_name, m in tm.named_modules():
            if module_name.startswith("score"):
                m.weight.normal_(0, 0.3)
                m.bias.normal_(0, 0.3)
    mm = getattr(fcn, name)(**kwargs)
    tm = tm.double() if np.dtype(dtype) == np.float64 else tm.float()
    mm = mm.double() if np.dtype(dtype) == np.float64 else mm.float()
    copy_weights(tm, mm)
    return tm, mm


def _trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_parameter_counts_match_the_paper_tables():
    # spec Appendix A: fixed bilinear deconvolutions / learned ones, 21 classes
    want = {("fcn32s", False): 134_346_581, ("fcn16s", False): 134_357_354,
            ("fcn8s", False): 134_362_751, ("fcn32s", True): 136_152_917,
            ("fcn16s", True): 134_815_994, ("fcn8s", True): 134_489_759}
    for (name, learnable), n in want.items():
        with cheap_init():
            model = getattr(fcn, name)(learnable_upsampling=learnable)
        assert _trainable(model) == n, (name, learnable)
        # fixed deconvolutions stay in the state dict as frozen parameters
        assert count(model) == want[(name, True)]


@pytest.mark.parametrize("name", NAMES)
def test_layout_matches_torch_twin(torch, name):
    twin = _twin(torch)
    with torch.device("meta"):
        tm = getattr(twin, name)()
    with cheap_init():
        mm = getattr(fcn, name)()
    ts, ms = tm.state_dict(), mm.state_dict()
    assert list(ts) == list(ms)
    assert all(tuple(ts[k].shape) == tuple(ms[k].shape) for k in ts)
    assert {n: p.requires_grad for n, p in tm.named_parameters()} == \
        {n: p.requires_grad for n, p in mm.named_parameters()}
    # pytorch-fcn's names
    assert {"conv1_1.weight", "conv5_3.bias", "fc6.weight", "fc7.bias",
            "score_fr.weight"} <= set(ms)
    assert mm.conv1_1.padding == (100, 100) and mm.pool1.ceil_mode
    assert tuple(mm.fc6.weight.shape) == (4096, 512, 7, 7)
    ups = {"fcn32s": {"upscore": (64, 32)},
           "fcn16s": {"upscore2": (4, 2), "upscore16": (32, 16)},
           "fcn8s": {"upscore2": (4, 2), "upscore_pool4": (4, 2), "upscore8": (16, 8)}}[name]
    got = {n: (m.kernel_size[0], m.stride[0]) for n, m in mm.named_modules()
           if isinstance(m, nn.ConvTranspose2d)}
    assert got == ups
    assert all(mm.get_submodule(n).bias is None for n in ups)


@pytest.mark.slow
def test_500x500_round_trip():
    # spec A6: 500 -> pool5 22 -> fc6 16 -> upscore 544 -> crop 19 -> 500, and the
    # 16s/8s chains; conv arithmetic skipped (shapes_only), deconvolutions real
    chains = {
        "fcn32s": {"pool5": 22, "fc6": 16, "upscore": 544},
        "fcn16s": {"upscore2": 34, "score_pool4": 44, "upscore16": 560},
        "fcn8s": {"upscore2": 34, "upscore_pool4": 70, "score_pool3": 88, "upscore8": 568},
    }
    for name, chain in chains.items():
        with cheap_init():
            model = getattr(fcn, name)()
        seen = {}
        model.register_forward_hook(lambda m, args, out, seen=seen: seen.update(out=out.shape))
        table = minicnn.summary(model, (3, 500, 500), shapes_only=True, verbose=False)
        sizes = {r.name: r.output_shape[-1] for r in table.rows}
        assert {k: sizes[k] for k in chain} == chain, name
        assert seen["out"] == (1, 21, 500, 500)
        assert table.trainable_params == _trainable(model)


def test_any_input_size_gives_a_map_of_that_size():
    # the 100-pixel pad lets every size through (even 1x1); non-square too
    minicnn.manual_seed(0)
    for name in NAMES:
        model = getattr(fcn, name)(**SMALL).eval()
        for h, w in [(1, 1), (17, 45)]:
            with minicnn.no_grad():
                y = model(minicnn.randn(1, 3, h, w))
            assert tuple(y.shape) == (1, 3, h, w), (name, h, w)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_torch(torch, name):
    tm, mm = _pair(torch, name, **SMALL)
    compare_forward(tm, mm, torch, (1, 3, 64, 64), np.float64)
    compare_forward(tm, mm, torch, (1, 3, 40, 52), np.float64, train=True)
    compare_forward(tm.float(), mm.float(), torch, (1, 3, 64, 64), np.float32, rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name,learnable", [("fcn32s", False), ("fcn16s", True),
                                            ("fcn8s", True)])
def test_backward_matches_torch(torch, name, learnable):
    tm, mm = _pair(torch, name, learnable_upsampling=learnable, **SMALL)
    # gradients of every parameter, the fixed deconvolutions having none in both
    compare_backward(tm, mm, torch, (1, 3, 48, 40))
    up = mm.upscore if name == "fcn32s" else mm.upscore2
    assert (up.weight.grad is not None) == learnable


def test_fixed_upsampling_is_bilinear_and_stays_fixed():
    model = fcn.fcn16s(**SMALL)
    w = model.upscore2.weight.numpy()
    tent = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_array_equal(w[1, 1], np.outer(tent, tent))
    assert not w[0, 1].any()
    before = w.copy()
    opt = minicnn.optim.SGD(model.parameters(), lr=0.1)
    x, target = minicnn.randn(1, 3, 32, 32), minicnn.tensor(np.ones((1, 32, 32), np.int64))
    F.cross_entropy(model(x), target).backward()
    opt.step()
    np.testing.assert_array_equal(model.upscore2.weight.numpy(), before)
    assert model.score_fr.weight.grad is not None
    # the score layers start at zero (the paper), the trunk does not
    assert not fcn.fcn32s(**SMALL).score_fr.weight.numpy().any()
    assert fcn.fcn32s(**SMALL).conv3_1.weight.numpy().std() > 0


def _small_vgg16(**kwargs):
    from minicnn.models.vgg import vgg
    return vgg(SMALL_D, num_classes=5, hidden_features=16, **kwargs)


def test_weights_from_a_vgg16():
    minicnn.manual_seed(1)
    v = _small_vgg16()
    model = fcn.fcn8s(backbone=v, **SMALL)
    convs = [m for m in v.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    np.testing.assert_array_equal(model.conv1_1.weight.numpy(), convs[0].weight.numpy())
    np.testing.assert_array_equal(model.conv5_3.bias.numpy(), convs[12].bias.numpy())
    # fc6: the Linear on the flattened (C, 7, 7) map, as a 7x7 convolution; fc7 1x1
    fc1, fc2 = v.classifier[0], v.classifier[3]
    np.testing.assert_array_equal(model.fc6.weight.numpy(),
                                  fc1.weight.numpy().reshape(16, 32, 7, 7))
    np.testing.assert_array_equal(model.fc6.bias.numpy(), fc1.bias.numpy())
    np.testing.assert_array_equal(model.fc7.weight.numpy(),
                                  fc2.weight.numpy().reshape(16, 16, 1, 1))
    # on a 7x7 pool5 map fc7's output is the classifier's second hidden layer
    v.eval()
    model.eval()
    pool5 = minicnn.randn(2, 32, 7, 7)
    with minicnn.no_grad():
        want = v.classifier[:5](minicnn.flatten(pool5, 1)).numpy()
        got = model.relu7(model.fc7(model.relu6(model.fc6(pool5)))).numpy()
    np.testing.assert_allclose(got.reshape(2, 16), want, rtol=1e-5, atol=1e-6)


def test_weights_from_a_coarser_fcn():
    minicnn.manual_seed(2)
    coarse = fcn.fcn32s(**SMALL)
    nn.init.normal_(coarse.score_fr.weight)
    finer = fcn.fcn16s(**SMALL).copy_params_from_fcn32s(coarse)
    for key in ("conv2_1.weight", "fc6.weight", "score_fr.weight", "score_fr.bias"):
        np.testing.assert_array_equal(finer.state_dict()[key].numpy(),
                                      coarse.state_dict()[key].numpy())
    assert not finer.score_pool4.weight.numpy().any()       # starts as the 32s
    nn.init.normal_(finer.score_pool4.weight)
    finest = fcn.fcn8s(**SMALL).copy_params_from_fcn16s(finer)
    np.testing.assert_array_equal(finest.score_pool4.weight.numpy(),
                                  finer.score_pool4.weight.numpy())
    assert not finest.score_pool3.weight.numpy().any()


def test_errors():
    with pytest.raises(ValueError, match="without batch normalisation"):
        fcn.fcn32s(backbone=_small_vgg16(batch_norm=True), **SMALL)
    with pytest.raises(ValueError, match="expected VGG16's 13 convolutions"):
        fcn.fcn32s(backbone=_small_vgg16(), num_classes=3, base_channels=8, fc_channels=16)
    with pytest.raises(TypeError, match="expected a VGG16 with features and classifier"):
        fcn.fcn32s(**SMALL).copy_params_from_vgg16(nn.Linear(2, 2))
    # the crops need conv1_1's 100-pixel pad: without it the map is too small
    model = fcn.fcn32s(**SMALL).eval()
    model.conv1_1 = nn.Conv2d(3, 4, 3, padding=1)
    with pytest.raises(ValueError, match=r"FCN32s: upscore is 64x64, too small for a "
                                         r"224x224 crop at offset 19.*every input size works; "
                                         r"this one has padding \(1, 1\)"):
        with minicnn.no_grad():
            model(minicnn.randn(1, 3, 224, 224))
    with pytest.raises(Exception, match="channels"):
        fcn.fcn8s(**SMALL)(minicnn.randn(1, 1, 32, 32))


def test_builders_take_the_zoo_keywords():
    # minicnn summary / train build every zoo model with num_classes and in_channels
    with cheap_init():
        for name in NAMES:
            model = getattr(fcn, name)(num_classes=5, in_channels=1)
            assert tuple(model.conv1_1.weight.shape) == (64, 1, 3, 3)
            assert tuple(model.score_fr.weight.shape) == (5, 4096, 1, 1)


@pytest.mark.parametrize("name", NAMES)
def test_bad_widths_are_named(name):
    builder = getattr(fcn, name)
    with pytest.raises(ValueError, match="fc_channels must be a positive integer, got 0"):
        builder(fc_channels=0)
    with pytest.raises(ValueError, match="base_channels must be a positive integer"):
        builder(base_channels="abc")
