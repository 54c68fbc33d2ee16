"""``minicnn train --task gan``: a tiny DCGAN run end to end (files, both optimizers in the
checkpoint, DCGAN's Adam), a resumed run equal to an uninterrupted one, the data scaled to
[-1, 1], and bad options reported in one line."""
import json
import os

import numpy as np
import pytest

import minicnn
from minicnn.cli import train as train_command

TINY = ["--task", "gan", "--subset", "32", "--batch-size", "16", "--set", "nz=8",
        "--set", "ngf=4", "--set", "ndf=4", "--quiet"]


def test_a_tiny_gan_run_writes_its_folder_and_reports_both_losses(tmp_path, capsys):
    out = tmp_path / "gan"
    assert train_command.cli_main(TINY + ["--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "GAN losses after 1 epoch: discriminator" in printed
    assert os.path.join(str(out), "samples", "epoch-001.png") in printed
    assert {"checkpoint.npz", "config.json", "curves.png", "metrics.jsonl",
            "samples"} <= set(os.listdir(out))
    assert (out / "samples" / "epoch-001.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out / "metrics.jsonl").read_text())
    assert {"train_loss_d", "train_loss_g", "train_d_real", "train_d_fake",
            "lr_generator", "lr_discriminator"} <= set(metrics)
    assert metrics["lr_generator"] == metrics["lr_discriminator"] == 2e-4
    config = json.loads((out / "config.json").read_text())
    assert (config["task"], config["model"], config["dataset"]) == ("gan", "dcgan", "digits")
    assert config["optimizer"] == "adam" and config["weight_decay"] == 0.0
    state = minicnn.load(out / "checkpoint.npz")
    assert set(state["optimizer"]) == {"generator", "discriminator"}
    for name in ("generator", "discriminator"):
        group = state["optimizer"][name]["param_groups"][0]
        assert tuple(group["betas"]) == (0.5, 0.999) and group["lr"] == 2e-4
    # nz 8, ngf 4, 32x32: the generator's first layer maps 8 -> 4 * 4 channels at 4x4
    assert state["model"]["generator.main.0.weight"].shape == (8, 16, 4, 4)
    assert state["model"]["discriminator.main.0.weight"].shape == (4, 1, 4, 4)


def test_a_resumed_gan_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, capsys):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert train_command.cli_main(TINY + ["--epochs", "2", "--out", str(straight)]) == 0
    assert train_command.cli_main(TINY + ["--epochs", "1", "--out", str(broken)]) == 0
    assert train_command.cli_main(["--resume", str(broken), "--epochs", "2", "--quiet"]) == 0
    a = minicnn.load(straight / "checkpoint.npz")
    b = minicnn.load(broken / "checkpoint.npz")
    assert a["epoch"] == b["epoch"] == 2
    assert list(a["model"]) == list(b["model"])
    for key in a["model"]:
        assert np.array_equal(a["model"][key].numpy(), b["model"][key].numpy()), key
    assert (straight / "samples" / "epoch-002.png").read_bytes() == \
        (broken / "samples" / "epoch-002.png").read_bytes()


def test_gan_images_are_scaled_to_the_range_of_tanh():
    train_set, channels, size = train_command.build_gan_datasets("digits", subset=20)
    assert (len(train_set), channels, size) == (20, 1, 32)
    images = np.stack([np.asarray(train_set[i][0]) for i in range(len(train_set))])
    assert images.shape == (20, 1, 32, 32)
    assert images.min() == -1.0 and images.max() == 1.0     # background and full ink
    _, _, size = train_command.build_gan_datasets("digits", image_size=28, subset=2)
    assert size == 28


@pytest.mark.parametrize("options,message", [
    (["--model", "lenet5"], "--model lenet5 is not a GAN; for --task gan choose from dcgan"),
    (["--dataset", "synthetic"], "--dataset synthetic is not a gan data set"),
    (["--set", "depth=3"], "--model dcgan takes --set nz=, ngf=, ndf=; got depth"),
    (["--image-size", "30"], "Generator: image_size must be 4·2^k or 7·2^k"),
    (["--dataset", "mnist"], "--dataset mnist reads files you already have"),
    (["--mixup", "0.2"], "--mixup mixes labels of whole images; it does not apply to "
                         "--task gan"),
])
def test_bad_gan_options_are_one_line_errors(tmp_path, capsys, options, message):
    assert train_command.cli_main(["--task", "gan", "--quiet", "--out", str(tmp_path / "x")]
                                  + options) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
