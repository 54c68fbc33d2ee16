"""``mpiexec -n 2 minicnn train --distributed``: the same run as one process (the global
batch split over the ranks), rank 0 alone writing and printing, and resuming on another
number of ranks."""
import os

import mpi_launch
import numpy as np
import pytest

import minicnn
from minicnn import distributed as dist
from minicnn.cli.train import cli_main

pytestmark = mpi_launch.requires_mpi

# LeNet-5 on 256 digits, 4 steps of 64 a epoch, no augmentation (a rank's random crops
# come from its own stream, so augmented runs differ from one process in the draws)
COMMON = ["--subset", "256", "--batch-size", "64", "--workers", "0", "--no-augment",
          "--quiet", "--scheduler", "none"]


def mpiexec(n, *args):
    return mpi_launch.mpiexec(n, "-m", "minicnn", "train", "--distributed", *args)


def weights(folder):
    return minicnn.load(str(folder / "checkpoint.npz"))["model"]


def history(folder):
    import json
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a, b):
    for key, value in weights(a).items():
        np.testing.assert_allclose(np.asarray(weights(b)[key]), np.asarray(value), rtol=1e-5,
                                   atol=1e-6, err_msg=key)
    for x, y in zip(history(a), history(b), strict=True):
        assert x["train_accuracy"] == y["train_accuracy"]
        assert x["eval_accuracy"] == y["eval_accuracy"]
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-5)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: two epochs in this process."""
    folder = tmp_path_factory.mktemp("one") / "run"
    assert cli_main(COMMON + ["--epochs", "2", "--out", str(folder)]) == 0
    return folder


def test_two_ranks_train_as_one_process_and_only_rank_0_writes(tmp_path, one_process):
    result = mpiexec(2, *COMMON, "--epochs", "2", "--out", str(tmp_path / "two"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_run(one_process, tmp_path / "two")
    # one final line, from rank 0; the test set's 359 images are each counted once
    assert result.stdout.count("test accuracy:") == 1 and "/359)" in result.stdout
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(one_process))


@pytest.mark.slow
def test_a_run_resumes_on_another_number_of_ranks(tmp_path, one_process):
    # two ranks, then one process
    result = mpiexec(2, *COMMON, "--epochs", "1", "--out", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr
    assert cli_main(["--resume", str(tmp_path / "a"), "--epochs", "2"]) == 0
    assert_same_run(one_process, tmp_path / "a")
    # one process, then two ranks
    assert cli_main(COMMON + ["--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    result = mpiexec(2, "--resume", str(tmp_path / "b"), "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert_same_run(one_process, tmp_path / "b")


def test_a_global_batch_that_does_not_split_stops_every_rank(tmp_path):
    result = mpiexec(2, "--subset", "64", "--batch-size", "33", "--epochs", "1", "--quiet",
                     "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "--batch-size 33 is the global batch and must split evenly over the 2 ranks" \
        in result.stderr
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_mpiexec_without_distributed_is_refused(tmp_path):
    result = mpi_launch.mpiexec(2, "-m", "minicnn", "train", "--epochs", "1", "--quiet",
                                "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "mpiexec started 2 processes, but without --distributed" in result.stderr


def test_distributed_refuses_the_tasks_it_cannot_spread(capsys):
    assert cli_main(["--distributed", "--task", "gan", "--epochs", "1"]) == 2
    assert "--distributed trains classification and segmentation" in capsys.readouterr().err


@pytest.mark.slow
def test_sync_bn_trains_a_batch_norm_model_on_two_ranks_as_one_process(tmp_path):
    # seed 002's residual "monster", two batch-normalised blocks of 8 channels, on 32x32
    options = ["--model", "monster", "--set", "nb_residual_blocks=2", "--set", "nb_channels=8",
               "--image-size", "32", "--subset", "64", "--batch-size", "32", "--epochs", "2",
               "--workers", "0", "--no-augment", "--quiet", "--scheduler", "none"]
    assert cli_main(options + ["--out", str(tmp_path / "one")]) == 0
    result = mpiexec(2, *options, "--sync-bn", "--out", str(tmp_path / "two"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_run(tmp_path / "one", tmp_path / "two")     # running statistics included


def test_sync_bn_needs_distributed(capsys):
    assert cli_main(["--sync-bn", "--epochs", "1"]) == 2
    assert "--sync-bn synchronises batch normalisation" in capsys.readouterr().err


def test_distributed_on_the_fake_gpu_takes_the_ranks_gpu(tmp_path, monkeypatch):
    """``--device cuda`` names no GPU: each rank takes the one of its local rank (here the
    only one, of rank 0 of 1), and the gradients, CuPy arrays, meet through MPI via the
    host."""
    import fake_cupy
    fake_cupy.install(monkeypatch)
    from minicnn.cli import train as command
    seen = []
    real = command.Trainer

    def spy(*args, **kwargs):
        seen.append(str(kwargs["device"]))
        return real(*args, **kwargs)
    monkeypatch.setattr(command, "Trainer", spy)
    staged = []
    host_buffer = dist.comm._host_buffer
    monkeypatch.setattr(dist.comm, "_host_buffer",
                        lambda a: staged.append(type(a).__module__) or host_buffer(a))
    assert cli_main(["--distributed", "--device", "cuda", "--dataset", "synthetic",
                     "--subset", "32", "--batch-size", "16", "--epochs", "1", "--quiet",
                     "--workers", "0", "--out", str(tmp_path / "run")]) == 0
    assert seen == ["cuda:0"]
    # two steps, LeNet-5's gradients in one bucket each, on the device
    assert sum(m.startswith("cupy") for m in staged) == 2
    assert (tmp_path / "run" / "checkpoint.npz").exists()


def test_each_rank_augments_from_its_own_stream_and_shuffles_from_the_shared_one():
    import types

    from minicnn.cli import train as command
    data = list(range(10))
    args = types.SimpleNamespace(batch_size=4, workers=0)

    def rank(r):
        minicnn.manual_seed(0)
        comm = types.SimpleNamespace(rank=r, size=2)     # no collective is called
        loader, _ = command._distributed_loaders(args, comm, data, data, 4, {})
        return loader.seed, loader.sampler.seed
    (aug0, shuffle0), (aug1, shuffle1) = rank(0), rank(1)
    assert shuffle0 == shuffle1 == aug0 and aug1 == aug0 + 1
