"""Every workload of the suite, each defined once for both frameworks.

minicnn follows ``torch``'s names, so one builder written against a library module
``lib`` (``lib.tensor``, ``lib.nn.functional.conv2d``, ``lib.nn.Conv2d``,
``lib.optim.SGD``, ``lib.no_grad``) sets up both sides: ``setup_minicnn`` is that builder
given ``minicnn``, ``setup_torch`` the same builder given ``torch``. Inputs come from a
NumPy generator seeded the same way on both sides, so both see the same numbers. All
data is float32.

What ``run()`` does (the timed part):

* op workloads: forward, then backward of a fixed random upstream gradient into every
  input marked as needing one (conv: input and weight; batch norm: input, weight, bias;
  pooling and LRN: input). Gradients are reset to None before each call, so they never
  accumulate.
* "train": one SGD step: zero_grad, forward, cross-entropy, backward, SGD(lr=0.01,
  momentum=0.9) step, the model in train mode.
* "inference": one forward in eval mode under ``no_grad`` (a detector: one image, as a
  list, through the whole pipeline; ``detector_workload``). The segmentation networks
  (U-Net, FCN-8s) and the detectors run on torch with minicnn's weights.
* "scaling": the conv2d op workload (64 -> 64 channels, 3x3, stride 1, pad 1) as the
  batch size doubles, and as the image side doubles.

Nominal FLOPs (the same count for both sides; only their ratio and the order of
magnitude of GFLOP/s are meaningful for the memory-bound ops):

* conv2d: F = 2·N·K·(C/groups)·KH·KW·OH·OW per pass (one multiply-add is 2 FLOPs);
  forward + backward = 3F (grad of input and grad of weight each cost one forward).
* conv_transpose2d with input (N, C, H, W): F = 2·N·C·(K/groups)·KH·KW·H·W (every input
  pixel spreads a KH x KW patch over K/groups channels); forward + backward = 3F.
* max_pool2d: N·C·OH·OW·KH·KW comparisons forward, N·C·OH·OW adds backward.
* batch_norm (training): 8 FLOPs per element forward (mean, variance, normalise,
  scale and shift), 7 backward.
* local_response_norm: (size + 5) per element forward (square, window sum, scale,
  power, divide), twice that backward.
* models: the forward FLOPs of their conv and linear layers (``models.count_flops``);
  a training step counts 3x that, inference 1x.

``--quick`` divides every batch size by 8 (at least 1) and shortens the scaling
sweeps: shapes small enough for a smoke run; the names show the shapes actually run.
"""
from __future__ import annotations

import dataclasses
import importlib

import numpy as np

from . import models
from . import harness
from .harness import Workload

__all__ = ["Size", "SIZES", "all_workloads", "select"]

F32 = np.float32


@dataclasses.dataclass(frozen=True)
class Size:
    """How big the suite is: the batch divisor and the scaling sweeps."""
    name: str
    batch_divisor: int
    scaling_batches: tuple          # N at side scaling_side
    scaling_side: int
    scaling_sides: tuple            # sides at batch scaling_batch
    scaling_batch: int

    def batch(self, n):
        return max(1, n // self.batch_divisor)


SIZES = {
    "full": Size("full", 1, (2, 4, 8, 16, 32, 64), 16, (8, 16, 32, 64, 128), 4),
    "quick": Size("quick", 8, (1, 2, 4, 8), 8, (8, 16, 32), 1),
}


def _library(side):
    """``minicnn`` or ``torch``, with the sub-packages the builders use loaded."""
    lib = importlib.import_module(side)
    for sub in ("nn", "nn.functional", "optim") + (("models",) if side == "minicnn" else ()):
        importlib.import_module(f"{side}.{sub}")
    return lib


def _workload(name, kind, flops, build, needs, params=None):
    """A Workload whose two setups are ``build`` given each library."""
    return Workload(name=name, kind=kind, flops=flops,
                    setup_minicnn=lambda: build(_library("minicnn")),
                    setup_torch=lambda: build(_library("torch")),
                    needs=tuple(needs), params=dict(params or {}))


# ------------------------------------------------------------------------ op workloads

def _op_builder(make_inputs, grad_names, call):
    """Builder of an op's forward + backward.

    ``make_inputs(rng)`` returns {name: float32 array}; inputs named in ``grad_names``
    require a gradient; ``call(F, **tensors)`` applies the op.
    """
    def build(lib):
        F = lib.nn.functional
        rng = np.random.default_rng(0)
        tensors = {k: lib.tensor(a, requires_grad=k in grad_names)
                   for k, a in make_inputs(rng).items()}
        with lib.no_grad():
            out_shape = tuple(call(F, **tensors).shape)
        grad_out = lib.tensor(rng.standard_normal(out_shape, dtype=F32))
        leaves = [tensors[k] for k in grad_names]

        def run():
            for t in leaves:
                t.grad = None
            call(F, **tensors).backward(grad_out)
        return run
    return build


def _weight(rng, shape, fan_in):
    return (rng.standard_normal(shape, dtype=F32) / np.sqrt(fan_in)).astype(F32)


def _out_side(side, kernel, stride, pad):
    return (side + 2 * pad - kernel) // stride + 1


def conv2d_workload(n, c, h, w, k, kernel, stride, pad, kind="op", params=None,
                    conv_algorithm=None):
    """conv2d forward + backward; ``conv_algorithm`` (one of
    ``minicnn.functional.CONV_ALGORITHMS``) is passed to minicnn's conv2d, None leaves
    the default (the torch side never takes it)."""
    oh, ow = _out_side(h, kernel, stride, pad), _out_side(w, kernel, stride, pad)
    forward = 2 * n * k * c * kernel * kernel * oh * ow
    algorithm = {} if conv_algorithm is None else {"conv_algorithm": conv_algorithm}

    def call(F, x, weight):
        forced = algorithm if F.__name__.startswith("minicnn") else {}
        return F.conv2d(x, weight, stride=stride, padding=pad, **forced)
    build = _op_builder(
        lambda rng: {"x": rng.standard_normal((n, c, h, w), dtype=F32),
                     "weight": _weight(rng, (k, c, kernel, kernel), c * kernel * kernel)},
        ("x", "weight"), call)
    name = f"conv2d {n}x{c}x{h}x{w} k{k}x{kernel}x{kernel} s{stride} p{pad}"
    if kind == "scaling":
        name = f"scaling {params['sweep']}: {name}"
    return _workload(name, kind, lambda: 3 * forward, build, ["functional.conv2d"],
                     dict(op="conv2d", N=n, C=c, H=h, W=w, K=k, kernel=kernel,
                          stride=stride, padding=pad, **(params or {})))


def conv_transpose2d_workload(n, c, h, w, k, kernel, stride, pad):
    forward = 2 * n * c * k * kernel * kernel * h * w
    build = _op_builder(
        lambda rng: {"x": rng.standard_normal((n, c, h, w), dtype=F32),
                     "weight": _weight(rng, (c, k, kernel, kernel), c)},
        ("x", "weight"),
        lambda F, x, weight: F.conv_transpose2d(x, weight, stride=stride, padding=pad))
    return _workload(f"conv_transpose2d {n}x{c}x{h}x{w} k{k}x{kernel}x{kernel} "
                     f"s{stride} p{pad}", "op", lambda: 3 * forward, build,
                     ["functional.conv_transpose2d"],
                     dict(op="conv_transpose2d", N=n, C=c, H=h, W=w, K=k, kernel=kernel,
                          stride=stride, padding=pad))


def max_pool2d_workload(n, c, h, w, kernel, stride, pad=0):
    oh, ow = _out_side(h, kernel, stride, pad), _out_side(w, kernel, stride, pad)
    flops = n * c * oh * ow * (kernel * kernel + 1)
    build = _op_builder(
        lambda rng: {"x": rng.standard_normal((n, c, h, w), dtype=F32)},
        ("x",),
        lambda F, x: F.max_pool2d(x, kernel, stride=stride, padding=pad))
    return _workload(f"max_pool2d {n}x{c}x{h}x{w} {kernel}x{kernel} s{stride} p{pad}", "op",
                     lambda: flops, build, ["functional.max_pool2d"],
                     dict(op="max_pool2d", N=n, C=c, H=h, W=w, kernel=kernel,
                          stride=stride, padding=pad))


def batch_norm_workload(n, c, h, w):
    flops = (8 + 7) * n * c * h * w
    build = _op_builder(
        lambda rng: {"x": rng.standard_normal((n, c, h, w), dtype=F32),
                     "running_mean": np.zeros(c, F32), "running_var": np.ones(c, F32),
                     "weight": (1 + 0.1 * rng.standard_normal(c)).astype(F32),
                     "bias": (0.1 * rng.standard_normal(c)).astype(F32)},
        ("x", "weight", "bias"),
        lambda F, x, running_mean, running_var, weight, bias: F.batch_norm(
            x, running_mean, running_var, weight, bias, training=True))
    return _workload(f"batch_norm {n}x{c}x{h}x{w}", "op", lambda: flops, build,
                     ["functional.batch_norm"],
                     dict(op="batch_norm", N=n, C=c, H=h, W=w, training=True))


def lrn_workload(n, c, h, w, size=5, alpha=1e-4, beta=0.75, k=2.0):
    flops = 3 * (size + 5) * n * c * h * w
    build = _op_builder(
        lambda rng: {"x": rng.standard_normal((n, c, h, w), dtype=F32)},
        ("x",),
        lambda F, x: F.local_response_norm(x, size, alpha=alpha, beta=beta, k=k))
    return _workload(f"local_response_norm {n}x{c}x{h}x{w} size{size}", "op", lambda: flops,
                     build, ["functional.local_response_norm"],
                     dict(op="local_response_norm", N=n, C=c, H=h, W=w, size=size))


# --------------------------------------------------------------------- model workloads

def _zoo_model(name, twin):
    """Builder of a model: ``minicnn.models.<name>()`` for minicnn, ``twin(torch)`` for
    torch, after checking that both have the same parameter names and shapes."""
    def build(lib):
        if lib.__name__ != "minicnn":
            return twin(lib)
        model = getattr(lib.models, name)()
        import torch
        with torch.device("meta"):            # shapes only: no memory for the reference
            expected = models.param_shapes(twin(torch))
        got = models.param_shapes(model)
        if got != expected:
            diff = [f"{a} != {b}" for a, b in zip(got, expected) if a != b][:3]
            raise RuntimeError(
                f"minicnn.models.{name}() and the torch twin benchmarks/models.py:{twin.__name__} "
                f"differ ({len(got)} vs {len(expected)} tensors; {'; '.join(diff)}): "
                f"the two sides would not do the same work")
        return model
    return build


def train_workload(label, build_model, batch, input_shape, num_classes, twin, needs):
    def build(lib):
        rng = np.random.default_rng(0)
        model = build_model(lib)
        model.train()
        optimizer = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = lib.tensor(rng.standard_normal((batch,) + input_shape, dtype=F32))
        target = lib.tensor(rng.integers(0, num_classes, batch, dtype=np.int64))
        cross_entropy = lib.nn.functional.cross_entropy

        def run():
            optimizer.zero_grad()
            loss = cross_entropy(model(x), target)
            loss.backward()
            optimizer.step()
        return run

    return _workload(f"train {label} batch {batch} {'x'.join(map(str, input_shape))}",
                     "train", lambda: 3 * models.count_flops(twin, (batch,) + input_shape),
                     build, list(needs) + ["optim.SGD", "functional.cross_entropy"],
                     dict(model=label, N=batch, input=list(input_shape)))


def inference_workload(label, build_model, batch, input_shape, twin, needs):
    def build(lib):
        rng = np.random.default_rng(0)
        model = build_model(lib)
        model.eval()
        x = lib.tensor(rng.standard_normal((batch,) + input_shape, dtype=F32))

        def run():
            with lib.no_grad():
                model(x)
        return run

    return _workload(f"inference {label} batch {batch} {'x'.join(map(str, input_shape))}",
                     "inference", lambda: models.count_flops(twin, (batch,) + input_shape),
                     build, needs, dict(model=label, N=batch, input=list(input_shape)))


def _torch_gets_minicnn_weights(build):
    """Builder of a model: ``build(lib)``, and the torch side loads the weights the
    minicnn side was just built with (the harness sets minicnn up first), so both do
    exactly the same arithmetic (the same boxes survive in a detector). Set up alone (the
    memory child for torch) torch keeps its own random initialisation."""
    shared = {}

    def build_shared(lib):
        if lib.__name__ == "minicnn":
            model = build(lib)
            shared["state"] = {k: v.numpy() for k, v in model.state_dict().items()}
            return model
        state = shared.pop("state", None)    # first: not kept if torch's side cannot build
        model = build(lib)
        if state is not None:
            model.load_state_dict({k: lib.from_numpy(v) for k, v in state.items()})
        return model
    return build_shared


def _torchvision_detector(name, kwargs):
    """``torchvision.models.detection.<name>(**kwargs)``, or :class:`harness.Unavailable`
    when torchvision cannot be imported."""
    try:
        detection = importlib.import_module("torchvision.models.detection")
    except Exception as exc:         # ImportError, or a torchvision built for
        why = f"{type(exc).__name__}: {exc}"         # another torch failing as it loads
        raise harness.Unavailable(f"torchvision is not importable here ({why}), "
                                  "so minicnn is timed alone") from None
    return getattr(detection, name)(**kwargs)


def detector_workload(name, image_shape, min_size=800, max_size=1333, minicnn_kwargs=None,
                      torchvision_kwargs=None):
    """One image through a torchvision-layout detector (``minicnn.models.detection.<name>``,
    e.g. ``fasterrcnn_resnet50_fpn``) in eval mode under ``no_grad``: the image transform
    (for the R-CNNs: resize so the short side is ``min_size``, at most ``max_size`` on the
    long side, as torchvision's defaults 800/1333), backbone and FPN, RPN, RoI heads,
    post-processing.

    Random weights: minicnn's builder with ``minicnn_kwargs`` (default: ``weights=None,
    weights_backbone=None`` and the sizes). The torch side is torchvision's builder with
    ``torchvision_kwargs`` (default: the same) and minicnn's very weights loaded, so both
    rank the same proposals and keep the same detections; when torchvision is not
    importable (it is not beside torch 2.13 here) minicnn is timed alone. No nominal
    FLOPs: the heads' work depends on how many boxes survive, so the GFLOP/s columns stay
    empty.
    """
    label, params = "", {}
    if minicnn_kwargs is None:            # an R-CNN: sized by the arguments, named so
        minicnn_kwargs = dict(weights=None, weights_backbone=None, min_size=min_size,
                              max_size=max_size)
        label = ("" if (min_size, max_size) == (800, 1333)
                 else f" (min_size {min_size}, max_size {max_size})")
        params = dict(min_size=min_size, max_size=max_size)
    torchvision_kwargs = minicnn_kwargs if torchvision_kwargs is None else torchvision_kwargs

    def model(lib):
        if lib.__name__ == "minicnn":
            _library("minicnn")
            detection = importlib.import_module("minicnn.models.detection")
            return getattr(detection, name)(**minicnn_kwargs).eval()
        return _torchvision_detector(name, torchvision_kwargs).eval()

    build_model = _torch_gets_minicnn_weights(model)

    def build(lib):
        image = np.random.default_rng(0).random(image_shape, dtype=F32)   # [0, 1) pixels
        model = build_model(lib)
        x = lib.tensor(image)

        def run():
            with lib.no_grad():
                model([x])
        return run

    c, h, w = image_shape
    return _workload(f"inference {name} 1 image {c}x{h}x{w}{label}", "inference",
                     lambda: None, build, [f"models.detection.{name}"],
                     dict(model=name, N=1, input=list(image_shape), **params))


def ssd_workload(image_shape):
    """SSD300 (``ssd300_vgg16``, 91 classes) on one image, as :func:`detector_workload`:
    whatever the image's size, the model's transform resizes it to 300x300, so the work is
    nearly fixed. torchvision's builder is told ``weights_backbone=None`` (its default
    would download an ImageNet VGG16)."""
    return detector_workload("ssd300_vgg16", image_shape, minicnn_kwargs={},
                             torchvision_kwargs=dict(weights=None, weights_backbone=None))


def segmentation_workload(label, build, input_shape, needs):
    """One forward of a segmentation network (``models.unet``, ``models.fcn8s``: the
    minicnn zoo and the torch twin of the same model file) on one image, eval mode, under
    ``no_grad``; the torch side runs with minicnn's weights. FLOPs as the other models
    (``models.count_flops``; transposed convolutions count too)."""
    return inference_workload(label, _torch_gets_minicnn_weights(build), 1, input_shape,
                              build, needs)


# --------------------------------------------------------------------------- catalogue

# (N, C, H, W, K, kernel, stride, pad): LeNet-5's first layer, two ResNet/VGG-style 3x3
# layers, AlexNet's first layer, a deep 3x3 layer on small maps.
CONV2D_SHAPES = [(64, 1, 28, 28, 6, 5, 1, 2), (32, 64, 32, 32, 64, 3, 1, 1),
                 (32, 128, 16, 16, 128, 3, 1, 1), (8, 3, 224, 224, 64, 11, 4, 2),
                 (32, 256, 8, 8, 256, 3, 1, 1)]
# (N, C, H, W, K, kernel, stride, pad): 2x upsampling as in DCGAN/U-Net decoders
# (4x4 stride 2 pad 1), and a DCGAN-style last layer to one channel.
CONV_TRANSPOSE2D_SHAPES = [(32, 256, 8, 8, 128, 4, 2, 1), (32, 128, 16, 16, 64, 4, 2, 1),
                           (64, 64, 14, 14, 1, 4, 2, 1)]
# (N, C, H, W, kernel, stride, pad): LeNet-5, AlexNet (overlapping), ResNet's stem, VGG.
MAX_POOL2D_SHAPES = [(64, 6, 28, 28, 2, 2, 0), (8, 96, 55, 55, 3, 2, 0),
                     (8, 64, 112, 112, 3, 2, 1), (32, 128, 16, 16, 2, 2, 0)]
# (N, C, H, W): ResNet stages
BATCH_NORM_SHAPES = [(32, 64, 32, 32), (32, 256, 8, 8), (8, 64, 112, 112)]
# (N, C, H, W): after AlexNet's (2012) first and second convolutions
LRN_SHAPES = [(8, 96, 55, 55), (8, 256, 27, 27)]

_RESNET_NEEDS = ["nn.Conv2d", "nn.BatchNorm2d", "nn.Linear", "nn.Sequential",
                 "functional.relu", "functional.adaptive_avg_pool2d"]


def all_workloads(size="full"):
    """Every workload at the given size ("full" or "quick"), in table order."""
    sz = SIZES[size]
    b = sz.batch
    out = []
    for n, c, h, w, k, kernel, stride, pad in CONV2D_SHAPES:
        out.append(conv2d_workload(b(n), c, h, w, k, kernel, stride, pad))
    for n, c, h, w, k, kernel, stride, pad in CONV_TRANSPOSE2D_SHAPES:
        out.append(conv_transpose2d_workload(b(n), c, h, w, k, kernel, stride, pad))
    for n, c, h, w, kernel, stride, pad in MAX_POOL2D_SHAPES:
        out.append(max_pool2d_workload(b(n), c, h, w, kernel, stride, pad))
    for n, c, h, w in BATCH_NORM_SHAPES:
        out.append(batch_norm_workload(b(n), c, h, w))
    for n, c, h, w in LRN_SHAPES:
        out.append(lrn_workload(b(n), c, h, w))

    out.append(train_workload("lenet5", _zoo_model("lenet5", models.lenet5), b(64),
                              (1, 28, 28), 10, models.lenet5, ["models.lenet5"]))
    out.append(train_workload("cifar_resnet18", models.cifar_resnet18, b(32),
                              (3, 32, 32), 10, models.cifar_resnet18, _RESNET_NEEDS))
    # batch 1 stays 1 in quick mode; these two are the slowest rows of --quick
    out.append(inference_workload("vgg16", _zoo_model("vgg16", models.vgg16), 1,
                                  (3, 224, 224), models.vgg16, ["models.vgg16"]))
    out.append(inference_workload("alexnet", _zoo_model("alexnet", models.alexnet), b(8),
                                  (3, 224, 224), models.alexnet, ["models.alexnet"]))
    # torchvision's detector on one VGA image (resized to 800x1066 inside, as torchvision
    # does); --quick keeps the image but lets the transform shrink it to 240x320
    out.append(detector_workload("fasterrcnn_resnet50_fpn", (3, 480, 640),
                                 *((800, 1333) if size == "full" else (240, 320))))
    # SSD300 resizes every image to 300x300: --quick only gives it a smaller one to resize
    out.append(ssd_workload((3, 480, 640) if size == "full" else (3, 240, 320)))
    # U-Net, valid convolutions (sizes 124 + 16k): 380 -> 196 (the paper's tile, 572,
    # is 3x the work); FCN-8s pads conv1_1 by 100, so even 64x64 costs 1.5 VGG-16s
    full = size == "full"
    out.append(segmentation_workload("unet", models.unet, (1, 380, 380) if full
                                     else (1, 188, 188), ["models.segmentation.unet"]))
    out.append(segmentation_workload("fcn8s", models.fcn8s, (3, 256, 256) if full
                                     else (3, 64, 64), ["models.segmentation.fcn8s"]))

    for n in sz.scaling_batches:
        out.append(conv2d_workload(n, 64, sz.scaling_side, sz.scaling_side, 64, 3, 1, 1,
                                   kind="scaling", params={"sweep": "batch"}))
    for side in sz.scaling_sides:
        out.append(conv2d_workload(sz.scaling_batch, 64, side, side, 64, 3, 1, 1,
                                   kind="scaling", params={"sweep": "side"}))
    return out


def select(workloads, only):
    """The workloads whose name contains any of the comma-separated, case-insensitive
    substrings of ``only`` (all of them when ``only`` is empty)."""
    if not only:
        return list(workloads)
    wanted = [s.strip().lower() for s in only.split(",") if s.strip()]
    return [w for w in workloads if any(s in w.name.lower() for s in wanted)]


def find(name, size):
    """The workload called exactly ``name`` (used by the memory child processes)."""
    for w in all_workloads(size):
        if w.name == name:
            return w
    raise KeyError(f"no workload named {name!r} at size {size!r}")

