"""The training step on a GPU (issue 13): how often it waits for the device, float32 all
the way, queued argument checks, and an exact resume, on the strict fake CuPy."""
import shutil

import numpy as np
import pytest

import minicnn as mc
import minicnn.optim
from minicnn import backend, nn, train
from minicnn.nn import functional as F

from fake_cupy import count_syncs, forbid_float64, install, to_device, to_host
from loaders import FixedBatches

# Reads of device values per epoch of the Trainer, whatever the number of steps: the
# losses (one transfer), the accuracy count, and the queued argument checks. Measured:
# 3 (before the fixes: 4 per step, the target check, the pooling NaN check, loss.item()
# and the accuracy count).
SYNCS_PER_READ = 3


def _cnn():
    mc.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Dropout(0.5), nn.Flatten(), nn.Linear(64, 3))


def _batches(steps):
    rng = np.random.default_rng(0)
    return [(mc.Tensor(rng.standard_normal((5, 3, 8, 8)).astype(np.float32)),
             mc.Tensor(rng.integers(0, 3, 5))) for _ in range(steps)]


def _trainer(name, device):
    model = _cnn()
    options = {"momentum": 0.9} if name == "SGD" else {}
    optimizer = getattr(mc.optim, name)(model.parameters(), lr=0.01, **options)
    return train.Trainer(model, optimizer, device=device, progress=False, log=False)


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_training_steps_stay_within_the_host_sync_budget(optimizer, monkeypatch):
    host = {steps: _trainer(optimizer, "cpu").train_epoch(FixedBatches(_batches(steps)))
            for steps in (2, 4)}
    install(monkeypatch)
    for steps in (2, 4):
        trainer = _trainer(optimizer, "cuda")
        with count_syncs() as record, forbid_float64():
            result = trainer.train_epoch(FixedBatches(_batches(steps)))
        assert len(record.syncs) <= SYNCS_PER_READ, record
        assert len(record.uploads) == 2 * steps, record        # each batch's two arrays
        assert result["correct"] == host[steps]["correct"]
        assert result["loss"] == pytest.approx(host[steps]["loss"], rel=1e-6)
        for p in trainer.model.parameters():
            assert p.dtype == np.float32


def test_the_progress_bar_shows_the_running_numbers_when_it_redraws(monkeypatch):
    shown = []

    class Bar:                                   # a tqdm that redraws after every step
        mininterval, last_print_t = 0.0, 0.0

        def __init__(self, iterable, *args, **kwargs):
            self.iterable = iterable

        def __iter__(self):
            return iter(self.iterable)

        @staticmethod
        def _time():
            return 1.0

        def set_postfix(self, values, refresh=True):
            shown.append(values)

        def close(self):
            pass

    batches = _batches(3)
    expected = []
    for k in (1, 2, 3):
        result = _trainer("SGD", "cpu").train_epoch(FixedBatches(batches[:k]))
        expected.append(train._postfix(result, ("loss", "accuracy")))
    install(monkeypatch)
    monkeypatch.setattr(train, "_progress_bar", lambda iterable, desc, enabled: Bar(iterable))
    trainer = _trainer("SGD", "cuda")
    trainer.progress = True
    with count_syncs() as record:
        trainer.train_epoch(FixedBatches(batches))
    assert shown == expected
    assert len(record.syncs) <= SYNCS_PER_READ * 4, record     # three redraws, the end


def test_a_bad_target_on_the_device_is_reported_at_the_next_read(monkeypatch):
    install(monkeypatch)
    logits = mc.Tensor._wrap(to_device(np.zeros((2, 3), dtype=np.float32)))
    target = mc.Tensor._wrap(to_device(np.array([1, 7])))
    with count_syncs() as record:
        loss = F.cross_entropy(logits, target)
        F.cross_entropy(logits, mc.Tensor._wrap(to_device(np.array([1, -100]))))
    assert record.syncs == []                   # queued, not read
    with pytest.raises(IndexError, match="cross_entropy: target 7 is out of bounds for 3"):
        loss.item()
    assert backend._pending_checks == []
    mc.nn.functional.cross_entropy(logits, mc.Tensor._wrap(to_device(np.array([0, 2]))))
    backend.to_device(loss.array, "cpu")         # a good check passes silently
    with pytest.raises(IndexError, match="target 5 is out of bounds"):   # CPU: at once
        F.cross_entropy(mc.zeros(1, 3), mc.tensor([5]))


def test_max_pooling_a_nan_needs_no_wait_for_the_device(monkeypatch):
    x = np.arange(32.0).reshape(1, 2, 4, 4)
    x[0, 0, 1, 0] = x[0, 0, 0, 1] = np.nan
    host = F.max_pool2d(mc.Tensor(x), 2, return_indices=True)
    install(monkeypatch)
    with count_syncs() as record:
        out, idx = F.max_pool2d(mc.Tensor._wrap(to_device(x)), 2, return_indices=True)
    assert record.syncs == []
    np.testing.assert_array_equal(to_host(out.array), host[0].numpy())
    np.testing.assert_array_equal(to_host(idx.array), host[1].numpy())
    assert to_host(idx.array)[0, 0, 0, 0] == 4                 # the last NaN, as torch


def test_a_python_number_in_an_op_is_not_copied_to_the_device(monkeypatch):
    install(monkeypatch)
    x = mc.Tensor._wrap(to_device(np.ones(3, dtype=np.float32))).requires_grad_(True)
    with count_syncs() as record, forbid_float64():
        y = (x * 2.5 + 1) / 3 - 0.5
        (y ** 2).sum().backward()
    assert record.uploads == [] and record.syncs == []
    assert y.dtype == np.float32


def _resumable(out_dir):
    from minicnn.data import DataLoader, TensorDataset
    mc.manual_seed(0)
    rng = np.random.default_rng(1)
    data = TensorDataset(mc.Tensor(rng.standard_normal((24, 3, 8, 8)).astype(np.float32)),
                         mc.Tensor(rng.integers(0, 3, 24)))
    model = _cnn()
    optimizer = mc.optim.Adam(model.parameters(), lr=0.01)
    trainer = train.Trainer(model, optimizer, device="cuda", out_dir=out_dir,
                            progress=False, log=False)
    return trainer, DataLoader(data, batch_size=8, shuffle=True)


def _device_weights(trainer):
    return {k: to_host(v.array) for k, v in trainer.model.state_dict().items()}


def test_a_gpu_run_resumes_exactly(tmp_path, monkeypatch):
    """Dropout draws on the device: the checkpoint's (seed, counter) must restore them."""
    install(monkeypatch)
    straight, loader = _resumable(tmp_path / "straight")
    straight.fit(loader, epochs=2)
    first, loader = _resumable(tmp_path / "broken")
    first.fit(loader, epochs=1)
    shutil.copytree(tmp_path / "broken", tmp_path / "broken again")
    mc.rand(5, device="cuda")                    # a new process's generator is elsewhere
    resumed, loader = _resumable(tmp_path / "broken")
    resumed.fit(loader, epochs=2, resume=tmp_path / "broken")
    expected, got = _device_weights(straight), _device_weights(resumed)
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    # and the counter is what makes it exact: without restoring it, the runs differ
    monkeypatch.setattr(backend, "set_rng_state", lambda state: None)
    mc.rand(5, device="cuda")
    other, loader = _resumable(tmp_path / "broken")
    other.fit(loader, epochs=2, resume=tmp_path / "broken again")
    assert any(not np.array_equal(expected[k], v) for k, v in _device_weights(other).items())
