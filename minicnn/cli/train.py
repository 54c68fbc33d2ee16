"""``minicnn train``: the command-line face of :class:`minicnn.train.Trainer`.

With no options it trains LeNet-5 on the offline digits set and prints the test accuracy;
``--task segmentation`` trains a U-Net on generated shapes and prints the test mean IoU;
``--task detection`` trains a small YOLO v1 on generated shapes with boxes and prints the
test mAP@0.5; ``--task gan`` trains DCGAN's generator and discriminator on the digits and
draws samples of a fixed noise batch after every epoch; ``minicnn train --help`` lists the
options. The names it accepts come from tables the library keeps: models from
``minicnn.models.MODELS`` (each with its task; GANs from ``minicnn.models.gan.GANS``), data
sets from :data:`DATASETS`, :data:`SEGMENTATION_DATASETS`, :data:`DETECTION_DATASETS` and
:data:`GAN_DATASETS` below (the files of MNIST, Fashion-MNIST, CIFAR, VOC and Cityscapes
are read from ``--data-dir``: nothing is downloaded).

``mpiexec -n N minicnn train --distributed ...`` trains data-parallel on N processes
(:mod:`minicnn.distributed`): ``--batch-size`` is the *global* batch, split evenly over
the ranks (each rank's loader takes ``batch_size / N`` of every step's examples), so the
learning rate and schedule of a one-process run carry over unchanged, and the ranks'
batches of a step together are the one-process run's batch. Only rank 0 prints, writes
the run folder and saves checkpoints; the checkpoint resumes on any number of ranks.
``--sync-bn`` also normalises with the global batch's statistics (SyncBatchNorm).
"""
from __future__ import annotations

import argparse
import datetime
import inspect
import json
import math
import os
import pickle
import sys
import time

import numpy as np

from .. import backend, models, optim
from ..autograd import Tensor, no_grad
from .. import distributed as dist
from ..data import (DataLoader, Subset, TensorDataset, datasets, detection_collate,
                    transforms as T)
from ..train import (CONFIG, GAN, Classification, Detection, RunFolderError, Segmentation,
                     Trainer, TrainingDiverged, holds_run, load_checkpoint, run_folder_lock)

__all__ = ["cli_main", "build_parser", "build_datasets", "build_segmentation_datasets",
           "build_detection_datasets", "build_gan_datasets", "build_model", "check_model_on",
           "ModelInputError", "DATASETS", "SEGMENTATION_DATASETS", "DETECTION_DATASETS",
           "GAN_DATASETS"]


# ============================================================ what to train on

# mean and standard deviation of the training pixels (in [0, 1]) of the file data sets
_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
DATASETS = ("digits", "synthetic", "mnist", "fashion-mnist", "cifar10", "cifar100")


def build_datasets(name, data_dir=None, image_size=None, augment=False, subset=None,
                   seed=0):
    """``(train_set, test_set, num_classes, in_channels, image_size)`` for a data-set name.

    Images are turned into normalised ``(C, H, W)`` float32 arrays. ``image_size``
    resizes (digits, synthetic: drawn at that size; MNIST-like: padded 28 -> 32).
    ``augment`` adds random crops (and flips for CIFAR). ``subset`` keeps that many
    training images (a quick run).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if name in ("mnist", "fashion-mnist", "cifar10", "cifar100") and data_dir is None:
        raise ValueError(f"--dataset {name} reads files you already have: pass --data-dir "
                         "FOLDER (minicnn does not download data sets)")
    colour = name.startswith("cifar")
    native = 32 if colour else 28
    size = native if image_size is None else int(image_size)
    geometry = []
    if name in ("mnist", "fashion-mnist") and size != 28:
        if size != 32:
            raise ValueError(f"--image-size for {name} must be 28 or 32 (padded), got {size}")
        geometry = [T.CenterCrop(32)]               # zero-pads 28x28 to 32x32, centred
    elif colour and size != 32:
        geometry = [T.Resize(size)]
    if name == "digits":
        train = datasets.Digits(train=True, image_size=size)
        test = datasets.Digits(train=False, image_size=size)
    elif name == "synthetic":
        train = datasets.SyntheticShapes(1200, image_size=size, num_classes=4, seed=seed)
        test = datasets.SyntheticShapes(300, image_size=size, num_classes=4, seed=seed + 1)
    else:
        kind = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST,
                "cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
        train, test = kind(data_dir, train=True), kind(data_dir, train=False)
    if name in _STATS:
        mean, std = _STATS[name]
    else:   # measured on the training images themselves
        pixels = train.data.astype(np.float64) / 255.0
        mean, std = (float(pixels.mean()),), (float(pixels.std()),)
    normalize = [T.ToTensor()] + geometry + [T.Normalize(mean, std)]
    augmentation = []
    if augment:
        augmentation = [T.RandomCrop(size, padding=size // 8)]
        augmentation += [T.RandomHorizontalFlip()] if colour else [T.RandomRotation(10)]
    train.transform = T.Compose(normalize + augmentation)
    test.transform = T.Compose(normalize)
    num_classes = len(train.classes)
    if subset is not None and subset < len(train):
        order = np.random.Generator(np.random.PCG64(seed)).permutation(len(train))
        train = Subset(train, np.sort(order[:subset]).tolist())
    return train, test, num_classes, (3 if colour else 1), size


SEGMENTATION_DATASETS = ("shapes", "voc", "cityscapes")
# ImageNet's channel statistics: the usual normalisation for photographs
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def build_segmentation_datasets(name, data_dir=None, image_size=None, augment=False,
                                subset=None, seed=0):
    """``(train_set, test_set, num_classes, in_channels, image_size, ignore_index)`` for
    a segmentation data set: samples are ``(image (C, H, W) float32, mask (H, W) int64)``.

    ``shapes`` is generated (offline, 2,000 training and 300 test images, seeds ``seed``
    and ``seed + 1``, 64x64 by default); ``voc`` and ``cityscapes`` read the files you
    have in ``data_dir`` (VOC2012's train/val, Cityscapes' fine train/val) and are cut to
    ``image_size`` squares (random crops with flips when training, centre crops for the
    test set; padding is 255, ignored).
    """
    from ..data import joint_transforms as J
    if name not in SEGMENTATION_DATASETS:
        raise ValueError(f"unknown segmentation dataset {name!r}; choose from "
                         f"{', '.join(SEGMENTATION_DATASETS)}")
    if name == "shapes":
        size = 64 if image_size is None else int(image_size)
        flips = [J.ToTensorPair(), J.JointRandomHorizontalFlip(), J.JointRandomVerticalFlip()]
        train = datasets.ShapesSegmentation(2000, image_size=size, seed=seed)
        test = datasets.ShapesSegmentation(300, image_size=size, seed=seed + 1)
        if augment:
            train.transforms = J.JointCompose(flips + [J.JointNormalize(train.mean, train.std)])
        else:                  # every sample ready in two arrays: no per-sample work
            train = TensorDataset(*(Tensor(a) for a in train.arrays()))
            train.classes = test.classes
        ignore_index = 255
    else:
        if data_dir is None:
            raise ValueError(f"--dataset {name} reads files you already have: pass --data-dir "
                             "FOLDER (minicnn does not download data sets)")
        size = (320 if name == "voc" else 256) if image_size is None else int(image_size)
        mean, std = _IMAGENET_STATS
        crop = [J.ToTensorPair(), J.JointRandomCrop(size, pad_if_needed=True, fill=0,
                                                    mask_fill=255)]
        if augment:
            crop.append(J.JointRandomHorizontalFlip())
        centre = [J.ToTensorPair(), J.JointCenterCrop(size, mask_fill=255)]
        train_tf = J.JointCompose(crop + [J.JointNormalize(mean, std)])
        test_tf = J.JointCompose(centre + [J.JointNormalize(mean, std)])
        if name == "voc":
            train = datasets.VOCSegmentation(data_dir, image_set="train", transforms=train_tf)
            test = datasets.VOCSegmentation(data_dir, image_set="val", transforms=test_tf)
        else:
            train = datasets.Cityscapes(data_dir, split="train", transforms=train_tf)
            test = datasets.Cityscapes(data_dir, split="val", transforms=test_tf)
        ignore_index = 255
    num_classes = {"shapes": len(test.classes), "voc": 21, "cityscapes": 19}[name]
    if subset is not None and subset < len(train):
        order = np.random.Generator(np.random.PCG64(seed)).permutation(len(train))
        train = Subset(train, np.sort(order[:subset]).tolist())
    return train, test, num_classes, 3, size, ignore_index


DETECTION_DATASETS = ("shapes", "voc")


def build_detection_datasets(name, data_dir=None, image_size=None, augment=False,
                             subset=None, seed=0):
    """``(train_set, test_set, num_classes, in_channels, image_size, class_names)`` for a
    detection data set: samples are ``(image (C, H, W) float32, target)``, the target a
    dict of ``boxes`` (xyxy pixels), ``labels`` (1.., 0 is the background) and, for VOC,
    ``difficult``; ``num_classes`` counts the background.

    ``shapes`` is generated (offline, 2,000 training and 300 test images with 1 to 3
    shapes each, seeds ``seed`` and ``seed + 1``, 64x64 by default); ``voc`` reads VOC's
    detection files from ``data_dir`` (VOC2012 train/val), resized to ``image_size``
    squares (448 by default, YOLO's input). ``augment`` adds YOLO's random scaling and
    translation, horizontal flips and HSV jitter to the training images.
    """
    from ..data import detection_transforms as D
    if name not in DETECTION_DATASETS:
        raise ValueError(f"unknown detection dataset {name!r}; choose from "
                         f"{', '.join(DETECTION_DATASETS)}")
    jitter = [D.RandomHSV(), D.RandomScaleTranslate(), D.RandomHorizontalFlip(),
              D.SanitizeBoundingBoxes()] if augment else []
    if name == "shapes":
        size = 64 if image_size is None else int(image_size)
        test = datasets.ShapesDetection(300, image_size=size, seed=seed + 1)
        train = datasets.ShapesDetection(2000, image_size=size, seed=seed)
        if augment:
            train.transforms = D.Compose(jitter + [D.ToTensor(),
                                                   D.Normalize(train.mean, train.std)])
        names = list(test.classes)
    else:
        if data_dir is None:
            raise ValueError(f"--dataset {name} reads files you already have: pass --data-dir "
                             "FOLDER (minicnn does not download data sets)")
        size = 448 if image_size is None else int(image_size)
        mean, std = _IMAGENET_STATS
        resize = [D.Resize((size, size)), D.ToTensor(), D.Normalize(mean, std)]
        train = datasets.VOCDetection(data_dir, image_set="train",
                                      transforms=D.Compose(jitter + resize))
        test = datasets.VOCDetection(data_dir, image_set="val", transforms=D.Compose(resize))
        names = list(datasets.VOC_CLASSES)
    if subset is not None and subset < len(train):
        order = np.random.Generator(np.random.PCG64(seed)).permutation(len(train))
        train = Subset(train, np.sort(order[:subset]).tolist())
    return train, test, len(names), 3, size, names


GAN_DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")


def build_gan_datasets(name, data_dir=None, image_size=None, subset=None, seed=0):
    """``(train_set, in_channels, image_size)``: the training images of a data set for a
    GAN, scaled to [-1, 1] (the range of the generator's tanh): ``(x - 0.5) / 0.5`` per
    channel. The labels stay in the samples, unused; there is no test set and no
    augmentation. ``image_size`` is 32 by default (DCGAN's 4 -> 8 -> 16 -> 32 stack): digits
    are drawn at that size, MNIST and Fashion-MNIST (read from ``data_dir``) are padded from
    28 to 32 with background, other sizes are resized.
    """
    if name not in GAN_DATASETS:
        raise ValueError(f"unknown GAN dataset {name!r}; choose from {', '.join(GAN_DATASETS)}")
    if name != "digits" and data_dir is None:
        raise ValueError(f"--dataset {name} reads files you already have: pass --data-dir "
                         "FOLDER (minicnn does not download data sets)")
    channels, native = (3, 32) if name == "cifar10" else (1, 28)
    size = 32 if image_size is None else int(image_size)
    geometry = []
    if name == "digits":
        train = datasets.Digits(train=True, image_size=size)
    else:
        kind = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST,
                "cifar10": datasets.CIFAR10}[name]
        train = kind(data_dir, train=True)
        if size != native:          # 28 -> 32: zero padding, the background, centred
            geometry = [T.CenterCrop(32)] if (native, size) == (28, 32) else [T.Resize(size)]
    train.transform = T.Compose([T.ToTensor()] + geometry +
                                [T.Normalize((0.5,) * channels, (0.5,) * channels)])
    if subset is not None and subset < len(train):
        order = np.random.Generator(np.random.PCG64(seed)).permutation(len(train))
        train = Subset(train, np.sort(order[:subset]).tolist())
    return train, channels, size


# Builder arguments `minicnn train` passes unless --set says otherwise: U-Net with padded
# convolutions keeps the image size, so masks and outputs line up at any size divisible
# by 16 (the paper's valid form needs sizes such as 572; --set padding=False gives it),
# and 8 channels at the first level instead of the paper's 64 (486 K parameters instead
# of 31 M: enough for the shapes, and a few minutes on a CPU; --set base_channels=64).
_BUILDER_DEFAULTS = {"unet": {"padding": True, "base_channels": 8}}


def build_model(name, num_classes, in_channels, image_size, **options):
    """A model of the zoo (``minicnn.models.MODELS``) by name, sized for the data. LeNet-5
    fits its layers to the image size; the other models take any size their pooling allows
    (``check_model_on`` says clearly when one does not). ``options`` are further builder
    arguments (``--set base_channels=16``)."""
    kwargs = {"num_classes": num_classes, "in_channels": in_channels,
              **_BUILDER_DEFAULTS.get(name, {}), **options}
    if name in ("lenet5", "lenet5-1998"):
        kwargs["input_size"] = image_size
    if models.model_task(name) == "detection":
        # detectors with fully connected heads (YOLO) or default boxes (SSD) are built for
        # one input size; YOLO v1's classes are the objects only (the paper has no
        # background class), SSD's count the background as torchvision's do
        if "image_size" in inspect.signature(models.get_model_builder(name)).parameters:
            kwargs["image_size"] = image_size      # (SSD300 resizes every image to 300)
        if name.startswith("yolo"):
            kwargs["num_classes"] = num_classes - 1
    try:
        return models.get_model(name, **kwargs)
    except TypeError as exc:          # an argument the builder lacks, or of the wrong kind
        given = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "no --set options"
        raise ValueError(f"--model {name} could not be built with {given}: {exc}") from None


class ModelInputError(ValueError):
    """The model cannot take the data set's images."""


def check_model_on(model, inputs, num_classes, model_name="model", task="classification"):
    """Run one batch through ``model`` (no graph). If a layer rejects it, raise
    :class:`ModelInputError` naming that layer (its dotted name and type), the input
    shape, and the layer's own message; also check the output is ``(N, num_classes)``
    (classification) or ``(N, num_classes, h, w)``, alone or as a dict's ``"out"``
    (segmentation), or one dict of ``boxes``, ``labels`` and ``scores`` per image
    (detection)."""
    names = {id(m): n for n, m in model.named_modules()}
    running = []                        # the modules entered and not yet left

    def enter(module, args):
        running.append(module)

    def leave(module, args, output):      # returns None: the output is kept
        running.pop()

    hooks = []
    for module in model.modules():
        hooks += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            out = model(inputs)
    except (ValueError, RuntimeError, TypeError, IndexError) as exc:
        layer = running[-1] if running else model
        where = names.get(id(layer)) or "(the model itself)"
        shape = tuple(inputs.shape) if hasattr(inputs, "shape") else \
            [tuple(x.shape) for x in inputs]
        raise ModelInputError(
            f"model {model_name!r} cannot take inputs of shape {shape}: layer "
            f"{where!r} ({type(layer).__name__}) failed with: {exc}") from exc
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    if task == "detection":
        n = len(inputs)
        if not (isinstance(out, list) and len(out) == n and all(
                isinstance(d, dict) and {"boxes", "labels", "scores"} <= set(d) for d in out)):
            raise ModelInputError(f"model {model_name!r} returned {type(out).__name__} for "
                                  f"{n} images; expected a list of {n} dicts of boxes, "
                                  "labels and scores (a detector in eval mode)")
        return
    if task == "segmentation":
        scores = out["out"] if isinstance(out, dict) and "out" in out else out
        shape = tuple(getattr(scores, "shape", ()))
        if len(shape) != 4 or shape[:2] != (inputs.shape[0], num_classes):
            raise ModelInputError(f"model {model_name!r} returned {shape or type(out).__name__}"
                                  f" for inputs {tuple(inputs.shape)}; expected scores of "
                                  f"shape ({inputs.shape[0]}, {num_classes}, H, W)")
        return
    if not hasattr(out, "shape") or tuple(out.shape) != (inputs.shape[0], num_classes):
        raise ModelInputError(f"model {model_name!r} returned "
                              f"{getattr(out, 'shape', type(out).__name__)} for inputs "
                              f"{tuple(inputs.shape)}; expected logits of shape "
                              f"({inputs.shape[0]}, {num_classes})")


_DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}
_TOTAL_DEPENDENT = ("cosine", "onecycle", "linear")


def build_parser(prog="minicnn train"):
    p = argparse.ArgumentParser(
        prog=prog, description="Train a CNN. With no options: LeNet-5 on the offline digits "
        "set (scikit-learn's 1,797 handwritten digits at 28x28), about a minute on a CPU.")
    p.add_argument("--task", default="classification", choices=models.TASKS + ("gan",),
                   help="classification (default): a label per image; segmentation: a "
                   "class per pixel, scored by mean IoU; detection: boxes and classes of "
                   "the objects in an image, scored by mAP@0.5; gan: a generator of "
                   "images and its discriminator (DCGAN), with samples drawn every epoch")
    p.add_argument("--model", help="a model of minicnn.models for the task (minicnn summary "
                   "--list): default lenet5 for classification, unet for segmentation, "
                   "yolo_v1_small for detection, dcgan for gan")
    p.add_argument("--dataset", choices=sorted(set(DATASETS + SEGMENTATION_DATASETS
                                                   + DETECTION_DATASETS)),
                   help="classification: digits (default, offline), synthetic (generated "
                   "shapes), or mnist, fashion-mnist, cifar10, cifar100 from --data-dir; "
                   "segmentation: shapes (default, generated masks), or voc, cityscapes "
                   "from --data-dir; detection: shapes (default, generated boxes) or voc; "
                   "gan: digits (default), or mnist, fashion-mnist, cifar10 from --data-dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a further argument for the model's builder, e.g. --set "
                   "base_channels=16 (repeatable); for gan nz, ngf, ndf")
    p.add_argument("--data-dir", help="folder with the MNIST/Fashion-MNIST/CIFAR files")
    p.add_argument("--epochs", type=int, default=None, help="total epochs (default 20; "
                   "segmentation 8, detection 30, gan 25)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (segmentation 8, "
                   "gan 64)")
    p.add_argument("--optimizer", default=None, choices=sorted(_DEFAULT_LR),
                   help="default sgd (adam for segmentation, detection, gan)")
    p.add_argument("--lr", type=float, help="learning rate (default 0.05 for sgd, 1e-3 "
                   "for the others; segmentation 3e-3, detection 2e-3, gan 2e-4)")
    p.add_argument("--momentum", type=float, default=0.9, help="sgd/rmsprop momentum "
                   "(default 0.9)")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="default 5e-4 (gan 0)")
    p.add_argument("--scheduler", default=None,
                   choices=["cosine", "step", "onecycle", "linear", "none"],
                   help="learning-rate schedule (default cosine; onecycle for "
                   "segmentation and detection, none for gan)")
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument("--seed", type=int, default=0, help="seeds everything (default 0)")
    p.add_argument("--out", help="run folder (default runs/<date-time>-<model>-<dataset>)")
    p.add_argument("--resume", metavar="RUN", help="continue a run from its folder or "
                   "checkpoint file, with its saved options")
    p.add_argument("--overwrite", action="store_true", help="start a new run in an --out "
                   "folder that already holds one, replacing it (without this, refused)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    p.add_argument("--image-size", type=int, help="input size (default: the model's)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="random crops and small rotations, for CIFAR crops and flips "
                   "(default on)")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="mixup with Beta(ALPHA, ALPHA) on each training batch (default off)")
    p.add_argument("--subset", type=int, help="train on this many images only (quick runs)")
    p.add_argument("--workers", type=int, default=1, help="data-loading threads, 0 for "
                   "none (default 1)")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel training over the ranks of `mpiexec -n N minicnn "
                   "train --distributed ...` (MPI via mpi4py: pip install 'minicnn[dist]'; "
                   "classification and segmentation): --batch-size is then the global "
                   "batch, split evenly over the ranks; rank 0 prints and writes the run "
                   "folder")
    p.add_argument("--sync-bn", action="store_true",
                   help="with --distributed: batch normalisation with the statistics of the "
                   "global batch (SyncBatchNorm), so N ranks train as one process does")
    return p


def cli_main(argv=None, prog="minicnn train"):
    """``minicnn train [options]``; returns the exit status: 0 success, 1 training
    diverged, 2 bad input (options, files, a run folder in use), 130 interrupted."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:            # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    joined = False
    try:
        launched = dist.launched_world_size()
        if launched > 1 and not args.distributed:
            raise _UsageError(f"mpiexec started {launched} processes, but without "
                              "--distributed each would train the whole run alone (into one "
                              "run folder); add --distributed")
        if args.distributed and not dist.is_initialized():
            try:
                dist.init_process_group()
            except ImportError as exc:
                raise _UsageError(f"--distributed: {exc}") from None
            joined = True
        code = _run(args, prog)
    except TrainingDiverged as exc:
        print(f"{prog}: {_rank_prefix()}{exc}", file=sys.stderr)
        code = 1
    except (_UsageError, RunFolderError) as exc:
        print(f"{prog}: {_rank_prefix()}error: {exc}", file=sys.stderr)
        code = 2
    except dist.DistributedTimeoutError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        code = 1
    except Exception:
        if dist.is_initialized() and dist.get_world_size() > 1:
            import traceback
            traceback.print_exc()        # this rank's failure, then end every rank
            _abort_ranks(1)
        raise
    if code and code != 130:
        # the other ranks may be waiting in a collective for this one: end them all
        _abort_ranks(code)
    if joined:
        dist.destroy_process_group()
    return code


def _rank_prefix():
    return f"rank {dist.get_rank()}: " if dist.get_world_size() > 1 else ""


def _abort_ranks(code):
    """With several ranks, end the whole MPI job (the others would wait for this rank's
    next collective until their deadline)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        dist.get_communicator().abort(code)


class _UsageError(Exception):
    pass


def _resolve_options(args):
    """Fill defaults; with --resume, take the saved run's options (only --epochs,
    --device, --quiet, --workers and --out may be given anew)."""
    state = None
    if args.resume:
        state = load_checkpoint(args.resume)
        saved = dict(state["config"])
        missing = {"model", "dataset", "epochs", "scheduler", "seed"} - set(saved)
        if missing:
            raise _UsageError(f"{args.resume} was not written by `minicnn train` (its config "
                              f"lacks {', '.join(sorted(missing))}); resume it from Python "
                              "with Trainer.fit(..., resume=...)")
        for key in ("epochs", "device", "quiet", "workers"):
            value = getattr(args, key)
            if value not in (None, False):
                saved[key] = value
        saved["distributed"] = args.distributed     # on as many ranks as now launched
        if args.epochs is not None and args.epochs != state["config"]["epochs"] and \
                saved["scheduler"] in _TOTAL_DEPENDENT:
            raise _UsageError(f"--epochs {args.epochs} differs from the run's "
                              f"{state['config']['epochs']}, but its '{saved['scheduler']}' "
                              "learning-rate schedule is planned over the total; resume "
                              "without --epochs, or start a new run")
        resume_dir = args.resume if os.path.isdir(args.resume) else os.path.dirname(args.resume)
        saved["out"] = args.out or resume_dir or "."
        saved.setdefault("task", "classification")      # runs written before tasks
        saved.setdefault("set", [])
        saved["resume"] = args.resume
        saved["overwrite"] = args.overwrite
        args = argparse.Namespace(**saved)
    else:
        if args.model is None:
            args.model = _DEFAULT_MODEL[args.task]
        if args.dataset is None:
            args.dataset = _DEFAULT_DATASET[args.task]
        for key, value in _TASK_DEFAULTS[args.task].items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        if args.weight_decay is None:
            args.weight_decay = 0.0 if args.task == "gan" else 5e-4
        if args.sync_bn and not args.distributed:
            raise _UsageError("--sync-bn synchronises batch normalisation over the ranks of "
                              "a --distributed run; add --distributed (under mpiexec)")
        if args.device is None:
            args.device = "cpu"
        if args.lr is None:
            args.lr = _DEFAULT_LR[args.optimizer] if args.task == "classification" \
                else _TASK_LR[args.task]
        if args.out is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            args.out = _unique(os.path.join("runs", f"{stamp}-{args.model}-{args.dataset}"))
    _check_numbers(args)
    _check_task(args)
    return args, state


# A GAN on the digits (1,438 images): DCGAN's 32x32 stack (4 -> 8 -> 16 -> 32) at width 16,
# batch 64 (the example's). With the 28x28 stack (7 -> 14 -> 28) at widths 16 and 32 the
# generator collapsed to a flat grey image in 5 of 7 torch runs and both minicnn runs; at
# 32x32 and width 16, torch's twin drew digit-like samples by epoch 20 for two of three
# seeds and none collapsed, and minicnn's default run did by epoch 25 (README). Width 32
# costs about 9 times as much per step here.
_GAN_EPOCHS, _GAN_BATCH, _GAN_WIDTH = 25, 64, 16

_DEFAULT_MODEL = {"classification": "lenet5", "segmentation": "unet",
                  "detection": "yolo_v1_small", "gan": "dcgan"}
# What a run of each task uses unless told otherwise. Segmentation: U-Net on the shapes
# reaches a mean IoU above 0.9 in 8 epochs with Adam at 3e-3 on a one-cycle schedule.
_TASK_DEFAULTS = {
    "classification": {"epochs": 20, "batch_size": 32, "optimizer": "sgd",
                       "scheduler": "cosine"},
    "segmentation": {"epochs": 8, "batch_size": 8, "optimizer": "adam",
                     "scheduler": "onecycle"},
    # Detection: YOLO v1 (small) on the shapes reaches mAP@0.5 0.85 in 30 epochs with Adam
    # at 2e-3 on a one-cycle schedule and the paper's augmentation (examples/yolo_shapes.py:
    # batch 16, 40 epochs at 1e-3 reach 0.90)
    "detection": {"epochs": 30, "batch_size": 32, "optimizer": "adam",
                  "scheduler": "onecycle"},
    # GAN: DCGAN's Adam (lr 2e-4, betas (0.5, 0.999)) at a constant rate
    "gan": {"epochs": _GAN_EPOCHS, "batch_size": _GAN_BATCH, "optimizer": "adam",
            "scheduler": "none"},
}
_DEFAULT_DATASET = {"classification": "digits", "segmentation": "shapes",
                    "detection": "shapes", "gan": "digits"}
# the learning rate of a task's default optimizer (classification: per optimizer)
_TASK_LR = {"segmentation": 3e-3, "detection": 2e-3, "gan": 2e-4}


def _check_task(args):
    """The data set, the model and the options must all fit the task."""
    sets = {"classification": DATASETS, "segmentation": SEGMENTATION_DATASETS,
            "detection": DETECTION_DATASETS, "gan": GAN_DATASETS}[args.task]
    if args.dataset not in sets:
        raise _UsageError(f"--dataset {args.dataset} is not a {args.task} data set; for "
                          f"--task {args.task} choose from {', '.join(sets)}")
    if getattr(args, "distributed", False) and args.task not in ("classification",
                                                                "segmentation"):
        raise _UsageError(f"--distributed trains classification and segmentation; --task "
                          f"{args.task} is not supported yet (its "
                          + ("two networks' steps" if args.task == "gan" else "mAP")
                          + " are not spread over ranks): run it in one process")
    if args.task == "gan":
        if args.model not in models.gan.GANS:
            raise _UsageError(f"--model {args.model} is not a GAN; for --task gan choose "
                              f"from {', '.join(models.gan.GANS)}")
        if args.mixup:
            raise _UsageError("--mixup mixes labels of whole images; it does not apply to "
                              "--task gan")
        return
    try:
        task = models.model_task(args.model)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    if task != args.task:
        raise _UsageError(f"--model {args.model} is a {task} model; for --task {args.task} "
                          f"choose from {', '.join(models.list_models(args.task))}")
    if args.task != "classification" and args.mixup:
        raise _UsageError("--mixup mixes labels of whole images; it does not apply to "
                          f"--task {args.task}")


def _builder_options(items):
    """``["base_channels=16", "padding=False"]`` -> ``{"base_channels": 16, ...}``."""
    import ast
    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return options


# option: (smallest value allowed, whether the smallest itself is allowed); None = unset
_LIMITS = {"epochs": (1, True), "batch_size": (1, True), "subset": (1, True),
           "image_size": (1, True), "workers": (0, True), "seed": (0, True),
           "lr": (0, False), "momentum": (0, True), "weight_decay": (0, True),
           "mixup": (0, True)}


def _check_numbers(args):
    """Refuse values that would train on nothing or on the wrong thing, instead of
    letting them through (``--subset -3`` meaning "all but 3", ``--lr nan``)."""
    for name, (low, inclusive) in _LIMITS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        option = "--" + name.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise _UsageError(f"{option} must be a finite number, got {value}")
        if value < low or (value == low and not inclusive):
            bound = f"at least {low}" if inclusive else f"greater than {low}"
            raise _UsageError(f"{option} must be {bound}, got {value:g}")


def _unique(path):
    candidate, n = path, 1
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}-{n}"
    return candidate


# What the library raises for input it cannot use (files, options, checkpoints, a missing
# GPU); while the run is being set up, the command shows such an error as one line.
_SETUP_ERRORS = (ValueError, RuntimeError, OSError, ImportError, pickle.UnpicklingError)


def _run(args, prog):
    started = time.perf_counter()
    comm = dist.get_communicator() if args.distributed else None
    main = comm is None or comm.rank == 0
    try:
        args, resumed = _resolve_options(args)
        if comm is not None:
            args.out = comm.broadcast_object(args.out)   # rank 0's folder (names a time)
        trainer, loaders, sizes = _set_up(args, resumed, comm)
    except _SETUP_ERRORS as exc:
        raise _UsageError(str(exc)) from None
    if resumed and trainer.epoch >= args.epochs:
        if main:
                print(f"{args.resume}: the run already completed its "
                  f"{_count(args.epochs, 'epoch')}; nothing left to do (to train longer, start "
                  "a new run from its checkpoint's weights, or resume with --epochs N where "
                  "its schedule allows)")
        return 0
    train_set, test_set, size = sizes
    model, device = trainer.model, trainer.device
    if not args.quiet and main:
        parameters = sum(p.numel() for p in model.parameters())
        verb = f"resuming at epoch {trainer.epoch + 1} of" if resumed else "training"
        print(f"{verb} {args.model} ({parameters:,} parameters) for {args.task} on "
              f"{args.dataset} "
              f"({len(train_set)} train"
              + (f" / {len(test_set)} test" if test_set is not None else "")
              + f" images, {size}x{size}), "
              f"{_count(args.epochs, 'epoch')}, {args.optimizer} lr {args.lr:g}, "
              f"{args.scheduler} schedule, device {device}"
              + (f", {comm.size} ranks of {args.batch_size // comm.size} images per step"
                 if comm is not None else "")
              + f"\nrun folder: {args.out}", flush=True)
    try:
        if not main:
            trainer.fit(*loaders, epochs=args.epochs)
            return 0
        with run_folder_lock(args.out):
            with open(os.path.join(args.out, CONFIG), "w", encoding="utf-8") as f:
                json.dump(trainer.config, f, indent=2)
            trainer.fit(*loaders, epochs=args.epochs)
    except KeyboardInterrupt:
        if main:
            print(f"\ninterrupted after {_count(trainer.epoch, 'complete epoch')}; continue "
                  f"with:\n  {prog} --resume {args.out}", file=sys.stderr)
        return 130
    if trainer.history and "train_loss_d" in trainer.history[-1]:
        result = trainer.history[-1]
        print(f"GAN losses after {_count(trainer.epoch, 'epoch')}: discriminator "
              f"{result['train_loss_d']:.4f}, generator {result['train_loss_g']:.4f} (D(x) "
              f"{result['train_d_real']:.2f}, D(G(z)) {result['train_d_fake']:.2f}), "
              f"{time.perf_counter() - started:.1f} s; samples: "
              f"{os.path.join(args.out, 'samples', f'epoch-{trainer.epoch:03d}.png')}",
              flush=True)
    elif trainer.history and "eval_map_50" in trainer.history[-1]:
        result = trainer.history[-1]
        print(f"test mAP@0.5: {result['eval_map_50']:.2%} ({len(test_set)} images) after "
              f"{_count(trainer.epoch, 'epoch')}, {time.perf_counter() - started:.1f} s; "
              f"run folder: {args.out}", flush=True)
    elif trainer.history and "eval_mean_iou" in trainer.history[-1]:
        result = trainer.history[-1]
        print(f"test mean IoU: {result['eval_mean_iou']:.2%} (pixel accuracy "
              f"{result['eval_pixel_accuracy']:.2%}, {len(test_set)} images) after "
              f"{_count(trainer.epoch, 'epoch')}, {time.perf_counter() - started:.1f} s; "
              f"run folder: {args.out}", flush=True)
    elif trainer.history and "eval_accuracy" in trainer.history[-1]:
        result = trainer.history[-1]
        correct = round(result["eval_accuracy"] * len(test_set))
        print(f"test accuracy: {result['eval_accuracy']:.2%} ({correct}/{len(test_set)}) "
              f"after {_count(trainer.epoch, 'epoch')}, "
              f"{time.perf_counter() - started:.1f} s; run folder: {args.out}", flush=True)
    return 0


def _set_up(args, resumed, comm=None):
    """Data, model, optimizer, schedule and Trainer for the options (restored from the
    checkpoint when resuming); every error here is one the user can fix."""
    backend.manual_seed(args.seed)
    device = backend.Device(args.device)
    if device.type == "cuda" and not backend.is_cuda_available():
        backend.cupy()                 # raises with the reason (no CuPy / no GPU)
    if comm is not None and device.type == "cuda" and ":" not in str(args.device):
        # ranks on one machine take its GPUs in turn (gradients still meet through MPI)
        gpus = backend.cupy().cuda.runtime.getDeviceCount()
        device = backend.Device(f"cuda:{dist.comm._local_rank(comm) % gpus}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file; give a folder for the run")
    if not args.overwrite and holds_run(args.out) and not (
            resumed and _same_folder(args.out, args.resume)):
        raise ValueError(f"--out {args.out!r} already holds a run; continue it with "
                         f"--resume {args.out}, replace it with --overwrite, or choose "
                         "another --out")
    ranks = 1 if comm is None else comm.size
    if args.batch_size % ranks:
        raise ValueError(f"--batch-size {args.batch_size} is the global batch and must split "
                         f"evenly over the {ranks} ranks; give a multiple of {ranks}")
    if args.task == "gan":
        return _set_up_gan(args, resumed, device)

    if args.task == "segmentation":
        train_set, test_set, num_classes, in_channels, size, ignore_index = \
            build_segmentation_datasets(args.dataset, args.data_dir, args.image_size,
                                        args.augment, args.subset, args.seed)
        task = Segmentation(num_classes, ignore_index=ignore_index)
    elif args.task == "detection":
        train_set, test_set, num_classes, in_channels, size, names = \
            build_detection_datasets(args.dataset, args.data_dir, args.image_size,
                                     args.augment, args.subset, args.seed)
        task = Detection(num_classes, class_names=names)
    else:
        default_size = 32 if args.model == "lenet5-1998" else None
        train_set, test_set, num_classes, in_channels, size = build_datasets(
            args.dataset, args.data_dir, args.image_size or default_size, args.augment,
            args.subset, args.seed)
        mix = T.MixUp(args.mixup, num_classes) if args.mixup > 0 else None
        task = Classification(batch_transform=mix)
    for name, part in (("training", train_set), ("test", test_set)):
        if len(part) == 0:
            raise ValueError(f"--dataset {args.dataset}: the {name} set holds no images")
    model = build_model(args.model, num_classes, in_channels, size,
                        **_builder_options(args.set))
    collate = {"collate_fn": detection_collate} if args.task == "detection" else {}
    test_batch = 256 if args.task == "classification" else 64
    if comm is None:
        train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                  num_workers=args.workers, **collate)
        test_loader = DataLoader(test_set, batch_size=test_batch, num_workers=args.workers,
                                 **collate)
    else:
        train_loader, test_loader = _distributed_loaders(args, comm, train_set, test_set,
                                                         test_batch, collate)
    model.to(device)
    example = task.to_device(next(iter(DataLoader(test_set, batch_size=2, seed=0,
                                                  **collate)))[0], device)
    check_model_on(model, example, num_classes, args.model, args.task)

    optimizer = _make_optimizer(args, model)
    scheduler, interval = _make_scheduler(args, optimizer, len(train_loader))
    config = {k: v for k, v in vars(args).items() if k not in ("resume", "overwrite")}
    if comm is not None:        # rank 0's weights on every rank; gradients averaged
        if getattr(args, "sync_bn", False):
            model = dist.SyncBatchNorm.convert_sync_batchnorm(model, process_group=comm)
        model = dist.DistributedDataParallel(model, process_group=comm)
    trainer = Trainer(model, optimizer, scheduler=scheduler, scheduler_interval=interval,
                      device=device, out_dir=args.out, task=task,
                      progress=not args.quiet, log=not args.quiet, config=config,
                      overwrite=args.overwrite)
    if resumed:
        trainer.load_checkpoint(args.resume, train_loader, test_loader)
        if comm is not None:                   # rank 0's seed was saved: the shuffle's
            train_loader.sampler.seed = train_loader.seed
            train_loader.seed = _rank_seed(train_loader.seed, comm.rank)
    return trainer, (train_loader, test_loader), (train_set, test_set, size)


def _distributed_loaders(args, comm, train_set, test_set, test_batch, collate):
    """This rank's loaders: a :class:`DistributedSampler` over the training set, shuffled
    from the seed a one-process loader would draw (so the ranks' batches of a step together
    are that run's batch), ``batch_size / ranks`` examples per step; and every
    ``ranks``-th test image from this rank's index (no padding: the summed metrics count
    each image once). The loader's own seed, which only draws the random augmentation
    once a sampler orders the data, is the shuffle's plus the rank: each rank crops and
    flips from its own stream (rank 0's is a one-process run's)."""
    seed = int(backend.get_rng(np).integers(0, 2 ** 63 - 1))   # what DataLoader draws
    sampler = dist.DistributedSampler(train_set, comm.size, comm.rank, shuffle=True,
                                      seed=seed)
    train_loader = DataLoader(train_set, batch_size=args.batch_size // comm.size,
                              sampler=sampler, num_workers=args.workers,
                              seed=_rank_seed(seed, comm.rank), **collate)
    share = Subset(test_set, list(range(comm.rank, len(test_set), comm.size)))
    test_loader = DataLoader(share, batch_size=test_batch, num_workers=args.workers, **collate)
    return train_loader, test_loader


def _rank_seed(seed, rank):
    return (seed + rank) % (2 ** 63 - 1)


def _set_up_gan(args, resumed, device):
    """:func:`_set_up` for ``--task gan``: the training images, DCGAN's two networks in
    one ``nn.ModuleDict`` (``--set nz=, ngf=, ndf=``), an optimizer (and schedule) for
    each, and the :class:`minicnn.train.GAN` task."""
    from .. import nn
    train_set, channels, size = build_gan_datasets(args.dataset, args.data_dir,
                                                   args.image_size, args.subset, args.seed)
    if len(train_set) == 0:
        raise ValueError(f"--dataset {args.dataset}: the training set holds no images")
    options = {"nz": 100, "ngf": _GAN_WIDTH, "ndf": _GAN_WIDTH,
               **_builder_options(args.set)}
    unknown = sorted(set(options) - {"nz", "ngf", "ndf"})
    if unknown:
        raise ValueError(f"--model {args.model} takes --set nz=, ngf=, ndf=; got "
                         f"{', '.join(unknown)}")
    build_g, build_d = models.gan.GANS[args.model]
    model = nn.ModuleDict({
        "generator": build_g(options["nz"], options["ngf"], channels, size),
        "discriminator": build_d(channels, options["ndf"], size)})
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                              num_workers=args.workers)
    optimizers, schedulers = {}, {}
    for name in ("generator", "discriminator"):
        if args.optimizer == "adam":          # DCGAN's beta1 of 0.5
            optimizers[name] = optim.Adam(model[name].parameters(), lr=args.lr,
                                          betas=(0.5, 0.999), weight_decay=args.weight_decay)
        else:
            optimizers[name] = _make_optimizer(args, model[name])
        schedulers[name], interval = _make_scheduler(args, optimizers[name],
                                                     len(train_loader))
    config = {k: v for k, v in vars(args).items() if k not in ("resume", "overwrite")}
    trainer = Trainer(model, optimizers, task=GAN(seed=args.seed),
                      scheduler=None if schedulers["generator"] is None else schedulers,
                      scheduler_interval=interval, device=device, out_dir=args.out,
                      progress=not args.quiet, log=not args.quiet, config=config,
                      overwrite=args.overwrite)
    if resumed:
        trainer.load_checkpoint(args.resume, train_loader)
    return trainer, (train_loader,), (train_set, None, size)


def _same_folder(out, resume):
    folder = resume if os.path.isdir(resume) else os.path.dirname(resume) or "."
    return os.path.realpath(out) == os.path.realpath(folder)


def _count(n, noun):
    """``1 epoch``, ``3 epochs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _make_optimizer(args, model):
    params = model.parameters()
    if args.optimizer == "sgd":
        return optim.SGD(params, lr=args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay)
    if args.optimizer == "adam":
        return optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "adamw":
        return optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    return optim.RMSprop(params, lr=args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay)


def _make_scheduler(args, optimizer, steps_per_epoch):
    """``(scheduler or None, "epoch" | "batch")``."""
    S = optim.lr_scheduler
    if args.scheduler == "cosine":
        return S.CosineAnnealingLR(optimizer, T_max=args.epochs), "epoch"
    if args.scheduler == "step":
        return S.StepLR(optimizer, step_size=max(1, math.ceil(args.epochs / 3)), gamma=0.1), \
            "epoch"
    if args.scheduler == "linear":
        return S.LinearLR(optimizer, start_factor=1.0, end_factor=0.01,
                          total_iters=args.epochs), "epoch"
    if args.scheduler == "onecycle":
        return S.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                            steps_per_epoch=steps_per_epoch), "batch"
    return None, "epoch"


if __name__ == "__main__":
    raise SystemExit(cli_main())
