"""GoogLeNet (torchvision's and the paper's) against torch twins of the same source."""
import importlib

import numpy as np
import pytest

import minicnn
from minicnn import nn

from model_twin import (compare_backward, compare_forward, count, pair, same_layout,
                        train_steps)

G = importlib.import_module("minicnn.models.googlenet")  # models.googlenet is the builder


def test_layout_matches_torch_twin(torch):
    # keys and shapes against the torch twin (the same source on torch.nn); without the
    # auxiliary heads the count is torchvision's published figure for its googlenet
    assert same_layout(G, torch, "googlenet", aux_logits=False) == 6_624_904
    assert same_layout(G, torch, "googlenet") == 13_004_888     # with aux1, aux2


def test_inception_module():
    block = G.Inception(192, 64, 96, 128, 16, 32, 32)
    x = minicnn.zeros(2, 192, 9, 7)
    assert block(x).shape == (2, 64 + 128 + 32 + 32, 9, 7)
    # torchvision's "5x5" branch is a 3x3; the paper's is a real 5x5
    assert block.branch3[1].conv.kernel_size == (3, 3)
    paper = G.Inception(192, 64, 96, 128, 16, 32, 32, conv_block=G.ConvReLU,
                        branch3_kernel_size=5)
    assert paper.branch3[1].conv.kernel_size == (5, 5)
    assert paper(x).shape == (2, 256, 9, 7)
    bn = G.BasicConv2d(3, 4, kernel_size=1).bn
    assert bn.eps == 0.001


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_googlenet_forward_matches_torch(torch, dtype):
    tm, mm = pair(G, torch, "googlenet", num_classes=5, dtype=dtype,
                  twin_kwargs=dict(init_weights=False))
    ty, my = compare_forward(tm, mm, torch, (2, 3, 40, 40), dtype)
    assert len(my) == 1                              # eval: logits only
    if dtype == np.float64:
        ty, my = compare_forward(tm, mm, torch, (2, 3, 40, 40), dtype, train=True)
        out = mm(minicnn.zeros(2, 3, 40, 40, dtype=dtype))
        assert isinstance(out, G.GoogLeNetOutputs) and out._fields == \
            ("logits", "aux_logits2", "aux_logits1")
        assert all(o.shape == (2, 5) for o in out)


@pytest.mark.slow
def test_googlenet_without_aux_and_transform_input(torch):
    tm, mm = pair(G, torch, "googlenet", num_classes=3, aux_logits=False,
                  transform_input=True, twin_kwargs=dict(init_weights=False))
    assert mm.aux1 is None and mm.aux2 is None
    compare_forward(tm, mm, torch, (1, 3, 32, 44), np.float64)
    compare_forward(tm, mm, torch, (2, 3, 32, 32), np.float64, train=True)
    mm.train()
    assert isinstance(mm(minicnn.zeros(2, 3, 32, 32, dtype=np.float64)), minicnn.Tensor)


@pytest.mark.slow
def test_paper_form_matches_torch(torch):
    tm, mm = pair(G, torch, "googlenet_paper", num_classes=4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in mm.modules())
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in mm.modules()) == 2
    compare_forward(tm, mm, torch, (1, 3, 48, 48), np.float64)
    compare_forward(tm, mm, torch, (2, 3, 48, 48), np.float64, train=True)


def test_paper_parameter_count(torch):
    # real 5x5 branches and conv biases instead of BN: 7.0 M without the aux heads
    n = same_layout(G, torch, "googlenet_paper", aux_logits=False)
    assert n == 6_998_552


@pytest.mark.slow
def test_backward_matches_torch(torch):
    # aux heads included: their gradients flow back into inception4a-4d
    tm, mm = pair(G, torch, "googlenet", num_classes=3, twin_kwargs=dict(init_weights=False))
    compare_backward(tm, mm, torch, (2, 3, 32, 32))


@pytest.mark.slow
def test_googlenet_trains():
    minicnn.manual_seed(0)
    model = G.googlenet(num_classes=3, dropout=0.0, dropout_aux=0.0)
    losses = train_steps(model, (4, 3, 32, 32), 3, steps=4, lr=1e-3, adam=True)
    assert losses[-1] < 0.8 * losses[0], losses


def test_errors():
    with pytest.raises(ValueError, match="blocks"):
        G.GoogLeNet(blocks=[G.BasicConv2d])
    with pytest.raises(ValueError, match="transform_input"):
        G.googlenet(transform_input=True, in_channels=1)
    assert count(G.googlenet(aux_logits=False, num_classes=10, in_channels=1)) == \
        6_624_904 - 1000 * 1025 + 10 * 1025 - 2 * 64 * 49
