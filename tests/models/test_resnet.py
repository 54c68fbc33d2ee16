"""ResNet, ResNeXt, Wide ResNet and the CIFAR ResNets against their torch twins (the
same source run on torch.nn, see model_twin.py): state-dict layout, forward in eval
and training mode, parameter gradients, training, errors."""
import numpy as np
import pytest

import minicnn
from minicnn.models import resnet

from model_twin import (compare_backward, compare_forward, count, pair, same_layout,
                        train_steps)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101",
                                  "resnet152", "resnext50_32x4d", "resnext101_32x8d",
                                  "resnext101_64x4d", "wide_resnet50_2",
                                  "wide_resnet101_2"])
def test_layout_matches_torch_twin(torch, name):
    # keys and shapes against the torch twin (the same source on torch.nn), not against
    # torchvision itself; the parameter counts are checked against torchvision's
    # published figures in tests/utils/test_summary.py
    same_layout(resnet, torch, name)


@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet56", "resnet110"])
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_cifar_layout_matches_twin(torch, name, shortcut):
    same_layout(resnet, torch, name, shortcut=shortcut)


def test_cifar_resnet_parameter_counts():
    # the paper's table 6: 0.27 M, 0.46 M, 0.66 M, 0.85 M, 1.7 M with option A shortcuts
    got = {d: count(getattr(resnet, f"resnet{d}")()) for d in (20, 32, 44, 56, 110)}
    assert got == {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
    # option B adds two 1x1 projections with their BN: 16*32 + 64 and 32*64 + 128
    assert count(resnet.resnet20(shortcut="B")) - got[20] == 16 * 32 + 64 + 32 * 64 + 128


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_resnet18_forward_matches_torch(torch, dtype):
    tm, mm = pair(resnet, torch, "resnet18", num_classes=7, dtype=dtype)
    compare_forward(tm, mm, torch, (2, 3, 32, 32), dtype)
    if dtype == np.float64:
        compare_forward(tm, mm, torch, (2, 3, 32, 32), dtype, train=True)


@pytest.mark.slow
@pytest.mark.parametrize("kwargs", [
    dict(block="BasicBlock", layers=[1, 1, 1, 1], in_channels=1),
    dict(block="Bottleneck", layers=[1, 1, 1, 1], groups=4, width_per_group=8),  # ResNeXt
    dict(block="Bottleneck", layers=[1, 1, 1, 1], width_per_group=128),          # Wide
    dict(block="Bottleneck", layers=[1, 1, 1, 1], zero_init_residual=True,
         replace_stride_with_dilation=[False, True, True]),
])
def test_reduced_resnets_match_torch(torch, kwargs):
    kwargs = dict(kwargs)
    block = getattr(resnet, kwargs.pop("block"))
    twin_block = block.__name__
    channels = kwargs.get("in_channels", 3)
    tm, mm = _pair_with_block(torch, twin_block, num_classes=4, **kwargs)
    # non-square input, not a multiple of 32
    compare_forward(tm, mm, torch, (2, channels, 36, 44), np.float64)
    compare_forward(tm, mm, torch, (2, channels, 36, 44), np.float64, train=True)


def _pair_with_block(torch, block_name, **kwargs):
    from model_twin import copy_weights, randomize_, torch_twin
    twin = torch_twin(resnet, torch)
    tm = randomize_(twin.ResNet(getattr(twin, block_name), **kwargs), torch).double()
    mm = resnet.ResNet(getattr(resnet, block_name), **kwargs).double()
    copy_weights(tm, mm)
    return tm, mm


def test_zero_init_residual_zeroes_last_bn():
    model = resnet.ResNet(resnet.Bottleneck, [1, 1, 1, 1], zero_init_residual=True)
    assert np.all(model.layer1[0].bn3.weight.numpy() == 0)
    assert np.all(model.layer1[0].bn1.weight.numpy() == 1)


@pytest.mark.slow
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_cifar_resnet_matches_torch(torch, shortcut):
    tm, mm = pair(resnet, torch, "resnet20", shortcut=shortcut)
    compare_forward(tm, mm, torch, (2, 3, 32, 32), np.float64)
    compare_forward(tm, mm, torch, (2, 3, 32, 32), np.float64, train=True)
    compare_forward(tm.float(), mm.float(), torch, (1, 3, 16, 24), np.float32)


def test_zero_pad_shortcut():
    x = minicnn.tensor(np.arange(2 * 3 * 5 * 5, dtype=np.float64).reshape(2, 3, 5, 5))
    y = resnet.ZeroPadShortcut(3, 8, 2)(x).numpy()
    assert y.shape == (2, 8, 3, 3)                       # ceil(5 / 2) = 3
    np.testing.assert_array_equal(y[:, :3], x.numpy()[:, :, ::2, ::2])
    assert not y[:, 3:].any()
    with pytest.raises(ValueError, match="out_planes"):
        resnet.ZeroPadShortcut(8, 4, 2)


@pytest.mark.slow
def test_basic_resnet_backward_matches_torch(torch):
    from model_twin import copy_weights, randomize_, torch_twin
    twin = torch_twin(resnet, torch)
    tm = randomize_(twin.ResNet(twin.BasicBlock, [1, 1, 1, 1], num_classes=3), torch).double()
    mm = resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], num_classes=3).double()
    copy_weights(tm, mm)
    compare_backward(tm, mm, torch, (2, 3, 32, 32))


@pytest.mark.slow
def test_resnext_bottleneck_backward_matches_torch(torch):
    tm, mm = _pair_with_block(torch, "Bottleneck", layers=[1, 1, 1, 1], groups=4,
                              width_per_group=4, num_classes=3)
    compare_backward(tm, mm, torch, (2, 3, 32, 32))


@pytest.mark.slow
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_cifar_resnet_backward_matches_torch(torch, shortcut):
    tm, mm = pair(resnet, torch, "resnet20", num_classes=4, shortcut=shortcut)
    compare_backward(tm, mm, torch, (2, 3, 16, 16))


@pytest.mark.slow
def test_resnet_trains():
    minicnn.manual_seed(0)
    model = resnet.resnet20(num_classes=3)
    losses = train_steps(model, (8, 3, 16, 16), 3, steps=5, lr=0.05)
    assert losses[-1] < 0.8 * losses[0], losses


def test_errors():
    with pytest.raises(ValueError, match="shortcut"):
        resnet.resnet20(shortcut="C")
    with pytest.raises(ValueError, match="6n\\+2"):
        resnet._cifar_resnet(21)
    with pytest.raises(ValueError, match="BasicBlock only supports"):
        resnet.ResNet(resnet.BasicBlock, [1, 1, 1, 1], groups=2)
    with pytest.raises(ValueError, match="replace_stride_with_dilation"):
        resnet.resnet18(replace_stride_with_dilation=[True])
