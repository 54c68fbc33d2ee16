"""make_grid (torchvision.utils.make_grid's semantics, by hand shapes and values),
save_image, show_filters and `minicnn show filters`."""
import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn import models
from minicnn.cli import main as cli
from minicnn.utils.visualize import make_grid, save_image, show_filters


@pytest.mark.parametrize("count, shape", [(96, (3, 158, 106)), (64, (3, 106, 106)),
                                          (1, (3, 11, 11)), (9, (3, 28, 106)),
                                          (5, (3, 15, 67))])
def test_grid_shapes(count, shape):
    # (11 + 2) * rows + 2 by (11 + 2) * min(8, count) + 2; a batch of one is unpadded
    assert make_grid(np.zeros((count, 3, 11, 11))).shape == shape


def test_grid_values_by_hand():
    images = np.arange(12.0).reshape(3, 1, 2, 2)      # three grey 2x2 images
    grid = make_grid(images, nrow=2, padding=1, pad_value=-1)
    p = -1
    expected = np.array([[p, p, p, p, p, p, p],
                         [p, 0, 1, p, 4, 5, p],
                         [p, 2, 3, p, 6, 7, p],
                         [p, p, p, p, p, p, p],
                         [p, 8, 9, p, p, p, p],
                         [p, 10, 11, p, p, p, p],
                         [p, p, p, p, p, p, p]])
    assert grid.shape == (3, 7, 7)                    # grey repeated into RGB
    for channel in grid:
        np.testing.assert_array_equal(channel, expected)


def test_grid_keeps_colour_channels_in_place():
    images = np.stack([np.full((3, 2, 2), c) * np.array([1, 10, 100])[:, None, None]
                       for c in (1.0, 2.0)])
    grid = make_grid(images, padding=0)
    np.testing.assert_array_equal(grid[:, 0, :], [[1, 1, 2, 2], [10, 10, 20, 20],
                                                  [100, 100, 200, 200]])


def test_normalize_over_the_batch_and_each():
    images = np.array([[[[0.0, 2.0]]], [[[4.0, 8.0]]]])       # (2, 1, 1, 2)
    together = make_grid(images, padding=0, normalize=True)[0]
    np.testing.assert_allclose(together, [[0, 0.25, 0.5, 1]])
    each = make_grid(images, padding=0, normalize=True, scale_each=True)[0]
    np.testing.assert_allclose(each, [[0, 1, 0, 1]])
    clamped = make_grid(images, padding=0, normalize=True, value_range=(2.0, 6.0))[0]
    np.testing.assert_allclose(clamped, [[0, 0, 0.5, 1]])
    flat = make_grid(np.full((2, 1, 1, 1), 3.0), padding=0, normalize=True)
    assert np.isfinite(flat).all() and (flat == 0).all()      # (high - low) >= 1e-5
    np.testing.assert_array_equal(images[1, 0, 0], [4.0, 8.0])   # input untouched


def test_tensors_lists_and_single_images():
    t = minicnn.tensor(np.arange(8.0).reshape(2, 1, 2, 2))
    grid = make_grid(t, padding=0)
    assert isinstance(grid, minicnn.Tensor) and grid.shape == (3, 2, 4)
    listed = make_grid([t[0], t[1]], padding=0)
    np.testing.assert_array_equal(listed.numpy(), grid.numpy())
    assert make_grid(np.zeros((5, 7))).shape == (3, 5, 7)


@pytest.mark.parametrize("kwargs, message", [
    (dict(tensor=np.zeros((1, 1, 2, 2, 2))), "expected"),
    (dict(tensor=[np.zeros((3, 2, 2)), np.zeros((3, 2, 3))]), "one shape"),
    (dict(tensor=[]), "empty"),
    (dict(tensor="image"), "expected a Tensor"),
    (dict(tensor=np.zeros((2, 3, 2, 2)), nrow=0), "nrow"),
    (dict(tensor=np.zeros((2, 3, 2, 2)), padding=-1), "padding"),
    (dict(tensor=np.zeros((2, 3, 2, 2)), normalize=True, value_range=[0, 1]), "value_range"),
])
def test_grid_errors(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=f"make_grid: .*{message}"):
        make_grid(**kwargs)


def test_save_image_rounds_to_bytes(tmp_path):
    path = tmp_path / "grid.png"
    save_image(np.array([[[0.0, 0.5, 1.0, 2.0]]]), path)
    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (1, 4, 3)
    np.testing.assert_array_equal(pixels[0, :, 0], [0, 128, 255, 255])


def test_show_filters_alexnet(tmp_path):
    model = models.alexnet(num_classes=10)
    grid = show_filters(model, tmp_path / "f.png", scale=2)
    # 64 filters of 3x22x22 (11x11 doubled), 8 a row, padding 1
    assert grid.shape == (3, 8 * 23 + 1, 8 * 23 + 1)
    w = model.features[0].weight.numpy()[5]
    tile = grid[:, 1 + 23 * 0 + 0:1 + 22, 1 + 23 * 5:1 + 23 * 5 + 22][:, ::2, ::2]
    np.testing.assert_allclose(tile, (w - w.min()) / (w.max() - w.min()), rtol=1e-5)
    assert np.asarray(Image.open(tmp_path / "f.png")).shape == (185, 185, 3)


def test_show_filters_grey_input_gives_a_tile_per_channel(tmp_path):
    grid = show_filters(models.lenet5(), tmp_path / "f.png", scale=1, nrow=3)
    assert grid.shape == (3, 2 * 6 + 1, 3 * 6 + 1)          # 6 filters of 1x5x5
    with pytest.raises(ValueError, match="show_filters: Linear has no Conv2d"):
        show_filters(minicnn.nn.Linear(2, 2), tmp_path / "g.png")


def test_show_filters_command(tmp_path, capsys):
    model = models.alexnet(num_classes=7)
    minicnn.save(model.state_dict(), tmp_path / "state.npz")
    out = tmp_path / "trained.png"
    assert cli(["show", "filters", "--model", "alexnet", "--checkpoint",
                str(tmp_path / "state.npz"), "--scale", "1", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    picture = np.asarray(Image.open(out)).astype(float) / 255
    expected = show_filters(model, tmp_path / "direct.png", scale=1)
    np.testing.assert_allclose(picture, expected.transpose(1, 2, 0), atol=1 / 255)
    # a training checkpoint (as minicnn train writes it) in a run folder
    (tmp_path / "run").mkdir()
    minicnn.save({"format": "minicnn-train", "model": model.state_dict()},
                 tmp_path / "run" / "checkpoint.npz")
    assert cli(["show", "filters", "--model", "alexnet", "--checkpoint",
                str(tmp_path / "run"), "--scale", "1", "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)).astype(float) / 255, picture)
    assert cli(["show", "filters", "--model", "alexnet", "--checkpoint",
                str(tmp_path / "missing.npz")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
