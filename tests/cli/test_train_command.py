"""``minicnn train``: the command end to end (run folder, bad input reported cleanly,
resume after an interrupt, ``python -m minicnn train``)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minicnn
from minicnn import nn, train
from minicnn.cli import train as train_command

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = ["--dataset", "synthetic", "--subset", "48", "--batch-size", "16", "--quiet"]


def test_check_model_on_names_the_failing_layer():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(100, 10))
    with pytest.raises(train_command.ModelInputError) as info:
        train_command.check_model_on(model, minicnn.randn(2, 1, 28, 28), 10, "tiny")
    message = str(info.value)
    assert "layer '2' (Linear)" in message and "(2, 1, 28, 28)" in message
    with pytest.raises(train_command.ModelInputError,
                       match=r"expected logits of shape \(2, 5\)"):
        train_command.check_model_on(nn.Sequential(nn.Flatten(), nn.Linear(784, 3)),
                                     minicnn.randn(2, 1, 28, 28), 5)


def test_cli_runs_end_to_end_and_writes_its_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_command.cli_main(QUICK + ["--epochs", "1", "--out", str(out)]) == 0
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
    assert train_command.cli_main(options + ["--out", str(tmp_path / "straight")]) == 0
    real_epoch = _interrupt_the_second_epoch(monkeypatch)
    run = tmp_path / "interrupted"
    assert train_command.cli_main(options + ["--out", str(run)]) == 130
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(train.Trainer, "train_epoch", real_epoch)
    assert train_command.cli_main(["--resume", str(run), "--quiet"]) == 0
    a = minicnn.load(tmp_path / "straight" / "checkpoint.npz")
    b = minicnn.load(run / "checkpoint.npz")
    assert b["epoch"] == 2
    for key in a["model"]:
        assert np.array_equal(a["model"][key].numpy(), b["model"][key].numpy()), key
    assert train_command.cli_main(["--resume", str(run), "--epochs", "3"]) == 2   # cosine total
    assert "planned over the total" in capsys.readouterr().err


def test_bad_input_is_reported_without_a_traceback(tmp_path, capsys, monkeypatch):
    assert train_command.cli_main(["--dataset", "mnist", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "missing file(s)" in err and "Traceback" not in err
    assert train_command.cli_main(["--model", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert train_command.cli_main(["--resume", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err

    def mismatched(name, num_classes, in_channels, image_size):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 5), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 20 * 20, num_classes))

    monkeypatch.setattr(train_command, "build_model", mismatched)
    assert train_command.cli_main(QUICK + ["--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "layer '3' (Linear)" in err and "(2, 1, 28, 28)" in err and "Traceback" not in err
    assert train_command.cli_main(["--epochs", "0"]) == 2
    assert train_command.cli_main(["--optimizer", "lbfgs"]) == 2           # argparse usage error
    assert train_command.cli_main(["--help"]) == 0


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
    assert train_command.cli_main(["--epochs", "3", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    accuracy = float(printed.split("test accuracy: ")[1].split("%")[0])
    assert accuracy > 60
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "digits" and config["model"] == "lenet5"


@pytest.mark.parametrize("option,message", [
    (["--subset", "0"], "--subset must be at least 1, got 0"),
    (["--subset", "-3"], "--subset must be at least 1, got -3"),
    (["--image-size", "0"], "--image-size must be at least 1"),
    (["--mixup", "-1"], "--mixup must be at least 0"),
    (["--lr", "-1"], "--lr must be greater than 0"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--seed", "-1"], "--seed must be at least 0"),
    (["--workers", "-1"], "--workers must be at least 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--weight-decay", "-0.1"], "--weight-decay must be at least 0"),
])
def test_options_that_would_train_on_nothing_or_the_wrong_thing_are_refused(
        tmp_path, capsys, option, message):
    out = tmp_path / "run"
    assert train_command.cli_main(QUICK + ["--epochs", "1", "--out", str(out)] + option) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_library_errors_while_setting_up_are_one_line(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert train_command.cli_main(QUICK + ["--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert train_command.cli_main(QUICK + ["--device", "cuda", "--out",
                                           str(tmp_path / "gpu")]) == 2 or \
        minicnn.backend.is_cuda_available()
    err = capsys.readouterr().err
    assert "cuda" in err and "Traceback" not in err
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    assert train_command.cli_main(["--resume", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert "not a minicnn checkpoint" in err and len(err.strip().splitlines()) == 1
    # a checkpoint whose weights do not fit its config (the model was changed)
    run = tmp_path / "run"
    assert train_command.cli_main(QUICK + ["--epochs", "2", "--out", str(run)]) == 0
    state = minicnn.load(run / "checkpoint.npz")
    state["epoch"] = 1
    state["model"]["c1.weight"] = minicnn.zeros(3, 1, 5, 5)
    minicnn.save(state, run / "checkpoint.npz")
    assert train_command.cli_main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "c1.weight" in err and "Traceback" not in err


def test_a_finished_run_is_kept_and_resuming_it_has_nothing_to_do(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_command.cli_main(QUICK + ["--epochs", "1", "--out", str(run)]) == 0
    assert "after 1 epoch," in capsys.readouterr().out           # not "1 epochs"
    before = (run / "checkpoint.npz").read_bytes()
    assert train_command.cli_main(QUICK + ["--epochs", "1", "--out", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "checkpoint.npz").read_bytes() == before
    assert train_command.cli_main(["--resume", str(run)]) == 0
    assert "nothing left to do" in capsys.readouterr().out
    assert (run / "checkpoint.npz").read_bytes() == before
    # resuming into another folder that holds a run is refused as well
    other = tmp_path / "other"
    assert train_command.cli_main(QUICK + ["--epochs", "1", "--out", str(other)]) == 0
    assert train_command.cli_main(["--resume", str(run), "--out", str(other)]) == 2
    capsys.readouterr()
    # another seed, so that the new run's weights differ (a run is deterministic: the same
    # seed could write the same bytes, timings included when they round alike)
    assert train_command.cli_main(QUICK + ["--epochs", "1", "--out", str(run), "--seed", "1",
                                           "--overwrite"]) == 0
    assert (run / "checkpoint.npz").read_bytes() != before


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_diverging_run_exits_non_zero_with_the_reason(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_command.cli_main(QUICK + ["--epochs", "2", "--lr", "1e6",
                                           "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and "lr 1e+06" in err and "Traceback" not in err
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics"))


SEGMENT = ["--task", "segmentation", "--model", "unet", "--set", "base_channels=4",
           "--image-size", "32", "--subset", "32", "--batch-size", "16", "--quiet",
           "--workers", "0"]


def test_segmentation_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "seg"
    assert train_command.cli_main(SEGMENT + ["--epochs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test mean IoU:" in printed and "after 2 epochs" in printed
    assert {"checkpoint.npz", "config.json", "curves.png", "metrics.jsonl",
            "predictions"} <= set(os.listdir(out))
    assert sorted(os.listdir(out / "predictions")) == ["epoch-001.png", "epoch-002.png"]
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "segmentation" and config["set"] == ["base_channels=4"]
    metrics = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= metrics["eval_mean_iou"] <= 1
    state = minicnn.load(out / "checkpoint.npz")
    convs = [v.shape for k, v in state["model"].items() if len(v.shape) == 4]
    assert min(shape[0] for shape in convs) == 4 or min(shape[1] for shape in convs) == 4
    assert train_command.cli_main(["--resume", str(out), "--quiet"]) == 0
    assert "nothing left to do" in capsys.readouterr().out


@pytest.mark.parametrize("options,message", [
    (["--task", "segmentation", "--model", "lenet5"], "lenet5 is a classification model"),
    (["--task", "segmentation", "--dataset", "digits"], "not a segmentation data set"),
    (["--model", "unet"], "unet is a segmentation model"),
    (["--task", "segmentation", "--mixup", "0.2"], "does not apply"),
    (["--task", "segmentation", "--set", "oops"], "--set expects KEY=VALUE"),
    (["--task", "segmentation", "--set", "foo=1"], "could not be built with foo=1"),
    (["--task", "segmentation", "--set", "base_channels='abc'"],
     "unet: base_channels must be a positive integer, got 'abc'"),
    (["--task", "segmentation", "--dataset", "voc"], "pass --data-dir"),
])
def test_segmentation_options_that_do_not_fit_are_refused(tmp_path, capsys, options,
                                                          message):
    assert train_command.cli_main(options + ["--quiet", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_segmentation_resume_after_an_interrupt_matches_an_uninterrupted_run(
        tmp_path, monkeypatch, capsys):
    """Flips drawn per sample (augment is on by default), dropout-free U-Net, Adam and
    one-cycle: the resumed run ends with exactly the straight run's weights."""
    options = SEGMENT + ["--epochs", "2", "--workers", "1"]
    assert train_command.cli_main(options + ["--out", str(tmp_path / "straight")]) == 0
    real_epoch = _interrupt_the_second_epoch(monkeypatch)
    run = tmp_path / "interrupted"
    assert train_command.cli_main(options + ["--out", str(run)]) == 130
    monkeypatch.setattr(train.Trainer, "train_epoch", real_epoch)
    assert train_command.cli_main(["--resume", str(run), "--quiet"]) == 0
    a = minicnn.load(tmp_path / "straight" / "checkpoint.npz")
    b = minicnn.load(run / "checkpoint.npz")
    assert b["epoch"] == 2 and a["history"][-1]["eval_mean_iou"] == \
        b["history"][-1]["eval_mean_iou"]
    for key in a["model"]:
        assert np.array_equal(a["model"][key].numpy(), b["model"][key].numpy()), key


def _interrupt_the_second_epoch(monkeypatch):
    """Make Trainer.train_epoch raise KeyboardInterrupt (Ctrl-C) when the second epoch
    starts; returns the real method, to put back before resuming."""
    real_epoch = train.Trainer.train_epoch
    calls = []

    def interrupted(self, loader, desc="train"):
        calls.append(desc)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(self, loader, desc)

    monkeypatch.setattr(train.Trainer, "train_epoch", interrupted)
    return real_epoch


def _fake_voc_and_cityscapes(root):
    """Tiny VOC2012 and Cityscapes trees: pictures larger and smaller than the crop,
    palette masks with 255 borders, Cityscapes label ids."""
    from PIL import Image
    from minicnn.data.datasets import voc_colormap
    rng = np.random.default_rng(0)
    voc = root / "voc" / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    names = [f"2008_{i:06d}" for i in range(4)]
    for i, name in enumerate(names):
        h, w = (20, 24) if i % 2 else (12, 14)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{name}.jpg")
        mask = Image.fromarray(rng.choice([0, 1, 15, 255], (h, w)).astype(np.uint8), mode="P")
        mask.putpalette(voc_colormap().reshape(-1).tolist())
        mask.save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(names[:3]) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text(names[3] + "\n")
    city = root / "cityscapes"
    for split, count in (("train", 3), ("val", 1)):
        for i in range(count):
            stem = f"aachen_000000_{i:06d}"
            for kind in ("leftImg8bit", "gtFine"):
                (city / kind / split / "aachen").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                city / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png")
            Image.fromarray(rng.choice([0, 7, 23, 26], (20, 24)).astype(np.uint8),
                            mode="L").save(
                city / "gtFine" / split / "aachen" / f"{stem}_gtFine_labelIds.png")
    return root / "voc", city


@pytest.mark.parametrize("dataset", ["voc", "cityscapes"])
def test_segmentation_on_files_the_user_has(tmp_path, capsys, dataset):
    folders = dict(zip(("voc", "cityscapes"), _fake_voc_and_cityscapes(tmp_path)))
    out = tmp_path / f"run-{dataset}"
    assert train_command.cli_main(
        ["--task", "segmentation", "--dataset", dataset, "--data-dir", str(folders[dataset]),
         "--image-size", "16", "--set", "base_channels=4", "--batch-size", "2", "--epochs",
         "1", "--quiet", "--workers", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test mean IoU:" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == dataset
    state = minicnn.load(out / "checkpoint.npz")
    classes = {"voc": 21, "cityscapes": 19}[dataset]
    assert state["model"]["head.weight"].shape[0] == classes     # U-Net's 1x1 class scores
