"""Transfer learning helpers (minicnn.models.transfer) and convolutionize."""
import collections

import numpy as np
import pytest

import minicnn
import minicnn.nn.functional as F
from minicnn import models, nn
from minicnn.models import transfer as T


def _arrays(module):
    return collections.OrderedDict((k, v.numpy().copy()) for k, v in
                                   module.state_dict().items())


def test_take_layers():
    alexnet = models.alexnet(hidden_features=8)
    stem = T.take_layers(alexnet, 3)
    assert [type(m).__name__ for m in stem] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert stem[0] is not alexnet.features[0]
    np.testing.assert_array_equal(stem[0].weight.numpy(), alexnet.features[0].weight.numpy())
    shared = T.take_layers(alexnet, 1, copy_weights=False)
    assert shared[0] is alexnet.features[0]
    # nested Sequentials are opened: ResNet's layer1 gives its blocks
    resnet_layers = T.take_layers(models.resnet18(), 6)
    assert [type(m).__name__ for m in resnet_layers][-2:] == ["BasicBlock", "BasicBlock"]
    with pytest.raises(ValueError, match="count must be between 1 and"):
        T.take_layers(alexnet, 99)


def test_freeze_unfreeze():
    block = models.BasicBlock(4, 4)
    assert not T.is_frozen(block)
    T.freeze(block)
    assert T.is_frozen(block) and all(not p.requires_grad for p in block.parameters())
    T.unfreeze(block)
    assert all(p.requires_grad for p in block.parameters())
    assert not T.is_frozen(nn.ReLU())              # nothing to freeze


def _data(n=8, size=32, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    x[np.arange(n), y] += 1.0
    return minicnn.tensor(x), minicnn.tensor(y)


@pytest.mark.slow
def test_frozen_backbone_is_untouched_then_trains():
    minicnn.manual_seed(0)
    pretrained = models.resnet18(num_classes=10)       # a stem with BatchNorm
    model = T.TransferNet(T.take_layers(pretrained, 4), T.residual_head(64, 3, (16, 32)),
                          freeze_epochs=1)
    before = _arrays(model.backbone)
    optimizer = minicnn.optim.SGD(model.param_groups(lr=0.05), momentum=0.9,
                                  weight_decay=1e-3)
    assert [g["lr"] for g in optimizer.param_groups] == [0.005, 0.05]
    x, y = _data()
    head_before = _arrays(model.head)
    for epoch in range(2):
        unfroze = model.epoch_start(epoch)
        assert unfroze == (epoch == 1)
        model.train()
        # while frozen the backbone also stays in eval mode (BN statistics fixed)
        assert model.backbone[1].training == (epoch == 1)
        for _ in range(2):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            if epoch == 0:
                assert all(p.grad is None for p in model.backbone.parameters())
            optimizer.step()
        after = _arrays(model.backbone)
        changed = [k for k in before if not np.array_equal(before[k], after[k])]
        if epoch == 0:
            assert changed == []                        # weights and running stats
            assert any(not np.array_equal(head_before[k], v)
                       for k, v in _arrays(model.head).items())
        else:
            assert "0.weight" in changed and "1.running_mean" in changed
    assert not model.backbone_frozen


def test_alexnet_residual_transfer():
    alexnet = models.alexnet(hidden_features=8)
    model = models.alexnet_residual_transfer(alexnet, num_classes=5, channels=(16, 32),
                                             blocks_per_stage=2, freeze_epochs=2)
    assert model.backbone_frozen and model.freeze_epochs == 2
    # the copied stem, then stages at stride 1 and 2, pooling, one linear layer
    assert list(dict(model.head.named_children())) == ["layer1", "layer2", "avgpool",
                                                       "flatten", "fc"]
    assert model.head.layer1[0].downsample is not None            # 64 -> 16 channels
    assert model.head.layer2[0].conv1.stride == (2, 2)
    out = model.eval()(minicnn.zeros(2, 3, 70, 64))
    assert out.shape == (2, 5)
    assert not model.epoch_start(1) and model.epoch_start(2)
    # freeze_epochs=0: nothing frozen; None: frozen for good
    assert not models.alexnet_residual_transfer(alexnet, 3, freeze_epochs=0).backbone_frozen
    never = models.alexnet_residual_transfer(alexnet, 3, freeze_epochs=None)
    assert not never.epoch_start(100) and never.backbone_frozen


# ---------------------------------------------------------------- convolutionize

def _sliding_reference(model, x, window):
    """The original classifier applied to every window of the feature map."""
    if hasattr(model, "features"):
        fmap = model.features(x)
        head = lambda f: model.classifier(minicnn.flatten(model.avgpool(f), 1))  # noqa: E731
    else:   # ResNet
        fmap = x
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                     "layer4"):
            if hasattr(model, name):            # the CIFAR ResNet has no maxpool, layer4
                fmap = getattr(model, name)(fmap)
        head = lambda f: model.fc(minicnn.flatten(model.avgpool(f), 1))  # noqa: E731
    h, w = fmap.shape[2] - window + 1, fmap.shape[3] - window + 1
    out = np.empty((x.shape[0], model_classes(model), h, w))
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = head(fmap[:, :, i:i + window, j:j + window]).numpy()
    return out


def model_classes(model):
    return (model.fc if hasattr(model, "fc") else model.classifier[-1]).out_features


@pytest.mark.parametrize("build,size,big,window", [
    (lambda: models.alexnet(num_classes=4, hidden_features=16), 64, 96, 1),
    (lambda: models.vgg([8, "M", 8, "M", 16, "M", 16, "M", 16, "M"], True, num_classes=4,
                        hidden_features=16), 64, 96, 2),
    (lambda: models.resnet20(num_classes=4), 16, 24, 4),
    (lambda: models.ResNet(models.BasicBlock, [1, 1, 1, 1], num_classes=4), 64, 96, 2),
], ids=["alexnet", "vgg_bn", "resnet20", "resnet"])
def test_convolutionize(build, size, big, window):
    model = build().double()
    model.train()
    before = _arrays(model)
    conv = minicnn.convolutionize(model, (3, size, size))
    assert model.training and conv.training                  # mode kept
    assert all(np.array_equal(v, _arrays(model)[k]) for k, v in before.items())
    assert not any(isinstance(m, nn.Linear) for m in conv.modules())
    model.eval()
    conv.eval()
    rng = np.random.default_rng(0)
    x = minicnn.tensor(rng.standard_normal((2, 3, size, size)))
    np.testing.assert_allclose(conv(x).numpy()[:, :, 0, 0], model(x).numpy(), rtol=1e-10,
                               atol=1e-12)
    # a larger image gives a map of scores: the classifier slid over the feature map
    xb = minicnn.tensor(rng.standard_normal((1, 3, big, big + 8)))
    scores = conv(xb).numpy()
    assert scores.ndim == 4 and scores.shape[2] >= 2 and scores.dtype == np.float64
    np.testing.assert_allclose(scores, _sliding_reference(model, xb, window), rtol=1e-9,
                               atol=1e-11)


def test_convolutionize_refuses_what_it_cannot_convert():
    with pytest.raises(ValueError, match="not its children applied in order"):
        minicnn.convolutionize(models.DenseNet(8, (2, 2, 2, 2), 16, num_classes=3),
                               (3, 32, 32))
    with pytest.raises(ValueError, match="has no Linear layer"):
        minicnn.convolutionize(models.nin_cifar(), (3, 32, 32))
    mlp = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="feature map"):
        minicnn.convolutionize(mlp, (3,))


@pytest.mark.slow
def test_transfer_learning_example_runs_small():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "transfer_learning.py"
    spec = importlib.util.spec_from_file_location("transfer_learning_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rng = np.random.default_rng(0)
    xa, ya = example.gratings(6, rng)
    xb, yb = example.shapes(12, rng)
    assert xa.shape == (6, 3, 64, 64) and set(yb) <= {0, 1, 2, 3}
    # the example's fine-tuning loop (frozen, unfrozen, its own frozen-weights check)
    accuracies = example.fine_tune(models.alexnet(num_classes=4, hidden_features=8),
                                   xb, yb, xb[:4], yb[:4], rng, verbose=False)
    assert len(accuracies) == 6 and all(0 <= a <= 1 for a in accuracies)
