"""minicnn.summary and `minicnn summary`: totals against the published figures, the
counting rules on small hand-checked models, shapes-only mode against the real forward,
and the command line."""

import numpy as np
import pytest

import minicnn
from minicnn import models, nn
from minicnn.utils import summary as S

from model_twin import cheap_init

# torchvision's published figures: parameters and GFLOPS (= giga multiply-adds of the
# conv and linear layers at 224x224, rounded to two decimals)
PUBLISHED = {
    "alexnet": (61_100_840, 0.71), "vgg11": (132_863_336, 7.61),
    "vgg11_bn": (132_868_840, 7.61), "vgg13": (133_047_848, 11.31),
    "vgg13_bn": (133_053_736, 11.31), "vgg16": (138_357_544, 15.47),
    "vgg16_bn": (138_365_992, 15.47), "vgg19": (143_667_240, 19.63),
    "vgg19_bn": (143_678_248, 19.63), "resnet18": (11_689_512, 1.81),
    "resnet34": (21_797_672, 3.66), "resnet50": (25_557_032, 4.09),
    "resnet101": (44_549_160, 7.80), "resnet152": (60_192_808, 11.51),
    "resnext50_32x4d": (25_028_904, 4.23), "resnext101_32x8d": (88_791_336, 16.41),
    "resnext101_64x4d": (83_455_272, 15.46), "wide_resnet50_2": (68_883_240, 11.40),
    "wide_resnet101_2": (126_886_696, 22.75), "densenet121": (7_978_856, 2.83),
    "densenet161": (28_681_000, 7.73), "densenet169": (14_149_480, 3.36),
    "densenet201": (20_013_928, 4.29), "googlenet": (6_624_904, 1.50),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_figures(name):
    params, gmacs = PUBLISHED[name]
    kwargs = {"aux_logits": False} if name == "googlenet" else {}
    # Shapes are all that is counted, so skip the random initialisation (cheap_init) and
    # the conv/linear arithmetic (shapes_only; checked against real forwards below).
    with cheap_init():
        model = getattr(models, name)(**kwargs)
    result = minicnn.summary(model, (3, 224, 224), shapes_only=True, verbose=False)
    assert result.total_params == params == S.count_parameters(model)
    assert round(result.total_macs / 1e9, 2) == gmacs
    assert result.rows[-1].output_shape == (1, 1000)


def test_counting_rules_by_hand():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),              # 8*32*32 outputs x 3*9 MACs
        nn.ReLU(),
        nn.Conv2d(8, 12, 3, stride=2, groups=4),    # 12*15*15 outputs x (8/4)*9 MACs
        nn.BatchNorm2d(12),
        nn.ConvTranspose2d(12, 6, 2, stride=2, groups=3),  # 12*15*15 inputs x (6/3)*4
        nn.Flatten(),
        nn.Linear(6 * 30 * 30, 10),
    )
    result = minicnn.summary(model, (3, 32, 32), batch_size=2, verbose=False)
    macs = [r.macs for r in result.rows]
    assert macs == [2 * 8 * 32 * 32 * 27, 0, 2 * 12 * 15 * 15 * 18, 0,
                    2 * 12 * 15 * 15 * 8, 0, 2 * 5400 * 10]
    assert result.total_macs == sum(macs)
    assert [r.params for r in result.rows] == [8 * 27 + 8, 0, 12 * 18 + 12, 24,
                                               12 * 2 * 4 + 6, 0, 5400 * 10 + 10]
    assert [r.output_shape for r in result.rows] == [
        (2, 8, 32, 32), (2, 8, 32, 32), (2, 12, 15, 15), (2, 12, 15, 15), (2, 6, 30, 30),
        (2, 5400), (2, 10)]
    assert result.rows[0].activation_bytes == 2 * 8 * 32 * 32 * 4
    assert result.activation_bytes == sum(r.activation_bytes for r in result.rows)
    assert result.input_bytes == 2 * 3 * 32 * 32 * 4
    assert result.param_bytes == 4 * result.total_params


def test_frozen_parameters_and_text():
    model = models.resnet20(num_classes=10)
    for p in model.layer1.parameters():
        p.requires_grad = False
    result = minicnn.summary(model, (3, 32, 32), verbose=False)
    frozen = sum(p.numel() for p in model.layer1.parameters())
    assert result.trainable_params == result.total_params - frozen
    text = str(result)
    assert "Total params: 269,722" in text
    assert f"Non-trainable params: {frozen:,}" in text
    assert "layer1.0" in text and "BasicBlock" in text and "[1, 64, 8, 8]" in text
    # stem, 6 convs 16->16 at 32x32, the stride-2 conv and 5 convs of each next stage, fc
    macs = (16 * 27 * 1024 + 6 * 16 * 144 * 1024 + 32 * 144 * 256 + 5 * 32 * 288 * 256
            + 64 * 288 * 64 + 5 * 64 * 576 * 64 + 64 * 10)
    assert result.total_macs == macs == 40_551_040
    assert "Total mult-adds: 40,551,040 (40.55 M" in text


def test_depth_folding_and_repeated_calls():
    model = models.resnet20(num_classes=10)
    deep = minicnn.summary(model, (3, 32, 32), depth=9, verbose=False)
    shallow = minicnn.summary(model, (3, 32, 32), depth=1, verbose=False)
    assert max(r.depth for r in shallow.rows) == 1
    assert shallow.total_macs == deep.total_macs
    by_name = {r.name: r for r in shallow.rows}
    for stage in ("layer1", "layer2", "layer3"):
        inside = [r for r in deep.rows if r.name.startswith(stage + ".") and r.is_leaf]
        assert by_name[stage].macs == sum(r.macs for r in inside)
    # BasicBlock applies its ReLU twice: two rows, the parameters counted on the first
    relu_rows = [r for r in deep.rows if r.name == "layer1.0.relu"]
    assert len(relu_rows) == 2 and relu_rows[1].params is None


def test_mode_and_state_are_restored():
    model = models.googlenet(num_classes=5)
    model.train()
    bn = model.conv1.bn
    before = bn.running_mean.numpy().copy(), int(bn.num_batches_tracked.item())
    minicnn.manual_seed(7)
    expected = minicnn.rand(3).numpy()
    minicnn.manual_seed(7)
    eval_summary = minicnn.summary(model, (3, 64, 64), verbose=False)
    train_summary = minicnn.summary(model, (3, 64, 64), mode="train", verbose=False)
    np.testing.assert_array_equal(minicnn.rand(3).numpy(), expected)   # RNG untouched
    assert model.training and model.conv1.bn.training
    np.testing.assert_array_equal(bn.running_mean.numpy(), before[0])
    assert int(bn.num_batches_tracked.item()) == before[1]
    # eval: aux classifiers do not run but their parameters are counted and named
    assert eval_summary.unused == ["aux1", "aux2"]
    assert "Not called in this forward" in str(eval_summary)
    assert train_summary.unused == []
    assert train_summary.total_macs > eval_summary.total_macs
    # 5 classes instead of 1000 in fc, aux1.fc2 and aux2.fc2 (1024 inputs + a bias each)
    with_aux = 13_004_888 - 3 * 995 * 1025
    assert eval_summary.total_params == train_summary.total_params == with_aux


def _family_models():
    return [
        ("alexnet", lambda: models.alexnet(hidden_features=16), (3, 64, 64)),
        ("alexnet_paper", lambda: models.alexnet_paper(hidden_features=16), (3, 67, 67)),
        ("vgg", lambda: models.vgg([8, "M", 16, (16, 1), "M", 16, "M", 16, "M", 16, "M"],
                                   True, hidden_features=8), (3, 32, 40)),
        ("nin_cifar", models.nin_cifar, (3, 32, 32)),
        ("googlenet", lambda: models.googlenet(num_classes=10), (3, 32, 32)),
        ("googlenet_paper", lambda: models.googlenet_paper(num_classes=10), (3, 32, 32)),
        ("resnet", lambda: models.ResNet(models.Bottleneck, [1, 1, 1, 1], groups=2,
                                         width_per_group=32, num_classes=10), (3, 32, 32)),
        ("resnet20", models.resnet20, (3, 32, 32)),
        ("densenet", lambda: models.DenseNet(8, (2, 2, 2, 2), 16, num_classes=10),
         (3, 32, 32)),
        ("transfer", lambda: models.alexnet_residual_transfer(
            models.alexnet(hidden_features=8), 5, channels=(16, 32)), (3, 64, 64)),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name,build,size", _family_models(),
                         ids=[name for name, _, _ in _family_models()])
def test_shapes_only_equals_real_forward(name, build, size):
    model = build()
    for mode in ("eval", "train"):
        real = minicnn.summary(model, size, batch_size=2, depth=99, mode=mode, verbose=False)
        fast = minicnn.summary(model, size, batch_size=2, depth=99, mode=mode,
                               shapes_only=True, verbose=False)
        assert real.rows == fast.rows
        assert (real.total_macs, real.activation_bytes) == (fast.total_macs,
                                                            fast.activation_bytes)
    # the patched forwards are gone again
    assert not any("forward" in vars(m) for m in model.modules())


def test_errors():
    model = models.resnet20()
    with pytest.raises(ValueError, match="exactly one of input_size"):
        minicnn.summary(model, verbose=False)
    with pytest.raises(ValueError, match="mode"):
        minicnn.summary(model, (3, 32, 32), mode="test", verbose=False)
    with pytest.raises(TypeError, match="nn.Module"):
        minicnn.summary(lambda x: x, (3, 32, 32), verbose=False)
    with pytest.raises(TypeError, match="without the batch"):
        minicnn.summary(model, "3x32x32", verbose=False)
    with pytest.raises(Exception, match="channel"):
        minicnn.summary(model, (1, 32, 32), verbose=False)
    with pytest.raises(Exception, match="channel"):
        minicnn.summary(model, (1, 32, 32), shapes_only=True, verbose=False)
    # nothing stays hooked or patched after an error
    assert not any(m._forward_hooks or "forward" in vars(m) for m in model.modules())


def test_input_data_and_double():
    model = models.resnet20().double()
    x = minicnn.zeros(3, 3, 16, 16, dtype=np.float64)
    result = minicnn.summary(model, input_data=x, verbose=False)
    assert result.input_shapes == [(3, 3, 16, 16)]
    assert result.param_bytes == 8 * result.total_params
