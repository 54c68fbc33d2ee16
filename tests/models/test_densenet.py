"""DenseNet-BC against torch twins of the same source, with torchvision's key names."""
import numpy as np
import pytest

import minicnn
from minicnn.models import densenet as D

from model_twin import (compare_backward, compare_forward, count, pair, same_layout,
                        train_steps)

SMALL = dict(growth_rate=6, block_config=(2, 3, 2, 2), num_init_features=10, bn_size=2)


@pytest.mark.parametrize("name", ["densenet121", "densenet161", "densenet169",
                                  "densenet201"])
def test_layout_matches_torch_twin(torch, name):
    # keys and shapes against the same source built on torch.nn (model_twin.py);
    # torchvision's key names are spelled out in test_key_names
    same_layout(D, torch, name)


def test_key_names():
    keys = list(D.densenet121().state_dict())
    for key in ("features.conv0.weight", "features.norm0.running_var",
                "features.denseblock1.denselayer1.norm1.weight",
                "features.denseblock1.denselayer1.conv2.weight",
                "features.transition1.conv.weight",
                "features.denseblock4.denselayer16.norm2.bias",
                "features.norm5.num_batches_tracked", "classifier.bias"):
        assert key in keys, key
    assert "features.transition4.conv.weight" not in keys


def test_channel_bookkeeping():
    model = D.DenseNet(**SMALL, num_classes=3)
    x = minicnn.zeros(1, 3, 32, 32)
    x = model.features[:4](x)                   # stem: (1, 10, 8, 8)
    assert x.shape == (1, 10, 8, 8)
    x = model.features.denseblock1(x)           # + 2 layers x growth 6
    assert x.shape == (1, 22, 8, 8)
    x = model.features.transition1(x)           # compression 0.5, half the size
    assert x.shape == (1, 11, 4, 4)
    assert model.classifier.in_features == ((11 + 18) // 2 + 12) // 2 + 12


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_matches_torch(torch, dtype):
    tm, mm = pair(D, torch, "DenseNet", **SMALL, num_classes=4, in_channels=2, dtype=dtype)
    compare_forward(tm, mm, torch, (2, 2, 36, 32), dtype)
    if dtype == np.float64:
        compare_forward(tm, mm, torch, (2, 2, 36, 32), dtype, train=True)


@pytest.mark.slow
def test_densenet121_forward_matches_torch(torch):
    tm, mm = pair(D, torch, "densenet121", num_classes=5)
    compare_forward(tm, mm, torch, (1, 3, 32, 32), np.float64)


def test_drop_rate(torch):
    tm, mm = pair(D, torch, "DenseNet", **SMALL, drop_rate=0.5, num_classes=3)
    compare_forward(tm, mm, torch, (2, 3, 32, 32), np.float64)       # eval: no dropout
    mm.train()
    x = minicnn.ones(2, 3, 32, 32, dtype=np.float64)
    assert not np.allclose(mm(x).numpy(), mm(x).numpy())              # train: random


@pytest.mark.slow
def test_backward_matches_torch(torch):
    tm, mm = pair(D, torch, "DenseNet", **SMALL, num_classes=3)
    compare_backward(tm, mm, torch, (2, 3, 32, 32))


@pytest.mark.slow
def test_densenet_trains():
    minicnn.manual_seed(0)
    model = D.DenseNet(**SMALL, num_classes=3)
    losses = train_steps(model, (8, 3, 32, 32), 3, steps=5, lr=0.05)
    assert losses[-1] < 0.8 * losses[0], losses


def test_parameter_count_formula():
    # stem conv + BN, then per dense layer: BN(c) + 1x1 (c -> 4k... here bn_size*k) + BN + 3x3
    k, b = 6, 2
    n = 3 * 10 * 49 + 2 * 10
    c = 10
    for i, layers in enumerate(SMALL["block_config"]):
        for _ in range(layers):
            n += 2 * c + c * b * k + 2 * b * k + b * k * k * 9
            c += k
        if i < 3:
            n += 2 * c + c * (c // 2)
            c //= 2
    n += 2 * c + c * 3 + 3
    assert count(D.DenseNet(**SMALL, num_classes=3)) == n
