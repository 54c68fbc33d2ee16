"""The seeds' own listings (models/seed_variants.py): parameter counts, the seeds'
printed shapes through ``minicnn.summary``, and the seeds' torch code as the twin."""
import numpy as np
import pytest

import minicnn
from minicnn import models
from minicnn.utils.summary import count_parameters, summary
from tests.model_twin import compare_backward, compare_forward, copy_weights, randomize_


def _rows(model, input_size, names):
    table = summary(model, input_size, verbose=False, shapes_only=True, depth=5)
    shapes = {row.name: tuple(row.output_shape) for row in table.rows}
    return [shapes[n] for n in names]


# ------------------------------------------------------------------ d2l NiN

# seed 003 L431-440: NiN().layer_summary((1, 1, 224, 224))
D2L_NIN_TABLE = [(1, 96, 54, 54), (1, 96, 26, 26), (1, 256, 26, 26), (1, 256, 12, 12),
                 (1, 384, 12, 12), (1, 384, 5, 5), (1, 384, 5, 5), (1, 10, 5, 5),
                 (1, 10, 1, 1), (1, 10)]


def test_nin_d2l_summary_is_the_seed_table():
    model = models.get_model("nin_d2l")
    got = _rows(model, models.input_size("nin_d2l"),
                ["features.0", "features.1", "features.2", "features.3", "features.4",
                 "features.5.0", "features.5.1", "features.6", "avgpool"])
    got.append(tuple(model(minicnn.zeros(1, 1, 224, 224)).shape))     # the flatten
    assert got == D2L_NIN_TABLE
    # the zoo's nin (the Caffe release: ceil pooling) ends at 10x6x6 instead
    assert _rows(models.nin(num_classes=10, in_channels=1), (1, 224, 224),
                 ["features.6"]) == [(1, 10, 6, 6)]
    last = model.features[6]
    assert [m.out_channels for m in (last.conv, last.cccp1, last.cccp2)] == [10, 10, 10]


# ------------------------------------------------------------------ LeNets

# seed 002 L287-305, as torch prints it
FLEURET_LAYERS = [
    ("features.0", "Conv2d", (1, 6, 24, 24)), ("features.1", "ReLU", (1, 6, 24, 24)),
    ("features.2", "MaxPool2d", (1, 6, 12, 12)), ("features.3", "Conv2d", (1, 16, 8, 8)),
    ("features.4", "ReLU", (1, 16, 8, 8)), ("features.5", "MaxPool2d", (1, 16, 4, 4)),
    ("classifier.0", "Linear", (1, 120)), ("classifier.1", "ReLU", (1, 120)),
    ("classifier.2", "Linear", (1, 84)), ("classifier.3", "ReLU", (1, 84)),
    ("classifier.4", "Linear", (1, 10))]

# seed 003 L288-305 (d2l's LeNet on 1x28x28; d2l prints this table for it)
D2L_LENET_LAYERS = [
    ("net.0", "Conv2d", (1, 6, 28, 28)), ("net.1", "Sigmoid", (1, 6, 28, 28)),
    ("net.2", "AvgPool2d", (1, 6, 14, 14)), ("net.3", "Conv2d", (1, 16, 10, 10)),
    ("net.4", "Sigmoid", (1, 16, 10, 10)), ("net.5", "AvgPool2d", (1, 16, 5, 5)),
    ("net.6", "Flatten", (1, 400)), ("net.7", "Linear", (1, 120)),
    ("net.8", "Sigmoid", (1, 120)), ("net.9", "Linear", (1, 84)),
    ("net.10", "Sigmoid", (1, 84)), ("net.11", "Linear", (1, 10))]


@pytest.mark.parametrize("name, layers, params", [
    ("lenet5_fleuret", FLEURET_LAYERS, 156 + 2_416 + 30_840 + 10_164 + 850),
    ("lenet5_d2l", D2L_LENET_LAYERS, 156 + 2_416 + 48_120 + 10_164 + 850)])
def test_lenet_variants_summary_is_the_seed_listing(name, layers, params):
    model = models.get_model(name)
    table = summary(model, models.input_size(name), verbose=False, depth=5)
    got = [(r.name, r.type, tuple(r.output_shape)) for r in table.rows if r.is_leaf]
    assert got == layers
    assert count_parameters(model) == params


# ------------------------------------------------------------------ Monster

def test_monster_count_and_shapes():
    model = models.monster(nb_residual_blocks=16, nb_channels=64)
    assert count_parameters(model) == 1_246_666
    assert len(model.resnet_blocks) == 16
    x = minicnn.randn(2, 3, 32, 32)
    assert model.features(x).shape == (2, 64, 7, 7)
    assert model(x).shape == (2, 10)
    table = summary(model, (3, 32, 32), verbose=False, shapes_only=True)
    assert table.unused == []               # the ModuleList's blocks all ran
    with pytest.raises(ValueError, match="Monster: expects 32x32 images"):
        model(minicnn.randn(1, 3, 64, 64))


def test_monster_freeze_features_and_alexnet_layer():
    alexnet = models.alexnet(num_classes=10)
    model = models.monster(nb_residual_blocks=2, nb_channels=8, alexnet=alexnet)
    assert model.features[0] is alexnet.features[0]          # the seed's shared layer
    model.freeze_features(True)
    assert [p.requires_grad for p in model.features.parameters()] == [False, False]
    model(minicnn.randn(2, 3, 32, 32)).sum().backward()
    assert model.features[0].weight.grad is None
    assert model.converter[0].weight.grad is not None
    model.freeze_features(False)
    assert all(p.requires_grad for p in model.parameters())


def _seed_monster(torch, nb_residual_blocks, nb_channels):
    """Seed 002 L1537-1606 with a fresh conv in place of the pretrained AlexNet's."""
    nn = torch.nn

    def make_resnet_block(nb_channels, kernel_size=3):
        return nn.Sequential(
            nn.Conv2d(nb_channels, nb_channels, kernel_size=kernel_size,
                      padding=(kernel_size - 1) // 2),
            nn.BatchNorm2d(nb_channels), nn.ReLU(inplace=True),
            nn.Conv2d(nb_channels, nb_channels, kernel_size=kernel_size,
                      padding=(kernel_size - 1) // 2),
            nn.BatchNorm2d(nb_channels))

    class Monster(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True))
            self.converter = nn.Sequential(nn.Conv2d(64, nb_channels, kernel_size=3, padding=1),
                                           nn.ReLU(inplace=True))
            self.resnet_blocks = nn.ModuleList()
            for k in range(nb_residual_blocks):
                self.resnet_blocks.append(make_resnet_block(nb_channels, 3))
            self.final_average = nn.AvgPool2d(7)
            self.fc = nn.Linear(nb_channels, 10)

        def forward(self, x):
            x = self.features(x)
            x = self.converter(x)
            for b in self.resnet_blocks:
                x = x + b(x)
            x = self.final_average(x).view(x.size(0), -1)
            return self.fc(x)

    return Monster()


def test_monster_equals_the_seed_code(torch):
    tm = randomize_(_seed_monster(torch, 3, 16).double(), torch)
    mm = models.monster(nb_residual_blocks=3, nb_channels=16).double()
    copy_weights(tm, mm)
    compare_forward(tm, mm, torch, (2, 3, 32, 32), np.float64)
    compare_backward(tm, mm, torch, (2, 3, 32, 32))
