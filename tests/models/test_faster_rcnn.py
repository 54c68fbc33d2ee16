"""Faster R-CNN (minicnn/models/detection/faster_rcnn.py): torchvision's state-dict keys
and shapes (the list written here from torchvision's sources) and its published
parameter count (41,755,286 for 91 classes); the builder's rules (trainable layers,
num_classes from the weights, weights from a state dict or a torch .pth file, eps 0 for
the released layout); and the whole model on a small image in float64 against the torch
twin of its RoI heads (the same source on torch, tests/rcnn_twin.py's box ops) fed with
the features and proposals the model computed: the training losses and the heads'
gradients with the sampler's draws fixed, and the final detections after the transform's
postprocess."""
import math
import warnings

import numpy as np
import pytest

import minicnn as mc
from minicnn import nn
from minicnn.models.detection import faster_rcnn, roi_heads
from minicnn.ops.misc import FrozenBatchNorm2d

from model_twin import cheap_init, count, torch_twin
from rcnn_twin import FixedSampler, one_torch_thread, torch_ops  # noqa: F401 (a fixture)


# ------------------------------------------------------------- torchvision's layout

def resnet50_fpn_layout():
    """(key, shape) of torchvision's ``resnet_fpn_backbone('resnet50')`` with
    FrozenBatchNorm2d (four buffers per norm, no num_batches_tracked)."""
    layout = []

    def bn(prefix, c):
        return [(f"{prefix}.{k}", (c,)) for k in ("weight", "bias", "running_mean",
                                                  "running_var")]

    body = "backbone.body"
    layout += [(f"{body}.conv1.weight", (64, 3, 7, 7))] + bn(f"{body}.bn1", 64)
    inplanes = 64
    for i, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for j in range(blocks):
            p = f"{body}.layer{i}.{j}"
            layout += [(f"{p}.conv1.weight", (planes, inplanes, 1, 1))] + bn(f"{p}.bn1", planes)
            layout += [(f"{p}.conv2.weight", (planes, planes, 3, 3))] + bn(f"{p}.bn2", planes)
            layout += [(f"{p}.conv3.weight", (planes * 4, planes, 1, 1))] + \
                bn(f"{p}.bn3", planes * 4)
            if j == 0:
                layout += [(f"{p}.downsample.0.weight", (planes * 4, inplanes, 1, 1))] + \
                    bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    for kind, k, cins in (("inner_blocks", 1, (256, 512, 1024, 2048)),
                          ("layer_blocks", 3, (256,) * 4)):
        for i, cin in enumerate(cins):
            layout += [(f"backbone.fpn.{kind}.{i}.0.weight", (256, cin, k, k)),
                       (f"backbone.fpn.{kind}.{i}.0.bias", (256,))]
    return layout


def faster_rcnn_layout(num_classes):
    return resnet50_fpn_layout() + [
        ("rpn.head.conv.0.0.weight", (256, 256, 3, 3)), ("rpn.head.conv.0.0.bias", (256,)),
        ("rpn.head.cls_logits.weight", (3, 256, 1, 1)), ("rpn.head.cls_logits.bias", (3,)),
        ("rpn.head.bbox_pred.weight", (12, 256, 1, 1)), ("rpn.head.bbox_pred.bias", (12,)),
        ("roi_heads.box_head.fc6.weight", (1024, 256 * 7 * 7)),
        ("roi_heads.box_head.fc6.bias", (1024,)),
        ("roi_heads.box_head.fc7.weight", (1024, 1024)), ("roi_heads.box_head.fc7.bias", (1024,)),
        ("roi_heads.box_predictor.cls_score.weight", (num_classes, 1024)),
        ("roi_heads.box_predictor.cls_score.bias", (num_classes,)),
        ("roi_heads.box_predictor.bbox_pred.weight", (num_classes * 4, 1024)),
        ("roi_heads.box_predictor.bbox_pred.bias", (num_classes * 4,))]


def buffers_of(layout):
    return sum(math.prod(s) for k, s in layout if k.split(".")[-1].startswith("running_")
               or ".bn" in k or ".downsample.1." in k)


def test_keys_shapes_and_parameter_count():
    with cheap_init():
        model = faster_rcnn.fasterrcnn_resnet50_fpn(num_classes=91,
                                                    norm_layer=FrozenBatchNorm2d)
    want = faster_rcnn_layout(91)
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert [k for k, _ in got] == [k for k, _ in want]
    assert got == want
    # the frozen norms' four vectors are buffers: the rest is torchvision's 41,755,286
    assert count(model) == 41_755_286 == sum(math.prod(s) for _, s in want) - buffers_of(want)
    assert all(isinstance(m, FrozenBatchNorm2d) for n, m in model.backbone.body.named_modules()
               if "bn" in n or n.endswith("downsample.1"))
    t = model.transform
    assert (t.min_size, t.max_size, t.size_divisible) == ((800,), 1333, 32)
    r = model.rpn
    assert (r._pre_nms_top_n, r._post_nms_top_n) == (dict(training=2000, testing=1000),
                                                     dict(training=2000, testing=1000))
    h = model.roi_heads
    assert (h.score_thresh, h.nms_thresh, h.detections_per_img) == (0.05, 0.5, 100)
    assert h.box_coder.weights == (10.0, 10.0, 5.0, 5.0)
    assert (h.fg_bg_sampler.batch_size_per_image, h.fg_bg_sampler.positive_fraction) == \
        (512, 0.25)
    assert (h.proposal_matcher.high_threshold, h.proposal_matcher.low_threshold,
            h.proposal_matcher.allow_low_quality_matches) == (0.5, 0.5, False)
    assert h.box_roi_pool.featmap_names == ["0", "1", "2", "3"]
    assert (h.box_roi_pool.output_size, h.box_roi_pool.sampling_ratio) == ((7, 7), 2)


def test_batch_norm_follows_torchvisions_rule():
    """From nothing, ordinary batch norm (trainable from scratch): the frozen model's
    count plus ResNet-50's 53,120 batch-norm weights and biases; with weights, frozen."""
    with cheap_init():
        scratch = faster_rcnn.fasterrcnn_resnet50_fpn(num_classes=91)
    norms = [m for n, m in scratch.backbone.body.named_modules()
             if "bn" in n or n.endswith("downsample.1")]
    assert norms and all(type(m) is nn.BatchNorm2d for m in norms)
    assert count(scratch) == 41_755_286 + 53_120
    state = scratch.state_dict()
    assert any(k.endswith("num_batches_tracked") for k in state)
    with cheap_init():
        trained = faster_rcnn.fasterrcnn_resnet50_fpn(weights=state)   # the counter dropped
    assert count(trained) == 41_755_286
    assert all(isinstance(m, FrozenBatchNorm2d) for n, m in trained.backbone.body.named_modules()
               if "bn" in n or n.endswith("downsample.1"))
    with pytest.raises(TypeError, match="fasterrcnn_resnet50_fpn: norm_layer should be a "
                                        "batch-norm class"):
        faster_rcnn.fasterrcnn_resnet50_fpn(norm_layer=3)


def test_trainable_layers_and_weights_from_a_state_dict(torch, tmp_path):
    with cheap_init():
        model = faster_rcnn.fasterrcnn_resnet50_fpn(num_classes=3)
    # no weights: every backbone layer trains (torchvision's rule), a value given is ignored
    assert all(p.requires_grad for p in model.parameters())
    with pytest.warns(UserWarning, match="trainable_backbone_layers has no effect"):
        with cheap_init():
            faster_rcnn.fasterrcnn_resnet50_fpn(num_classes=3, trainable_backbone_layers=1)
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(v.shape).astype(np.float32)
             for k, v in model.state_dict().items()}
    with cheap_init():
        loaded = faster_rcnn.fasterrcnn_resnet50_fpn(weights=state)    # 3 classes, read
    for k, v in loaded.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k], err_msg=k)
    # with weights: 3 layers train (layer2-4), conv1 and layer1 are frozen
    frozen = {n.split(".")[2] for n, p in loaded.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "layer1"}
    assert all(m.eps == 1e-5 for m in loaded.modules() if isinstance(m, FrozenBatchNorm2d))
    with pytest.raises(ValueError, match="num_classes 91 given, but the weights have 3"):
        faster_rcnn.fasterrcnn_resnet50_fpn(weights=state, num_classes=91)

    # the released layout (rpn.head.conv.weight), from a torch .pth file: eps 0 as torchvision
    old = {("rpn.head.conv." + k[len("rpn.head.conv.0.0."):] if k.startswith("rpn.head.conv.")
            else k): torch.from_numpy(v) for k, v in state.items()}
    path = tmp_path / "fasterrcnn.pth"
    torch.save(old, path)
    with cheap_init():
        released = faster_rcnn.fasterrcnn_resnet50_fpn(weights=str(path),
                                                       trainable_backbone_layers=0)
    np.testing.assert_array_equal(released.rpn.head.conv[0][0].weight.numpy(),
                                  state["rpn.head.conv.0.0.weight"])
    assert all(m.eps == 0.0 for m in released.modules() if isinstance(m, FrozenBatchNorm2d))
    assert not any(p.requires_grad for n, p in released.named_parameters()
                   if n.startswith("backbone.body"))


def test_weights_backbone_from_an_imagenet_resnet50_state_dict():
    """A torchvision ResNet-50 state dict (BatchNorm2d's num_batches_tracked and the fc
    layer included) loads into the frozen-BN body; 3 layers then train, as torchvision."""
    from minicnn.models import resnet50
    with cheap_init():
        imagenet = resnet50()
    rng = np.random.default_rng(1)
    state = {k: (np.array(7) if k.endswith("num_batches_tracked")
                 else rng.standard_normal(v.shape).astype(np.float32))
             for k, v in imagenet.state_dict().items()}
    assert "layer1.0.bn1.num_batches_tracked" in state and "fc.weight" in state
    with cheap_init():
        model = faster_rcnn.fasterrcnn_resnet50_fpn(num_classes=4, weights_backbone=state)
    body = model.backbone.body
    np.testing.assert_array_equal(body.layer3[5].bn2.running_var.numpy(),
                                  state["layer3.5.bn2.running_var"])
    np.testing.assert_array_equal(body.conv1.weight.numpy(), state["conv1.weight"])
    frozen = {n.split(".")[2] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "layer1"}


def test_builder_and_constructor_errors():
    with pytest.raises(ValueError, match="fasterrcnn_resnet50_fpn: in_channels must be 3"):
        faster_rcnn.fasterrcnn_resnet50_fpn(in_channels=1)
    with pytest.raises(TypeError, match="fasterrcnn_resnet50_fpn: weights must be None, a "
                                        "checkpoint file path or a state dict"):
        faster_rcnn.fasterrcnn_resnet50_fpn(weights=3)
    with pytest.raises(ValueError, match="trainable_backbone_layers should be an integer in "
                                         r"\[0, 5\], got 6"):
        faster_rcnn.fasterrcnn_resnet50_fpn(weights_backbone={}, trainable_backbone_layers=6)
    with pytest.raises(ValueError, match="FasterRCNN: backbone should have an attribute "
                                         "out_channels"):
        faster_rcnn.FasterRCNN(mc.nn.ReLU(), num_classes=2)
    backbone = mc.nn.Conv2d(3, 8, 3)
    backbone.out_channels = 8
    with pytest.raises(ValueError, match="FasterRCNN: num_classes should not be None"):
        faster_rcnn.FasterRCNN(backbone)
    with pytest.raises(ValueError, match="FasterRCNN: num_classes should be None when "
                                         "box_predictor"):
        faster_rcnn.FasterRCNN(backbone, 2, box_predictor=faster_rcnn.FastRCNNPredictor(8, 2))
    with pytest.raises(TypeError, match="FasterRCNN: box_roi_pool should be a "
                                        "MultiScaleRoIAlign"):
        faster_rcnn.FasterRCNN(backbone, 2, box_roi_pool=mc.ops.RoIAlign(7, 1.0, 2))


# ---------------------------------------------------- the model against the twin heads


SMALL = dict(min_size=96, max_size=128, rpn_pre_nms_top_n_train=150,
             rpn_post_nms_top_n_train=80, rpn_pre_nms_top_n_test=120,
             rpn_post_nms_top_n_test=60, box_batch_size_per_image=48)


def small_model(builder, num_classes=5, **kwargs):
    """The ResNet-50-FPN detector at a small size in float64. Its random backbone's maps
    are large (mean |x| ~ 30): the RoI heads' weights are scaled by 1/4 so that the
    scores vary, offsets stay moderate and many detections pass 0.05."""
    mc.manual_seed(0)
    model = builder(num_classes=num_classes, **SMALL, **kwargs).double()
    with mc.no_grad():
        for p in model.roi_heads.parameters():
            p.mul_(0.25)
    model.roi_heads.fg_bg_sampler = FixedSampler(48, 0.25, mc.tensor)
    return model


def twin_heads(torch, model, modules):
    """A torch twin of ``model.roi_heads``: roi_heads.py on torch with the box ops of
    rcnn_twin, the heads from the twins in ``modules`` (name -> twin namespace), the
    weights copied from the model."""
    ops = torch_ops(torch)
    twin = torch_twin(roi_heads, torch)
    twin.RoIHeads.__init__.__globals__.update(ops)
    h = model.roi_heads

    def twin_of(module):
        if module is None:
            return None
        if isinstance(module, mc.ops.MultiScaleRoIAlign):
            return ops["MultiScaleRoIAlign"](module.featmap_names, module.output_size,
                                             module.sampling_ratio)
        return modules[type(module).__name__](module)

    th = twin.RoIHeads(twin_of(h.box_roi_pool), twin_of(h.box_head), twin_of(h.box_predictor),
                       0.5, 0.5, 48, 0.25, None, h.score_thresh, h.nms_thresh,
                       h.detections_per_img, mask_roi_pool=twin_of(h.mask_roi_pool),
                       mask_head=twin_of(h.mask_head),
                       mask_predictor=twin_of(h.mask_predictor)).double()
    th.load_state_dict({k: torch.from_numpy(v.numpy().copy())
                        for k, v in h.state_dict().items()})
    th.fg_bg_sampler = FixedSampler(48, 0.25, torch.from_numpy)
    return th


def faster_twins(torch):
    t = torch_twin(faster_rcnn, torch)
    return {"TwoMLPHead": lambda m: t.TwoMLPHead(m.fc6.in_features, m.fc6.out_features),
            "FastRCNNPredictor": lambda m: t.FastRCNNPredictor(m.cls_score.in_features,
                                                               m.cls_score.out_features)}


def record_heads(model):
    """Wrap model.roi_heads.forward: keep what it receives (the features keep their
    gradient)."""
    seen = {}
    forward = model.roi_heads.forward

    def wrapper(features, proposals, image_shapes, targets=None):
        for f in features.values():
            if f.requires_grad:
                f.retain_grad()
        seen.update(features=features, proposals=proposals, image_shapes=image_shapes,
                    targets=targets)
        return forward(features, proposals, image_shapes, targets)

    model.roi_heads.forward = wrapper
    return seen


def images_and_targets(masks=False, seed=0):
    """Two images (90x120 and 100x80) with two objects each (rectangles, their masks)."""
    rng = np.random.default_rng(seed)
    images, targets = [], []
    for (h, w), boxes in (((90, 120), [[10, 12, 60, 70], [50, 20, 115, 85]]),
                          ((100, 80), [[5, 30, 50, 95], [30, 5, 78, 50]])):
        img = rng.uniform(0, 1, (3, h, w)) * 0.3
        target = {"boxes": mc.tensor(np.array(boxes, float)),
                  "labels": mc.tensor(rng.integers(1, 5, 2))}
        m = np.zeros((2, h, w), np.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            img[k % 3, y1:y2, x1:x2] += 0.6
            m[k, y1 + 3:y2 - 3, x1 + 3:x2 - 3] = 1
        if masks:
            target["masks"] = mc.tensor(m)
        images.append(mc.tensor(img))
        targets.append(target)
    return images, targets


def to_torch(torch, value):
    if isinstance(value, dict):
        return {k: to_torch(torch, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_torch(torch, v) for v in value]
    return torch.from_numpy(value.numpy().copy())


def check_training(torch, model, th, masks):
    seen = record_heads(model)
    images, targets = images_and_targets(masks)
    model.backbone.body.requires_grad_(False)    # the ResNet's backward is not under test
    model.train()
    losses = model(images, targets)
    heads = ["loss_classifier", "loss_box_reg"] + (["loss_mask"] if masks else [])
    assert set(losses) == set(heads) | {"loss_objectness", "loss_rpn_box_reg"}
    feats = {k: torch.from_numpy(v.numpy().copy()).requires_grad_(True)
             for k, v in seen["features"].items()}
    th.train()
    _, t_losses = th(feats, to_torch(torch, seen["proposals"]), seen["image_shapes"],
                     to_torch(torch, seen["targets"]))
    assert list(t_losses) == heads
    for k in heads:
        np.testing.assert_allclose(losses[k].item(), t_losses[k].item(), rtol=1e-9, err_msg=k)
        assert losses[k].item() > 0
    sum(losses[k] for k in heads).backward()
    sum(t_losses[k] for k in heads).backward()
    mine = dict(model.roi_heads.named_parameters())
    for name, p in th.named_parameters():
        np.testing.assert_allclose(mine[name].grad.numpy(), p.grad.numpy(), rtol=1e-7,
                                   atol=1e-9 * max(1e-3, p.grad.abs().max().item()),
                                   err_msg=name)
    reached = []
    for k, f in seen["features"].items():
        # 'pool' is not read; a level where no box lands gets no gradient on either side
        assert (f.grad is None) == (feats[k].grad is None), k
        if f.grad is not None:
            reached.append(k)
            np.testing.assert_allclose(f.grad.numpy(), feats[k].grad.numpy(), rtol=1e-7,
                                       atol=1e-11, err_msg=f"feature {k}")
    assert "0" in reached and "pool" not in reached
    # the RoI losses reached the FPN through the features
    assert model.backbone.fpn.layer_blocks[0][0].weight.grad is not None


def check_eval(torch, model, th, masks):
    seen = record_heads(model)
    images, _ = images_and_targets(masks)
    model.eval()
    with mc.no_grad():
        out = model(images)
    th.eval()
    with torch.no_grad():
        want, _ = th(to_torch(torch, seen["features"]), to_torch(torch, seen["proposals"]),
                     seen["image_shapes"])
    twin = torch_twin(roi_heads, torch)
    total = 0
    for o, t, img, shape in zip(out, want, images, seen["image_shapes"]):
        # torchvision's transform.postprocess: boxes by the float32 size ratios, masks pasted
        ratios = [np.float32(img.shape[1 + d]) / np.float32(shape[d]) for d in (0, 1)]
        scale = torch.tensor([ratios[1], ratios[0], ratios[1], ratios[0]], dtype=torch.float64)
        boxes = t["boxes"] * scale
        assert list(o) == (["boxes", "labels", "scores"] + (["masks"] if masks else []))
        np.testing.assert_allclose(o["boxes"].numpy(), boxes.numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_array_equal(o["labels"].numpy(), t["labels"].numpy())
        np.testing.assert_allclose(o["scores"].numpy(), t["scores"].numpy(), rtol=1e-10)
        if masks:
            pasted = twin.paste_masks_in_image(t["masks"], boxes, tuple(img.shape[1:]))
            assert o["masks"].shape == (len(boxes), 1) + tuple(img.shape[1:])
            np.testing.assert_allclose(o["masks"].numpy(), pasted.numpy(), rtol=1e-9,
                                       atol=1e-12)
        total += len(boxes)
    assert total >= 20


@pytest.mark.slow
def test_training_losses_and_head_gradients_match_the_twin(torch):
    model = small_model(faster_rcnn.fasterrcnn_resnet50_fpn)
    check_training(torch, model, twin_heads(torch, model, faster_twins(torch)), masks=False)


@pytest.mark.slow
def test_eval_detections_match_the_twin(torch):
    model = small_model(faster_rcnn.fasterrcnn_resnet50_fpn)
    check_eval(torch, model, twin_heads(torch, model, faster_twins(torch)), masks=False)
