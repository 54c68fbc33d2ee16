"""A run folder is never lost: a finished run is not replaced unless asked, a second
process cannot write into a folder in use, and a diverging run stops at its first
non-finite loss, keeping the last good checkpoint and a strictly valid metrics log."""
import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import minicnn
import minicnn.optim
from minicnn import nn, train

from loaders import FixedBatches


def _trainer(out_dir, lr=0.1, **kwargs):
    minicnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return train.Trainer(model, minicnn.optim.SGD(model.parameters(), lr=lr),
                         out_dir=out_dir, progress=False, log=False, **kwargs)


def _data(n=4):
    x = minicnn.randn(8, 4)
    y = minicnn.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    return FixedBatches([(x, y)] * n)


def test_an_existing_run_is_not_replaced_unless_asked(tmp_path):
    _trainer(tmp_path).fit(_data(), epochs=2)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    with pytest.raises(train.RunFolderError, match="already holds a run"):
        _trainer(tmp_path).fit(_data(), epochs=1)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    _trainer(tmp_path, overwrite=True).fit(_data(), epochs=1)      # asked for
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    resumed = _trainer(tmp_path)                                    # resuming is fine
    resumed.fit(_data(), epochs=2, resume=tmp_path)
    assert resumed.epoch == 2


def test_a_second_process_cannot_write_into_a_run_folder_in_use(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from minicnn.train import run_folder_lock
            with run_folder_lock({str(tmp_path)!r}):
                print("held", flush=True)
                sys.stdin.read()          # hold until the test closes stdin
            """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(train.RunFolderError, match="in use"):
            _trainer(tmp_path).fit(_data(), epochs=1)
        assert not (tmp_path / "checkpoint.npz").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    _trainer(tmp_path).fit(_data(), epochs=1)         # released when the holder ended
    assert (tmp_path / "checkpoint.npz").exists()
    assert os.listdir(tmp_path) and not [f for f in os.listdir(tmp_path) if "lock" in f]


def test_the_lock_is_reentrant_within_a_process_and_refuses_a_file(tmp_path):
    with train.run_folder_lock(tmp_path):
        with train.run_folder_lock(tmp_path):
            _trainer(tmp_path).fit(_data(), epochs=1)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(train.RunFolderError, match="is a file"):
        with train.run_folder_lock(tmp_path / "a_file"):
            pass


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")
def test_divergence_stops_at_the_first_non_finite_loss_and_keeps_the_last_checkpoint(
        tmp_path):
    trainer = _trainer(tmp_path)
    trainer.fit(_data(), epochs=1)
    good = minicnn.load(tmp_path / "checkpoint.npz")

    def explode(t, metrics):         # from epoch 2 on, the learning rate is absurd
        for group in t.optimizer.param_groups:
            group["lr"] = 1e30
    with pytest.raises(train.TrainingDiverged) as info:
        trainer.fit(_data(), epochs=5, callbacks=[explode])
    message = str(info.value)
    assert "epoch 3" in message and "step" in message and "loss = " in message
    assert "lr 1e+30" in message and "smaller" in message
    assert "checkpoint of epoch 2 is kept" in message
    saved = minicnn.load(tmp_path / "checkpoint.npz")
    assert saved["epoch"] == 2
    for key, value in saved["model"].items():
        assert np.isfinite(value.numpy()).all(), key
    assert good["epoch"] == 1
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_metrics_log_is_strict_json_even_if_a_callback_logs_nan(tmp_path):
    """A callback adds NaN to an epoch's metrics (after that line was written); the
    history carries it, and a resumed run rewrites the log from the history: the NaN
    must come out as null, never as the bare NaN that JSON parsers refuse."""
    def add_nan(t, metrics):
        metrics["custom"] = float("nan")
    _trainer(tmp_path).fit(_data(), epochs=2, callbacks=[add_nan])

    def refuse(constant):
        raise AssertionError(f"metrics.jsonl holds a bare {constant}")
    _trainer(tmp_path).fit(_data(), epochs=3, resume=tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    parsed = [json.loads(line, parse_constant=refuse) for line in lines]
    assert [m["epoch"] for m in parsed] == [1, 2, 3]
    assert parsed[0]["custom"] is None


def test_checkpoint_has_the_mode_of_other_new_files(tmp_path):
    _trainer(tmp_path).fit(_data(), epochs=1)
    mode = stat.S_IMODE(os.stat(tmp_path / "checkpoint.npz").st_mode)
    (tmp_path / "probe").write_text("x")
    assert mode == stat.S_IMODE(os.stat(tmp_path / "probe").st_mode)
    assert mode & stat.S_IRGRP       # readable by the group under the usual umask 022
