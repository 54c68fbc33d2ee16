"""minicnn.train.GAN: a DCGAN trained through the Trainer (two networks, two optimizers),
its logs and pictures, its fixed noise, and an interrupted and resumed run that ends
exactly where an uninterrupted one does. The step itself is checked against torch in
tests/models/test_gan.py; ``minicnn train --task gan`` in tests/cli/test_gan_command.py."""
import json

import numpy as np
import pytest

import minicnn
import minicnn.optim
from minicnn import nn, train
from minicnn.data import DataLoader, TensorDataset
from minicnn.models import gan

NZ = 8


class Crash(Exception):
    pass


def _images(n=24, seed=0):
    """Blobs in [-1, 1] at 28x28: a bright square on a dark ground, placed at random."""
    rng = np.random.default_rng(seed)
    images = -np.ones((n, 1, 28, 28), dtype=np.float32)
    for image, (top, left) in zip(images, rng.integers(2, 16, size=(n, 2))):
        image[:, top:top + 10, left:left + 10] = 1.0
    return images


def _setup(out_dir, task=None):
    """A run set up from seed 0: tiny DCGAN networks, Adam as DCGAN, a shuffling loader."""
    minicnn.manual_seed(0)
    model = nn.ModuleDict({"generator": gan.dcgan_generator(NZ, 4, 1, 28),
                           "discriminator": gan.dcgan_discriminator(1, 4, 28)})
    optimizers = {name: minicnn.optim.Adam(model[name].parameters(), lr=2e-4,
                                           betas=(0.5, 0.999))
                  for name in ("generator", "discriminator")}
    task = task or train.GAN(samples=8, nrow=4, seed=3)
    trainer = train.Trainer(model, optimizers, task=task, out_dir=out_dir, progress=False,
                            log=False)
    loader = DataLoader(TensorDataset(_images()), batch_size=8, shuffle=True)
    return trainer, loader


def _state(trainer):
    return {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}


def test_a_run_logs_both_losses_and_draws_samples_of_the_fixed_noise(tmp_path):
    trainer, loader = _setup(tmp_path)
    history = trainer.fit(loader, epochs=2)
    assert [m["epoch"] for m in history] == [1, 2]
    for m in history:
        assert {"train_loss_d", "train_loss_g", "train_d_real", "train_d_fake",
                "lr_generator", "lr_discriminator"} <= set(m)
        assert 0 < m["train_d_real"] < 1 and 0 < m["train_d_fake"] < 1
        # D's loss is the BCE of real and fake batches: at least -log of its outputs
        assert m["train_loss_d"] > 0 and m["train_loss_g"] > 0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["train_loss_g"] for line in lines] == \
        [m["train_loss_g"] for m in history]
    from PIL import Image
    for epoch in (1, 2):
        with Image.open(tmp_path / "samples" / f"epoch-{epoch:03d}.png") as picture:
            # 8 samples, 4 a row, padding 2: (28 + 2) * 4 + 2 wide, (28 + 2) * 2 + 2 high
            assert picture.size == (122, 62)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    saved = train.load_checkpoint(tmp_path)
    assert set(saved["optimizer"]) == {"generator", "discriminator"}
    assert any(k.startswith("generator.main.0") for k in saved["model"])


def test_an_interrupted_and_resumed_run_ends_exactly_as_an_uninterrupted_one(tmp_path):
    straight, loader = _setup(tmp_path / "straight")
    straight.fit(loader, epochs=3)

    def crash_after_first_epoch(trainer, metrics):
        if metrics["epoch"] == 1:
            raise Crash

    broken, loader = _setup(tmp_path / "broken")
    with pytest.raises(Crash):
        broken.fit(loader, epochs=3, callbacks=[crash_after_first_epoch])
    resumed, loader = _setup(tmp_path / "broken")
    minicnn.manual_seed(99)                 # a new process: its generator is elsewhere
    resumed.fit(loader, epochs=3, resume=tmp_path / "broken")
    ours, theirs = _state(straight), _state(resumed)
    assert list(ours) == list(theirs)
    for key in ours:
        assert np.array_equal(ours[key], theirs[key]), key
    assert [m["train_loss_g"] for m in straight.history] == \
        [m["train_loss_g"] for m in resumed.history]
    for name in ("generator", "discriminator"):      # Adam's moments too
        a = straight.optimizer[name].state_dict()["state"]
        b = resumed.optimizer[name].state_dict()["state"]
        for index in a:
            assert np.array_equal(a[index]["exp_avg"], b[index]["exp_avg"])
    # the same fixed noise: the last pictures are the same pixels
    for epoch in (2, 3):
        name = f"samples/epoch-{epoch:03d}.png"
        assert (tmp_path / "straight" / name).read_bytes() == \
            (tmp_path / "broken" / name).read_bytes()


def test_the_step_is_gan_train_step_on_noise_from_minicnns_generator():
    trainer, loader = _setup(None)
    twin, _ = _setup(None)
    batch = next(iter(loader))
    minicnn.manual_seed(7)
    numbers, output = trainer.task.train_step(trainer, batch)
    minicnn.manual_seed(7)
    noise = minicnn.randn(len(batch[0]), NZ, 1, 1)
    expected, _ = gan.gan_train_step(twin.model["generator"], twin.model["discriminator"],
                                     twin.optimizer["generator"],
                                     twin.optimizer["discriminator"], batch[0], noise)
    assert output is None
    assert {k: v.item() for k, v in numbers.items()} == \
        {k: v.item() for k, v in expected.items()}
    assert all(np.array_equal(a, b) for a, b in zip(_state(trainer).values(),
                                                    _state(twin).values()))
    # evaluation reports the same four numbers, without touching the weights
    before = _state(trainer)
    result = trainer.evaluate(loader)
    assert {"loss_d", "loss_g", "d_real", "d_fake"} <= set(result) and result["total"] == 24
    assert all(np.array_equal(before[k], v) for k, v in _state(trainer).items()
               if "running" not in k and "num_batches" not in k)


def test_the_fixed_noise_comes_from_the_seed_alone_and_sampling_changes_nothing():
    task = train.GAN(samples=5, seed=11)
    minicnn.manual_seed(1)
    first = task.fixed_noise(NZ)
    minicnn.manual_seed(2)
    assert np.array_equal(first, task.fixed_noise(NZ)) and first.shape == (5, NZ, 1, 1)
    assert not np.array_equal(first, train.GAN(samples=5, seed=12).fixed_noise(NZ))
    trainer, _ = _setup(None, task)
    before = _state(trainer)
    rng_before = minicnn.backend.get_rng_state()
    images = task.sample(trainer.model)
    assert images.shape == (5, 1, 28, 28) and not images.requires_grad
    assert trainer.model["generator"].training                  # the mode is restored
    assert all(np.array_equal(before[k], v) for k, v in _state(trainer).items())
    assert json.dumps(minicnn.backend.get_rng_state(), default=str) == \
        json.dumps(rng_before, default=str)
    assert np.array_equal(images.numpy(), task.sample(trainer.model).numpy())


def test_wrong_models_optimizers_and_options_are_refused_by_name():
    with pytest.raises(ValueError, match="GAN: loss must be one of non_saturating, minimax"):
        train.GAN(loss="hinge")
    with pytest.raises(ValueError, match="GAN: samples must be a positive int, got 0"):
        train.GAN(samples=0)
    trainer, loader = _setup(None)
    batch = next(iter(loader))
    single = train.Trainer(trainer.model, minicnn.optim.SGD(trainer.model.parameters(),
                                                            lr=0.1),
                           task=train.GAN(), progress=False, log=False)
    with pytest.raises(TypeError, match="GAN: the trainer's optimizer must be a dict with "
                                        "a 'generator' and a 'discriminator'"):
        single.task.train_step(single, batch)
    plain = train.Trainer(nn.Linear(2, 2), {"generator": None, "discriminator": None},
                          task=train.GAN(), progress=False, log=False)
    with pytest.raises(TypeError, match="GAN: the model must be an nn.ModuleDict holding "
                                        "a 'generator' and a 'discriminator', got Linear"):
        plain.task.train_step(plain, batch)
    nameless = nn.ModuleDict({"generator": nn.Sequential(nn.Identity()),
                              "discriminator": nn.Identity()})
    with pytest.raises(ValueError, match=r"has no nz attribute; give the noise size as "
                                         r"GAN\(nz=...\)"):
        train.GAN().sample(nameless)
