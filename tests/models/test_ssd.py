"""SSD (minicnn/models/detection/ssd.py): torchvision's state-dict keys and shapes (the list
derived here from torchvision's ``ssd.py``), its parameter counts (35,641,826 for 91
classes, 26,285,486 for 21), the six maps and 8,732 default boxes of SSD300, the heads'
(N, HWA, K) layout, the backbone and heads against the torch twin (the same source on
torch.nn), the training loss against a torch twin of torchvision's ``SSD.compute_loss``
(values and gradients, float64), post-processing against a torch twin of
``postprocess_detections``, the eval output format, and errors naming SSD."""
import importlib
import math

import numpy as np
import pytest

import minicnn as mc
from minicnn import nn
from minicnn.models.detection import ssd
from minicnn.ops import DefaultBoxGenerator
from minicnn.utils.summary import _patched_shapes_only

from fake_cupy import FakeDeviceArray, install, refuse_host_conversion, to_device, to_host
from model_twin import cheap_init, copy_weights, count, torch_twin

SSD300_MAPS = [38, 19, 10, 5, 3, 1]
SSD300_CHANNELS = [512, 1024, 512, 256, 256, 256]
SSD300_ANCHORS = [4, 6, 6, 6, 4, 4]


# ------------------------------------------------------------- torchvision's layout

def torchvision_ssd300_layout(num_classes):
    """(key, shape) of ``torchvision.models.detection.ssd300_vgg16(num_classes=...)``,
    written out from its source: ``SSDFeatureExtractorVGG`` registers ``scale_weight``
    (512), ``features`` = VGG16's ``features[:23]`` (conv1_1 ... conv4_3 and ReLUs, the
    pools at 4, 9, 16), ``extra.0`` = VGG's pool4 and conv5_x (``features[23:30]``) plus
    the Sequential(pool5, fc6, ReLU, fc7, ReLU) at index 7, ``extra.1`` ... ``extra.4`` =
    Sequential(1x1 conv, ReLU, 3x3 conv, ReLU); then ``SSDHead``: the classification head
    first, one 3x3 convolution per map each."""
    layout = [("backbone.scale_weight", (512,))]
    vgg_convs = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256),
                 (12, 256, 256), (14, 256, 256), (17, 256, 512), (19, 512, 512),
                 (21, 512, 512)]

    def conv(prefix, cin, cout, k):
        return [(f"{prefix}.weight", (cout, cin, k, k)), (f"{prefix}.bias", (cout,))]

    for i, cin, cout in vgg_convs:
        layout += conv(f"backbone.features.{i}", cin, cout, 3)
    for i in (1, 3, 5):                                  # conv5_1 ... conv5_3
        layout += conv(f"backbone.extra.0.{i}", 512, 512, 3)
    layout += conv("backbone.extra.0.7.1", 512, 1024, 3)      # fc6 (dilation 6)
    layout += conv("backbone.extra.0.7.3", 1024, 1024, 1)     # fc7
    for k, (cin, mid, cout) in enumerate([(1024, 256, 512), (512, 128, 256),
                                          (256, 128, 256), (256, 128, 256)], start=1):
        layout += conv(f"backbone.extra.{k}.0", cin, mid, 1)
        layout += conv(f"backbone.extra.{k}.2", mid, cout, 3)
    for head, columns in (("classification_head", num_classes), ("regression_head", 4)):
        for i, (channels, anchors) in enumerate(zip(SSD300_CHANNELS, SSD300_ANCHORS)):
            layout += conv(f"head.{head}.module_list.{i}", channels, columns * anchors, 3)
    return layout


@pytest.mark.parametrize("num_classes, params", [(91, 35_641_826), (21, 26_285_486)])
def test_ssd300_keys_shapes_and_parameter_count(num_classes, params):
    with cheap_init():
        model = ssd.ssd300_vgg16(num_classes=num_classes)
    want = torchvision_ssd300_layout(num_classes)
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert [k for k, _ in got] == [k for k, _ in want]
    assert got == want
    assert count(model) == params == sum(math.prod(s) for _, s in want)
    assert model.backbone.scale_weight.numpy().tolist() == [20.0] * 512


def test_ssd300_maps_heads_and_default_boxes():
    """Shapes only (convolutions skipped): six maps 38 ... 1, heads (N, 8732, K)."""
    with cheap_init():
        model = ssd.ssd300_vgg16(num_classes=91)
    model.eval()
    image_list, _ = model.transform([mc.zeros(3, 240, 320)])
    assert image_list.image_sizes == [(300, 300)]
    with mc.no_grad(), _patched_shapes_only(nn, model):
        features = list(model.backbone(image_list.tensors).values())
        out = model.head(features)
    assert [tuple(f.shape[1:]) for f in features] == \
        [(c, s, s) for c, s in zip(SSD300_CHANNELS, SSD300_MAPS)]
    assert tuple(out["cls_logits"].shape) == (1, 8732, 91)
    assert tuple(out["bbox_regression"].shape) == (1, 8732, 4)
    assert model.anchor_generator.num_anchors_per_location() == SSD300_ANCHORS
    anchors = model.anchor_generator(image_list, features)
    assert tuple(anchors[0].shape) == (8732, 4)
    assert sum(a * s * s for a, s in zip(SSD300_ANCHORS, SSD300_MAPS)) == 8732


def test_ssd300_vgg_changes_and_frozen_blocks():
    with cheap_init():
        model = ssd.ssd300_vgg16(trainable_backbone_layers=4)
    pools = [m for m in model.backbone.features if isinstance(m, nn.MaxPool2d)]
    assert [p.ceil_mode for p in pools] == [False, False, True]      # pool3 rounds up
    pool5, fc6 = model.backbone.extra[0][7][0], model.backbone.extra[0][7][1]
    assert (pool5.kernel_size, pool5.stride, pool5.padding) in (
        (3, 1, 1), ((3, 3), (1, 1), (1, 1)))
    assert fc6.dilation == (6, 6) and fc6.padding == (6, 6)
    # trainable 4 of 5 blocks: conv1_1 and conv1_2 frozen (1,792 + 36,928)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == 38_720
    with pytest.raises(ValueError, match="ssd300_vgg16: trainable_backbone_layers"):
        with cheap_init():
            ssd.ssd300_vgg16(trainable_backbone_layers=6)


# ------------------------------------------------------------------ the torch twin

def _twin(torch):
    """ssd.py on torch.nn, with vgg.py's twin for VGG's layers."""
    twin = torch_twin(ssd, torch)
    namespace = twin.SSD.__init__.__globals__
    vgg = importlib.import_module("minicnn.models.vgg")   # the module, not the builder
    namespace["make_layers"] = torch_twin(vgg, torch).make_layers
    return twin


def _pair(torch, name, **kwargs):
    twin = _twin(torch)
    torch.manual_seed(0)
    tm = getattr(twin, name)(**kwargs).double()
    with torch.no_grad():                       # biases start at 0: give them values
        for p in tm.parameters():
            if p.ndim == 1 and p.shape[0] != tm.backbone.scale_weight.shape[0]:
                p.normal_(0, 0.1)
    mm = getattr(ssd, name)(**kwargs).double()
    copy_weights(tm, mm)
    return tm, mm


def test_small_backbone_and_heads_match_the_torch_twin(torch):
    tm, mm = _pair(torch, "ssd_small", num_classes=4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 64, 64))
    tx = torch.from_numpy(x).requires_grad_(True)
    mx = mc.tensor(x, requires_grad=True)
    tf, mf = list(tm.backbone(tx).values()), list(mm.backbone(mx).values())
    assert [tuple(f.shape) for f in mf] == [(2, 128, 8, 8), (2, 128, 4, 4), (2, 128, 2, 2),
                                            (2, 128, 1, 1)]
    tout, mout = tm.head(tf), mm.head(mf)
    loss_t, loss_m = 0, 0
    for key in ("bbox_regression", "cls_logits"):
        np.testing.assert_allclose(mout[key].numpy(), tout[key].detach().numpy(),
                                   rtol=1e-10, atol=1e-10)
        g = rng.standard_normal(tuple(tout[key].shape))
        loss_t = loss_t + (tout[key] * torch.from_numpy(g)).sum()
        loss_m = loss_m + (mout[key] * mc.tensor(g)).sum()
    loss_t.backward()
    loss_m.backward()
    np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-10)
    mparams = dict(mm.named_parameters())
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(mparams[name].grad.numpy(), p.grad.numpy(), rtol=1e-8,
                                   atol=1e-9, err_msg=name)
    # the first map is L2-normalised across channels, times scale_weight (20)
    norms = np.sqrt((mf[0].numpy() ** 2).sum(axis=1)) / 20
    assert np.allclose(norms[norms > 0], 1.0)


@pytest.mark.slow
def test_ssd300_backbone_and_heads_match_the_torch_twin(torch):
    """One 300x300 image in float32 through SSD300 and its twin, the same weights."""
    twin = _twin(torch)
    torch.manual_seed(0)
    tm = twin.ssd300_vgg16(num_classes=21).eval()
    mm = ssd.ssd300_vgg16(num_classes=21).eval()
    copy_weights(tm, mm)
    x = np.random.default_rng(1).random((1, 3, 300, 300)).astype(np.float32) * 255
    with torch.no_grad():
        tf = list(tm.backbone(torch.from_numpy(x)).values())
        tout = tm.head(tf)
    with mc.no_grad():
        mout = mm.head(list(mm.backbone(mc.tensor(x)).values()))
    for key in ("bbox_regression", "cls_logits"):
        t = tout[key].numpy()
        assert tuple(mout[key].shape) == t.shape
        np.testing.assert_allclose(mout[key].numpy(), t, rtol=2e-3,
                                   atol=2e-4 * float(np.abs(t).max()))


def test_heads_order_rows_map_then_position_then_box():
    """Row offset_k + (y·W + x)·A_k + a, column c of the (N, A, K) output is channel
    a·K + c of map k's convolution at (y, x) -- DefaultBoxGenerator's order."""
    K, anchors, channels, sizes = 3, [2, 3], [1, 1], [(2, 3), (1, 2)]
    head = ssd.SSDClassificationHead(channels, anchors, K)
    features = []
    for conv, (h, w) in zip(head.module_list, sizes):
        weight = np.zeros(tuple(conv.weight.shape))
        weight[:, 0, 1, 1] = 1.0                    # the centre tap copies the input
        conv.weight.array[...] = weight
        conv.bias.array[...] = np.arange(conv.bias.shape[0]) * 100.0
        features.append(mc.tensor(np.arange(h * w, dtype=np.float64).reshape(1, 1, h, w)))
    out = head([f.float() for f in features]).numpy()[0]
    assert out.shape == (2 * 3 * 2 + 1 * 2 * 3, K)
    row = 0
    for (h, w), a_k in zip(sizes, anchors):
        for y in range(h):
            for x in range(w):
                for a in range(a_k):
                    assert out[row].tolist() == [y * w + x + 100.0 * (a * K + c)
                                                 for c in range(K)]
                    row += 1


# ------------------------------------------------------- torchvision's loss, in torch

def tv_box_iou(torch, a, b):
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def tv_ssd_matcher(torch, quality, threshold):
    """torchvision's SSDMatcher: Matcher(threshold, threshold) plus each gt's best box."""
    values, matches = quality.max(dim=0)
    matches[values < threshold] = -1
    _, best = quality.max(dim=1)
    matches[best] = torch.arange(best.shape[0], dtype=torch.int64)
    return matches


def tv_encode(torch, gt, anchors, weights=(10.0, 10.0, 5.0, 5.0)):
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    gx, gy = gt[:, 0] + 0.5 * gw, gt[:, 1] + 0.5 * gh
    return torch.stack((wx * (gx - ax) / aw, wy * (gy - ay) / ah,
                        ww * torch.log(gw / aw), wh * torch.log(gh / ah)), dim=1)


def tv_compute_loss(torch, targets, bbox_regression, cls_logits, anchors, matched_idxs,
                    neg_to_pos_ratio=3.0):
    """torchvision's ``SSD.compute_loss``, step by step."""
    num_foreground, bbox_loss, cls_targets = 0, [], []
    for t, reg, logits, anc, matched in zip(targets, bbox_regression, cls_logits, anchors,
                                            matched_idxs):
        fg = torch.where(matched >= 0)[0]
        fg_matched = matched[fg]
        num_foreground += fg_matched.numel()
        target_regression = tv_encode(torch, t["boxes"][fg_matched], anc[fg, :])
        bbox_loss.append(torch.nn.functional.smooth_l1_loss(reg[fg, :], target_regression,
                                                            reduction="sum"))
        gt_classes = torch.zeros((logits.size(0),), dtype=t["labels"].dtype)
        gt_classes[fg] = t["labels"][fg_matched]
        cls_targets.append(gt_classes)
    bbox_loss, cls_targets = torch.stack(bbox_loss), torch.stack(cls_targets)
    num_classes = cls_logits.size(-1)
    cls_loss = torch.nn.functional.cross_entropy(
        cls_logits.view(-1, num_classes), cls_targets.view(-1),
        reduction="none").view(cls_targets.size())
    foreground = cls_targets > 0
    num_negative = neg_to_pos_ratio * foreground.sum(1, keepdim=True)
    negative_loss = cls_loss.clone()
    negative_loss[foreground] = -float("inf")
    _, idx = negative_loss.sort(1, descending=True)
    background = idx.sort(1)[1] < num_negative
    n = max(1, num_foreground)
    return {"bbox_regression": bbox_loss.sum() / n,
            "classification": (cls_loss[foreground].sum() + cls_loss[background].sum()) / n}


def _shapes_batch(rng, sizes, num_classes, boxes_per_image):
    images, targets = [], []
    for (h, w), k in zip(sizes, boxes_per_image):
        images.append(rng.random((3, h, w)))
        xy = rng.uniform(0, 0.6, (k, 2)) * [w, h]
        wh = rng.uniform(0.15, 0.4, (k, 2)) * [w, h]
        targets.append({"boxes": np.concatenate([xy, xy + wh], 1),
                        "labels": rng.integers(1, num_classes, k)})
    return images, targets


def _pieces(model, images, targets):
    """What SSD.forward computes before the loss: head outputs, anchors, targets."""
    image_list, targets = model.transform([mc.tensor(i) for i in images],
                                          [{k: mc.tensor(v) for k, v in t.items()}
                                           for t in targets])
    features = list(model.backbone(image_list.tensors).values())
    return model.head(features), model.anchor_generator(image_list, features), targets


def _torch_matches(torch, targets, anchors):
    out = []
    for t, a in zip(targets, anchors):
        a = torch.from_numpy(a.numpy())
        if t["boxes"].numel() == 0:
            out.append(torch.full((a.shape[0],), -1, dtype=torch.int64))
        else:
            out.append(tv_ssd_matcher(torch, tv_box_iou(torch, torch.from_numpy(
                t["boxes"].numpy()), a), 0.5))
    return out


def test_training_loss_matches_torchvision_compute_loss(torch):
    mc.manual_seed(0)
    model = ssd.ssd_small(num_classes=4).double().train()
    rng = np.random.default_rng(1)
    images, targets = _shapes_batch(rng, [(64, 64), (48, 80), (64, 64)], 4, [3, 2, 0])
    losses = model([mc.tensor(i) for i in images],
                   [{k: mc.tensor(v) for k, v in t.items()} for t in targets])
    assert set(losses) == {"bbox_regression", "classification"}

    with mc.no_grad():
        head, anchors, resized = _pieces(model, images, targets)
    matched = _torch_matches(torch, resized, anchors)
    assert sum(int((m >= 0).sum()) for m in matched) >= 5       # positives to learn from
    t_targets = [{k: torch.from_numpy(v.numpy()) for k, v in t.items()} for t in resized]
    want = tv_compute_loss(torch, t_targets, torch.from_numpy(head["bbox_regression"].numpy()),
                           torch.from_numpy(head["cls_logits"].numpy()),
                           [torch.from_numpy(a.numpy()) for a in anchors], matched)
    for key in want:
        np.testing.assert_allclose(losses[key].item(), want[key].item(), rtol=1e-12)


def test_loss_gradients_match_torchvision_compute_loss(torch):
    mc.manual_seed(0)
    model = ssd.ssd_small(num_classes=3).double().train()
    rng = np.random.default_rng(2)
    images, targets = _shapes_batch(rng, [(64, 64), (64, 64)], 3, [4, 1])
    with mc.no_grad():
        head, anchors, resized = _pieces(model, images, targets)
    matched = _torch_matches(torch, resized, anchors)
    reg = rng.standard_normal(tuple(head["bbox_regression"].shape))
    logits = rng.standard_normal(tuple(head["cls_logits"].shape)) * 2
    m_reg, m_logits = mc.tensor(reg, requires_grad=True), mc.tensor(logits, requires_grad=True)
    t_reg = torch.from_numpy(reg).requires_grad_(True)
    t_logits = torch.from_numpy(logits).requires_grad_(True)
    got = model.compute_loss(resized, {"bbox_regression": m_reg, "cls_logits": m_logits},
                             anchors, [m.numpy() for m in matched])
    want = tv_compute_loss(torch, [{k: torch.from_numpy(v.numpy()) for k, v in t.items()}
                                   for t in resized], t_reg, t_logits,
                           [torch.from_numpy(a.numpy()) for a in anchors], matched)
    (0.7 * got["bbox_regression"] + 1.3 * got["classification"]).backward()
    (0.7 * want["bbox_regression"] + 1.3 * want["classification"]).backward()
    for key in want:
        np.testing.assert_allclose(got[key].item(), want[key].item(), rtol=1e-12)
    np.testing.assert_allclose(m_reg.grad.numpy(), t_reg.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(m_logits.grad.numpy(), t_logits.grad.numpy(), rtol=1e-12,
                               atol=1e-15)
    # the hard negatives are three per positive: 3 x 5 rows of the logits get a gradient
    # besides the positives' own
    touched = np.abs(m_logits.grad.numpy()).sum(axis=-1) > 0
    positives = sum(int((m >= 0).sum()) for m in matched)
    assert touched.sum() == 4 * positives


def test_more_positives_than_a_third_of_the_negatives_counts_each_box_once(torch):
    """The documented departure: with 4 positives among 12 default boxes, torchvision's
    rank < 12 selection takes every box, positives too, and counts the positives twice;
    minicnn takes the 8 negatives and counts each box once."""
    model = ssd.ssd_small(num_classes=3).double()
    rng = np.random.default_rng(3)
    anchors = [np.array([[x, y, x + 8, y + 8] for y in (0, 8, 16) for x in (0, 8, 16, 24)],
                        dtype=np.float64)]
    target = {"boxes": np.array([[1.0, 1.0, 9.0, 9.0], [17.0, 9.0, 25.0, 15.0]]),
              "labels": np.array([1, 2])}
    matched = np.full(12, -1)
    matched[[0, 1, 6, 7]] = [0, 0, 1, 1]
    logits = rng.standard_normal((1, 12, 3))
    reg = rng.standard_normal((1, 12, 4))
    got = model.compute_loss([{k: mc.tensor(v) for k, v in target.items()}],
                             {"bbox_regression": mc.tensor(reg),
                              "cls_logits": mc.tensor(logits)},
                             [mc.tensor(a) for a in anchors], [matched])
    t_target = {k: torch.from_numpy(v) for k, v in target.items()}
    want = tv_compute_loss(torch, [t_target], torch.from_numpy(reg), torch.from_numpy(logits),
                           [torch.from_numpy(a) for a in anchors], [torch.from_numpy(matched)])
    ce = torch.nn.functional.cross_entropy(torch.from_numpy(logits[0]),
                                           torch.tensor([1, 1, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0]),
                                           reduction="none")
    np.testing.assert_allclose(got["classification"].item(), ce.sum().item() / 4, rtol=1e-12)
    np.testing.assert_allclose(want["classification"].item(),
                               (ce.sum() + ce[[0, 1, 6, 7]].sum()).item() / 4, rtol=1e-12)
    np.testing.assert_allclose(got["bbox_regression"].item(), want["bbox_regression"].item(),
                               rtol=1e-12)


def test_training_step_lowers_the_loss():
    mc.manual_seed(0)
    model = ssd.ssd_small(num_classes=3).train()
    rng = np.random.default_rng(4)
    images, targets = _shapes_batch(rng, [(64, 64)] * 2, 3, [2, 3])
    x = mc.tensor(np.stack(images).astype(np.float32))
    t = [{"boxes": mc.tensor(v["boxes"].astype(np.float32)), "labels": mc.tensor(v["labels"])}
         for v in targets]
    opt = mc.optim.Adam(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(5):
        losses = model(x, t)
        total = losses["bbox_regression"] + losses["classification"]
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert totals[-1] < 0.8 * totals[0]


# ------------------------------------------------ torchvision's post-processing, in torch

def tv_decode(torch, codes, anchors, weights=(10.0, 10.0, 5.0, 5.0),
              clip=math.log(1000.0 / 16)):
    wx, wy, ww, wh = weights
    w, h = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx, cy = anchors[:, 0] + 0.5 * w, anchors[:, 1] + 0.5 * h
    dx, dy = codes[:, 0] / wx, codes[:, 1] / wy
    dw = torch.clamp(codes[:, 2] / ww, max=clip)
    dh = torch.clamp(codes[:, 3] / wh, max=clip)
    px, py = dx * w + cx, dy * h + cy
    pw, ph = torch.exp(dw) * w, torch.exp(dh) * h
    return torch.stack((px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph), dim=1)


def tv_nms_loop(torch, boxes, scores, threshold):
    """Greedy NMS: by decreasing score, drop every later box with IoU > threshold."""
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    iou = tv_box_iou(torch, boxes, boxes)
    keep, removed = [], set()
    for i in order:
        if i in removed:
            continue
        keep.append(i)
        removed.update(j for j in order if float(iou[i, j]) > threshold)
    return keep


def tv_postprocess(torch, bbox_regression, cls_logits, anchors, image_shapes,
                   score_thresh, nms_thresh, detections_per_img, topk_candidates):
    scores_all = torch.nn.functional.softmax(cls_logits, dim=-1)
    out = []
    for codes, scores, anc, (h, w) in zip(bbox_regression, scores_all, anchors, image_shapes):
        boxes = tv_decode(torch, codes, anc)
        boxes = torch.stack((boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                             boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)), dim=1)
        kept = []
        for label in range(1, scores.shape[-1]):
            score = scores[:, label]
            keep = score > score_thresh
            score, box = score[keep], boxes[keep]
            score, idxs = score.topk(min(topk_candidates, score.size(0)))
            box = box[idxs]
            for i in tv_nms_loop(torch, box, score, nms_thresh):   # NMS per class
                kept.append((float(score[i]), label, box[i]))
        kept.sort(key=lambda item: -item[0])
        kept = kept[:detections_per_img]
        out.append({"scores": np.array([k[0] for k in kept]),
                    "labels": np.array([k[1] for k in kept]),
                    "boxes": np.stack([k[2].numpy() for k in kept])})
    return out


def test_eval_detections_match_torchvision_postprocess(torch):
    mc.manual_seed(0)
    model = ssd.ssd_small(num_classes=4, topk_candidates=60, detections_per_img=40,
                          score_thresh=0.05, nms_thresh=0.45).double().eval()
    rng = np.random.default_rng(5)
    with mc.no_grad():                       # a trained-looking spread of scores
        for conv in model.head.classification_head.module_list:
            conv.weight.array[...] = rng.standard_normal(tuple(conv.weight.shape)) * 0.3
    sizes = [(64, 64), (50, 90)]
    images = [rng.random((3, h, w)) for h, w in sizes]
    detections = model([mc.tensor(i) for i in images])

    with mc.no_grad():
        image_list, _ = model.transform([mc.tensor(i) for i in images])
        features = list(model.backbone(image_list.tensors).values())
        head = model.head(features)
        anchors = model.anchor_generator(image_list, features)
    want = tv_postprocess(torch, torch.from_numpy(head["bbox_regression"].numpy()),
                          torch.from_numpy(head["cls_logits"].numpy()),
                          [torch.from_numpy(a.numpy()) for a in anchors],
                          image_list.image_sizes, 0.05, 0.45, 40, 60)
    for got, w, im_s, o_s in zip(detections, want, image_list.image_sizes, sizes):
        assert set(got) == {"boxes", "labels", "scores"}
        assert len(w["scores"]) == 40               # truncated at detections_per_img
        np.testing.assert_allclose(got["scores"].numpy(), w["scores"], rtol=1e-12)
        back = torch.from_numpy(w["boxes"])
        ratio_h, ratio_w = [np.float32(s) / np.float32(so) for s, so in zip(o_s, im_s)]
        back = (back * torch.tensor([ratio_w, ratio_h, ratio_w, ratio_h],
                                    dtype=back.dtype)).numpy()
        # equal scores (default boxes reading identical features) may come in either
        # order (torch's topk and sort leave it open): compare within such ties by content
        mine, theirs = _tie_order(got["scores"].numpy(), got["labels"].numpy(),
                                  got["boxes"].numpy()), _tie_order(w["scores"], w["labels"],
                                                                    back)
        assert got["labels"].numpy()[mine].tolist() == w["labels"][theirs].tolist()
        np.testing.assert_allclose(got["boxes"].numpy()[mine], back[theirs], rtol=1e-12,
                                   atol=1e-12)


def _tie_order(scores, labels, boxes):
    """An order by decreasing score that breaks ties by label, then box corners."""
    return np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], labels,
                       -np.round(scores, 12)))


def test_eval_output_format():
    mc.manual_seed(0)
    model = ssd.ssd_small(num_classes=3).eval()
    sizes = [(64, 64), (40, 100), (70, 30)]
    rng = np.random.default_rng(6)
    out = model([mc.tensor(rng.random((3, h, w)).astype(np.float32)) for h, w in sizes])
    assert isinstance(out, list) and len(out) == 3
    for d, (h, w) in zip(out, sizes):
        assert set(d) == {"boxes", "labels", "scores"}
        n = d["scores"].shape[0]
        assert 0 < n <= 100
        assert tuple(d["boxes"].shape) == (n, 4) and d["boxes"].dtype == np.float32
        assert d["labels"].dtype == np.int64 and d["scores"].dtype == np.float32
        scores, boxes, labels = d["scores"].numpy(), d["boxes"].numpy(), d["labels"].numpy()
        assert np.all(np.diff(scores) <= 0) and np.all(scores > model.score_thresh)
        assert set(labels.tolist()) <= {1, 2}
        assert np.all(boxes[:, 0::2] >= 0) and np.all(boxes[:, 0::2] <= w + 1e-3)
        assert np.all(boxes[:, 1::2] >= 0) and np.all(boxes[:, 1::2] <= h + 1e-3)
        assert np.all(boxes[:, 2:] >= boxes[:, :2])
    # a batch tensor gives what the list of its images gives
    x = rng.random((2, 3, 64, 64)).astype(np.float32)
    a, b = model(mc.tensor(x)), model([mc.tensor(x[0]), mc.tensor(x[1])])
    for da, db in zip(a, b):
        np.testing.assert_array_equal(da["boxes"].numpy(), db["boxes"].numpy())


def test_training_and_eval_stay_on_the_device(monkeypatch):
    """On (fake) CuPy: losses, gradients and detections are device arrays, nothing is
    pulled to the host silently, and the numbers are the host's."""
    mc.manual_seed(0)
    model = ssd.ssd_small(num_classes=3, score_thresh=0.2)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    boxes = [np.array([[4, 4, 30, 30], [30, 20, 60, 50]], np.float32),
             np.zeros((0, 4), np.float32)]
    labels = [np.array([1, 2]), np.zeros(0, np.int64)]

    initial = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    def run(wrap):
        model.load_state_dict(initial)        # the same BN statistics for both runs
        model.train()
        losses = model(wrap(x), [{"boxes": wrap(b), "labels": wrap(lab)}
                                 for b, lab in zip(boxes, labels)])
        model.zero_grad()
        sum(losses.values()).backward()
        grad = model.head.classification_head.module_list[0].weight.grad
        model.eval()
        return losses, grad, model(wrap(x))

    # the device runs the reference (im2col); on the host the auto rule would take
    # Winograd for the wider 3x3 layers, whose float32 rounding differs (1e-5 relative)
    with mc.conv_algorithm("im2col"):
        host = run(mc.tensor)
    install(monkeypatch)
    refuse_host_conversion(monkeypatch)
    model.to("cuda")
    losses, grad, detections = run(lambda a: mc.Tensor._wrap(to_device(a)))
    for key, value in losses.items():
        assert isinstance(value.array, FakeDeviceArray)
        np.testing.assert_allclose(to_host(value.array), host[0][key].numpy(),
                                   rtol=1e-5)
    assert isinstance(grad.array, FakeDeviceArray)
    # atol: the host sums dL/dw over the batch in two halves, one per thread, then
    # adds them; in float32 a weight gradient of 1e-2 built from cancelling terms then
    # differs from the reference's order by up to a few 1e-6
    np.testing.assert_allclose(to_host(grad.array), host[1].numpy(), rtol=1e-4,
                               atol=1e-5)
    for got, want in zip(detections, host[2]):
        for key in ("boxes", "labels", "scores"):
            assert isinstance(got[key].array, FakeDeviceArray), key
            np.testing.assert_allclose(to_host(got[key].array), want[key].numpy(),
                                       rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- errors

def test_bad_input_errors_name_ssd():
    model = ssd.ssd_small(num_classes=3)
    image = mc.zeros(3, 64, 64)
    good = {"boxes": mc.tensor([[1.0, 2.0, 10.0, 12.0]]), "labels": mc.tensor([1])}
    model.train()
    with pytest.raises(ValueError, match="SSD: in training mode, targets should be passed"):
        model([image])
    with pytest.raises(ValueError, match="SSD: images is expected to be a list of 3-D"):
        model([mc.zeros(64, 64)], [good])
    with pytest.raises(ValueError, match="SSD: expected images as a list .* got a tensor "
                                         "of shape \\(3, 64, 64\\)"):
        model(image, [good])
    with pytest.raises(ValueError, match="SSD: expected a list of one target dict per image"):
        model([image], [good, good])
    with pytest.raises(ValueError, match="SSD: target 0 must be a dict with 'boxes'"):
        model([image], [{"boxes": good["boxes"]}])
    with pytest.raises(ValueError, match="SSD: expected target boxes to be a tensor of "
                                         "shape \\(K, 4\\), got \\(4,\\)"):
        model([image], [{"boxes": mc.tensor([1.0, 2.0, 3.0, 4.0]), "labels": mc.tensor([1])}])
    with pytest.raises(ValueError, match="SSD: expected integer target labels of shape "
                                         "\\(1,\\)"):
        model([image], [{"boxes": good["boxes"], "labels": mc.tensor([1, 2])}])
    with pytest.raises(ValueError, match="SSD: target labels must be in \\[0, 3\\)"):
        model([image], [{"boxes": good["boxes"], "labels": mc.tensor([3])}])
    with pytest.raises(ValueError, match="SSD: All bounding boxes should have positive "
                                         "height and width. Found invalid box \\[5.0, 2.0, "
                                         "5.0, 12.0\\] for target at index 1"):
        model([image, image], [good, {"boxes": mc.tensor([[5.0, 2.0, 5.0, 12.0]]),
                                      "labels": mc.tensor([1])}])
    model.eval()                      # targets given in eval mode are checked too
    with pytest.raises(ValueError, match="SSD: expected target boxes to be a tensor"):
        model([image], [{"boxes": mc.zeros(1, 5), "labels": mc.tensor([1])}])


def test_bad_model_arguments_name_ssd():
    with pytest.raises(ValueError, match="SSD: num_classes must be a positive integer"):
        ssd.ssd_small(num_classes=0)
    with pytest.raises(ValueError, match="SSD: positive_fraction must be in \\(0, 1\\]"):
        ssd.ssd_small(positive_fraction=0)
    with pytest.raises(ValueError, match="ssd300_vgg16: the size of the model is fixed"):
        ssd.ssd300_vgg16(size=(512, 512))
    backbone = ssd.SSDFeatureExtractorSmall()
    with pytest.raises(ValueError, match="SSD: the backbone gives 4 feature maps but the "
                                         "anchor generator has aspect ratios for 2"):
        ssd.SSD(backbone, DefaultBoxGenerator([[2], [2]]), (64, 64), 3)


def test_backbone_without_out_channels_is_probed():
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 5, 3, stride=2, padding=1)
            self.b = nn.Conv2d(5, 7, 3, stride=2, padding=1)

        def forward(self, x):
            x = self.a(x)
            return [x, self.b(x)]

    model = ssd.SSD(Plain(), DefaultBoxGenerator([[2], [2, 3]]), (32, 32), 3)
    assert [m.in_channels for m in model.head.regression_head.module_list] == [5, 7]
    assert [m.out_channels for m in model.head.classification_head.module_list] == [12, 18]
