"""``minicnn summary``: the command line over minicnn.utils.summary and the zoo's one
table of models (minicnn.models.MODELS)."""
import subprocess
import sys

import pytest

import minicnn
from minicnn import models
from minicnn.cli import summary as summary_command


def test_cli(capsys):
    assert summary_command.cli_main(["resnet20", "--depth", "1"], prog="minicnn summary") == 0
    out = capsys.readouterr().out
    assert "input [1, 3, 32, 32]" in out and "Total params: 269,722" in out
    assert summary_command.cli_main(["googlenet", "--input-size", "3", "64", "64", "--set",
                       "aux_logits=False", "--num-classes", "10", "--shapes-only"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 5,610,154" in out and "shapes only" in out
    assert summary_command.cli_main(["--list"]) == 0
    assert "densenet121" in capsys.readouterr().out
    assert summary_command.cli_main(["resnet"]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert summary_command.cli_main(["resnet20", "--set", "shortcut"]) == 2
    assert summary_command.cli_main(["resnet20", "--set", "shortcut='C'"]) == 1
    assert "shortcut" in capsys.readouterr().err


@pytest.mark.slow
def test_minicnn_summary_command():
    run = subprocess.run([sys.executable, "-m", "minicnn", "summary", "alexnet",
                          "--input-size", "3", "224", "224", "--shapes-only", "--depth", "1"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Total params: 61,100,840" in run.stdout
    assert "(714.19 M;" in run.stdout


def test_cli_default_input_comes_from_the_model(capsys):
    assert summary_command.cli_main(["lenet5"]) == 0                 # modern LeNet-5 is 1x28x28
    out = capsys.readouterr().out
    assert "[1, 1, 28, 28]" in out and "61,706" in out


def test_list_offers_the_zoo_table_and_nothing_else(capsys):
    assert summary_command.cli_main(["--list"]) == 0
    listed = capsys.readouterr().out.strip().removeprefix("models: ").split(", ")
    assert listed == models.list_models() == list(models.MODELS)
    # helpers of minicnn.models that are not models are not offered
    for helper in ("freeze", "unfreeze", "make_layers", "take_layers", "vgg", "cfgs",
                   "residual_head", "conv3x3", "alexnet_residual_transfer"):
        assert helper not in listed
    assert summary_command.cli_main(["make_layers"]) == 2
    assert "unknown model 'make_layers'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", models.list_models())
def test_every_listed_model_builds_and_runs_at_its_input_size(name):
    """What --list offers, summary and train can build: each builder takes num_classes
    and in_channels, and the model runs at the input size the zoo records for it."""
    channels, height, width = models.input_size(name)
    model = models.get_model(name, num_classes=7, in_channels=channels)
    outputs = []
    handle = model.register_forward_hook(lambda m, args, out: outputs.append(out))
    result = minicnn.summary(model, (channels, height, width), shapes_only=True,
                             verbose=False)
    handle.remove()
    assert result.total_params == sum(p.numel() for p in model.parameters()) > 0
    assert len(outputs) == 1
    if models.model_task(name) == "classification":
        assert tuple(outputs[0].shape) == (1, 7)
    elif models.model_task(name) == "detection":     # eval mode: one dict per image
        assert len(outputs[0]) == 1
        assert {"boxes", "labels", "scores"} <= set(outputs[0][0])
        assert outputs[0][0]["boxes"].shape[1:] == (4,)
    else:                                   # scores per pixel, alone or as torchvision's dict
        scores = outputs[0]["out"] if isinstance(outputs[0], dict) else outputs[0]
        assert tuple(scores.shape[:2]) == (1, 7) and len(scores.shape) == 4
