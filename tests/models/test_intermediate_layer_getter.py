"""minicnn.models.IntermediateLayerGetter (minicnn/models/_utils.py): torchvision's
semantics, checked against the twin of the same source on torch.nn and against forward
hooks on the wrapped model."""
from collections import OrderedDict

import numpy as np
import pytest

import minicnn
from minicnn.models import IntermediateLayerGetter, _utils, resnet

from model_twin import copy_weights, randomize_, torch_twin


def test_taps_equal_forward_hooks_and_drop_the_rest():
    minicnn.manual_seed(0)
    model = resnet.resnet18(num_classes=4).eval()
    getter = IntermediateLayerGetter(model, {"layer3": "aux", "layer1": "feat"})
    # children up to the last tap, in the model's order; avgpool and fc are gone
    assert list(getter.keys()) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2",
                                   "layer3"]
    assert getter.layer1 is model.layer1                    # shared, not copied
    seen = {}
    for name in ("layer1", "layer3"):
        getattr(model, name).register_forward_hook(
            lambda m, args, out, name=name: seen.__setitem__(name, out.numpy()))
    x = minicnn.randn(2, 3, 32, 48)
    with minicnn.no_grad():
        model(x)
        out = getter(x)
    assert isinstance(out, OrderedDict)
    assert list(out) == ["feat", "aux"]                     # the order they run in
    assert tuple(out["feat"].shape) == (2, 64, 8, 12)
    assert tuple(out["aux"].shape) == (2, 256, 2, 3)
    np.testing.assert_array_equal(out["feat"].numpy(), seen["layer1"])
    np.testing.assert_array_equal(out["aux"].numpy(), seen["layer3"])
    assert not any(k.startswith("fc.") for k in getter.state_dict())


def test_matches_torch_twin(torch):
    # spec A10: {"layer3": "aux", "layer4": "out"} on a ResNet, values and shapes
    twin_resnet, twin_utils = torch_twin(resnet, torch), torch_twin(_utils, torch)
    torch.manual_seed(0)
    tm = randomize_(twin_resnet.resnet18(), torch).double().eval()
    mm = resnet.resnet18().double().eval()
    copy_weights(tm, mm)
    layers = {"layer3": "aux", "layer4": "out"}
    tg, mg = twin_utils.IntermediateLayerGetter(tm, layers), IntermediateLayerGetter(mm, layers)
    assert list(tg.state_dict()) == list(mg.state_dict())
    x = np.random.default_rng(1).standard_normal((2, 3, 40, 40))
    tout, mout = tg(torch.from_numpy(x)), mg(minicnn.tensor(x))
    assert list(tout) == list(mout) == ["aux", "out"]
    for key in tout:
        np.testing.assert_allclose(mout[key].numpy(), tout[key].detach().numpy(),
                                   rtol=1e-9, atol=1e-10)


def test_errors():
    model = resnet.resnet18()
    with pytest.raises(ValueError, match=r"return_layers \['layer5', 'layer4.1'\] are not "
                                         r"children of ResNet; its children are \['conv1'"):
        IntermediateLayerGetter(model, {"layer5": "a", "layer4.1": "b", "layer2": "c"})
