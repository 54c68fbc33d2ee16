"""U-Net (minicnn/models/segmentation/unet.py): the paper's sizes and parameter count,
the valid input sizes worked out by brute force, the padded form, forward and gradients
against the torch twin (the same source on torch.nn, see model_twin.py), errors."""
import importlib
import types

import numpy as np
import pytest

import minicnn
from minicnn import nn
from minicnn.nn import functional as F

from model_twin import (cheap_init, compare_backward, compare_forward, copy_weights, count,
                        torch_twin)

U = importlib.import_module("minicnn.models.segmentation.unet")   # .unet is the builder


def _twin(torch):
    """unet.py on torch.nn; torch.nn.functional has no center_crop (torchvision's), so
    the twin gets one written here with slicing (torchvision's rounding)."""
    twin = torch_twin(U, torch)
    namespace = twin.UNet.__init__.__globals__

    def center_crop(x, size):
        h, w = int(size[0]), int(size[1])
        top = int(round((x.shape[-2] - h) / 2))
        left = int(round((x.shape[-1] - w) / 2))
        return x[..., top:top + h, left:left + w]

    f_twin = types.ModuleType("F_twin")
    f_twin.__dict__.update(torch.nn.functional.__dict__)
    f_twin.center_crop = center_crop
    namespace["F"] = f_twin
    return twin


def _pair(torch, dtype=np.float64, **kwargs):
    torch.manual_seed(0)
    tm = _twin(torch).unet(**kwargs)
    mm = U.unet(**kwargs)
    tm = tm.double() if np.dtype(dtype) == np.float64 else tm.float()
    mm = mm.double() if np.dtype(dtype) == np.float64 else mm.float()
    copy_weights(tm, mm)
    return tm, mm


def _walk(s):
    """The output size of the valid U-Net for input side s, following every layer; None
    where a pool would see an odd size or a size drops below 1."""
    skips = []
    for _ in range(4):
        s -= 4                                    # two valid 3x3 convolutions
        if s < 2 or s % 2:
            return None
        skips.append(s)
        s //= 2                                   # 2x2/2 max pool
    s -= 4                                        # the bottom
    for skip in reversed(skips):
        s = 2 * s                                 # up-convolution
        if s < 1 or s > skip:
            return None
        s -= 4
        if s < 1:
            return None
    return s


def test_valid_sizes_by_brute_force():
    valid = [s for s in range(1, 1025) if _walk(s) is not None]
    assert U.unet_valid_sizes(1024) == valid
    assert valid[:3] == [188, 204, 220] and 572 in valid
    assert all(_walk(s) == s - 184 for s in valid)


def test_paper_parameter_count_and_layers():
    # spec A7 / Appendix A: 31,030,658 parameters, 19 Conv2d + 4 ConvTranspose2d = 23
    with cheap_init():
        model = U.unet()
    assert count(model) == 31_030_658
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(nn.Conv2d) == 19 and kinds.count(nn.ConvTranspose2d) == 4
    assert all(m.padding == (0, 0) for m in model.modules() if isinstance(m, nn.Conv2d))
    with cheap_init():
        padded = U.unet(padding=True)
    assert count(padded) == 31_030_658            # padding changes no weight


@pytest.mark.slow
def test_572_gives_388():
    with cheap_init():
        model = U.unet()
    for m in model.modules():       # they run for real in a shapes_only summary
        if isinstance(m, nn.ConvTranspose2d):
            nn.init.zeros_(m.weight)
    table = minicnn.summary(model, (1, 572, 572), shapes_only=True, verbose=False, depth=2)
    sizes = {r.name: r.output_shape for r in table.rows}
    # the paper's figure 1: contracting path, up-convolutions, output tile
    assert [sizes[f"enc{i}"][-1] for i in range(1, 5)] == [568, 280, 136, 64]
    assert sizes["bottom"] == (1, 1024, 28, 28)
    assert [sizes[f"dec{i}.up"][-1] for i in (4, 3, 2, 1)] == [56, 104, 200, 392]
    assert [sizes[f"dec{i}"][-1] for i in (4, 3, 2, 1)] == [52, 100, 196, 388]
    assert sizes["head"] == (1, 2, 388, 388)


def test_padded_form_keeps_the_size():
    minicnn.manual_seed(0)
    model = U.unet(in_channels=3, num_classes=4, padding=True, base_channels=2).eval()
    with minicnn.no_grad():
        y = model(minicnn.randn(2, 3, 48, 32))
    assert tuple(y.shape) == (2, 4, 48, 32)


@pytest.mark.slow
@pytest.mark.parametrize("padding,size", [(False, (1, 1, 204, 188)), (True, (2, 3, 32, 48))])
def test_forward_and_backward_match_torch(torch, padding, size):
    kwargs = dict(in_channels=size[1], num_classes=3, padding=padding, base_channels=2)
    tm, mm = _pair(torch, **kwargs)
    compare_forward(tm, mm, torch, size, np.float64)
    compare_backward(tm, mm, torch, size)
    tm32, mm32 = _pair(torch, dtype=np.float32, **kwargs)
    compare_forward(tm32, mm32, torch, size, np.float32, rtol=1e-3)


def test_unet_trains():
    # a blob brighter than its background, segmented by a tiny padded U-Net
    minicnn.manual_seed(0)
    rng = np.random.default_rng(0)
    target = np.zeros((2, 16, 16), np.int64)
    target[0, 2:9, 3:12] = 1
    target[1, 7:15, 1:8] = 1
    x = (0.3 * rng.standard_normal((2, 1, 16, 16)) + target[:, None]).astype(np.float32)
    model = U.unet(padding=True, base_channels=4)
    opt = minicnn.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(minicnn.tensor(x)), minicnn.tensor(target))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_errors():
    model = U.unet(base_channels=1)
    with pytest.raises(ValueError, match=r"unet \(valid convolutions\): input size \(570, "
                                         r"572\) does not fit.*124 \+ 16k.*nearest to 570: "
                                         r"556 or 572 \(output = input - 184\)"):
        model(minicnn.zeros(1, 1, 570, 572))
    with pytest.raises(ValueError, match=r"nearest to 100: 188 \("):
        model(minicnn.zeros(1, 1, 100, 100))
    padded = U.unet(padding=True, base_channels=1)
    with pytest.raises(ValueError, match=r"unet \(padding=True\): input size \(30, 32\) "
                                         r".*multiple of 16; nearest to 30: 16 or 32"):
        padded(minicnn.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match="nearest to 8: 16$"):
        padded(minicnn.zeros(1, 1, 8, 16))
    with pytest.raises(ValueError, match="unet: padding must be False .* got 'same'"):
        U.unet(padding="same")


@pytest.mark.parametrize("kwargs,message", [
    ({"base_channels": "abc"}, "unet: base_channels must be a positive integer"),
    ({"base_channels": 0}, "unet: base_channels must be a positive integer"),
    ({"num_classes": 2.5}, "unet: num_classes must be a positive integer"),
])
def test_bad_widths_are_named(kwargs, message):
    from minicnn.models import unet
    with pytest.raises(ValueError, match=message):
        unet(**kwargs)
