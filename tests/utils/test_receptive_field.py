"""minicnn.utils.receptive_field and the RF column of summary: the spec's figures (AlexNet
pool5 195 and 355 with fc6 convolutionized as 6x6, VGG16 pool5 212 and 404 with fc6 as
7x7, 3x3 convolutions x2 -> 5, x3 -> 7), dilation, the alignment FCN and U-Net were built
for, and every rule against a brute-force measurement on small nets: bump one input pixel,
see which outputs move."""
import warnings

import numpy as np
import pytest

import minicnn
from minicnn import functional as F
from minicnn import models, nn
from minicnn.cli.summary import cli_main
from minicnn.models import segmentation
from minicnn.utils.convert import convolutionize
from minicnn.utils.receptive_field import receptive_field

from model_twin import cheap_init


def _shapes_only_model(build):
    """A zoo model built without its random initialisation, weights set to zero."""
    with cheap_init():
        model = build()
    for p in model.parameters():
        p.array[...] = 0
    return model


# ------------------------------------------------------------- the spec's figures

def test_alexnet_pool5_195_and_fc6_355():
    model = _shapes_only_model(models.alexnet)
    rf = receptive_field(model, (3, 224, 224))
    assert rf["features.12"].size == (195, 195)        # pool5
    assert rf["features.12"].jump == (32, 32)
    # fc6 reads the flattened 6x6 map: one output sees 195 + 5 * 32 pixels
    assert rf["classifier.1"].size == (355, 355)
    conv = convolutionize(model, (3, 224, 224), check=False)
    fc6 = [r for r in receptive_field(conv, (3, 224, 224)).rows if r.type == "Conv2d"][5]
    assert fc6.output_shape == (1, 4096, 1, 1)
    assert (fc6.size, fc6.jump) == ((355, 355), (32, 32))


def test_vgg16_pool5_212_and_fc6_404():
    rf = receptive_field(_shapes_only_model(models.vgg16), (3, 224, 224))
    assert rf["features.30"].size == (212, 212)        # pool5
    assert rf["classifier.0"].size == (404, 404)       # fc6 on the 7x7 map
    # FCN's VGG16 (Caffe layout, fc6 a 7x7 convolution, 500x500 input padded by 100)
    fcn = receptive_field(_shapes_only_model(segmentation.fcn32s), (3, 500, 500))
    assert fcn["pool5"].size == (212, 212)
    assert (fcn["fc6"].size, fcn["fc6"].jump) == ((404, 404), (32, 32))


@pytest.mark.slow
def test_vgg16_convolutionized_fc6_404():
    conv = convolutionize(_shapes_only_model(models.vgg16), (3, 224, 224), check=False)
    rows = [r for r in receptive_field(conv, (3, 224, 224)).rows if r.type == "Conv2d"]
    assert rows[13].output_shape == (1, 4096, 1, 1)
    assert (rows[13].size, rows[13].jump) == ((404, 404), (32, 32))


@pytest.mark.parametrize("convs,size", [(1, 3), (2, 5), (3, 7), (5, 11)])
def test_stacked_3x3_convolutions_see_like_one_large_kernel(convs, size):
    # [000] L199-204: two 3x3 layers see as far as one 5x5, three as one 7x7
    model = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1) for _ in range(convs)])
    rf = minicnn.utils.receptive_field(model, (4, 16, 16))
    assert rf.output.size == (size, size)
    assert (rf.output.jump, rf.output.start) == ((1, 1), (0, 0))


def test_dilated_convolutions():
    rf = receptive_field(nn.Conv2d(1, 1, 3, dilation=2), (1, 16, 16))
    assert (rf.output.size, rf.output.start) == ((5, 5), (2, 2))
    # dilations 1, 2, 4 (Yu & Koltun's context module): 3, 7, 15
    model = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=d, dilation=d) for d in (1, 2, 4)])
    assert [r.size for r in receptive_field(model, (1, 32, 32)).rows] == [(3, 3), (7, 7),
                                                                          (15, 15)]
    # a different kernel and dilation per axis
    rf = receptive_field(nn.Conv2d(1, 1, (3, 5), dilation=(3, 1)), (1, 20, 20))
    assert rf.output.size == (7, 5)


def test_fcn_and_unet_outputs_line_up_with_their_input():
    """FCN's crop (offset 19 after a 64/32 deconvolution on a 100-padded input) makes
    output pixel i see around input pixel i; U-Net's 388 outputs sit at the centre of its
    572 inputs, (572 - 388) / 2 = 92 pixels in; torchvision's FCN upsamples by 8
    bilinearly, which puts output i at input i - 3.5."""
    fcn = receptive_field(_shapes_only_model(segmentation.fcn8s), (3, 500, 500))
    assert fcn.output == ((460, 460), (1, 1), (0, 0))
    unet = receptive_field(_shapes_only_model(segmentation.unet), (1, 572, 572))
    assert unet.output == ((200, 200), (1, 1), (92, 92))
    tv = receptive_field(_shapes_only_model(segmentation.fcn_resnet50), (3, 520, 520))
    assert tv.output.jump == (1, 1) and tv.output.start == (-3.5, -3.5)


def test_every_zoo_model_has_a_field_in_both_modes():
    """Branching (ResNet's additions, Inception's and DenseNet's concatenations), functional
    pooling, padding and slicing (CIFAR ResNets' option A) all have rules: no warning."""
    for name in ("resnet18", "resnet20", "googlenet", "googlenet_paper", "nin_cifar",
                 "lenet5", "densenet121"):
        model = _shapes_only_model(models.get_model_builder(name))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for mode in ("eval", "train"):
                rf = receptive_field(model, models.input_size(name), mode=mode)
                assert all(r.size is not None for r in rf.rows), name
    # ResNet-18: the usual 435 at layer4; each block adds two 3x3 at its own jump
    rf = receptive_field(_shapes_only_model(models.resnet18), (3, 224, 224))
    assert [rf[f"layer{i}"].size[0] for i in range(1, 5)] == [43, 99, 211, 435]


# ---------------------------------------------------------- against brute force

def _dependence(model, channels, size, axis):
    """D[i, o]: does output row o (axis 0; column for axis 1) move when input row i is
    raised? One batch holds the base image and one copy per raised row. The weights are
    positive, so raising a row raises every output that reads it (max pooling too)."""
    base = np.random.default_rng(0).uniform(0.5, 1.5, (1, channels, size, size))
    batch = np.repeat(base, size + 1, axis=0)
    for i in range(size):
        index = (1 + i, slice(None)) + ((i, slice(None)) if axis == 0 else (slice(None), i))
        batch[index] += 100.0
    with minicnn.no_grad():
        out = model(minicnn.tensor(batch)).numpy()
    moved = np.abs(out[1:] - out[:1]).sum(axis=1) > 1e-9 * np.abs(out).max()  # (size, OH, OW)
    return moved.any(axis=2 if axis == 0 else 1)


def _positive(model):
    rng = np.random.default_rng(1)
    for name, p in model.named_parameters():
        p.array[...] = rng.uniform(0.1, 1.0, p.shape) if "weight" in name else 0.0
    return model.double()


def _measured(model, channels, size, axis):
    """Per output position along ``axis``, the (first, last) input position it depends on,
    for the outputs whose reach stays off the border (so that none is clipped)."""
    seen = _dependence(model, channels, size, axis)
    result = {}
    for o in range(seen.shape[1]):
        where = np.nonzero(seen[:, o])[0]
        if len(where) and where[0] > 0 and where[-1] < size - 1:
            result[o] = (int(where[0]), int(where[-1]))
    return result


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.skip = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        out = self.b(self.a(x))
        out += self.skip(x)
        return out


class _Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.wide, self.narrow = nn.Conv2d(2, 2, 5, padding=2), nn.Conv2d(2, 2, 3, padding=1)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        x = minicnn.cat([self.wide(x), self.narrow(x)], 1)
        return F.max_pool2d(self.pool(x), 3, 1, 1)


class _Crop(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3)

    def forward(self, x):
        x = F.pad(self.conv(x), (2, 0, 1, 1))
        return F.center_crop(x, (10, 9))[:, :, 1:, ::2]


# uniform layers: every output's field is exactly the reported one
UNIFORM = {
    "3x3 x2": lambda: nn.Sequential(nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3)),
    "strides, dilation, avg pool": lambda: nn.Sequential(
        nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.Conv2d(2, 2, 3, padding=2, dilation=2),
        nn.AvgPool2d(3, 2, padding=1), nn.Conv2d(2, 2, (2, 3))),
    "max pool ceil_mode, relu, BN": lambda: nn.Sequential(
        nn.Conv2d(2, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(2, 2, 3, stride=(1, 2))),
    "max pool dilation padding": lambda: nn.Sequential(
        nn.MaxPool2d(3, 1, padding=1, dilation=2), nn.Conv2d(2, 2, 3, stride=2)),
    "residual": _Residual,
    "concat, functional pool": _Concat,
    "pad, crop, slice": _Crop,
    "adaptive pool 16 -> 8": lambda: nn.Sequential(nn.Conv2d(2, 2, 3, padding=1),
                                                  nn.AdaptiveAvgPool2d(8),
                                                  nn.Conv2d(2, 2, 3)),
    "spatial LRN": lambda: nn.Sequential(nn.Conv2d(2, 2, 3),
                                         nn.LocalResponseNormSpatial(4, alpha=1.0)),
    "pixel unshuffle": lambda: nn.Sequential(nn.Conv2d(8, 8, 3), _Fn(F.pixel_unshuffle, 2)),
}

# windows that are not all alike: the largest one, centres on a line through them
UNEVEN = {
    "transposed k4 s2 p1": lambda: nn.Sequential(nn.Conv2d(2, 2, 3),
                                                 nn.ConvTranspose2d(2, 2, 4, 2, 1)),
    "transposed k3 s2 (gaps)": lambda: nn.Sequential(nn.ConvTranspose2d(2, 2, 3, 2)),
    "transposed k2 s2, conv (U-Net)": lambda: nn.Sequential(
        nn.ConvTranspose2d(2, 2, 2, 2), nn.Conv2d(2, 2, 3)),
    "bilinear x2": lambda: nn.Sequential(nn.Conv2d(2, 2, 3), nn.Upsample(scale_factor=2,
                                                                         mode="bilinear")),
    "nearest x3": lambda: nn.Sequential(nn.Upsample(scale_factor=3)),
    "adaptive pool 16 -> 5": lambda: nn.Sequential(nn.AdaptiveMaxPool2d(5)),
    "pixel shuffle": lambda: nn.Sequential(nn.Conv2d(2, 8, 3), nn.PixelShuffle(2)),
}


class _Fn(nn.Module):
    def __init__(self, fn, *args):
        super().__init__()
        self.fn, self.args = fn, args

    def forward(self, x):
        return self.fn(x, *self.args)


def _channels(model):
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))\
        if any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules()) \
        else None
    return first.in_channels if first is not None else 2


@pytest.mark.parametrize("name", list(UNIFORM))
def test_uniform_layers_match_brute_force(name):
    model = _positive(UNIFORM[name]())
    c = _channels(model)
    rf = receptive_field(model, (c, 40, 40), dtype=np.float64).output
    for axis in (0, 1):
        measured = _measured(model, c, 40, axis)
        assert len(measured) >= 2, "no output whose field stays inside the input"
        for o, (lo, hi) in measured.items():
            assert hi - lo + 1 == rf.size[axis], (name, axis, o)
            assert (lo + hi) / 2 == rf.start[axis] + o * rf.jump[axis], (name, axis, o)


@pytest.mark.parametrize("name", list(UNEVEN))
def test_uneven_layers_match_brute_force(name):
    model = _positive(UNEVEN[name]())
    c = _channels(model)
    rf = receptive_field(model, (c, 16, 16), dtype=np.float64).output
    for axis in (0, 1):
        measured = _measured(model, c, 16, axis)
        assert max(hi - lo + 1 for lo, hi in measured.values()) == rf.size[axis], name
        # the centres stay within half an input pixel of start + o * jump
        for o, (lo, hi) in measured.items():
            assert abs((lo + hi) / 2 - (rf.start[axis] + o * rf.jump[axis])) <= 0.5, (name, o)


def test_flatten_and_linear_see_the_whole_map():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(2 * 7 * 7, 4), nn.ReLU(), nn.Linear(4, 2))
    rf = receptive_field(model, (1, 16, 16))
    # pool: 4 pixels, jump 2, start 1.5; the 7 pooled pixels span 4 + 6 * 2 = 16
    assert rf.rows[1].size == (4, 4) and rf.rows[1].start == (1.5, 1.5)
    assert [r.size for r in rf.rows[2:]] == [(16, 16)] * 4
    assert rf.output.start == (7.5, 7.5)


def test_max_unpool_undoes_its_pool_geometry():
    class PoolUnpool(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(2, return_indices=True)
            self.unpool = nn.MaxUnpool2d(2)

        def forward(self, x):
            return self.unpool(*self.pool(x))

    rf = receptive_field(PoolUnpool(), (1, 8, 8))
    assert (rf["pool"].size, rf["pool"].jump, rf["pool"].start) == ((2, 2), (2, 2),
                                                                    (0.5, 0.5))
    # output pixels 2i and 2i + 1 come from pooled pixel i: back to jump 1, and the
    # line through their centres starts at 0.5 - 2 / 4
    assert rf.output == ((2, 2), (1, 1), (0, 0))


def test_an_op_without_a_rule_is_read_as_an_adaptive_pool():
    class Transposed(nn.Module):
        def forward(self, x):                # swaps H and W: the tracer has no rule
            return x.transpose(2, 3)

    with pytest.warns(UserWarning, match=r"receptive_field: no rule for Permute, which "
                                         r"changes \(8, 10\) to \(10, 8\)"):
        rf = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), Transposed()), (1, 10, 12))
    assert rf.output.size == (4, 4)       # adaptive windows 8 -> 10 and 10 -> 8 span 2


def test_stacking_keeps_the_field():
    class Stacked(nn.Module):
        def forward(self, x):
            return minicnn.stack([x[:, :, ::2, ::2], x[:, :, 1::2, 1::2]], 0).sum(0)

    rf = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), Stacked()), (1, 10, 10))
    assert (rf.output.size, rf.output.jump, rf.output.start) == ((3, 3), (2, 2), (1, 1))


# ----------------------------------------------------------------- result and errors

def test_rows_follow_module_calls_and_print():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.ConvTranspose2d(2, 1, 2, 2))
    rf = receptive_field(model, (1, 8, 8))
    assert [(r.name, r.type, r.depth, r.output_shape) for r in rf.rows] == [
        ("0", "Conv2d", 1, (1, 2, 6, 6)), ("1", "ReLU", 1, (1, 2, 6, 6)),
        ("2", "ConvTranspose2d", 1, (1, 1, 12, 12))]
    assert rf.rows[2].jump == (0.5, 0.5) and rf.rows[2].start == (0.75, 0.75)
    text = str(rf)
    assert "RF size" in text and "Output: size 3, jump 0.5, start 0.75" in text
    with pytest.raises(KeyError, match="no module named 'fc'"):
        rf["fc"]


def test_state_is_restored_and_errors():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5))
    model.eval()
    before = [b.array.copy() for b in model.buffers()]
    receptive_field(model, (1, 8, 8), mode="train")
    assert not model.training
    assert all(np.array_equal(a, b.array) for a, b in zip(before, model.buffers()))
    assert not any("forward" in vars(m) for m in model.modules())
    with pytest.raises(ValueError, match="receptive_field: mode must be 'eval' or 'train'"):
        receptive_field(model, (1, 8, 8), mode="test")
    with pytest.raises(ValueError, match=r"receptive_field: expected floating-point \(N, C, "
                                         r"H, W\) input, got shape \(1, 8\)"):
        receptive_field(nn.Linear(8, 2), (8,))
    with pytest.raises(ValueError, match="receptive_field: give exactly one of input_size"):
        receptive_field(model)
    with pytest.raises(TypeError, match="receptive_field: expected an nn.Module"):
        receptive_field(lambda x: x, (1, 8, 8))


def test_summary_rf_column_and_command(capsys):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, (3, 1)))
    plain = minicnn.summary(model, (1, 12, 12), verbose=False)
    table = minicnn.summary(model, (1, 12, 12), rf=True, verbose=False)
    assert [r.rf for r in plain.rows] == [None] * 3 and "RF" not in str(plain)
    assert [r.rf for r in table.rows] == [(3, 3), (4, 4), (8, 4)]
    assert plain.rows == [r._replace(rf=None) for r in table.rows]
    header = str(table).splitlines()[2]
    assert header.split()[-1] == "RF" and str(table).splitlines()[6].endswith(" 8x4")
    assert table.receptive_field["2"].jump == (2, 2)
    assert cli_main(["resnet20", "--rf", "--depth", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[-1] == "RF"
    # 3x3 stem; 6 convs at jump 1, 2 and 4 per stage (a stage's first at the jump before)
    shown = {line.split()[0]: line.split()[-1] for line in lines[4:12]}
    assert shown == {"conv1": "3", "bn1": "3", "relu": "3", "layer1": "15", "layer2": "37",
                     "layer3": "81", "avgpool": "109", "fc": "109"}
