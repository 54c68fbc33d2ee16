"""minicnn.ops.FeaturePyramidNetwork and models.detection.backbone_utils against the torch
twins of the same sources (ops_twin / torch_twin, float64): outputs, keys, gradients,
old-key loading, initialisation, freezing, resnet_fpn_backbone('resnet50')'s keys and
parameter count (torchvision's 26,799,296 with frozen batch norm), and bad input."""
import collections
import importlib

import numpy as np
import pytest

import minicnn as mc
from minicnn import nn
from minicnn.models import _utils
from minicnn.models.detection import backbone_utils
from minicnn.ops import misc
from minicnn.ops import FeaturePyramidNetwork, FrozenBatchNorm2d, LastLevelMaxPool
from minicnn.ops import LastLevelP6P7

from model_twin import cheap_init, copy_weights, count, ops_twin, torch_twin

fpn_module = importlib.import_module("minicnn.ops.feature_pyramid_network")
resnet_module = importlib.import_module("minicnn.models.resnet")


def twins(torch):
    """The torch twins of misc.py, feature_pyramid_network.py and backbone_utils.py, the
    last wired to the twins of the first two, of resnet.py and of _utils.py."""
    t_misc = ops_twin(misc, torch, ones=torch.ones, zeros=torch.zeros)
    t_fpn = ops_twin(fpn_module, torch, Conv2dNormActivation=t_misc.Conv2dNormActivation)
    t_bu = torch_twin(backbone_utils, torch)
    t_bu.BackboneWithFPN.__init__.__globals__.update(
        resnet=torch_twin(resnet_module, torch),
        IntermediateLayerGetter=torch_twin(_utils, torch).IntermediateLayerGetter,
        FeaturePyramidNetwork=t_fpn.FeaturePyramidNetwork,
        LastLevelMaxPool=t_fpn.LastLevelMaxPool, ExtraFPNBlock=t_fpn.ExtraFPNBlock,
        FrozenBatchNorm2d=t_misc.FrozenBatchNorm2d)
    return t_misc, t_fpn, t_bu


def _randomize(tm, torch, seed=0):
    """Biases start at 0 and frozen-BN buffers at 1/0: give everything values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tm.named_parameters():
            if p.ndim == 1:
                p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) - 0.5)
        for name, b in tm.named_buffers():
            if b.is_floating_point():
                low = 0.5 if name.endswith(("running_var", "weight")) else -0.5
                b.copy_(torch.rand(b.shape, generator=g, dtype=b.dtype) + low)
    return tm


def _maps(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return collections.OrderedDict((name, rng.standard_normal(shape))
                                   for name, shape in shapes)


# ------------------------------------------------------------------------------ the FPN

SHAPES = [("feat0", (2, 3, 16, 20)), ("feat1", (2, 5, 8, 10)), ("feat3", (2, 7, 3, 5))]


def _fpn_pair(torch, extra="maxpool"):
    _, t_fpn, _ = twins(torch)
    t_extra = {"maxpool": t_fpn.LastLevelMaxPool(), "p6p7": t_fpn.LastLevelP6P7(7, 4),
               None: None}[extra]
    m_extra = {"maxpool": LastLevelMaxPool(), "p6p7": LastLevelP6P7(7, 4), None: None}[extra]
    tm = _randomize(t_fpn.FeaturePyramidNetwork([3, 5, 7], 4, extra_blocks=t_extra).double(),
                     torch)
    mm = FeaturePyramidNetwork([3, 5, 7], 4, extra_blocks=m_extra).double()
    copy_weights(tm, mm)
    return tm, mm


@pytest.mark.parametrize("extra", ["maxpool", "p6p7", None])
def test_fpn_outputs_and_gradients_match_the_twin(torch, extra):
    tm, mm = _fpn_pair(torch, extra)
    x = _maps(SHAPES)
    tx = collections.OrderedDict((k, torch.from_numpy(v).requires_grad_(True))
                                 for k, v in x.items())
    mx = collections.OrderedDict((k, mc.tensor(v, requires_grad=True)) for k, v in x.items())
    ty, my = tm(tx), mm(mx)
    names = {"maxpool": ["feat0", "feat1", "feat3", "pool"], None: ["feat0", "feat1", "feat3"],
             "p6p7": ["feat0", "feat1", "feat3", "p6", "p7"]}[extra]
    assert list(ty) == list(my) == names
    rng = np.random.default_rng(5)
    tloss, mloss = 0, 0
    for k in names:
        assert tuple(my[k].shape) == tuple(ty[k].shape)
        assert my[k].shape[1] == 4
        np.testing.assert_allclose(my[k].numpy(), ty[k].detach().numpy(), rtol=1e-10,
                                   atol=1e-11, err_msg=k)
        g = rng.standard_normal(tuple(ty[k].shape))
        tloss = tloss + (ty[k] * torch.from_numpy(g)).sum()
        mloss = mloss + (my[k] * mc.tensor(g)).sum()
    if extra == "maxpool":   # 3x5 map subsampled by 2 (kernel 1): 2x3, rows/columns 0, 2
        assert tuple(my["pool"].shape) == (2, 4, 2, 3)
        np.testing.assert_array_equal(my["pool"].numpy(), my["feat3"].numpy()[..., ::2, ::2])
    tloss.backward()
    mloss.backward()
    for k in names[:3]:
        np.testing.assert_allclose(mx[k].grad.numpy(), tx[k].grad.numpy(), rtol=1e-9,
                                   atol=1e-10, err_msg=k)
    tparams = dict(tm.named_parameters())
    for name, p in mm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), rtol=1e-9,
                                   atol=1e-9, err_msg=name)


def test_fpn_keys_old_keys_and_initialisation():
    m = FeaturePyramidNetwork([3, 5, 7], 4, extra_blocks=LastLevelMaxPool())
    keys = list(m.state_dict())
    assert keys == [f"{block}.{i}.0.{kind}" for block in ("inner_blocks", "layer_blocks")
                    for i in range(3) for kind in ("weight", "bias")]
    # kaiming_uniform_(a=1): U(-b, b) with b = sqrt(6 / ((1 + a^2) fan_in)) = sqrt(3 / fan_in)
    for i, fan_in in enumerate([3, 5, 7]):
        w = m.inner_blocks[i][0].weight.numpy()
        assert np.abs(w).max() <= np.sqrt(3 / fan_in)
        assert not m.inner_blocks[i][0].bias.numpy().any()
    big = FeaturePyramidNetwork([256], 256)
    w = big.layer_blocks[0][0].weight.numpy()
    bound = np.sqrt(3 / (256 * 9))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.01 * bound
    # version-1 keys (a bare Conv2d per block) load as the new ones
    old = {k.replace(".0.weight", ".weight").replace(".0.bias", ".bias"): v.numpy() * 2
           for k, v in m.state_dict().items()}
    assert "inner_blocks.1.weight" in old
    fresh = FeaturePyramidNetwork([3, 5, 7], 4)
    fresh.load_state_dict(old)
    np.testing.assert_array_equal(fresh.layer_blocks[2][0].weight.numpy(),
                                  m.layer_blocks[2][0].weight.numpy() * 2)
    normed = FeaturePyramidNetwork([3, 5], 4, norm_layer=nn.BatchNorm2d)
    assert "inner_blocks.0.1.running_mean" in normed.state_dict()
    assert "inner_blocks.0.0.bias" not in normed.state_dict()


def test_fpn_bad_input():
    with pytest.raises(TypeError, match="FeaturePyramidNetwork: extra_blocks"):
        FeaturePyramidNetwork([3], 4, extra_blocks=nn.ReLU())
    with pytest.raises(ValueError, match="FeaturePyramidNetwork: in_channels=0"):
        FeaturePyramidNetwork([3, 0], 4)
    m = FeaturePyramidNetwork([3, 5], 4)
    with pytest.raises(ValueError, match="FeaturePyramidNetwork: expected an ordered dict of 2"):
        m(collections.OrderedDict(a=mc.zeros(1, 3, 4, 4)))
    with pytest.raises(NotImplementedError, match="ExtraFPNBlock"):
        FeaturePyramidNetwork([3], 4, extra_blocks=fpn_module.ExtraFPNBlock())(
            {"a": mc.zeros(1, 3, 4, 4)})


# ------------------------------------------------------------------------ the backbone

def test_resnet50_fpn_keys_and_count_are_torchvisions(torch):
    """Built on the meta device in torch and with cheap init here: identical keys and
    shapes; 26,799,296 parameters = ResNet-50 trunk without fc under frozen BN
    (25,557,032 - 2,049,000 fc - 53,120 BN affine) + FPN (984,064 + 2,360,320)."""
    t_misc, _, t_bu = twins(torch)
    with torch.device("meta"):
        tm = t_bu.resnet_fpn_backbone("resnet50", norm_layer=t_misc.FrozenBatchNorm2d)
    with cheap_init():
        mm = backbone_utils.resnet_fpn_backbone("resnet50")
    ts, ms = tm.state_dict(), mm.state_dict()
    assert list(ts) == list(ms)
    assert all(tuple(ts[k].shape) == tuple(ms[k].shape) for k in ts)
    assert "fpn.inner_blocks.0.0.weight" in ms and "fpn.layer_blocks.3.0.bias" in ms
    assert "body.layer4.2.bn3.running_var" in ms and "body.fc.weight" not in ms
    assert not any(k.endswith("num_batches_tracked") for k in ms)
    n = count(mm)
    assert n == sum(p.numel() for p in tm.parameters()) == 26_799_296
    inner = sum(c * 256 + 256 for c in (256, 512, 1024, 2048))
    layer = 4 * (256 * 256 * 9 + 256)
    assert (inner, layer) == (984_064, 2_360_320)
    assert n == 25_557_032 - 2_049_000 - 53_120 + inner + layer
    # trainable_layers=3: layer2..4 and the FPN train, conv1 and layer1 are frozen
    frozen = {k.split(".")[1] for k, p in mm.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "layer1"}
    assert [k for k, p in mm.named_parameters() if not p.requires_grad] == \
        [k for k, p in tm.named_parameters() if not p.requires_grad]


@pytest.mark.parametrize("trainable, returned", [(0, None), (3, [2, 4]), (5, [1, 2, 3])])
def test_small_resnet_fpn_matches_the_twin(torch, trainable, returned):
    """resnet18 + FPN on a 2x3x64x48 batch, float64: every level, freezing, names."""
    t_misc, _, t_bu = twins(torch)
    torch.manual_seed(0)
    tm = t_bu.resnet_fpn_backbone("resnet18", norm_layer=t_misc.FrozenBatchNorm2d,
                                  trainable_layers=trainable, returned_layers=returned)
    tm = _randomize(tm.double(), torch)
    mm = backbone_utils.resnet_fpn_backbone("resnet18", trainable_layers=trainable,
                                            returned_layers=returned).double()
    copy_weights(tm, mm)
    assert [k for k, p in mm.named_parameters() if p.requires_grad] == \
        [k for k, p in tm.named_parameters() if p.requires_grad]
    if trainable == 5:
        assert all(p.requires_grad for p in mm.body.parameters())
    if trainable == 0:
        assert not any(p.requires_grad for p in mm.body.parameters())
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 48))
    ty, my = tm(torch.from_numpy(x)), mm(mc.tensor(x))
    n = len(returned or [1, 2, 3, 4])
    assert list(my) == list(ty) == [str(i) for i in range(n)] + ["pool"]
    for k in ty:
        assert my[k].shape[1] == 256 == mm.out_channels
        np.testing.assert_allclose(my[k].numpy(), ty[k].detach().numpy(), rtol=1e-9,
                                   atol=1e-9 * max(1, float(ty[k].detach().abs().max())), err_msg=k)


def test_backbone_with_batchnorm_and_weights_mapping():
    """norm_layer=nn.BatchNorm2d keeps BN's keys; a classification state dict loads (its
    fc too, then dropped with the pool)."""
    with cheap_init():
        plain = resnet_module.resnet18()
        rng = np.random.default_rng(0)
        sd = {k: rng.random(v.shape) + 0.5 if v.dtype.kind == "f" else v.numpy()
              for k, v in plain.state_dict().items()}
        m = backbone_utils.resnet_fpn_backbone("resnet18", weights=sd)
        bn = backbone_utils.resnet_fpn_backbone("resnet18", norm_layer=nn.BatchNorm2d)
    np.testing.assert_array_equal(m.body.layer1[0].conv1.weight.numpy(),
                                  sd["layer1.0.conv1.weight"].astype(np.float32))
    np.testing.assert_array_equal(m.body.bn1.running_var.numpy(),
                                  sd["bn1.running_var"].astype(np.float32))
    assert isinstance(m.body.bn1, FrozenBatchNorm2d)
    assert "body.bn1.num_batches_tracked" in bn.state_dict()


def test_backbone_bad_input():
    with cheap_init():
        with pytest.raises(ValueError, match="trainable_layers must be an integer in"):
            backbone_utils.resnet_fpn_backbone("resnet18", trainable_layers=6)
        with pytest.raises(ValueError, match=r"returned layer must be in \[1, 4\]"):
            backbone_utils.resnet_fpn_backbone("resnet18", returned_layers=[0, 1])
        with pytest.raises(ValueError, match="backbone_name must name an ImageNet ResNet"):
            backbone_utils.resnet_fpn_backbone("vgg16")
        with pytest.raises(ValueError, match="backbone_name must name an ImageNet ResNet"):
            backbone_utils.resnet_fpn_backbone("resnet20")
