"""Training: one loop for every kind of model, and the tasks that say what training means.

:class:`Trainer` runs epochs of training and evaluation with progress bars (tqdm), writes
a run folder, and can resume a run exactly::

    runs/<name>/
        config.json       what was run (the command's options; written by the CLI)
        metrics.jsonl     one JSON line per epoch: losses, metrics, lr, time
        curves.png        learning curves (matplotlib, drawn off-screen)
        checkpoint.npz    model + optimizer(s) + scheduler(s) + RNG + data-loader state, epoch

The loop is the same for every task; a :class:`Task` says what differs:

* how a batch becomes a loss (:meth:`Task.losses`): one tensor, or a dict of named losses
  whose sum is what is minimised (as torchvision's detection models return in train mode);
* how one training step updates the weights (:meth:`Task.train_step`): one optimizer by
  default; a GAN's task steps its discriminator's optimizer, then its generator's;
* which metrics add up over an epoch (:meth:`Task.metrics`), streaming: a running count
  per batch, never every prediction held;
* what picture is drawn after each epoch (:meth:`Task.draw`): learning curves by default.

:class:`Classification` is the task of ``minicnn train``. It also trains models whose
training-mode output is a namedtuple with auxiliary heads (GoogLeNet, Inception): the loss
is the main head's plus ``aux_weight`` times each auxiliary head's. :class:`Segmentation`
(``minicnn train --task segmentation``) scores every pixel and reports mean IoU;
:class:`Detection` (``--task detection``) trains a detector that returns its own losses
and reports the mean average precision of its boxes. :class:`GAN` (``--task gan``) trains
a generator and a discriminator with an optimizer each, and draws samples every epoch.

The checkpoint is rewritten atomically after every epoch (``minicnn.save``). Resuming
restores every piece of state that the next epoch depends on -- weights, optimizer
buffers, the learning-rate schedule, minicnn's random generator (dropout) and each data
loader's seed and epoch counter (shuffle order and augmentation) -- so a run that is
interrupted and resumed ends with exactly the weights of one that never stopped.

Data-parallel training: give the Trainer a :class:`minicnn.distributed.DistributedDataParallel`
model (and loaders over a :class:`~minicnn.distributed.DistributedSampler`) on every rank.
Each pass then calls the sampler's ``set_epoch``, the epoch's losses and metrics are
summed over the ranks before they are shown (every rank reports the global numbers),
evaluation runs on the unwrapped model after rank 0's buffers are broadcast, and only
rank 0 prints, writes the run folder and saves the checkpoint -- which holds the unwrapped
model's state, so a run resumes on any number of ranks, or on none.

The ``minicnn train`` command that drives all this lives in ``minicnn/cli/train.py``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time

import numpy as np

from . import backend
from .autograd import Tensor, no_grad
from .distributed import DistributedDataParallel
from .utils.serialization import CheckpointError, load, save

__all__ = ["Trainer", "Task", "Classification", "Segmentation", "Detection", "GAN", "Mean",
           "Accuracy", "load_checkpoint", "plot_curves", "plot_segmentation", "plot_detections", "run_folder_lock", "holds_run", "TrainingDiverged", "RunFolderError",
           "CHECKPOINT", "METRICS", "CURVES", "CONFIG"]

CHECKPOINT, METRICS, CURVES, CONFIG = "checkpoint.npz", "metrics.jsonl", "curves.png", "config.json"


# ===================================================================== Trainer

class Trainer:
    """Train ``model`` with ``optimizer`` on the batches of a data loader, as ``task`` says.

    Args:
        model: a ``minicnn.nn.Module`` (for a task with several networks, one module that
            holds them, e.g. an ``nn.ModuleDict``).
        optimizer: a ``minicnn.optim`` optimizer, or a dict of them by name for a task
            that steps several (``{"generator": ..., "discriminator": ...}``).
        task: a :class:`Task`; default :class:`Classification` with ``loss_fn`` and
            ``batch_transform``, which may be given here as a shortcut.
        loss_fn: ``loss_fn(logits, targets)`` for the default task; default cross-entropy.
        scheduler: an optional ``minicnn.optim.lr_scheduler`` schedule (or a dict of them,
            as ``optimizer``), stepped after every epoch (``scheduler_interval="epoch"``)
            or every batch (``"batch"``, e.g. OneCycleLR).
        device: where the model and the batches go (``"cpu"``, ``"cuda"``).
        out_dir: the run folder (checkpoint, metrics, curves); None writes nothing.
        batch_transform: for the default task, applied to each training batch as
            ``(inputs, targets) = batch_transform(inputs, labels)``, e.g.
            ``transforms.MixUp(0.2, num_classes)``. Training accuracy is still measured
            against the original labels.
        progress: show tqdm progress bars; ``log``: print one line per epoch (both off
            for ``--quiet``).
        config: plain data saved with the checkpoint (how the run was set up).
        overwrite: let :meth:`fit` start a new run in an ``out_dir`` that already holds
            one (its checkpoint and log are replaced). Without it that is refused: resume
            the run instead, or choose another folder.

    While :meth:`fit` runs, ``out_dir`` is locked (:func:`run_folder_lock`): a second
    process that tries to write a run there is refused. Training stops with
    :class:`TrainingDiverged` at the first loss that is not finite; the checkpoint of the
    last complete epoch is kept.
    """

    def __init__(self, model, optimizer, loss_fn=None, scheduler=None,
                 scheduler_interval="epoch", device="cpu", out_dir=None, batch_transform=None,
                 progress=True, log=True, config=None, task=None, overwrite=False):
        if scheduler_interval not in ("epoch", "batch"):
            raise ValueError(f"Trainer: scheduler_interval must be 'epoch' or 'batch', got "
                             f"{scheduler_interval!r}")
        if task is None:
            task = Classification(loss_fn, batch_transform=batch_transform)
        elif loss_fn is not None or batch_transform is not None:
            raise ValueError("Trainer: loss_fn and batch_transform configure the default "
                             "classification task; with task= given, pass them to the task")
        if not isinstance(task, Task):
            raise TypeError(f"Trainer: task must be a minicnn.train.Task, got "
                            f"{type(task).__name__}")
        self.model, self.optimizer, self.task = model, optimizer, task
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.device = backend.Device(device)
        self.out_dir = None if out_dir is None else os.fspath(out_dir)
        self.progress, self.log = progress, log
        self.config = {} if config is None else dict(config)
        self.overwrite = overwrite
        self.epoch = 0            # epochs completed
        self.history = []         # one dict of metrics per completed epoch
        # data-parallel: the ranks' communicator; only rank 0 prints and writes
        self.comm = model.comm if isinstance(model, DistributedDataParallel) else None
        self.network = model.module if self.comm is not None else model
        if self.comm is not None and self.comm.rank != 0:
            self.out_dir, self.progress, self.log = None, False, False
        if self.comm is not None and not hasattr(task.metrics(), "reduce"):
            raise NotImplementedError(
                f"Trainer: {type(task).__name__}'s metrics cannot be summed over ranks yet; "
                "train this task in one process")
        self.model.to(self.device)

    # ---------------------------------------------------------------- fitting
    def fit(self, train_loader, eval_loader=None, epochs=1, resume=None, callbacks=()):
        """Train until ``epochs`` epochs are complete (counting those of a resumed run).

        ``resume``: a checkpoint file or run folder to continue from. After each epoch:
        evaluate on ``eval_loader``, append to the metrics log, save the checkpoint, draw
        the task's picture, then call each ``callback(trainer, metrics)``. Returns the
        history.
        """
        with contextlib.ExitStack() as stack:
            if self.out_dir is not None:
                stack.enter_context(run_folder_lock(self.out_dir))
            if resume is not None:
                self.load_checkpoint(resume, train_loader, eval_loader)
            if self.out_dir is not None:
                if not self.history and not self.overwrite and holds_run(self.out_dir):
                    raise RunFolderError(
                        f"run folder {self.out_dir!r} already holds a run ({CHECKPOINT} or "
                        f"{METRICS}); resume it, choose another folder, or pass "
                        "overwrite=True (--overwrite) to replace it")
                self._rewrite_metrics()
            self._fit_epochs(train_loader, eval_loader, epochs, callbacks)
        return self.history

    def _fit_epochs(self, train_loader, eval_loader, epochs, callbacks):
        while self.epoch < epochs:
            started = time.perf_counter()
            metrics = {"epoch": self.epoch + 1}
            learning_rates = {f"lr{_suffix(name)}": opt.param_groups[0]["lr"]
                              for name, opt in _named(self.optimizer)}
            train = self.train_epoch(train_loader, desc=f"epoch {self.epoch + 1}/{epochs}")
            metrics.update(_prefixed("train", train))
            if eval_loader is not None:
                evaluation = self.evaluate(eval_loader, desc="  evaluate")
                evaluation.pop("total")
                metrics.update(_prefixed("eval", evaluation))
            if self.scheduler_interval == "epoch":
                for _, scheduler in _named(self.scheduler):
                    scheduler.step()
            metrics.update(learning_rates)
            metrics["time_s"] = round(time.perf_counter() - started, 3)
            self.epoch += 1
            self.history.append(metrics)
            if self.log:
                print(_epoch_line(metrics, epochs, ("loss",) + self.task.curves), flush=True)
            if self.out_dir is not None:
                self._append_metrics(metrics)
                self.save_checkpoint(os.path.join(self.out_dir, CHECKPOINT),
                                     train_loader, eval_loader)
                self.task.draw(self, self.out_dir)
            for callback in callbacks:
                callback(self, metrics)

    def train_epoch(self, loader, desc="train"):
        """One pass over ``loader`` with updates; returns the epoch's mean losses and the
        task's metrics (e.g. ``{"loss": ..., "accuracy": ...}``)."""
        self.model.train()
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):         # a DistributedSampler: this pass's order
            sampler.set_epoch(getattr(loader, "epoch", self.epoch))
        losses, metrics = Mean(), self.task.metrics()
        shown = ("loss",) + self.task.curves
        bar = _progress_bar(loader, desc, self.progress)
        unread = _UnreadLosses(self, losses)
        for step, batch in enumerate(bar, 1):
            batch = self.task.to_device(batch, self.device)
            step_losses, output = self.task.train_step(self, batch)
            unread.add(step, step_losses, self.task.batch_size(batch))
            if self.scheduler_interval == "batch":
                for _, scheduler in _named(self.scheduler):
                    scheduler.step()
            metrics.update(output, batch)
            if _refresh_due(bar):      # read the device only when the bar shows the numbers
                unread.read()
                bar.set_postfix(_postfix({**losses.compute(), **metrics.compute()}, shown),
                                refresh=False)
        unread.read()
        bar.close()
        self._reduce(losses, metrics)
        return {**losses.compute(), **metrics.compute()}

    def evaluate(self, loader, desc="evaluate"):
        """The task's losses and metrics over ``loader``, in eval mode, without a graph;
        ``total`` is the number of examples seen."""
        self.model.eval()
        if self.comm is not None:
            # every rank evaluates with rank 0's batch-norm statistics (those it saves);
            # the unwrapped model runs no collective, whatever each rank's share
            self.model._sync_state(list(self.network.buffers()))
        losses, metrics = Mean(), self.task.metrics()
        bar = _progress_bar(loader, desc, self.progress)
        unread = _UnreadLosses(self, losses)
        with no_grad():
            for batch in bar:
                batch = self.task.to_device(batch, self.device)
                step_losses, output = self.task.losses(self.network, batch, training=False)
                unread.add(None, step_losses, self.task.batch_size(batch))
                metrics.update(output, batch)
                if _refresh_due(bar):
                    unread.read()
                    bar.set_postfix(_postfix(metrics.compute(), self.task.curves),
                                    refresh=False)
        unread.read()
        bar.close()
        self._reduce(losses, metrics)
        self.model.train()
        return {**losses.compute(), **metrics.compute(), "total": losses.count}

    def _reduce(self, losses, metrics):
        """Data-parallel: make ``losses`` (a :class:`Mean`) and the task's ``metrics``
        hold the sums over every rank."""
        if self.comm is None or self.comm.size == 1:
            return
        losses.reduce(self.comm)
        metrics.reduce(self.comm)

    def _finite(self, values, step):
        """``values`` if every loss is a finite number; else stop the run, saying where
        (``step`` None: during evaluation) and what usually causes it."""
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if not bad:
            return values
        where = f"step {step}" if step is not None else "evaluation"
        rates = ", ".join(f"lr{_suffix(name)} {opt.param_groups[0]['lr']:g}"
                          for name, opt in _named(self.optimizer))
        kept = (f"the checkpoint of epoch {self.epoch} is kept" if self.epoch and self.out_dir
                else "nothing was saved from this run")
        raise TrainingDiverged(
            f"training diverged in epoch {self.epoch + 1}, {where}: "
            + ", ".join(f"{k} = {v}" for k, v in bad.items())
            + f". The weights are no longer usable; {kept}. A learning rate too large for "
            f"this model is the usual cause ({rates}): try one 10x smaller.")

    # ----------------------------------------------------------- checkpoints
    def checkpoint_state(self, train_loader=None, eval_loader=None):
        """Everything a resumed run needs, as plain data."""
        return {
            "format": "minicnn-train", "epoch": self.epoch,
            "model": self.network.state_dict(),
            "optimizer": _state_of(self.optimizer),
            "scheduler": _state_of(self.scheduler),
            "rng": backend.get_rng_state(),
            "train_loader": None if train_loader is None else train_loader.state_dict(),
            "eval_loader": None if eval_loader is None else eval_loader.state_dict(),
            "history": self.history, "config": self.config,
        }

    def save_checkpoint(self, path, train_loader=None, eval_loader=None):
        save(self.checkpoint_state(train_loader, eval_loader), path)

    def load_checkpoint(self, path, train_loader=None, eval_loader=None):
        """Restore the state saved by :meth:`save_checkpoint` (file or run folder)."""
        state = load_checkpoint(path)
        self.network.load_state_dict(state["model"])
        _load_state("optimizer", self.optimizer, state["optimizer"])
        if (self.scheduler is None) != (state["scheduler"] is None):
            raise ValueError(f"resume: the checkpoint was saved "
                             f"{'without' if state['scheduler'] is None else 'with'} a "
                             "learning-rate scheduler, this run is set up differently")
        if self.scheduler is not None:
            _load_state("scheduler", self.scheduler, state["scheduler"])
        backend.set_rng_state(state["rng"])
        for loader, key in ((train_loader, "train_loader"), (eval_loader, "eval_loader")):
            if loader is not None and state.get(key) is not None:
                loader.load_state_dict(state[key])
        self.epoch, self.history = int(state["epoch"]), list(state["history"])
        return state

    # ------------------------------------------------------------------- logs
    def _rewrite_metrics(self):
        """Make the log hold exactly the completed epochs (a crash may have left a line
        written after the last checkpoint)."""
        with open(os.path.join(self.out_dir, METRICS), "w", encoding="utf-8") as f:
            for metrics in self.history:
                f.write(_json_line(metrics))

    def _append_metrics(self, metrics):
        with open(os.path.join(self.out_dir, METRICS), "a", encoding="utf-8") as f:
            f.write(_json_line(metrics))


def _json_line(metrics):
    """One line of strict JSON (RFC 8259 has no NaN or Infinity: such a number, which a
    callback may add, is written as null)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in metrics.items()}
    return json.dumps(clean, allow_nan=False) + "\n"


class TrainingDiverged(FloatingPointError):
    """A loss became NaN or infinite: training stopped (see the message for where)."""


class RunFolderError(FileExistsError):
    """The run folder holds another run, or another process is writing a run there."""


def holds_run(folder):
    """True when ``folder`` holds a run's checkpoint or metrics log."""
    return any(os.path.exists(os.path.join(folder, name)) for name in (CHECKPOINT, METRICS))


_held_locks = {}      # real path of a run folder -> [file descriptor, depth]


@contextlib.contextmanager
def run_folder_lock(folder):
    """Hold ``folder`` (created if missing) for this process while the block runs.

    The lock is an exclusive ``flock`` on the folder itself: no lock file is left
    behind, and the system drops the lock when the process dies, even by ``kill -9``.
    A second process asking for it gets :class:`RunFolderError` at once. Re-entrant
    within one process. Where ``fcntl`` does not exist (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:               # pragma: no cover - not on POSIX
        fcntl = None
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise RunFolderError(f"run folder {folder!r} is a file, not a folder")
    os.makedirs(folder, exist_ok=True)
    key = os.path.realpath(folder)
    if key in _held_locks or fcntl is None:
        _held_locks.setdefault(key, [None, 0])[1] += 1
    else:
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunFolderError(f"run folder {folder!r} is in use: another process is "
                                 "writing a run there; wait for it to end, or choose "
                                 "another folder") from None
        _held_locks[key] = [fd, 1]
    try:
        yield folder
    finally:
        entry = _held_locks[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _held_locks[key]
            if entry[0] is not None:
                os.close(entry[0])      # closing the descriptor releases the flock


def load_checkpoint(path):
    """Read a training checkpoint: a ``.npz`` file, or a run folder holding one."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT)
    if not os.path.exists(path):
        raise FileNotFoundError(f"resume: no checkpoint at {path!r}")
    state = load(path)
    if not isinstance(state, dict) or state.get("format") != "minicnn-train":
        raise CheckpointError(f"resume: {path!r} is a minicnn file but not a training "
                              "checkpoint (written by minicnn.train)")
    return state


# Optimizers and schedulers come one at a time or as a dict by name (several networks).

def _named(obj):
    """``[(name, x), ...]``: ``[]`` for None, ``[("", x)]`` for one, the items of a dict."""
    if obj is None:
        return []
    return list(obj.items()) if isinstance(obj, dict) else [("", obj)]


def _suffix(name):
    return f"_{name}" if name else ""


def _state_of(obj):
    if obj is None:
        return None
    if isinstance(obj, dict):
        return {name: x.state_dict() for name, x in obj.items()}
    return obj.state_dict()


def _load_state(what, obj, state):
    if isinstance(obj, dict):
        if not isinstance(state, dict) or set(state) != set(obj):
            saved = sorted(state) if isinstance(state, dict) else "one"
            raise ValueError(f"resume: the checkpoint holds {what} state for {saved}, this "
                             f"run has {sorted(obj)}")
        for name, x in obj.items():
            x.load_state_dict(state[name])
    else:
        obj.load_state_dict(state)


# ======================================================================= tasks

class Task:
    """What training means for one kind of model; the :class:`Trainer`'s loop asks it.

    A subclass writes :meth:`losses` (and :meth:`metrics` for more than the losses);
    :meth:`train_step`, :meth:`draw`, :meth:`to_device` and :meth:`batch_size` have
    defaults that fit most tasks.
    """

    #: the metrics plotted beside the loss after each epoch (keys of :meth:`metrics`)
    curves = ()

    def losses(self, model, batch, training):
        """``(losses, output)`` for one batch: ``losses`` a dict of scalar tensors whose
        ``"loss"`` entry is minimised (see :func:`Task.total`), ``output`` whatever
        :meth:`metrics` needs (the model's prediction)."""
        raise NotImplementedError

    def train_step(self, trainer, batch):
        """One update: forward, backward, optimizer step. Returns :meth:`losses`'s pair.

        The default steps the trainer's one optimizer. A task with several (a GAN's
        discriminator and generator) overrides this and steps each in its order.
        """
        optimizer = trainer.optimizer
        if isinstance(optimizer, dict):
            raise TypeError(f"{type(self).__name__}: the trainer has optimizers "
                            f"{sorted(optimizer)}; a task with several optimizers must "
                            "define train_step to say how each is stepped")
        optimizer.zero_grad()
        losses, output = self.losses(trainer.model, batch, training=True)
        losses["loss"].backward()
        optimizer.step()
        return losses, output

    def metrics(self):
        """A fresh streaming accumulator for one epoch: ``update(output, batch)`` after
        each batch, ``compute()`` -> dict of numbers. Default: none."""
        return _NoMetrics()

    def draw(self, trainer, folder):
        """The picture written after each epoch: learning curves of the loss and
        :attr:`curves`."""
        plot_curves(trainer.history, os.path.join(folder, CURVES), ("loss",) + self.curves)

    def to_device(self, batch, device):
        """The batch with every tensor in it (nested in tuples, lists, dicts) on
        ``device``."""
        if isinstance(batch, Tensor):
            return batch.to(device)
        if isinstance(batch, dict):
            return {k: self.to_device(v, device) for k, v in batch.items()}
        if isinstance(batch, (tuple, list)):
            return type(batch)(self.to_device(v, device) for v in batch)
        return batch

    def batch_size(self, batch):
        """How many examples a batch holds (the weight of its losses in the epoch's
        mean): the length of its first entry."""
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        return len(first)

    @staticmethod
    def total(losses):
        """A loss or a dict of losses as a dict with the total under ``"loss"``: a dict
        without one (a detection model's ``loss_classifier``, ``loss_box_reg``, ...) gets
        the sum of its entries."""
        if isinstance(losses, Tensor):
            return {"loss": losses}
        losses = dict(losses)
        if "loss" not in losses:
            if not losses:
                raise ValueError("Task.total: no loss given (an empty dict)")
            parts = list(losses.values())
            total = parts[0]
            for part in parts[1:]:
                total = total + part
            losses = {"loss": total, **losses}
        return losses


class Classification(Task):
    """Labels for images: the loss of the logits, accuracy over the epoch.

    A model may return plain logits ``(N, num_classes)`` or, in training mode, a
    namedtuple whose first field holds the logits and whose other fields hold auxiliary
    logits (GoogLeNet's ``(logits, aux_logits2, aux_logits1)``, Inception's ``(logits,
    aux_logits)``): then ``loss = main + aux_weight · Σ aux`` (``aux_weight`` 0.3 as in
    the GoogLeNet paper; torchvision's Inception-v3 recipe uses 0.4), and the losses
    ``loss_main`` and ``loss_<field>`` are logged beside it. Auxiliary fields that are
    None are skipped.

    Args:
        loss_fn: ``loss_fn(logits, targets)``; default ``F.cross_entropy``.
        aux_weight: weight of each auxiliary head's loss.
        batch_transform: applied to training batches, ``(inputs, targets) =
            batch_transform(inputs, labels)`` (mixup); accuracy uses the labels.
    """

    curves = ("accuracy",)

    def __init__(self, loss_fn=None, aux_weight=0.3, batch_transform=None):
        if loss_fn is None:
            from .nn import functional as F
            loss_fn = F.cross_entropy
        self.loss_fn, self.aux_weight = loss_fn, float(aux_weight)
        self.batch_transform = batch_transform

    def losses(self, model, batch, training):
        inputs, labels = batch
        targets = labels
        if training and self.batch_transform is not None:
            inputs, targets = self.batch_transform(inputs, labels)
        output = model(inputs)
        if not _is_namedtuple(output):
            return {"loss": self.loss_fn(output, targets)}, output
        logits, aux = output[0], {k: v for k, v in output._asdict().items()
                                  if k != output._fields[0] and v is not None}
        main = self.loss_fn(logits, targets)
        losses = {"loss": main, "loss_main": main}
        for name, aux_logits in aux.items():
            losses[f"loss_{name}"] = self.loss_fn(aux_logits, targets)
            losses["loss"] = losses["loss"] + self.aux_weight * losses[f"loss_{name}"]
        return losses, logits

    def metrics(self):
        return Accuracy()


def _is_namedtuple(value):
    return isinstance(value, tuple) and hasattr(value, "_fields")


class Segmentation(Task):
    """A class for every pixel: the pixel-wise cross-entropy of ``(N, C, H, W)`` scores
    against ``(N, H, W)`` masks, and the FCN paper's four numbers over the epoch (pixel
    accuracy, mean accuracy, mean IoU, frequency-weighted IoU) from a streaming
    confusion matrix (:class:`minicnn.metrics.SegmentationMetric`).

    A model may return the scores, or a dict with ``"out"`` and optionally ``"aux"``
    (torchvision's FCN): then ``loss = out + aux_weight · aux`` (0.5, as torchvision's
    reference recipe). A model whose output is smaller than its input (U-Net with valid
    convolutions: 572 in, 388 out) is scored on the centre of the mask, as the U-Net
    paper's overlap-tile strategy does.

    After each epoch, besides the curves, it draws ``predictions/epoch-NNN.png``: for the
    first images of the evaluation set, image | truth | prediction.

    Args:
        num_classes: the classes of the masks (class 0 is usually the background).
        ignore_index: the mask value that is not scored (255 for VOC and Cityscapes).
        aux_weight: weight of an auxiliary head's loss.
        preview: how many evaluation images the picture shows.
    """

    curves = ("mean_iou", "pixel_accuracy")

    def __init__(self, num_classes, ignore_index=255, aux_weight=0.5, preview=4):
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.aux_weight, self.preview = float(aux_weight), int(preview)
        self._last_meter = None

    def losses(self, model, batch, training):
        from .nn import functional as F
        images, masks = batch[0], batch[1]
        output = model(images)
        scores, aux = (output["out"], output.get("aux")) if isinstance(output, dict) \
            else (output, None)
        masks = _centre_to(masks, scores.shape[-2:])
        main = F.cross_entropy(scores, masks, ignore_index=self.ignore_index)
        if aux is None:
            return {"loss": main}, scores
        aux_loss = F.cross_entropy(aux, masks, ignore_index=self.ignore_index)
        return {"loss": main + self.aux_weight * aux_loss, "loss_main": main,
                "loss_aux": aux_loss}, scores

    def metrics(self):
        self._last_meter = _SegmentationMeter(self.num_classes, self.ignore_index,
                                              self.preview)
        return self._last_meter

    def draw(self, trainer, folder):
        super().draw(trainer, folder)
        meter = self._last_meter
        if meter is not None and meter.examples is not None:
            os.makedirs(os.path.join(folder, "predictions"), exist_ok=True)
            plot_segmentation(*meter.examples, self.num_classes, os.path.join(
                folder, "predictions", f"epoch-{trainer.epoch:03d}.png"),
                self.ignore_index)


class Detection(Task):
    """Boxes and classes for the objects in an image, with torchvision's detector
    convention: in training mode ``model(images, targets)`` returns a dict of losses
    (YOLO's box, object, no-object and class terms; SSD's ``bbox_regression`` and
    ``classification``) whose sum is minimised; in eval mode ``model(images)`` returns one
    dict per image of ``boxes``, ``labels`` and ``scores``, scored over the epoch as the
    mean average precision at IoU 0.5 (PASCAL VOC's all-point AP; objects marked
    ``difficult`` ignored) by :class:`minicnn.metrics.DetectionMetric`. Training batches
    give the losses only: the mAP is measured on the evaluation set. When the detections
    carry ``masks`` (Mask R-CNN) and the targets do too, the epoch also reports
    ``mask_iou``, the mean mask IoU on matched detections scoring at least 0.5
    (:class:`minicnn.metrics.MaskIoUMetric`); box-only detectors report no such key.

    A batch is ``(images, targets)`` as :func:`minicnn.data.detection_collate` makes it.
    After each epoch, besides the curves, it draws ``predictions/epoch-NNN.png``: the
    first images of the evaluation set with their true boxes and the predicted ones.

    Args:
        num_classes: the classes of the labels, counting the background (class 0).
        class_names: a name per class for the picture (default the numbers).
        coco: also report COCO's mAP@[.5:.95] (``map``), ten IoU thresholds.
        preview: how many evaluation images the picture shows; ``min_score``: the
            lowest score of a box it draws.
    """

    curves = ("map_50", "mask_iou")          # mask_iou: only for detectors with masks

    def __init__(self, num_classes, class_names=None, coco=False, preview=4, min_score=0.3):
        self.num_classes, self.coco = int(num_classes), bool(coco)
        self.class_names = None if class_names is None else list(class_names)
        self.preview, self.min_score = int(preview), float(min_score)
        self._last_meter = None

    def losses(self, model, batch, training):
        images, targets = batch
        if training:
            return Task.total(model(images, targets)), None
        return {}, model(images)

    def metrics(self):
        self._last_meter = _DetectionMeter(self.num_classes, self.coco, self.preview)
        return self._last_meter

    def draw(self, trainer, folder):
        super().draw(trainer, folder)
        meter = self._last_meter
        if meter is not None and meter.examples:
            os.makedirs(os.path.join(folder, "predictions"), exist_ok=True)
            plot_detections(meter.examples, os.path.join(
                folder, "predictions", f"epoch-{trainer.epoch:03d}.png"),
                self.class_names, self.min_score)


def _centre_to(masks, size):
    """The centre ``size`` of the masks (as U-Net's valid output covers the centre)."""
    H, W = masks.shape[-2:]
    h, w = int(size[0]), int(size[1])
    if (h, w) == (H, W):
        return masks
    if h > H or w > W:
        raise ValueError(f"Segmentation: the model's output ({h}x{w}) is larger than the "
                         f"masks ({H}x{W})")
    top, left = (H - h) // 2, (W - w) // 2
    return masks[..., top:top + h, left:left + w]


# ========================================================================= GAN

class GAN(Task):
    """A generative adversarial network (Goodfellow et al. 2014), trained as DCGAN is.

    Every batch of real images makes one update of each network
    (:func:`minicnn.models.gan.gan_train_step`): the discriminator on the real batch and
    on a fake one (binary cross-entropy, real = 1, fake = 0), then the generator through
    the updated discriminator with the non-saturating loss ``-log D(G(z))``
    (``loss="minimax"``: the original ``log(1 - D(G(z)))``). The noise ``z`` is drawn from
    minicnn's generator, so a resumed run draws what an uninterrupted one would.

    The trainer's model is an ``nn.ModuleDict`` holding a ``"generator"`` and a
    ``"discriminator"`` (which returns one probability per image), its optimizer a dict
    with the same two names. Logged: ``loss_d``, ``loss_g``, and the mean outputs of the
    discriminator ``d_real`` (D(x)) and ``d_fake`` (D(G(z)), before D's step); when the
    generator matches the data, the best discriminator answers 1/2 for both.

    After each epoch it draws the curves of both losses and both outputs, and
    ``samples/epoch-NNN.png``: the generator (in eval mode) applied to a fixed batch of
    ``samples`` noise vectors, tiled ``nrow`` a row, [-1, 1] shown as black to white. The
    batch is drawn from ``seed`` by a NumPy generator of its own (never minicnn's), so it
    is the same batch in every epoch and after a resume, and training draws are untouched.

    Args:
        loss: the generator's loss, ``"non_saturating"`` (default) or ``"minimax"``.
        nz: the size of the noise; default the generator's ``nz`` attribute.
        samples, nrow, seed: the fixed noise batch and its picture.
    """

    curves = ("loss_d", "loss_g")

    def __init__(self, loss="non_saturating", nz=None, samples=64, nrow=8, seed=0):
        from .models.gan import GAN_LOSSES
        if loss not in GAN_LOSSES:
            raise ValueError(f"GAN: loss must be one of {', '.join(GAN_LOSSES)}, got {loss!r}")
        for name, value in (("samples", samples), ("nrow", nrow)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GAN: {name} must be a positive int, got {value!r}")
        self.loss, self.nz, self.samples, self.nrow = loss, nz, samples, nrow
        self.seed = int(seed)

    def train_step(self, trainer, batch):
        from .models.gan import gan_train_step
        netG, netD = self.networks(trainer.model)
        optimizers = trainer.optimizer
        if not (isinstance(optimizers, dict) and
                {"generator", "discriminator"} <= set(optimizers)):
            given = sorted(optimizers) if isinstance(optimizers, dict) else \
                type(optimizers).__name__
            raise TypeError("GAN: the trainer's optimizer must be a dict with a "
                            f"'generator' and a 'discriminator' optimizer, got {given}")
        real = self._real(batch)
        numbers, _ = gan_train_step(netG, netD, optimizers["generator"],
                                    optimizers["discriminator"], real,
                                    self._noise(netG, len(real), real), self.loss)
        return numbers, None

    def losses(self, model, batch, training):
        """Both losses on a batch of real images and as many fakes, without an update
        (what evaluation on held-out images reports)."""
        from .creation import ones_like, zeros_like
        from .nn import functional as F
        netG, netD = self.networks(model)
        real = self._real(batch)
        d_real, d_fake = netD(real), netD(netG(self._noise(netG, len(real), real)))
        loss_d = F.binary_cross_entropy(d_real, ones_like(d_real)) + \
            F.binary_cross_entropy(d_fake, zeros_like(d_fake))
        loss_g = F.binary_cross_entropy(d_fake, ones_like(d_fake)) \
            if self.loss == "non_saturating" else \
            -F.binary_cross_entropy(d_fake, zeros_like(d_fake))
        return {"loss_d": loss_d, "loss_g": loss_g, "d_real": d_real.mean(),
                "d_fake": d_fake.mean()}, None

    def draw(self, trainer, folder):
        from .utils.visualize import save_image
        plot_curves(trainer.history, os.path.join(folder, CURVES),
                    self.curves + ("d_real", "d_fake"))
        os.makedirs(os.path.join(folder, "samples"), exist_ok=True)
        save_image(self.sample(trainer.model),
                   os.path.join(folder, "samples", f"epoch-{trainer.epoch:03d}.png"),
                   nrow=self.nrow, normalize=True, value_range=(-1.0, 1.0))

    def fixed_noise(self, nz):
        """The ``(samples, nz, 1, 1)`` float64 host array drawn from ``seed``."""
        rng = np.random.Generator(np.random.PCG64(self.seed))
        return rng.standard_normal((self.samples, nz, 1, 1))

    def sample(self, model):
        """The generator's images ``(samples, C, H, W)`` for the fixed noise, in eval mode
        (BatchNorm with its running statistics) and without a graph; the mode is
        restored afterwards."""
        netG, _ = self.networks(model)
        noise = Tensor(self.fixed_noise(self._nz(netG)))
        weight = next(iter(netG.parameters()), None)
        if weight is not None:
            noise = noise.to(dtype=weight.dtype, device=weight.device)
        was_training = netG.training
        netG.eval()
        try:
            with no_grad():
                return netG(noise)
        finally:
            netG.train(was_training)

    @staticmethod
    def networks(model):
        """``(generator, discriminator)`` of the trainer's model."""
        try:
            return model["generator"], model["discriminator"]
        except (KeyError, TypeError):
            raise TypeError("GAN: the model must be an nn.ModuleDict holding a 'generator' "
                            f"and a 'discriminator', got {type(model).__name__}") from None

    def _nz(self, netG):
        nz = self.nz if self.nz is not None else getattr(netG, "nz", None)
        if nz is None:
            raise ValueError(f"GAN: the generator ({type(netG).__name__}) has no nz "
                             "attribute; give the noise size as GAN(nz=...)")
        return int(nz)

    def _noise(self, netG, n, like):
        from .creation import randn
        return randn(n, self._nz(netG), 1, 1, dtype=like.dtype, device=like.device)

    @staticmethod
    def _real(batch):
        """The images of a batch: ``(images, labels)`` or ``(images,)`` or images."""
        return batch[0] if isinstance(batch, (tuple, list)) else batch


# ====================================================== streaming accumulators

class _UnreadLosses:
    """The losses of the steps since the last read, still where they were computed.

    Reading a GPU value waits for the device, so the Trainer does not read each step's
    loss: :meth:`read` fetches all of them in one transfer (when the progress bar is
    redrawn, and at the end of the pass), stops the run at the first step whose loss is
    not finite (:meth:`Trainer._finite`, naming that step), and adds them to ``losses``.
    """

    def __init__(self, trainer, losses):
        self.trainer, self.losses, self.steps = trainer, losses, []

    def add(self, step, step_losses, n):
        self.steps.append((step, {k: v.array for k, v in step_losses.items()}, n))

    def read(self):
        steps, self.steps = self.steps, []
        arrays = [a for _, values, _ in steps for a in values.values()]
        host = iter(backend.fetch(arrays))
        for step, values, n in steps:
            numbers = {k: float(next(host)) for k in values}
            self.losses.update(self.trainer._finite(numbers, step), n)


class Mean:
    """Running means of named numbers over an epoch, each weighted by its batch size."""

    def __init__(self):
        self.sums, self.count = {}, 0

    def update(self, values, n):
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value) * n
        self.count += n

    def compute(self):
        return {key: total / max(self.count, 1) for key, total in self.sums.items()}

    def reduce(self, comm):
        """Sum the counts and sums over the ranks (a rank that saw no batch has no keys:
        they are agreed on first)."""
        keys = sorted(set().union(*comm.allgather_object(sorted(self.sums))))
        totals = comm.allreduce(np.array([self.count] + [self.sums.get(k, 0.0) for k in keys],
                                         dtype=np.float64), "allreduce of the epoch's losses")
        self.count = int(round(totals[0]))
        self.sums = dict(zip(keys, totals[1:].tolist()))


class Accuracy:
    """Top-1 accuracy over an epoch from ``(logits, (inputs, labels))`` batches: two
    counters, never the predictions themselves."""

    def __init__(self):
        self.correct, self.seen = 0, 0

    def update(self, logits, batch):
        labels = batch[1]
        predicted = logits.array.argmax(axis=1)
        # a running count on the batch's device: read in compute(), not at every step
        self.correct = self.correct + (predicted == labels.array).sum()
        self.seen += len(labels)

    def compute(self):
        correct = int(self.correct)
        return {"accuracy": correct / max(self.seen, 1), "correct": correct}

    def reduce(self, comm):
        counts = comm.allreduce(np.array([int(self.correct), self.seen], dtype=np.int64),
                                "allreduce of the epoch's accuracy counts")
        self.correct, self.seen = int(counts[0]), int(counts[1])


class _SegmentationMeter:
    """The epoch's confusion matrix, and the first few examples for the picture."""

    def __init__(self, num_classes, ignore_index, preview):
        from .metrics import SegmentationMetric
        self.metric = SegmentationMetric(num_classes, ignore_index=ignore_index)
        self.preview, self.examples = preview, None

    def update(self, scores, batch):
        masks = _centre_to(batch[1], scores.shape[-2:])
        predicted = scores.array.argmax(axis=1)
        self.metric.update(predicted, masks.array)
        if self.examples is None and self.preview:
            k = self.preview
            self.examples = tuple(backend.to_device(a[:k], "cpu") for a in
                                  (batch[0].array, masks.array, predicted))

    def compute(self):
        result = self.metric.compute()
        return {k: float(result[k]) for k in ("pixel_accuracy", "mean_accuracy", "mean_iou",
                                               "frequency_weighted_iou")}

    def reduce(self, comm):
        confusion = np.ascontiguousarray(backend.to_device(self.metric.confusion, "cpu"),
                                         dtype=np.int64)
        comm.allreduce(confusion, "allreduce of the epoch's confusion matrix")
        self.metric.confusion = confusion


class _DetectionMeter:
    """The epoch's matched detections per class (:class:`minicnn.metrics.DetectionMetric`),
    their masks' IoU when the detector gives masks (:class:`minicnn.metrics.MaskIoUMetric`,
    made at the first batch with masks on both sides), and the first few images with their
    boxes, for the picture."""

    def __init__(self, num_classes, coco, preview):
        from .metrics import DetectionMetric
        thresholds = tuple(0.5 + 0.05 * i for i in range(10)) if coco else (0.5,)
        self.metric = DetectionMetric(num_classes, iou_thresholds=thresholds, coco=coco)
        self.masks = None
        self.coco, self.preview, self.seen, self.examples = coco, preview, 0, []

    def update(self, detections, batch):
        if detections is None:          # a training batch: losses only
            return
        images, targets = batch
        self.metric.update(detections, targets)
        if self.masks is None and detections and all("masks" in d for d in detections) \
                and all("masks" in t for t in targets):
            from .metrics import MaskIoUMetric
            self.masks = MaskIoUMetric()
        if self.masks is not None:
            self.masks.update(detections, targets)
        self.seen += len(detections)
        for i in range(min(self.preview - len(self.examples), len(detections))):
            host = {key: backend.to_device(_array(value), "cpu") for key, value in
                    (("image", images[i]), ("boxes", targets[i]["boxes"]),
                     ("labels", targets[i]["labels"]),
                     ("predicted_boxes", detections[i]["boxes"]),
                     ("predicted_labels", detections[i]["labels"]),
                     ("scores", detections[i]["scores"]))}
            self.examples.append(host)

    def compute(self):
        if not self.seen:
            return {}
        result = self.metric.compute()
        keys = ("map_50", "map") if self.coco else ("map_50",)
        result = {k: float(result[k]) for k in keys}
        if self.masks is not None:
            result["mask_iou"] = float(self.masks.compute()["mask_iou"])
        return result


def _array(value):
    return value.array if isinstance(value, Tensor) else value


class _NoMetrics:
    def update(self, output, batch):
        pass

    def compute(self):
        return {}

    def reduce(self, comm):
        pass


# ==================================================== progress, logs, pictures

def _prefixed(prefix, results):
    """``{"loss": .., "accuracy": .., "correct": ..}`` -> ``train_loss``,
    ``train_accuracy`` (counts such as ``correct`` are for the caller, not the log)."""
    return {f"{prefix}_{k}": v for k, v in results.items() if k != "correct"}


_SHORT = {"accuracy": "acc", "pixel_accuracy": "pixel acc", "mean_iou": "mIoU",
          "map_50": "mAP@0.5", "map": "mAP@[.5:.95]", "mask_iou": "mask IoU"}


def _is_fraction(name):
    """Accuracies, IoUs and average precisions are shown as percentages."""
    return name.endswith("accuracy") or name.endswith("iou") or name.startswith("map")


def _format(name, value):
    """``loss 0.1234``, ``acc 97.50%``: fractions (accuracies, IoU, mAP) as percentages."""
    label = _SHORT.get(name, name.replace("_", " "))
    if _is_fraction(name):
        return f"{label} {value:6.2%}"
    return f"{label} {value:.4f}"


def _postfix(results, keys):
    return {_SHORT.get(k, k): (f"{v:.2%}" if _is_fraction(k) else f"{v:.4f}")
            for k, v in results.items() if k in keys}


def _epoch_line(m, epochs, keys=("loss", "accuracy")):
    """``epoch  3/20  train loss 0.1234 acc 96.10%  |  test loss ... acc ...  |  lr ..``:
    the total loss and the task's main metrics (everything is in metrics.jsonl)."""
    width = len(str(epochs))

    def part(prefix):
        return " ".join(_format(k, m[prefix + k]) for k in keys if prefix + k in m)

    line = f"epoch {m['epoch']:>{width}}/{epochs}  train {part('train_')}"
    if any(k.startswith("eval_") for k in m):
        line += f"  |  test {part('eval_')}"
    rates = "  ".join(f"{k} {v:.3g}" for k, v in m.items() if k.startswith("lr"))
    return line + f"  |  {rates}  {m['time_s']:.1f}s"


class _NoBar:
    """Stands in for a tqdm bar when progress is off (or tqdm is not installed)."""

    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass


def _refresh_due(bar):
    """True when tqdm will redraw ``bar`` at its next update (its ``mininterval`` has
    passed since the last draw): the moment to read the running numbers it shows."""
    if isinstance(bar, _NoBar):
        return False
    return bar._time() - bar.last_print_t >= bar.mininterval


def _progress_bar(iterable, desc, enabled):
    if not enabled:
        return _NoBar(iterable)
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar(iterable)
    return tqdm(iterable, desc=desc, leave=False, unit="batch", dynamic_ncols=True,
                file=sys.stderr)


def plot_curves(history, path, keys=("loss", "accuracy")):
    """One panel per key (``train_<key>`` and ``eval_<key>`` of each epoch) as a PNG.
    Uses matplotlib's Agg canvas directly, so no window opens and the global pyplot
    backend is untouched. Returns False (and draws nothing) when matplotlib is not
    installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return False
    keys = [k for k in keys if history and (f"train_{k}" in history[0]
                                            or f"eval_{k}" in history[0])]
    if not keys:
        return False
    epochs = [m["epoch"] for m in history]
    figure = Figure(figsize=(4.5 * max(len(keys), 1), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    for ax, key in zip(figure.subplots(1, len(keys), squeeze=False)[0], keys):
        if f"train_{key}" in history[0]:       # a detector's mAP is measured on test only
            ax.plot(epochs, [m[f"train_{key}"] for m in history], "o-", label="train")
        if f"eval_{key}" in history[0]:
            ax.plot(epochs, [m[f"eval_{key}"] for m in history], "s-", label="test")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title({"mean_iou": "mean IoU", "map_50": "mAP@0.5", "map": "mAP@[.5:.95]",
                      "mask_iou": "mask IoU"}.get(key, key.replace("_", " ")))
        ax.grid(alpha=0.3)
        ax.legend()
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return True


def _palette(num_classes):
    """A colour per class: black background, then well-separated hues."""
    import colorsys
    colours = [(0.0, 0.0, 0.0)]
    for c in range(1, num_classes):
        hue = (c * 0.618033988749895) % 1.0          # golden-ratio steps: distinct hues
        colours.append(colorsys.hsv_to_rgb(hue, 0.75, 0.95))
    return np.asarray(colours)


def plot_segmentation(images, masks, predicted, num_classes, path, ignore_index=255):
    """One row per example: the image (each scaled to [0, 1]), the true mask and the
    predicted mask in the same colours (ignored pixels white). Written atomically as a
    PNG; False when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    palette = _palette(num_classes)

    def coloured(mask):
        rgb = palette[np.clip(mask, 0, num_classes - 1)]
        rgb[mask == ignore_index] = 1.0
        return rgb

    rows = len(images)
    figure = Figure(figsize=(6.6, 2.2 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 3, squeeze=False)
    for r in range(rows):
        image = np.asarray(images[r], dtype=np.float64)
        image = (image - image.min()) / max(image.max() - image.min(), 1e-12)
        image = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        panels = (image, coloured(np.asarray(masks[r])), coloured(np.asarray(predicted[r])))
        for c, (panel, title) in enumerate(zip(panels, ("image", "truth", "prediction"))):
            axes[r, c].imshow(panel, cmap="gray" if panel.ndim == 2 else None,
                              interpolation="nearest")
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(title)
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=90)
    os.replace(tmp, path)
    return True


def plot_detections(examples, path, class_names=None, min_score=0.3):
    """One row per example: the image with its true boxes, and with the predicted boxes
    scoring at least ``min_score`` (label and score written on each), a colour per
    class. ``examples``: dicts of host arrays ``image`` (C, H, W), ``boxes``, ``labels``,
    ``predicted_boxes``, ``predicted_labels``, ``scores``. Written atomically as a PNG;
    False when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError:
        return False
    num_classes = 1 + max([int(np.max(e[k], initial=0)) for e in examples
                           for k in ("labels", "predicted_labels")] + [0])
    if class_names is not None:
        num_classes = max(num_classes, len(class_names))
    palette = _palette(num_classes)

    def name(label):
        label = int(label)
        return class_names[label] if class_names and label < len(class_names) else str(label)

    rows = len(examples)
    figure = Figure(figsize=(4.6, 2.3 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 2, squeeze=False)
    for r, example in enumerate(examples):
        image = np.asarray(example["image"], dtype=np.float64)
        image = (image - image.min()) / max(image.max() - image.min(), 1e-12)
        image = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        scores = np.asarray(example["scores"])
        shown = scores >= min_score
        panels = ((example["boxes"], example["labels"], None, "truth"),
                  (np.asarray(example["predicted_boxes"])[shown],
                   np.asarray(example["predicted_labels"])[shown], scores[shown],
                   "prediction"))
        for c, (boxes, labels, box_scores, title) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None,
                      interpolation="nearest")
            for k, ((x1, y1, x2, y2), label) in enumerate(zip(np.asarray(boxes),
                                                              np.asarray(labels))):
                colour = palette[int(label) % num_classes]
                ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                                       edgecolor=colour, linewidth=1.5))
                text = name(label) if box_scores is None else \
                    f"{name(label)} {float(box_scores[k]):.2f}"
                ax.text(x1 - 0.5, y1 - 1, text, color=colour, fontsize=6, va="bottom")
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title)
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    return True
