"""Readers for data-set files the user has: MNIST/Fashion-MNIST IDX, CIFAR binary and
python versions (restricted unpickler), ImageFolder. All on small fake files in tmp_path."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from minicnn.data import DataLoader, datasets, transforms
from minicnn.data.datasets import RefusedPickleError, safe_pickle_load


# ----------------------------------------------------------------------- IDX

def _idx_bytes(array, type_code=0x08):
    header = struct.pack(">HBB", 0, type_code, array.ndim)
    header += b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(path, data, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)


def _fake_mnist(folder, n=5, train=True, gz=False, rng=None):
    rng = rng or np.random.default_rng(0)
    prefix = "train" if train else "t10k"
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    _write(folder / f"{prefix}-images-idx3-ubyte{suffix}", _idx_bytes(images), gz)
    _write(folder / f"{prefix}-labels-idx1-ubyte{suffix}", _idx_bytes(labels), gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files(tmp_path, gz):
    images, labels = _fake_mnist(tmp_path / "MNIST" / "raw", n=6, train=False, gz=gz)
    ds = datasets.MNIST(tmp_path, train=False, transform=transforms.ToTensor())
    assert len(ds) == 6 and np.array_equal(ds.data, images)
    assert ds.targets.dtype == np.int64 and ds.targets.tolist() == labels.tolist()
    image, label = ds[2]
    assert image.shape == (1, 28, 28) and np.allclose(image[0], images[2] / 255.0)
    assert label == labels[2]
    x, y = next(iter(DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 1, 28, 28) and y.tolist() == labels[:4].tolist()


def test_fashion_mnist_layout_and_classes(tmp_path):
    _fake_mnist(tmp_path, n=3)
    ds = datasets.FashionMNIST(tmp_path, train=True)
    assert len(ds) == 3 and ds.classes[9] == "Ankle boot"


def test_idx_reader_keeps_wider_types(tmp_path):
    values = np.arange(6, dtype=np.int32).reshape(2, 3) * 1000
    (tmp_path / "a.idx").write_bytes(_idx_bytes(values, 0x0C))
    out = datasets.read_idx(tmp_path / "a.idx")
    assert out.dtype == np.int32 and np.array_equal(out, values)


def test_idx_errors_name_the_file_and_the_problem(tmp_path):
    folder = tmp_path / "m"
    images, labels = _fake_mnist(folder, n=4)
    path = folder / "train-images-idx3-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: IDX header says shape "
                                         r"\(4, 28, 28\).*truncated"):
        datasets.MNIST(folder)
    path.write_bytes(b"\x12\x34" + raw[2:])
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.MNIST(folder)
    path.write_bytes(_idx_bytes(labels))          # labels where the images should be
    with pytest.raises(ValueError, match="1 dimension.*expected 3.*swapped"):
        datasets.MNIST(folder)
    path.write_bytes(_idx_bytes(images[:3]))
    with pytest.raises(ValueError, match="3 images but .* 4 labels"):
        datasets.MNIST(folder)
    (folder / "train-images-idx3-ubyte").write_bytes(gzip.compress(raw)[:40])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        datasets.MNIST(folder)


def test_missing_files_say_which_where_and_how_to_get_them(tmp_path):
    _fake_mnist(tmp_path, n=2)
    os.remove(tmp_path / "train-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError) as info:
        datasets.MNIST(tmp_path)
    message = str(info.value)
    assert "train-labels-idx1-ubyte" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "yann.lecun.com" in message and "does not download" in message
    with pytest.raises(FileNotFoundError, match="(?s)cifar-10-batches-bin.*cs.toronto.edu"):
        datasets.CIFAR10(tmp_path)


# ---------------------------------------------------------------------- CIFAR

def _cifar_records(n, label_bytes, rng, num_classes=10):
    labels = rng.integers(0, num_classes, (n, label_bytes), dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return np.concatenate([labels, pixels], axis=1), labels, pixels


def test_cifar10_binary(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    records, labels, pixels = _cifar_records(3, 1, rng)
    (folder / "test_batch.bin").write_bytes(records.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    ds = datasets.CIFAR10(tmp_path, train=False)
    assert ds.data.shape == (3, 32, 32, 3) and ds.classes[3] == "c3"
    assert ds.targets.tolist() == labels[:, 0].tolist()
    # pixel (row 2, column 5) of image 1: red at 2*32+5, green 1024 later, blue 2048 later
    assert ds.data[1, 2, 5].tolist() == [pixels[1, 69], pixels[1, 1093], pixels[1, 2117]]
    image, _ = transforms.ToTensor()(ds[1][0]), None
    assert image.shape == (3, 32, 32) and image[1, 2, 5] == pixels[1, 1093] / np.float32(255)


def test_cifar10_binary_train_uses_five_batches_and_checks_sizes(tmp_path, rng):
    for i in range(1, 6):
        (tmp_path / f"data_batch_{i}.bin").write_bytes(_cifar_records(2, 1, rng)[0].tobytes())
    assert len(datasets.CIFAR10(tmp_path)) == 10
    (tmp_path / "data_batch_3.bin").write_bytes(_cifar_records(2, 1, rng)[0].tobytes()[:-1])
    with pytest.raises(ValueError, match="data_batch_3.bin: size 6145 bytes is not a positive "
                                         "multiple of 3073"):
        datasets.CIFAR10(tmp_path)


def test_cifar100_binary_fine_and_coarse(tmp_path, rng):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    records, labels, _ = _cifar_records(4, 2, rng, num_classes=20)
    (folder / "train.bin").write_bytes(records.tobytes())
    ds = datasets.CIFAR100(tmp_path)
    assert ds.targets.tolist() == labels[:, 1].tolist()
    assert ds.coarse_targets.tolist() == labels[:, 0].tolist()
    assert len(ds.classes) == 100


def _python_batch(n, rng, key=b"labels"):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return {b"batch_label": b"testing batch 1 of 1", key: [int(v) for v in rng.integers(0, 10, n)],
            b"data": data, b"filenames": [b"x.png"] * n}


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_python_version_with_the_restricted_unpickler(tmp_path, rng, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = _python_batch(3, rng)
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
    ds = datasets.CIFAR10(tmp_path, train=False)
    assert ds.targets.tolist() == batch[b"labels"]
    assert np.array_equal(ds.data[2].transpose(2, 0, 1).reshape(-1), batch[b"data"][2])


def test_cifar100_python_version(tmp_path, rng):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    batch = _python_batch(2, rng, key=b"fine_labels")
    batch[b"coarse_labels"] = [1, 2]
    (folder / "test").write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps(
        {b"fine_label_names": [f"n{i}".encode() for i in range(100)]}, protocol=2))
    ds = datasets.CIFAR100(tmp_path, train=False)
    assert ds.coarse_targets.tolist() == [1, 2] and ds.classes[7] == "n7"


class _Payload:
    """Unpickling this would create a folder: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path, rng):
    marker = str(tmp_path / "pwned")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = _python_batch(2, rng)
    batch[b"filenames"] = _Payload(marker)
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    assert pickle.loads(pickle.dumps(_Payload(str(tmp_path / "check")))) is None  # it works
    assert os.path.isdir(tmp_path / "check")
    with pytest.raises(RefusedPickleError, match="refusing to load 'posix.mkdir'|"
                                                  "refusing to load 'nt.mkdir'"):
        datasets.CIFAR10(tmp_path, train=False)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("payload", [
    (os.system, ("true",)), (eval, ("1+1",)), (np.load, ("x.npy",))])
def test_restricted_unpickler_refuses_any_callable(tmp_path, payload):
    class Evil:
        def __reduce__(self):
            return payload

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({b"data": Evil()}, protocol=4))
    with pytest.raises(RefusedPickleError, match="refusing to load"):
        safe_pickle_load(path)


def test_restricted_unpickler_refuses_array_subclasses_and_garbage(tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(np.ma.masked_array([1, 2]), protocol=2))
    with pytest.raises(RefusedPickleError):
        safe_pickle_load(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="not a readable pickle"):
        safe_pickle_load(path)


# ----------------------------------------------------------------- ImageFolder

def test_image_folder(tmp_path):
    from PIL import Image
    for name, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / name / "sub").mkdir(parents=True)
        Image.new("RGB", (5, 4), colour).save(tmp_path / name / "a.png")
        Image.new("L", (5, 4), 128).save(tmp_path / name / "sub" / "b.bmp")
        (tmp_path / name / "notes.txt").write_text("not an image")
    ds = datasets.ImageFolder(tmp_path, transform=transforms.ToTensor())
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert len(ds) == 4 and ds.targets == [0, 0, 1, 1]
    image, label = ds[2]
    assert label == 1 and image.shape == (3, 4, 5)
    assert np.allclose(image[:, 0, 0], [0, 0, 1])
    grey, _ = ds[1]                                # converted to RGB
    assert grey.shape == (3, 4, 5) and np.allclose(grey, 128 / 255)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no valid file for the class.*empty"):
        datasets.ImageFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.ImageFolder(tmp_path / "nowhere")


def test_image_folder_scales_16_bit_grey_by_its_depth(tmp_path):
    from PIL import Image
    (tmp_path / "a").mkdir()
    depth16 = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)    # 0 .. 63,000
    Image.fromarray(depth16).save(tmp_path / "a" / "deep.png")
    ds = datasets.ImageFolder(tmp_path, transform=transforms.ToTensor())
    image, _ = ds[0]
    assert image.shape == (3, 8, 8)
    # not clipped to white: the 16-bit values scaled by 255/65535, as 8-bit intensities
    expected = np.rint(depth16 * (255 / 65535)) / 255
    np.testing.assert_allclose(np.asarray(image)[0], expected, atol=1e-6)
    assert 0.9 < np.asarray(image).max() < 1 and np.asarray(image).min() == 0


def test_image_folder_names_a_truncated_file(tmp_path):
    from PIL import Image
    (tmp_path / "a").mkdir()
    path = tmp_path / "a" / "cut.png"
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    ds = datasets.ImageFolder(tmp_path)
    with pytest.raises(ValueError, match=r"cut\.png.*truncated"):
        ds[0]
