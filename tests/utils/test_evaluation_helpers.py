"""Evaluation helpers: the balanced error rate, FiveCrop/TenCrop (torchvision's
semantics), test-time crop averaging and ensembles."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image
from sklearn.metrics import balanced_accuracy_score

import minicnn
from minicnn import metrics, nn
from minicnn.data import transforms as T
from minicnn.models import Ensemble
from minicnn.nn import functional as F
from minicnn.utils.tta import predict_tta


# ------------------------------------------------------------ balanced error rate

@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6).flatmap(lambda c: st.tuples(
    st.just(c), st.lists(st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)),
                         min_size=1, max_size=40))))
def test_ber_is_one_minus_sklearn_balanced_accuracy(case):
    import warnings
    c, pairs = case
    pred, target = np.array(pairs).T
    with warnings.catch_warnings():     # sklearn warns of predicted classes absent in y_true
        warnings.simplefilter("ignore")
        expected = 1 - balanced_accuracy_score(target, pred)
    assert metrics.balanced_error_rate(pred, target, c) == pytest.approx(expected, abs=1e-12)


def test_ber_by_hand_and_against_the_error_rate():
    # 9 of class 0 all right, 1 of class 1 wrong: error rate 0.1, BER (0 + 1) / 2
    target, pred = np.array([0] * 9 + [1]), np.zeros(10, dtype=int)
    assert metrics.balanced_error_rate(pred, target, 2) == 0.5
    # balanced classes: BER = the plain error rate
    target, pred = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 0, 2])
    assert metrics.balanced_error_rate(minicnn.tensor(pred), target, 3) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="balanced_error_rate: target holds no labels"):
        metrics.balanced_error_rate(np.array([], int), np.array([], int), 3)
    with pytest.raises(ValueError, match="outside"):
        metrics.balanced_error_rate(np.array([3]), np.array([0]), 3)


# ------------------------------------------------------------------ five/ten crop

IMAGE = np.arange(2 * 6 * 7, dtype=np.float64).reshape(2, 6, 7)


def test_five_crop_by_hand():
    tl, tr, bl, br, centre = T.FiveCrop((3, 4))(IMAGE)
    np.testing.assert_array_equal(tl, IMAGE[:, :3, :4])
    np.testing.assert_array_equal(tr, IMAGE[:, :3, 3:])
    np.testing.assert_array_equal(bl, IMAGE[:, 3:, :4])
    np.testing.assert_array_equal(br, IMAGE[:, 3:, 3:])
    # torchvision's centre: round((6 - 3) / 2) = 2 (half to even), round(1.5) = 2
    np.testing.assert_array_equal(centre, IMAGE[:, 2:5, 2:6])


def test_ten_crop_mirrors_the_image_not_the_crops():
    crops = T.TenCrop(3)(IMAGE)
    assert len(crops) == 10
    mirrored = IMAGE[..., ::-1]
    for got, want in zip(crops[5:], T.FiveCrop(3)(mirrored)):
        np.testing.assert_array_equal(got, want)
    # the mirrored image's top-left crop is the reflection of the original's top-right
    np.testing.assert_array_equal(crops[5], crops[1][..., ::-1])
    vertical = T.TenCrop(3, vertical_flip=True)(IMAGE)
    np.testing.assert_array_equal(vertical[5], crops[2][..., ::-1, :])


def test_crops_of_tensors_and_pil_images():
    crops = T.TenCrop(2)(minicnn.tensor(IMAGE))
    assert all(isinstance(c, minicnn.Tensor) and c.shape == (2, 2, 2) for c in crops)
    picture = Image.fromarray(np.arange(30, dtype=np.uint8).reshape(5, 6))
    crops = T.TenCrop(3, vertical_flip=True)(picture)
    pixels = np.asarray(picture)
    np.testing.assert_array_equal(np.asarray(crops[3]), pixels[2:, 3:])
    np.testing.assert_array_equal(np.asarray(crops[5]), pixels[::-1][:3, :3])


def test_crop_errors():
    with pytest.raises(ValueError, match=r"FiveCrop: requested crop size \(7, 7\) is bigger"):
        T.FiveCrop(7)(IMAGE)
    with pytest.raises(ValueError, match="TenCrop: size must be"):
        T.TenCrop(0)


# ------------------------------------------------------------------- TTA and ensembles

def _tiny(classes=4, seed=0):
    minicnn.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, classes))


def test_predict_tta_is_the_mean_of_the_per_crop_softmaxes():
    model = _tiny()
    images = minicnn.randn(3, 2, 6, 7)
    probs = predict_tta(model, images, crops=T.TenCrop(5))
    assert probs.shape == (3, 4) and model.training                # mode restored
    model.eval()
    for n in range(3):
        per_crop = [F.softmax(model(c.unsqueeze(0)), dim=1).numpy()[0]
                    for c in T.TenCrop(5)(images[n])]
        np.testing.assert_allclose(probs.numpy()[n], np.mean(per_crop, axis=0), rtol=1e-5)
    np.testing.assert_allclose(probs.numpy().sum(1), 1, rtol=1e-6)
    one = predict_tta(model, images[1], crops=T.FiveCrop(5))
    assert one.shape == (4,)
    with pytest.raises(ValueError, match="predict_tta: crops must return a tuple"):
        predict_tta(model, images, crops=T.CenterCrop(5))
    with pytest.raises(ValueError, match="predict_tta: expected a Tensor image"):
        predict_tta(model, images.numpy())


def test_ensemble_is_the_mean_of_its_members_softmax():
    members = [_tiny(seed=s).eval() for s in range(3)]
    x = minicnn.randn(5, 2, 6, 6)
    expected = np.mean([F.softmax(m(x), dim=1).numpy() for m in members], axis=0)
    np.testing.assert_allclose(Ensemble(members)(x).numpy(), expected, rtol=1e-6)
    logits = Ensemble(members, combine="mean_logits")(x).numpy()
    np.testing.assert_allclose(logits, np.mean([m(x).numpy() for m in members], 0), rtol=1e-6)
    # its parameters are its members', under members.<i>.
    assert len(Ensemble(members).state_dict()) == sum(len(m.state_dict()) for m in members)


def test_ensemble_of_checkpoints(tmp_path):
    members = [_tiny(seed=s) for s in range(2)]
    paths = []
    for i, m in enumerate(members):
        paths.append(tmp_path / f"m{i}.npz")
        minicnn.save(m.state_dict(), paths[-1])
    (tmp_path / "run").mkdir()
    minicnn.save({"format": "minicnn-train", "model": members[0].state_dict()},
                 tmp_path / "run" / "checkpoint.npz")
    paths.append(tmp_path / "run")
    ensemble = Ensemble.from_checkpoints(_tiny, paths).eval()
    x = minicnn.randn(2, 2, 5, 5)
    expected = np.mean([F.softmax(m.eval()(x), dim=1).numpy()
                        for m in members + [members[0]]], axis=0)
    np.testing.assert_allclose(ensemble(x).numpy(), expected, rtol=1e-6)
    # by zoo name
    lenet = minicnn.models.lenet5(num_classes=3)
    minicnn.save(lenet.state_dict(), tmp_path / "lenet.npz")
    zoo = Ensemble.from_checkpoints("lenet5", [tmp_path / "lenet.npz"], num_classes=3).eval()
    x = minicnn.randn(2, 1, 28, 28)
    np.testing.assert_allclose(zoo(x).numpy(), F.softmax(lenet.eval()(x), dim=1).numpy(),
                               rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="load_model_state: no checkpoint"):
        Ensemble.from_checkpoints(_tiny, [tmp_path / "missing.npz"])


def test_ensemble_errors():
    with pytest.raises(ValueError, match="Ensemble: expected at least one model"):
        Ensemble([])
    with pytest.raises(ValueError, match="Ensemble: combine must be one of"):
        Ensemble([_tiny()], combine="vote")
    with pytest.raises(ValueError, match="Ensemble: the members' outputs differ"):
        Ensemble([_tiny(4), _tiny(5)])(minicnn.randn(1, 2, 5, 5))
