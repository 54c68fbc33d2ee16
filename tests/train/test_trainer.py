"""minicnn.train: the Trainer (exact resume, atomic checkpoints) and the `minicnn train`
command end to end (run folder, bad input reported cleanly, resume after a crash)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minicnn
import minicnn.optim
from minicnn import nn, train
from minicnn.data import DataLoader, datasets, transforms as T

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = ["--dataset", "synthetic", "--subset", "48", "--batch-size", "16", "--quiet"]


class Crash(Exception):
    pass


def _small_net():
    # dropout (draws from minicnn's generator) and batch norm (buffers) on purpose
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * 7 * 7, 3))


def _setup(out_dir):
    """A fresh run set up from seed 0: model, optimizer, schedule, augmented loaders."""
    minicnn.manual_seed(0)
    augment = T.Compose([T.ToTensor(), T.RandomCrop(16, padding=2), T.RandomHorizontalFlip()])
    train_set = datasets.SyntheticShapes(64, image_size=16, num_classes=3, seed=1,
                                         transform=augment)
    eval_set = datasets.SyntheticShapes(32, image_size=16, num_classes=3, seed=2,
                                        transform=T.ToTensor())
    model = _small_net()
    optimizer = minicnn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = minicnn.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
    trainer = train.Trainer(model, optimizer, scheduler=scheduler, out_dir=out_dir,
                            progress=False, log=False, config={"note": "test"})
    loaders = (DataLoader(train_set, batch_size=16, shuffle=True, num_workers=1),
               DataLoader(eval_set, batch_size=32))
    return trainer, loaders


def _weights(trainer):
    return {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}


def test_resumed_run_ends_with_exactly_the_weights_of_an_uninterrupted_one(tmp_path):
    straight, loaders = _setup(tmp_path / "straight")
    straight.fit(*loaders, epochs=3)

    def crash_after_first_epoch(trainer, metrics):
        if metrics["epoch"] == 1:
            raise Crash

    broken, loaders = _setup(tmp_path / "broken")
    with pytest.raises(Crash):
        broken.fit(*loaders, epochs=3, callbacks=[crash_after_first_epoch])
    minicnn.rand(5)                      # the new process's generator is elsewhere
    resumed, loaders = _setup(tmp_path / "broken")
    resumed.fit(*loaders, epochs=3, resume=tmp_path / "broken")

    expected, got = _weights(straight), _weights(resumed)
    assert list(expected) == list(got)
    for key in expected:
        assert np.array_equal(expected[key], got[key]), key
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]
    assert [m["train_loss"] for m in resumed.history] == \
        [m["train_loss"] for m in straight.history]
    lines = (tmp_path / "broken" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_without_restoring_the_rng_the_runs_would_differ(tmp_path, monkeypatch):
    """The exact-resume test above can fail: skipping the RNG restore breaks it."""
    straight, loaders = _setup(None)
    straight.fit(*loaders, epochs=2)
    first, loaders = _setup(tmp_path)
    first.fit(*loaders, epochs=1)
    monkeypatch.setattr(minicnn.backend, "set_rng_state", lambda state: None)
    minicnn.rand(5)
    resumed, loaders = _setup(tmp_path)
    resumed.fit(*loaders, epochs=2, resume=tmp_path)
    assert any(not np.array_equal(a, b)
               for a, b in zip(_weights(straight).values(), _weights(resumed).values()))


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer, loaders = _setup(tmp_path)
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        if str(dst).endswith("checkpoint.npz") and calls:
            raise OSError("power cut (simulated)")
        calls.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        trainer.fit(*loaders, epochs=2)
    saved = train.load_checkpoint(tmp_path)
    assert saved["epoch"] == 1 and saved["config"] == {"note": "test"}
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_check_model_on_names_the_failing_layer():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(100, 10))
    with pytest.raises(train.ModelInputError) as info:
        train.check_model_on(model, minicnn.randn(2, 1, 28, 28), 10, "tiny")
    message = str(info.value)
    assert "layer '2' (Linear)" in message and "(2, 1, 28, 28)" in message
    with pytest.raises(train.ModelInputError, match=r"expected logits of shape \(2, 5\)"):
        train.check_model_on(nn.Sequential(nn.Flatten(), nn.Linear(784, 3)),
                             minicnn.randn(2, 1, 28, 28), 5)


# ---------------------------------------------------------------- the command

def test_cli_runs_end_to_end_and_writes_its_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.cli_main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy:" in printed and str(out) in printed
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "config.json", "curves.png",
                                       "metrics.jsonl"]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and {"train_loss", "eval_accuracy", "lr"} <= set(metrics[0])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "lenet5" and config["dataset"] == "synthetic"
    state = minicnn.load(out / "checkpoint.npz")
    assert state["epoch"] == 1 and "c1.weight" in state["model"]
    assert set(state) >= {"optimizer", "scheduler", "rng", "train_loader", "history"}


def test_cli_resume_after_an_interrupt_matches_an_uninterrupted_run(tmp_path, monkeypatch,
                                                                    capsys):
    options = QUICK + ["--epochs", "2", "--optimizer", "adam", "--mixup", "0.4"]
    assert train.cli_main(options + ["--out", str(tmp_path / "straight")]) == 0
    real_epoch = train.Trainer.train_epoch
    calls = []

    def interrupted(self, loader, desc="train"):
        calls.append(desc)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(self, loader, desc)

    monkeypatch.setattr(train.Trainer, "train_epoch", interrupted)
    run = tmp_path / "interrupted"
    assert train.cli_main(options + ["--out", str(run)]) == 130
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(train.Trainer, "train_epoch", real_epoch)
    assert train.cli_main(["--resume", str(run), "--quiet"]) == 0
    a = minicnn.load(tmp_path / "straight" / "checkpoint.npz")
    b = minicnn.load(run / "checkpoint.npz")
    assert b["epoch"] == 2
    for key in a["model"]:
        assert np.array_equal(a["model"][key].numpy(), b["model"][key].numpy()), key
    assert train.cli_main(["--resume", str(run), "--epochs", "3"]) == 2   # cosine total
    assert "planned over the total" in capsys.readouterr().err


def test_bad_input_is_reported_without_a_traceback(tmp_path, capsys, monkeypatch):
    assert train.cli_main(["--dataset", "mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "missing file(s)" in err and "Traceback" not in err
    assert train.cli_main(["--model", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert train.cli_main(["--resume", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err

    def mismatched(name, num_classes, in_channels, image_size):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 5), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 20 * 20, num_classes))

    monkeypatch.setattr(train, "build_model", mismatched)
    assert train.cli_main(QUICK + ["--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "layer '3' (Linear)" in err and "(2, 1, 28, 28)" in err and "Traceback" not in err
    assert train.cli_main(["--epochs", "0"]) == 2
    assert train.cli_main(["--optimizer", "lbfgs"]) == 2           # argparse usage error
    assert train.cli_main(["--help"]) == 0


def test_python_dash_m_minicnn_train_in_a_subprocess(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "minicnn", "train", *QUICK, "--subset", "16", "--epochs", "1",
         "--workers", "0", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "test accuracy:" in result.stdout
    assert (out / "checkpoint.npz").exists() and (out / "curves.png").exists()


@pytest.mark.slow
def test_default_command_trains_lenet_on_digits(tmp_path, capsys):
    """The default setting (digits, LeNet-5, sgd, cosine) on a short budget: it must
    learn well past chance within 3 epochs."""
    out = tmp_path / "digits"
    assert train.cli_main(["--epochs", "3", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    accuracy = float(printed.split("test accuracy: ")[1].split("%")[0])
    assert accuracy > 60
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "digits" and config["model"] == "lenet5"
