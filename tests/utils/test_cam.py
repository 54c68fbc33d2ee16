"""Class activation maps (Zhou et al. 2016): for a global-average-pooling network the
map's spatial mean plus the class's bias is its logit."""
import numpy as np
import pytest

import minicnn
from minicnn import models
from minicnn.utils.cam import class_activation_map


@pytest.fixture(scope="module")
def resnet():
    minicnn.manual_seed(0)
    model = models.resnet18(num_classes=5)
    # a bias that is not zero, so the identity needs it
    model.fc.bias.data = minicnn.tensor(np.linspace(-1, 1, 5), dtype=model.fc.bias.dtype)
    return model


def _identity(model, cams, logits, classes):
    bias = model.fc.bias.numpy()
    recovered = cams.numpy().mean(axis=(1, 2)) + bias[classes]
    np.testing.assert_allclose(recovered, logits.numpy()[np.arange(len(classes)), classes],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_resnet18_mean_plus_bias_is_the_logit_at_224(resnet):
    x = minicnn.randn(2, 3, 224, 224)
    cams, logits = class_activation_map(resnet, x, class_idx=[3, 1])
    assert cams.shape == (2, 7, 7)                               # layer4 at 224
    _identity(resnet, cams, logits, np.array([3, 1]))


def test_every_class_and_the_default_top_class(resnet):
    x = minicnn.randn(2, 3, 64, 64)
    for c in range(5):
        cams, logits = class_activation_map(resnet, x, class_idx=c)
        assert cams.shape == (2, 2, 2)
        _identity(resnet, cams, logits, np.array([c, c]))
    cams, logits = class_activation_map(resnet, x)
    top = logits.numpy().argmax(1)
    _identity(resnet, cams, logits, top)
    # the logits are the model's own, in eval mode, and the model's mode is kept
    assert resnet.training
    resnet.eval()
    np.testing.assert_allclose(logits.numpy(), resnet(x).numpy(), rtol=1e-5, atol=1e-6)
    resnet.train()


def test_one_image_and_upsampling(resnet):
    x = minicnn.randn(3, 64, 64)
    cam, logits = class_activation_map(resnet, x, class_idx=2)
    assert cam.shape == (2, 2) and logits.shape == (5,)
    big, _ = class_activation_map(resnet, x, class_idx=2, upsample=True)
    assert big.shape == (64, 64)
    # bilinear resizing keeps the map's extremes and its shape of evidence
    assert big.numpy().max() <= cam.numpy().max() + 1e-5
    assert np.unravel_index(big.numpy().argmax(), big.shape)[0] // 32 == \
        np.unravel_index(cam.numpy().argmax(), cam.shape)[0]


def test_googlenet_by_names():
    minicnn.manual_seed(1)
    model = models.googlenet(num_classes=4, aux_logits=False)
    x = minicnn.randn(1, 3, 64, 64)
    cams, logits = class_activation_map(model, x, 1, features="inception5b")
    _identity(model, cams, logits, np.array([1]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(features="layer9"), "no submodule 'layer9'"),
    (dict(fc="layer4"), "not a Linear"),
    (dict(features="layer3"), "reads 512 features"),
    (dict(class_idx=5), "class_idx must be"),
    (dict(class_idx=[0, 1, 2]), "class_idx must be"),
])
def test_errors(resnet, kwargs, message):
    with pytest.raises(ValueError, match=f"class_activation_map: .*{message}"):
        class_activation_map(resnet, minicnn.randn(2, 3, 32, 32), **kwargs)
