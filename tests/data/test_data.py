"""minicnn.data: Dataset helpers, default_collate, DataLoader (shuffling, prefetch threads,
errors, state), and the offline data sets (digits, synthetic shapes)."""
import collections
import threading
import time

import numpy as np
import pytest

import minicnn
from minicnn.data import (ConcatDataset, DataLoader, Dataset, Subset, TensorDataset,
                          datasets, default_collate, random_split, transforms)


class Squares(Dataset):
    """Sample i is (a (2, 3) float array filled with i, the label i % 3)."""

    def __init__(self, n=10):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((2, 3), i, dtype=np.float32), i % 3


class RandomSample(Dataset):
    """Each sample is a number drawn from the augmentation generator (like a transform)."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        from minicnn.data._random import current_generator
        return current_generator().random(), i


# ------------------------------------------------------------------- datasets

def test_tensor_dataset_indexes_every_argument():
    x, y = np.arange(12.0).reshape(6, 2), minicnn.arange(6)
    ds = TensorDataset(x, y)
    a, b = ds[4]
    assert len(ds) == 6 and np.array_equal(a, [8.0, 9.0])
    assert isinstance(b, minicnn.Tensor) and b.item() == 4


def test_tensor_dataset_size_mismatch_is_explained():
    with pytest.raises(ValueError, match=r"first dimensions are \[3, 4\]"):
        TensorDataset(np.zeros(3), np.zeros(4))


def test_subset_and_concat():
    ds = Squares(5)
    sub = Subset(ds, [4, 0])
    assert len(sub) == 2 and sub[0][1] == 4 % 3 and sub[1][0][0, 0] == 0
    both = ds + Squares(3)
    assert isinstance(both, ConcatDataset) and len(both) == 8
    assert both[6][0][0, 0] == 1 and both[-1][0][0, 0] == 2
    with pytest.raises(IndexError):
        both[8]
    with pytest.raises(IndexError, match="out of range"):
        Subset(ds, [5])


def test_random_split_partitions_and_is_seeded():
    parts = random_split(Squares(10), [7, 3], generator=np.random.default_rng(1))
    seen = sorted(parts[0].indices + parts[1].indices)
    assert [len(p) for p in parts] == [7, 3] and seen == list(range(10))
    again = random_split(Squares(10), [7, 3], generator=np.random.default_rng(1))
    assert again[1].indices == parts[1].indices
    fractions = random_split(Squares(10), [0.5, 0.25, 0.25])
    assert [len(p) for p in fractions] == [6, 2, 2]      # remainder handed out in order
    with pytest.raises(ValueError, match="does not equal the length"):
        random_split(Squares(10), [5, 4])


# -------------------------------------------------------------------- collate

def test_default_collate_structure_and_dtypes():
    Pair = collections.namedtuple("Pair", "a b")
    batch = [{"img": np.ones((2, 2), np.uint8) * i, "y": i, "w": 0.5, "ok": True,
              "name": f"s{i}", "pair": Pair(np.float32(i), (i, i))} for i in range(3)]
    out = default_collate(batch)
    assert out["img"].shape == (3, 2, 2) and out["img"].dtype == np.uint8
    assert out["y"].dtype == np.int64 and out["y"].tolist() == [0, 1, 2]
    assert out["w"].dtype == np.float64 and out["ok"].dtype == np.bool_
    assert out["name"] == ["s0", "s1", "s2"]
    assert isinstance(out["pair"], Pair) and out["pair"].a.dtype == np.float32
    assert [t.tolist() for t in out["pair"].b] == [[0, 1, 2], [0, 1, 2]]


def test_default_collate_stacks_tensors():
    out = default_collate([minicnn.ones(2, 3), minicnn.zeros(2, 3)])
    assert isinstance(out, minicnn.Tensor) and out.shape == (2, 2, 3)
    assert out.numpy()[0].sum() == 6 and out.numpy()[1].sum() == 0


def test_default_collate_errors():
    with pytest.raises(ValueError, match=r"sample 0 has shape \(2,\) but sample 1 has shape"):
        default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(TypeError, match="cannot be collated"):
        default_collate([object(), object()])
    with pytest.raises(ValueError, match="empty batch"):
        default_collate([])


# ----------------------------------------------------------------- DataLoader

def _collect(loader):
    return [(x.numpy()[:, 0, 0].tolist(), y.tolist()) for x, y in loader]


def test_loader_batches_in_order_without_shuffle():
    loader = DataLoader(Squares(10), batch_size=4)
    batches = _collect(loader)
    assert len(loader) == 3 and [b[0] for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches[0][1] == [0, 1, 2, 0]
    assert len(DataLoader(Squares(10), batch_size=4, drop_last=True)) == 2
    assert len(_collect(DataLoader(Squares(10), batch_size=4, drop_last=True))) == 2


def test_shuffle_is_a_permutation_reproducible_from_the_seed():
    a = _collect(DataLoader(Squares(10), batch_size=3, shuffle=True, seed=5))
    b = _collect(DataLoader(Squares(10), batch_size=3, shuffle=True, seed=5))
    c = _collect(DataLoader(Squares(10), batch_size=3, shuffle=True, seed=6))
    order = sum((x for x, _ in a), [])
    assert a == b and a != c and sorted(order) == list(range(10)) and order != list(range(10))
    minicnn.manual_seed(3)
    d = _collect(DataLoader(Squares(10), batch_size=3, shuffle=True))
    minicnn.manual_seed(3)
    e = _collect(DataLoader(Squares(10), batch_size=3, shuffle=True))
    assert d == e      # the loader's seed comes from minicnn's seeded generator


def test_each_epoch_reshuffles_and_state_dict_resumes_the_sequence():
    loader = DataLoader(Squares(20), batch_size=5, shuffle=True, seed=0)
    first, second = _collect(loader), _collect(loader)
    assert first != second
    state = {"seed": 0, "epoch": 1}
    fresh = DataLoader(Squares(20), batch_size=5, shuffle=True, seed=99)
    fresh.load_state_dict(state)
    assert _collect(fresh) == second and fresh.state_dict() == {"seed": 0, "epoch": 2}


@pytest.mark.parametrize("workers", [1, 3])
def test_prefetch_threads_give_the_same_batches(workers):
    serial = DataLoader(RandomSample(), batch_size=4, shuffle=True, seed=1)
    threaded = DataLoader(RandomSample(), batch_size=4, shuffle=True, seed=1,
                          num_workers=workers, prefetch_factor=2)
    for _ in range(2):      # two epochs: random draws depend on (seed, epoch, batch) only
        a = [(x.tolist(), y.tolist()) for x, y in serial]
        b = [(x.tolist(), y.tolist()) for x, y in threaded]
        assert a == b


def test_prefetch_runs_ahead_in_a_background_thread():
    threads, started = set(), threading.Event()

    class Slow(Squares):
        def __getitem__(self, i):
            threads.add(threading.get_ident())
            started.set()
            return super().__getitem__(i)

    it = iter(DataLoader(Slow(8), batch_size=2, num_workers=1))
    assert started.wait(5)                     # work began before the first next()
    batches = list(it)
    assert len(batches) == 4 and threading.get_ident() not in threads


def test_worker_error_is_raised_in_the_main_thread():
    class Broken(Squares):
        def __getitem__(self, i):
            if i == 5:
                raise KeyError("sample 5 is broken")
            return super().__getitem__(i)

    loader = DataLoader(Broken(8), batch_size=2, num_workers=2)
    got = []
    with pytest.raises(KeyError, match="sample 5 is broken"):
        for x, _ in loader:
            got.append(x.shape[0])
    assert got == [2, 2]                       # batches before the broken one arrived


def test_breaking_out_of_the_loop_stops_the_workers():
    before = {t for t in threading.enumerate() if t.name.startswith("minicnn-dataloader")}
    loader = DataLoader(Squares(100), batch_size=2, num_workers=2)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    deadline = time.time() + 5
    while time.time() < deadline:
        alive = {t for t in threading.enumerate()
                 if t.name.startswith("minicnn-dataloader")} - before
        if not alive:
            break
        time.sleep(0.05)
    assert not alive


def test_loader_argument_errors():
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        DataLoader(Squares(), batch_size=0)
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(Squares(), sampler=[0, 1], shuffle=True)
    with pytest.raises(ValueError, match="prefetch_factor"):
        DataLoader(Squares(), prefetch_factor=2)
    assert _collect(DataLoader(Squares(), batch_size=2, sampler=[3, 1]))[0][0] == [3, 1]


# ----------------------------------------------------------- offline data sets

def test_digits_split_is_fixed_stratified_and_disjoint():
    train, test = datasets.Digits(train=True), datasets.Digits(train=False)
    assert len(train) + len(test) == 1797 and abs(len(test) - 0.2 * 1797) < 10
    assert train.data.shape[1:] == (28, 28) and train.data.dtype == np.uint8
    counts = np.bincount(test.targets, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38                 # stratified
    joined = np.concatenate([train.data, test.data]).reshape(1797, -1)
    assert len(np.unique(joined, axis=0)) >= 1790                     # disjoint parts
    again = datasets.Digits(train=False)
    assert np.array_equal(again.data, test.data)
    big = datasets.Digits(train=False, image_size=32, transform=transforms.ToTensor())
    image, label = big[0]
    assert image.shape == (1, 32, 32) and image.dtype == np.float32 and 0 <= label < 10
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_digits_resize_is_bilinear_upsampling_of_sklearn_images():
    from sklearn.datasets import load_digits
    from minicnn.data.datasets.digits import _resized_digits
    from minicnn.data.imageops import resize
    raw = load_digits().images[:3] / 16.0
    ours = _resized_digits(28)[0][:3].astype(np.float64)
    expected = np.clip(np.rint(resize(raw, (28, 28)) * 255), 0, 255)
    assert np.abs(ours - expected).max() <= 1          # float32 vs float64 rounding
    # a real resize, not pixel repetition: neighbouring output pixels differ smoothly
    assert len(np.unique(ours[0])) > 20


def test_synthetic_shapes_are_deterministic_and_balanced():
    a = datasets.SyntheticShapes(num_samples=40, image_size=16, num_classes=4, seed=3)
    b = datasets.SyntheticShapes(num_samples=40, image_size=16, num_classes=4, seed=3)
    c = datasets.SyntheticShapes(num_samples=40, image_size=16, num_classes=4, seed=4)
    assert np.array_equal(a.data, b.data) and not np.array_equal(a.data, c.data)
    assert np.bincount(a.targets).tolist() == [10, 10, 10, 10]
    rgb = datasets.SyntheticShapes(num_samples=4, image_size=12, channels=3)
    assert rgb[0][0].shape == (12, 12, 3)
    # classes differ: the mean square image is unlike the mean vertical bar
    shapes = datasets.SyntheticShapes(num_samples=80, image_size=16, num_classes=8)
    means = [shapes.data[shapes.targets == k].mean() for k in range(8)]
    assert means[0] > 2 * means[7]
    with pytest.raises(ValueError, match="num_classes must be 1..8"):
        datasets.SyntheticShapes(num_classes=9)
