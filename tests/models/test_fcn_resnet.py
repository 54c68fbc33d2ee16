"""fcn_resnet50 (minicnn/models/segmentation/fcn_resnet.py) against its torch twin: the
same source run on torch.nn, with the twins of resnet.py and models/_utils.py under it
(torchvision itself cannot be imported here, see model_twin.py). State-dict keys and
shapes, the dict of outputs in eval and training mode, gradients, parameter counts."""
import numpy as np
import pytest

import minicnn
from minicnn.models import _utils, resnet
from minicnn.models.segmentation import fcn_resnet

from model_twin import cheap_init, copy_weights, count, randomize_, torch_twin


def _twin(torch):
    """fcn_resnet.py on torch.nn, building its ResNet-50 and IntermediateLayerGetter
    from the twins of their own files."""
    twin = torch_twin(fcn_resnet, torch)
    namespace = twin.fcn_resnet50.__globals__
    namespace["resnet50"] = torch_twin(resnet, torch).resnet50
    namespace["IntermediateLayerGetter"] = torch_twin(_utils, torch).IntermediateLayerGetter
    return twin


def _reduced(resnet_file, fcn_file, utils_file, num_classes):
    """FCN from its parts on a ResNet with one Bottleneck per stage (dilated as in
    fcn_resnet50) and both heads: the same modules and forward, a quarter of the blocks."""
    backbone = resnet_file.ResNet(resnet_file.Bottleneck, [1, 1, 1, 1],
                                  replace_stride_with_dilation=[False, True, True])
    backbone = utils_file.IntermediateLayerGetter(backbone, {"layer4": "out", "layer3": "aux"})
    return fcn_file.FCN(backbone, fcn_file.FCNHead(2048, num_classes),
                        fcn_file.FCNHead(1024, num_classes))


def _pair(torch, dtype=np.float64, reduced=False, **kwargs):
    torch.manual_seed(0)
    if reduced:
        tm = _reduced(torch_twin(resnet, torch), torch_twin(fcn_resnet, torch),
                      torch_twin(_utils, torch), **kwargs)
        mm = _reduced(resnet, fcn_resnet, _utils, **kwargs)
    else:
        tm = _twin(torch).fcn_resnet50(**kwargs)
        mm = fcn_resnet.fcn_resnet50(**kwargs)
    tm = randomize_(tm, torch)
    tm = tm.double() if np.dtype(dtype) == np.float64 else tm.float()
    mm = mm.double() if np.dtype(dtype) == np.float64 else mm.float()
    copy_weights(tm, mm)
    return tm, mm


def _dropout_off(*models):
    for model in models:
        for m in model.modules():
            if type(m).__name__ == "Dropout":
                m.eval()


def _compare(tout, mout, rtol, atol):
    assert list(tout) == list(mout) and isinstance(mout, dict)
    for key in tout:
        t = tout[key].detach().numpy()
        scale = max(1.0, float(np.abs(t).max()))
        np.testing.assert_allclose(mout[key].numpy(), t, rtol=rtol, atol=atol * scale,
                                   err_msg=key)


def test_parameter_counts():
    # torchvision 0.29's fcn_resnet50(weights=None, weights_backbone=None), spec Appendix A
    with cheap_init():
        assert count(fcn_resnet.fcn_resnet50(aux_loss=True)) == 35_322_218
        assert count(fcn_resnet.fcn_resnet50()) == 32_957_013
        assert count(fcn_resnet.fcn_resnet50(num_classes=3, in_channels=1)) == \
            32_957_013 - 2 * 7 * 7 * 64 - (21 - 3) * (512 + 1)   # stem, head


def test_layout_matches_torch_twin(torch):
    with torch.device("meta"):
        tm = _twin(torch).fcn_resnet50(aux_loss=True)
    with cheap_init():
        mm = fcn_resnet.fcn_resnet50(aux_loss=True)
    ts, ms = tm.state_dict(), mm.state_dict()
    assert list(ts) == list(ms)
    assert all(tuple(ts[k].shape) == tuple(ms[k].shape) for k in ts)
    # torchvision's keys: no fc or avgpool in the backbone, two FCNHeads
    assert {"backbone.conv1.weight", "backbone.layer4.2.bn3.running_var",
            "classifier.0.weight", "classifier.4.bias", "aux_classifier.1.weight",
            "aux_classifier.4.weight"} <= set(ms)
    assert not any(k.startswith(("backbone.fc", "backbone.avgpool")) for k in ms)
    assert tuple(ms["classifier.0.weight"].shape) == (512, 2048, 3, 3)
    assert tuple(ms["aux_classifier.4.weight"].shape) == (21, 256, 1, 1)
    # layer3/4 dilate instead of striding: output stride 8
    assert mm.backbone.layer4[2].conv2.dilation == (4, 4)
    assert mm.backbone.layer3[0].conv2.stride == (1, 1)
    assert fcn_resnet.fcn_resnet50().aux_classifier is None


@pytest.mark.slow
def test_forward_matches_torch(torch):
    tm, mm = _pair(torch, aux_loss=True, num_classes=5)
    x = np.random.default_rng(1).standard_normal((2, 3, 24, 32))
    tm.eval()
    mm.eval()
    tout, mout = tm(torch.from_numpy(x)), mm(minicnn.tensor(x))
    assert [tuple(v.shape) for v in mout.values()] == [(2, 5, 24, 32)] * 2
    _compare(tout, mout, rtol=1e-9, atol=1e-10)
    # training mode: batch statistics, the same upsampling (dropout switched off)
    tm.train()
    mm.train()
    _dropout_off(tm, mm)
    _compare(tm(torch.from_numpy(x)), mm(minicnn.tensor(x)), rtol=1e-9, atol=1e-10)
    for name, b in mm.named_buffers():
        np.testing.assert_allclose(b.numpy(), dict(tm.named_buffers())[name].numpy(),
                                   rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.slow
def test_float32_forward_matches_torch(torch):
    tm, mm = _pair(torch, dtype=np.float32, reduced=True, num_classes=4)
    x = np.random.default_rng(2).standard_normal((2, 3, 40, 40)).astype(np.float32)
    tm.eval()
    mm.eval()
    tout, mout = tm(torch.from_numpy(x)), mm(minicnn.tensor(x))
    assert list(mout) == ["out", "aux"] and mout["out"].dtype == np.float32
    _compare(tout, mout, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_backward_matches_torch(torch):
    # the modules of fcn_resnet50 on a shallower ResNet (see _reduced), both heads
    tm, mm = _pair(torch, reduced=True, num_classes=3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 24, 24))
    tm.train()
    mm.train()
    _dropout_off(tm, mm)
    tx = torch.from_numpy(x).requires_grad_(True)
    mx = minicnn.tensor(x, requires_grad=True)
    tout, mout = tm(tx), mm(mx)
    g = {k: rng.standard_normal(tuple(v.shape)) for k, v in tout.items()}
    sum((tout[k] * torch.from_numpy(g[k])).sum() for k in g).backward()
    sum((mout[k] * minicnn.tensor(g[k])).sum() for k in g).backward()
    pairs = [("input", tx.grad, mx.grad)]
    mparams = dict(mm.named_parameters())
    pairs += [(n, p.grad, mparams[n].grad) for n, p in tm.named_parameters()]
    for name, tg, mg in pairs:
        tg = tg.numpy()
        np.testing.assert_allclose(mg.numpy(), tg, rtol=1e-8,
                                   atol=1e-9 * max(1e-3, float(np.abs(tg).max())),
                                   err_msg=name)


def test_weights_backbone_and_errors():
    minicnn.manual_seed(0)
    with cheap_init():
        donor = resnet.resnet50()
    minicnn.nn.init.normal_(donor.conv1.weight)
    state = donor.state_dict()
    with cheap_init():
        model = fcn_resnet.fcn_resnet50(weights_backbone=state)
    np.testing.assert_array_equal(model.backbone.conv1.weight.numpy(),
                                  donor.conv1.weight.numpy())
    with pytest.raises(ValueError, match="fcn_resnet50: minicnn ships no pretrained weights"):
        fcn_resnet.fcn_resnet50(weights="COCO_WITH_VOC_LABELS_V1")
    with pytest.raises(Exception, match="channels"):
        with cheap_init():
            model = fcn_resnet.fcn_resnet50(num_classes=3)
        with minicnn.no_grad():
            model.eval()(minicnn.zeros(1, 1, 32, 32))
