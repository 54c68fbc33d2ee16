"""Inception v3 (torchvision's form) against a torch twin of the same source."""
import importlib

import numpy as np
import pytest

import minicnn
from minicnn import models, train
from minicnn.data import DataLoader, TensorDataset
from minicnn.nn import functional as F

from model_twin import compare_backward, compare_forward, pair, same_layout

I = importlib.import_module("minicnn.models.inception")


def test_layout_matches_torch_twin(torch):
    # keys and shapes against the torch twin; the counts are torchvision's
    assert same_layout(I, torch, "inception_v3") == 27_161_264
    assert same_layout(I, torch, "inception_v3", aux_logits=False) == 23_834_568


def test_torchvision_key_names():
    keys = list(models.inception_v3(num_classes=10, init_weights=False).state_dict())
    assert keys[:6] == ["Conv2d_1a_3x3.conv.weight", "Conv2d_1a_3x3.bn.weight",
                        "Conv2d_1a_3x3.bn.bias", "Conv2d_1a_3x3.bn.running_mean",
                        "Conv2d_1a_3x3.bn.running_var", "Conv2d_1a_3x3.bn.num_batches_tracked"]
    for key in ("Mixed_5b.branch5x5_2.conv.weight", "Mixed_6e.branch7x7dbl_5.bn.bias",
                "Mixed_7c.branch3x3dbl_3b.conv.weight", "AuxLogits.conv1.conv.weight",
                "AuxLogits.fc.weight", "fc.bias"):
        assert key in keys
    assert keys[-2:] == ["fc.weight", "fc.bias"]


def test_blocks_shapes():
    x = minicnn.zeros(1, 288, 9, 9)
    assert I.InceptionA(288, 64)(x).shape == (1, 288, 9, 9)
    assert I.InceptionB(288)(x).shape == (1, 768, 4, 4)
    assert I.InceptionC(768, 128)(minicnn.zeros(1, 768, 5, 5)).shape == (1, 768, 5, 5)
    assert I.InceptionD(768)(minicnn.zeros(1, 768, 5, 5)).shape == (1, 1280, 2, 2)
    assert I.InceptionE(1280)(minicnn.zeros(1, 1280, 2, 2)).shape == (1, 2048, 2, 2)
    assert I.BasicConv2d(3, 4, kernel_size=1).bn.eps == 0.001


def test_init_follows_torchvision():
    minicnn.manual_seed(0)
    model = models.inception_v3(num_classes=5)
    w = model.Mixed_5b.branch1x1.conv.weight.numpy()
    # N(0, 0.1) truncated at ±2 (torch's a, b are values, not standard deviations)
    assert 0.09 < w.std() < 0.11 and np.abs(w).max() <= 2
    assert model.AuxLogits.fc.weight.numpy().std() < 0.0012     # stddev 0.001
    assert (model.Mixed_7c.branch_pool.bn.weight.numpy() == 1).all()


@pytest.mark.slow
def test_forward_and_gradients_match_torch_at_75(torch):
    # 75x75, the smallest input: the 17x17 grid is 3x3. The auxiliary head needs the
    # full 17x17 grid (its 5x5/3 pool, then a 5x5 conv), i.e. 299x299 in training, so
    # it is left out here (eval mode never runs it) and checked on its own below
    tm, mm = pair(I, torch, "inception_v3", num_classes=6, aux_logits=False,
                  transform_input=True, twin_kwargs=dict(init_weights=False))
    compare_forward(tm, mm, torch, (2, 3, 75, 75), np.float64)
    compare_forward(tm, mm, torch, (2, 3, 75, 75), np.float64, train=True)
    compare_backward(tm, mm, torch, (2, 3, 75, 75))


def test_auxiliary_head_matches_torch(torch):
    tm, mm = pair(I, torch, "InceptionAux", 768, 6)
    compare_forward(tm, mm, torch, (2, 768, 17, 17), np.float64, train=True)
    compare_backward(tm, mm, torch, (2, 768, 17, 17))


@pytest.mark.slow
def test_forward_matches_torch_at_299(torch):
    tm, mm = pair(I, torch, "inception_v3", num_classes=4, aux_logits=False,
                  twin_kwargs=dict(init_weights=False), dtype=np.float32)
    compare_forward(tm, mm, torch, (1, 3, 299, 299), np.float32)


@pytest.mark.slow
def test_trains_with_its_auxiliary_loss_through_the_trainer():
    minicnn.manual_seed(0)
    model = models.inception_v3(num_classes=3)
    x, y = minicnn.randn(2, 3, 299, 299), minicnn.tensor(np.array([0, 2]))
    task = train.Classification(aux_weight=0.4)             # torchvision's recipe
    model.train()
    minicnn.manual_seed(1)
    losses, logits = task.losses(model, (x, y), training=True)
    assert set(losses) == {"loss", "loss_main", "loss_aux_logits"}
    np.testing.assert_allclose(losses["loss"].item(), losses["loss_main"].item()
                               + 0.4 * losses["loss_aux_logits"].item(), rtol=1e-6)
    assert logits.shape == (2, 3)
    loader = DataLoader(TensorDataset(x, y), batch_size=2)
    trainer = train.Trainer(model, minicnn.optim.SGD(model.parameters(), lr=0.01),
                            task=task, progress=False, log=False)
    trainer.fit(loader, loader, epochs=1)
    assert np.isfinite(trainer.history[-1]["train_loss"])
    assert "train_loss_aux_logits" in trainer.history[-1]
    assert model.AuxLogits.fc.weight.grad is not None


def test_errors():
    with pytest.raises(ValueError, match="Inception3: transform_input needs in_channels=3"):
        models.inception_v3(in_channels=1, transform_input=True, init_weights=False)
