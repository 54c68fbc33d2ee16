"""Joint (image, mask) transforms keep the two aligned; the mask stays integer with the
labels it had (plus the fill); elastic deformation against grid_sample."""
import numpy as np
import pytest

from minicnn import Tensor
from minicnn.data import (ElasticTransform, ImageOnly, JointCenterCrop, JointCompose,
                          JointElasticTransform, JointNormalize, JointRandomCrop,
                          JointRandomHorizontalFlip, JointRandomRotation,
                          JointRandomVerticalFlip, JointResize, ToTensorPair,
                          elastic_transform, transforms)
from minicnn.data._random import derived_generator, using_generator
from minicnn.data.elastic import (cubic_matrix, gaussian_blur, random_displacement,
                                  unet_displacement)


def _blobs(h=40, w=48):
    """A mask with two large labelled discs, and an image made from it: channel 0 is 1
    on label 1, channel 1 is 1 on label 2, channel 2 is a ramp."""
    ys, xs = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), dtype=np.int64)
    mask[(ys - 14) ** 2 + (xs - 15) ** 2 <= 81] = 1
    mask[(ys - 24) ** 2 + (xs - 32) ** 2 <= 100] = 2
    image = np.stack([(mask == 1), (mask == 2), xs / w]).astype(np.float32)
    return image, mask


def _check_aligned(image, mask, fill_label=255, labels=(0, 1, 2)):
    """Wherever the resampled image is clearly inside a disc (> 0.75) the mask holds that
    disc's label; wherever it is clearly outside both (< 0.25, and the ramp shows the
    pixel came from inside the image) the mask holds 0."""
    assert mask.dtype == np.int64 and mask.shape == image.shape[-2:]
    assert set(np.unique(mask)) <= set(labels) | {fill_label}
    for channel, label in ((0, 1), (1, 2)):
        assert np.all(mask[image[channel] > 0.75] == label)
    outside = (image[0] < 0.25) & (image[1] < 0.25) & (mask != fill_label)
    assert np.all(mask[outside] == 0)
    assert np.count_nonzero(mask == 1) > 50 and np.count_nonzero(mask == 2) > 50


@pytest.mark.parametrize("transform", [
    JointRandomHorizontalFlip(p=1.0), JointRandomVerticalFlip(p=1.0),
    JointRandomCrop(32, padding=4), JointCenterCrop((30, 50)),
    JointResize((23, 61)), JointResize(20),
    JointRandomRotation(35), JointElasticTransform(alpha=60.0, sigma=4.0),
    JointElasticTransform(sigma=3.0, mode="unet"),
    JointCompose([JointRandomRotation(20), JointRandomCrop(36), JointRandomHorizontalFlip()]),
])
def test_mask_follows_image(transform):
    image, mask = _blobs()
    for k in range(3):
        with using_generator(derived_generator(7, k)):
            out_image, out_mask = transform(image, mask)
        _check_aligned(out_image, out_mask)


def test_exact_geometry():
    image, mask = _blobs()
    img, mk = JointRandomHorizontalFlip(p=1.0)(image, mask)
    assert np.array_equal(mk, mask[:, ::-1]) and np.array_equal(img, image[..., ::-1])
    img, mk = JointRandomVerticalFlip(p=0.0)(image, mask)
    assert np.array_equal(mk, mask) and np.array_equal(img, image)
    square = mask[:40, :40]
    _, mk = JointRandomRotation((90, 90))(image[:, :40, :40], square)
    assert np.array_equal(mk, np.rot90(square))                  # counter-clockwise
    padded_mask = np.pad(mask, ((0, 0), (4, 4)), constant_values=255)
    padded_image = np.pad(image, ((0, 0), (0, 0), (4, 4)))
    lefts = set()
    for k in range(6):
        with using_generator(derived_generator(2, k)):
            img, mk = JointRandomCrop((40, 48), padding=(4, 0))(image, mask)  # left/right
        left = next(x for x in range(9) if np.array_equal(mk, padded_mask[:, x:x + 48]))
        assert np.array_equal(img, padded_image[..., left:left + 48])
        lefts.add(left)
    assert len(lefts) > 1
    img, mk = JointCenterCrop((44, 48))(image, mask)              # larger than the image
    assert np.all(mk[:2] == 255) and np.all(mk[-2:] == 255) and np.array_equal(mk[2:-2], mask)
    img, mk = JointResize(20)(image, mask)                        # shorter side, aspect kept
    assert mk.shape == (20, 24) and img.shape == (3, 20, 24)
    img, mk = JointResize((80, 96))(image, mask)                  # 2x: nearest repeats pixels
    assert np.array_equal(mk, mask.repeat(2, 0).repeat(2, 1))


def test_random_crop_takes_the_same_window():
    image, mask = _blobs()
    image = image + np.arange(48, dtype=np.float32)[None, None, :] * 10  # column stamp
    for k in range(5):
        with using_generator(derived_generator(1, k)):
            img, mk = JointRandomCrop((16, 20))(image, mask)
        left = int(round((img[2, 0, 0] - image[2, 0, 0]) / 10.0))
        top = next(t for t in range(25) if np.array_equal(image[:, t:t + 16, left:left + 20],
                                                           img))
        assert np.array_equal(mk, mask[top:top + 16, left:left + 20])


def test_tensors_in_tensors_out_and_to_tensor_pair():
    image, mask = _blobs()
    img, mk = JointRandomHorizontalFlip(p=1.0)(Tensor(image), Tensor(mask))
    assert isinstance(img, Tensor) and isinstance(mk, Tensor)
    assert np.array_equal(mk.numpy(), mask[:, ::-1])
    picture = np.zeros((4, 5, 3), dtype=np.uint8)
    picture[..., 0] = 255
    img, mk = ToTensorPair()(picture, np.ones((4, 5), dtype=np.uint8))
    assert img.shape == (3, 4, 5) and img.dtype == np.float32 and img[0].min() == 1.0
    assert mk.dtype == np.int64 and mk.shape == (4, 5)
    with pytest.raises(ValueError, match=r"ToTensorPair: the image is 4x5 .* mask is 5x4"):
        ToTensorPair()(picture, np.ones((5, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="ToTensorPair: mask must be an"):
        ToTensorPair()(picture, np.ones((4, 5), dtype=np.float32))


def test_to_tensor_pair_reads_palette_indices():
    from PIL import Image
    labels = np.array([[0, 1, 255], [15, 15, 0]], dtype=np.uint8)
    pal = Image.fromarray(labels, mode="P")
    pal.putpalette([200, 10, 10] * 256)                            # every colour the same
    _, mk = ToTensorPair()(Image.new("RGB", (3, 2)), pal)
    assert mk.tolist() == labels.tolist()
    with pytest.raises(ValueError, match="mode 'RGB'"):
        ToTensorPair()(Image.new("RGB", (3, 2)), Image.new("RGB", (3, 2)))


def test_image_only_and_normalize_leave_the_mask():
    image, mask = _blobs()
    img, mk = JointNormalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(image, mask)
    np.testing.assert_allclose(img, (image - 0.5) / 0.25)
    assert mk is mask
    img, mk = ImageOnly(transforms.ColorJitter(brightness=0.5))(image, mask)
    assert mk is mask and img.shape == image.shape


def test_bad_inputs_are_named():
    image, mask = _blobs()
    with pytest.raises(ValueError, match=r"JointRandomCrop: the image is 40x48 .* 40x47"):
        JointRandomCrop(8)(image, mask[:, :47])
    with pytest.raises(ValueError, match="JointResize: the mask must be an"):
        JointResize(8)(image, mask.astype(np.float32))
    with pytest.raises(TypeError, match="ToTensorPair"):
        JointRandomHorizontalFlip()(np.zeros((40, 48, 3), np.uint8), mask)
    with pytest.raises(ValueError, match="JointRandomCrop: required crop size"):
        JointRandomCrop(64)(image, mask)
    with pytest.raises(ValueError, match="JointRandomHorizontalFlip: p"):
        JointRandomHorizontalFlip(p=2)
    with pytest.raises(ValueError, match="ElasticTransform: mode"):
        JointElasticTransform(mode="simard")


# --------------------------------------------------------------------- elastic

def _identity_grid(h, w):
    xs = (2 * np.arange(w) + 1) / w - 1
    ys = (2 * np.arange(h) + 1) / h - 1
    return np.stack(np.broadcast_arrays(xs[None, :], ys[:, None]), axis=-1)[None]


def test_elastic_zero_displacement_is_identity(rng):
    image = rng.random((3, 9, 11)).astype(np.float32)
    labels = rng.integers(0, 5, (9, 11))
    zero = np.zeros((1, 9, 11, 2))
    assert np.array_equal(elastic_transform(image, zero), image)
    assert np.array_equal(elastic_transform(labels, zero, "nearest", 255), labels)
    img, mk = JointElasticTransform(alpha=0.0)(image, labels)
    np.testing.assert_allclose(img, image, atol=1e-6)
    assert np.array_equal(mk, labels)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill", [0, 0.6, (0.1, 0.2, 0.3)])
def test_elastic_equals_grid_sample(torch, rng, mode, fill):
    image = rng.random((3, 9, 11))
    displacement = rng.normal(0.0, 0.3, (1, 9, 11, 2))            # reaches outside too
    fill_array = np.reshape(fill, (-1, 1, 1)) if np.ndim(fill) else fill
    grid = torch.tensor(_identity_grid(9, 11) + displacement)
    ref = torch.nn.functional.grid_sample(torch.tensor(image - fill_array)[None], grid,
                                          mode=mode, padding_mode="zeros",
                                          align_corners=False)[0].numpy() + fill_array
    np.testing.assert_allclose(elastic_transform(image, displacement, mode, fill), ref,
                               rtol=1e-12, atol=1e-12)


def test_elastic_by_hand_bilinear():
    image = np.arange(12, dtype=np.float64).reshape(1, 3, 4)
    displacement = np.zeros((1, 3, 4, 2))
    displacement[0, 1, 1] = (0.25 * 2 / 4, 0.5 * 2 / 3)        # pixel (1, 1) reads (1.5, 1.25)
    out = elastic_transform(image, displacement)
    expected = (0.5 * 0.75 * image[0, 1, 1] + 0.5 * 0.25 * image[0, 1, 2]
                + 0.5 * 0.75 * image[0, 2, 1] + 0.5 * 0.25 * image[0, 2, 2])
    assert out[0, 1, 1] == pytest.approx(expected)
    out[0, 1, 1] = image[0, 1, 1]
    assert np.array_equal(out, image)


def test_random_displacement_scales_x_by_width_and_y_by_height():
    field = random_displacement((12, 40), alpha=8.0, sigma=0.0, rng=np.random.default_rng(0))
    assert field.shape == (1, 12, 40, 2) and field.dtype == np.float32
    x_units, y_units = field[0, ..., 0] * 40 / 8.0, field[0, ..., 1] * 12 / 8.0
    for units in (x_units, y_units):                          # uniform in [-1, 1] again
        assert np.abs(units).max() <= 1.0 + 1e-6 and np.abs(units).max() > 0.95
    smooth = random_displacement((12, 40), alpha=8.0, sigma=3.0, rng=np.random.default_rng(0))
    assert np.abs(np.diff(smooth[0, ..., 0], axis=1)).mean() < \
        0.2 * np.abs(np.diff(field[0, ..., 0], axis=1)).mean()


def test_gaussian_blur_equals_torch_conv(torch, rng):
    x = rng.random((10, 13))
    k, s = 9, 1.5
    taps = torch.exp(-0.5 * (torch.arange(-4, 5, dtype=torch.float64) / s) ** 2)
    taps = taps / taps.sum()
    padded = torch.nn.functional.pad(torch.tensor(x)[None, None], (4, 4, 4, 4), mode="reflect")
    ref = torch.nn.functional.conv2d(torch.nn.functional.conv2d(padded, taps.view(1, 1, 1, 9)),
                                     taps.view(1, 1, 9, 1))[0, 0].numpy()
    np.testing.assert_allclose(gaussian_blur(x, k, s), ref, rtol=1e-12, atol=1e-12)


def test_unet_displacement_passes_through_the_coarse_grid():
    field = unet_displacement((65, 33), sigma=10.0, grid_size=3, rng=np.random.default_rng(4))
    coarse = np.random.default_rng(4).normal(0.0, 10.0, (2, 3, 3))    # pixels, (x, y)
    in_pixels = np.stack([field[0, ..., 0] * 33 / 2, field[0, ..., 1] * 65 / 2])
    np.testing.assert_allclose(in_pixels[:, ::32, ::16], coarse, rtol=1e-5, atol=1e-4)
    m = cubic_matrix(3, 9)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)                    # reproduces constants
    np.testing.assert_allclose(m @ np.array([0.0, 1.0, 2.0]), np.arange(9) / 4.0)  # and lines


def test_elastic_transform_class():
    image = np.random.default_rng(0).random((3, 24, 24)).astype(np.float32)
    with using_generator(derived_generator(0, 0)):
        out = ElasticTransform()(image)
    with using_generator(derived_generator(0, 0)):
        again = ElasticTransform()(Tensor(image))
    assert out.shape == image.shape and out.dtype == np.float32
    assert not np.allclose(out, image) and np.array_equal(again.numpy(), out)
    with pytest.raises(ValueError, match=r"elastic_transform: displacement must have shape"):
        elastic_transform(image, np.zeros((1, 24, 23, 2)))
