"""AlexNet (torchvision's and the 2012 paper's) against torch twins of the same source."""
import importlib

import numpy as np
import pytest

import minicnn
from minicnn import nn

# NOTE: minicnn.models.alexnet is the builder function (as in torchvision); the module
# is reached through importlib
A = importlib.import_module("minicnn.models.alexnet")

from model_twin import (compare_backward, compare_forward, count, pair, same_layout,
                        train_steps)


def test_layout_matches_torch_twin(torch):
    # keys and shapes against the torch twin (the same source on torch.nn); the count is
    # torchvision's published figure for its alexnet
    assert same_layout(A, torch, "alexnet") == 61_100_840


@pytest.mark.slow
def test_paper_form_structure(torch):
    # 96-256-384-384-256 filters, FC 4096-4096-1000: the paper's 60,965,224 weights
    assert same_layout(A, torch, "alexnet_paper") == 60_965_224
    model = A.alexnet_paper(hidden_features=8)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    # the two GPU towers: layers 2, 4, 5 only see their own tower's half of the channels
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    lrns = [m for m in model.features if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrns) == 2
    for lrn in lrns:
        assert (lrn.size, lrn.alpha, lrn.beta, lrn.k, lrn.alpha_scaling) == \
            (5, 1e-4, 0.75, 2.0, "paper")
    # dropout follows fc6 and fc7
    kinds = [type(m).__name__ for m in model.classifier]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    # the paper's bias init: 1 in conv2, conv4, conv5, fc6, fc7, else 0
    biases = [float(m.bias.numpy()[0]) for m in model.modules()
              if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert biases == [0, 1, 0, 1, 1, 1, 1, 0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 70, 95)])
def test_alexnet_forward_matches_torch(torch, dtype, shape):
    tm, mm = pair(A, torch, "alexnet", num_classes=6, hidden_features=32, dtype=dtype)
    compare_forward(tm, mm, torch, shape, dtype)


def test_alexnet_in_channels(torch):
    tm, mm = pair(A, torch, "alexnet", num_classes=3, hidden_features=16, in_channels=1)
    compare_forward(tm, mm, torch, (2, 1, 64, 64), np.float64)


@pytest.mark.parametrize("scaling", ["paper", "torch"])
def test_paper_forward_matches_torch(torch, scaling):
    tm, mm = pair(A, torch, "alexnet_paper", num_classes=5, hidden_features=32,
                  lrn_alpha_scaling=scaling)
    compare_forward(tm, mm, torch, (2, 3, 67, 67), np.float64)
    compare_forward(tm, mm, torch, (2, 3, 67, 67), np.float64, train=True)


def test_paper_lrn_switch_changes_the_output():
    minicnn.manual_seed(0)
    paper = A.alexnet_paper(hidden_features=8).double().eval()
    minicnn.manual_seed(0)
    weak = A.alexnet_paper(hidden_features=8, lrn_alpha_scaling="torch").double().eval()
    x = minicnn.tensor(np.random.default_rng(0).standard_normal((1, 3, 67, 67)) * 50)
    # the same weights, a normalisation five times stronger in the paper's convention
    lrn_p, lrn_t = paper.features[:3](x).numpy(), weak.features[:3](x).numpy()
    assert np.all(np.abs(lrn_p) <= np.abs(lrn_t) + 1e-12)
    assert not np.allclose(lrn_p, lrn_t)


def test_paper_pooling_rounding(torch):
    # at 71x71: conv1 gives 16x16, and 3x3/2 pooling of 16 gives 7 (floor) or 8 (ceil)
    for ceil_mode, size in ((False, 7), (True, 8)):
        tm, mm = pair(A, torch, "alexnet_paper", hidden_features=8, num_classes=3,
                      ceil_mode=ceil_mode)
        assert mm.features[:4](minicnn.zeros(1, 3, 71, 71, dtype=np.float64)).shape[-1] == size
        compare_forward(tm, mm, torch, (1, 3, 71, 71), np.float64)


@pytest.mark.slow
def test_paper_backward_matches_torch(torch):
    tm, mm = pair(A, torch, "alexnet_paper", num_classes=4, hidden_features=16)
    compare_backward(tm, mm, torch, (2, 3, 67, 67))


@pytest.mark.slow
def test_alexnet_trains():
    minicnn.manual_seed(0)
    model = A.alexnet(num_classes=3, hidden_features=32)
    # 10 steps: from the Philox generator's seed-0 weights the loss falls by 15% in 5
    # steps and by 70% in 10 (measured)
    losses = train_steps(model, (4, 3, 64, 64), 3, steps=10, lr=1e-3, adam=True)
    assert losses[-1] < 0.8 * losses[0], losses


def test_errors():
    with pytest.raises(ValueError, match="lrn_alpha_scaling"):
        A.alexnet_paper(lrn_alpha_scaling="caffe")
    with pytest.raises(Exception, match="[Ii]nput|small|size"):
        A.alexnet(hidden_features=8).eval()(minicnn.zeros(1, 3, 40, 40))
    assert count(A.alexnet(num_classes=10, hidden_features=8)) == \
        2_469_696 + 9216 * 8 + 8 + 8 * 8 + 8 + 8 * 10 + 10
