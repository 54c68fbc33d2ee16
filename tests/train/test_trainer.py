"""minicnn.train: the Trainer (exact resume, atomic checkpoints) and its tasks
(classification with auxiliary heads, several losses, several optimizers). The
``minicnn train`` command is tested in tests/cli/test_train_command.py."""
import json
import os

import numpy as np
import pytest

import minicnn
import minicnn.optim
from minicnn import nn, train

from loaders import FixedBatches
from minicnn.data import DataLoader, datasets, transforms as T

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


# ------------------------------------------------------------------- tasks

def test_classification_loss_with_auxiliary_heads_is_main_plus_0_3_each():
    """GoogLeNet's training output is (logits, aux_logits2, aux_logits1): the task's loss
    is the paper's main + 0.3 x (aux1 + aux2), each term also logged on its own."""
    from minicnn.models import googlenet
    model = googlenet(num_classes=3)
    x, y = minicnn.randn(2, 3, 64, 64), minicnn.tensor([0, 2])
    outputs = []
    model.register_forward_hook(lambda m, args, out: outputs.append(out))
    losses, logits = train.Classification().losses(model, (x, y), training=True)
    out = outputs[0]
    assert type(out).__name__ == "GoogLeNetOutputs" and logits is out.logits
    ce = minicnn.nn.functional.cross_entropy
    main, aux1, aux2 = ce(out.logits, y), ce(out.aux_logits1, y), ce(out.aux_logits2, y)
    assert set(losses) == {"loss", "loss_main", "loss_aux_logits1", "loss_aux_logits2"}
    np.testing.assert_allclose(losses["loss"].item(),
                               main.item() + 0.3 * (aux1.item() + aux2.item()), rtol=1e-6)
    np.testing.assert_allclose(losses["loss_aux_logits1"].item(), aux1.item(), rtol=1e-6)
    # the weight is the task's argument (Inception-v3 recipes use 0.4)
    outputs.clear()
    minicnn.manual_seed(0)
    weighted, _ = train.Classification(aux_weight=0.4).losses(model, (x, y), training=True)
    out = outputs[0]
    expected = ce(out.logits, y).item() + 0.4 * (ce(out.aux_logits1, y).item()
                                                 + ce(out.aux_logits2, y).item())
    np.testing.assert_allclose(weighted["loss"].item(), expected, rtol=1e-6)


@pytest.mark.slow
def test_googlenet_trains_through_the_trainer_with_its_auxiliary_losses(tmp_path):
    from minicnn.models import googlenet
    minicnn.manual_seed(0)
    model = googlenet(num_classes=3, dropout=0.0, dropout_aux=0.0)
    x, y = minicnn.randn(6, 3, 64, 64), minicnn.tensor([0, 1, 2, 0, 1, 2])
    optimizer = minicnn.optim.Adam(model.parameters(), lr=1e-3)
    trainer = train.Trainer(model, optimizer, progress=False, log=False,
                            out_dir=tmp_path)
    history = trainer.fit(FixedBatches([(x, y)]), epochs=6)
    losses = [m["train_loss"] for m in history]
    assert losses[-1] < 0.5 * losses[0], losses
    first = history[0]
    np.testing.assert_allclose(first["train_loss"], first["train_loss_main"] + 0.3 * (
        first["train_loss_aux_logits1"] + first["train_loss_aux_logits2"]), rtol=1e-6)
    # eval mode: plain logits, the main head alone
    assert not isinstance(model.eval()(x), tuple)
    logged = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert {"train_loss_main", "train_loss_aux_logits2", "train_accuracy"} <= set(logged)


class _TwoLosses(nn.Module):
    """Stands for a detection model in train mode: a dict of named losses."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 1), nn.Linear(4, 1)

    def forward(self, x, target):
        return {"loss_a": ((self.a(x) - target) ** 2).mean(),
                "loss_b": ((self.b(x) + target) ** 2).mean()}


class _LossDictTask(train.Task):
    def losses(self, model, batch, training):
        x, target = batch
        return self.total(model(x, target)), None


def test_a_task_whose_model_returns_a_dict_of_losses_minimises_their_sum(tmp_path):
    model = _TwoLosses()
    x, t = minicnn.randn(8, 4), minicnn.randn(8, 1)
    losses, _ = _LossDictTask().losses(model, (x, t), training=True)
    assert list(losses) == ["loss", "loss_a", "loss_b"]
    np.testing.assert_allclose(losses["loss"].item(),
                               losses["loss_a"].item() + losses["loss_b"].item(), rtol=1e-6)
    trainer = train.Trainer(model, minicnn.optim.SGD(model.parameters(), lr=0.05),
                            task=_LossDictTask(), out_dir=tmp_path, progress=False, log=False)
    history = trainer.fit(FixedBatches([(x, t)]), FixedBatches([(x, t)]), epochs=5)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert {"train_loss_a", "train_loss_b", "eval_loss", "eval_loss_a"} <= set(history[0])
    assert "train_accuracy" not in history[0]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


class _TinyGAN(train.Task):
    """Two networks, two optimizers, stepped in the GAN's order (discriminator, then
    generator with the non-saturating loss): nothing in the Trainer's loop knows."""

    def _d_loss(self, D, real, fake):
        bce = minicnn.nn.functional.binary_cross_entropy_with_logits
        n = len(real)
        return bce(D(real), minicnn.ones(n, 1)) + bce(D(fake), minicnn.zeros(n, 1))

    def _g_loss(self, D, fake):
        bce = minicnn.nn.functional.binary_cross_entropy_with_logits
        return bce(D(fake), minicnn.ones(len(fake), 1))

    def losses(self, model, batch, training):
        real = batch[0]
        fake = model["generator"](minicnn.randn(len(real), 2))
        d_loss = self._d_loss(model["discriminator"], real, fake)
        g_loss = self._g_loss(model["discriminator"], fake)
        return {"loss": d_loss + g_loss, "loss_d": d_loss, "loss_g": g_loss}, fake

    def train_step(self, trainer, batch):
        G, D = trainer.model["generator"], trainer.model["discriminator"]
        opt = trainer.optimizer
        real = batch[0]
        fake = G(minicnn.randn(len(real), 2))
        d_loss = self._d_loss(D, real, fake.detach())
        opt["discriminator"].zero_grad()
        d_loss.backward()
        opt["discriminator"].step()
        g_loss = self._g_loss(D, fake)
        opt["generator"].zero_grad()
        g_loss.backward()
        opt["generator"].step()
        with minicnn.no_grad():
            total = d_loss + g_loss
        return {"loss": total, "loss_d": d_loss, "loss_g": g_loss}, fake


def _gan_setup(out_dir):
    minicnn.manual_seed(0)
    model = nn.ModuleDict({"generator": nn.Sequential(nn.Linear(2, 8), nn.ReLU(),
                                                      nn.Linear(8, 3)),
                           "discriminator": nn.Sequential(nn.Linear(3, 8), nn.ReLU(),
                                                          nn.Dropout(0.2), nn.Linear(8, 1))})
    optimizers = {"generator": minicnn.optim.Adam(model["generator"].parameters(),
                                                  lr=2e-3, betas=(0.5, 0.999)),
                  "discriminator": minicnn.optim.Adam(model["discriminator"].parameters(),
                                                      lr=2e-3, betas=(0.5, 0.999))}
    schedulers = {name: minicnn.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
                  for name, opt in optimizers.items()}
    data = minicnn.randn(32, 3) * 0.3 + 1.0
    loader = FixedBatches([(data[i:i + 8],) for i in range(0, 32, 8)])
    trainer = train.Trainer(model, optimizers, task=_TinyGAN(), scheduler=schedulers,
                            out_dir=out_dir, progress=False, log=False)
    return trainer, loader


def test_a_task_with_two_optimizers_trains_checkpoints_and_resumes_exactly(tmp_path):
    straight, loader = _gan_setup(tmp_path / "straight")
    history = straight.fit(loader, epochs=3)
    assert {"train_loss_d", "train_loss_g", "lr_generator", "lr_discriminator"} <= \
        set(history[0])
    assert history[1]["lr_generator"] == 0.5 * history[0]["lr_generator"]

    def crash_after_first_epoch(trainer, metrics):
        if metrics["epoch"] == 1:
            raise Crash

    broken, loader = _gan_setup(tmp_path / "broken")
    with pytest.raises(Crash):
        broken.fit(loader, epochs=3, callbacks=[crash_after_first_epoch])
    saved = train.load_checkpoint(tmp_path / "broken")
    assert set(saved["optimizer"]) == set(saved["scheduler"]) == {"generator",
                                                                  "discriminator"}
    resumed, loader = _gan_setup(tmp_path / "broken")
    minicnn.manual_seed(123)                  # resuming restores the generator state
    resumed.fit(loader, epochs=3, resume=tmp_path / "broken")
    for key, value in straight.model.state_dict().items():
        assert np.array_equal(value.numpy(), resumed.model.state_dict()[key].numpy()), key
    # a checkpoint of one optimizer cannot be resumed into a run of two
    gan, _ = _gan_setup(None)
    single = train.Trainer(gan.model, minicnn.optim.SGD(gan.model.parameters(), lr=0.1),
                           progress=False, log=False)
    single.save_checkpoint(tmp_path / "single.npz")
    with pytest.raises(ValueError, match=r"resume: the checkpoint holds optimizer state"):
        gan.load_checkpoint(tmp_path / "single.npz")


def test_the_default_step_refuses_several_optimizers_and_task_options_clash():
    model = nn.Linear(3, 2)
    two = {"a": minicnn.optim.SGD(model.parameters(), lr=0.1),
           "b": minicnn.optim.SGD(model.parameters(), lr=0.1)}
    trainer = train.Trainer(model, two, progress=False, log=False)
    batch = (minicnn.randn(4, 3), minicnn.tensor([0, 1, 0, 1]))
    with pytest.raises(TypeError, match="must define train_step"):
        trainer.train_epoch(FixedBatches([batch]))
    with pytest.raises(ValueError, match="with task= given"):
        train.Trainer(model, two["a"], loss_fn=minicnn.nn.functional.cross_entropy,
                      task=train.Classification())
    with pytest.raises(TypeError, match="minicnn.train.Task"):
        train.Trainer(model, two["a"], task="classification")
