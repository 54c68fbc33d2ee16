"""The examples a learner runs top to bottom (examples/)."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_lenet_by_hand_runs_and_leaves_nothing_behind(tmp_path):
    """Run from a scratch folder: the example trains, saves and reloads a checkpoint,
    and the folder it ran in is as empty afterwards as before."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "lenet_digits_by_hand.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "loaded it back into a fresh LeNet-5" in run.stdout
    accuracy = float(run.stdout.split("test accuracy ")[-1].split("%")[0])
    assert accuracy > 90
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_monster_finetune_freezes_then_fine_tunes(tmp_path):
    """Seed 002's loop: the AlexNet layer does not move while frozen, the loss falls."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "monster_finetune.py"),
                          "--blocks", "2", "--channels", "8", "--epochs", "4",
                          "--train-size", "128"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "Monster(2, 8): " in run.stdout
    assert "(AlexNet layer unchanged while frozen: True)" in run.stdout
    losses = [float(line.split()[1]) for line in run.stdout.splitlines()
              if line.endswith(("frozen", "fine-tuning")) and line[0].isdigit()]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert "test_error" in run.stdout


@pytest.mark.slow
def test_localize_shapes_regresses_boxes_from_frozen_features(tmp_path):
    """OverFeat's localisation (spec B2): frozen classifier features + an l2 box
    regressor reach a test mean IoU above 0.5 on single-shape images."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "localize_shapes.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    assert "(unchanged: True)" in run.stdout
    mean_iou = float(run.stdout.split("test mean IoU ")[-1].split(",")[0])
    assert mean_iou > 0.5
    accuracy = float(run.stdout.split("test accuracy ")[-1].split("%")[0])
    assert accuracy > 80


@pytest.mark.slow
def test_transfer_learning_shows_what_the_pretraining_bought(tmp_path):
    """Issue 13: the untrained stem ended ahead of the pretrained one. The example now
    says what pretraining buys (reaching 85% sooner, a higher mean over the epochs); this
    fails if the numbers it prints do not bear that out."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "transfer_learning.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()

    def curve(name):
        line = next(x for x in lines if x.startswith(f"test accuracy per epoch, {name}"))
        return [float(v) for v in line.split(":")[1].split()]

    trained, untrained = curve("pretrained stem"), curve("untrained stem")

    def reached(accuracies):
        return next((k + 1 for k, a in enumerate(accuracies) if a >= 0.85), 99)

    assert reached(trained) < reached(untrained)
    assert sum(trained) > sum(untrained)
    claim = next(x for x in lines if x.startswith("what the pretraining bought: speed."))
    assert f"after {reached(trained)} epoch(s) with the pretrained stem" in claim
