"""VGG (configurations A, A-LRN, B, C, D, E, with and without BN) against torch twins."""
import importlib

import numpy as np
import pytest

import minicnn
from minicnn import nn

from model_twin import (compare_backward, compare_forward, count, pair, same_layout,
                        train_steps)

V = importlib.import_module("minicnn.models.vgg")   # minicnn.models.vgg is the builder

SMALL = [8, "M", 16, "M", 16, 16, "M", 32, (32, 1), "M", 32, "M"]   # every kind of entry


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16",
                                  "vgg16_bn", "vgg19", "vgg19_bn"])
def test_layout_matches_torch_twin(torch, name):
    # state-dict keys and shapes against the same source built on torch.nn (model_twin.py)
    same_layout(V, torch, name)


def test_configurations_follow_the_paper():
    def weight_layers(cfg):
        return sum(1 for v in V.cfgs[cfg] if v not in ("M", "LRN")) + 3
    assert [weight_layers(c) for c in "ABCDE"] == [11, 13, 16, 16, 19]
    with_c = V.vgg16_c(num_classes=10, hidden_features=8)
    kernels = [m.kernel_size for m in with_c.features if isinstance(m, nn.Conv2d)]
    assert kernels.count((1, 1)) == 3 and kernels.count((3, 3)) == 10
    lrn = V.vgg11_lrn(hidden_features=8).features[2]
    assert isinstance(lrn, nn.LocalResponseNorm) and lrn.alpha_scaling == "paper"
    bn = V.vgg11_bn(hidden_features=8).features
    assert [type(m).__name__ for m in bn[:4]] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vgg11_bn_forward_matches_torch(torch, dtype):
    tm, mm = pair(V, torch, "vgg11_bn", num_classes=5, hidden_features=16, dtype=dtype)
    compare_forward(tm, mm, torch, (2, 3, 32, 32), dtype)
    if dtype == np.float64:
        compare_forward(tm, mm, torch, (2, 3, 32, 32), dtype, train=True)


@pytest.mark.parametrize("name", ["vgg11_lrn", "vgg16_c"])
def test_other_configurations_match_torch(torch, name):
    tm, mm = pair(V, torch, name, num_classes=4, hidden_features=8)
    compare_forward(tm, mm, torch, (1, 3, 32, 48), np.float64)   # not square


@pytest.mark.parametrize("batch_norm", [False, True])
def test_custom_configuration_matches_torch(torch, batch_norm):
    tm, mm = pair(V, torch, "vgg", SMALL, batch_norm, in_channels=1, num_classes=3,
                  hidden_features=12)
    assert mm.classifier[0].in_features == 32 * 7 * 7       # channels taken from SMALL
    compare_forward(tm, mm, torch, (2, 1, 40, 36), np.float64)
    compare_forward(tm, mm, torch, (2, 1, 40, 36), np.float64, train=True)
    compare_forward(tm.float(), mm.float(), torch, (2, 1, 32, 32), np.float32)


@pytest.mark.slow
def test_backward_matches_torch(torch):
    tm, mm = pair(V, torch, "vgg", SMALL, True, num_classes=3, hidden_features=12)
    compare_backward(tm, mm, torch, (2, 3, 32, 32))


@pytest.mark.slow
def test_vgg_trains():
    minicnn.manual_seed(0)
    model = V.vgg(SMALL, batch_norm=True, num_classes=3, hidden_features=16, dropout=0.0)
    losses = train_steps(model, (8, 3, 32, 32), 3, steps=5, lr=3e-3, adam=True)
    assert losses[-1] < 0.95 * losses[0], losses


def test_counts_and_errors():
    # conv weights + biases of SMALL, then 32*49 -> 12 -> 12 -> 3
    convs = (3 * 8 * 9 + 8) + (8 * 16 * 9 + 16) + (16 * 16 * 9 + 16) * 2 + \
        (16 * 32 * 9 + 32) + (32 * 32 + 32) + (32 * 32 * 9 + 32)
    head = (32 * 49 * 12 + 12) + (12 * 12 + 12) + (12 * 3 + 3)
    assert count(V.vgg(SMALL, num_classes=3, hidden_features=12)) == convs + head
    with pytest.raises(ValueError, match="unknown configuration 'F'"):
        V.vgg("F")
    with pytest.raises(Exception, match="channel"):
        V.vgg11(hidden_features=8)(minicnn.zeros(1, 1, 32, 32))
