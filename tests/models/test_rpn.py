"""models.detection.rpn and generalized_rcnn against torch twins, float64: RPNHead is rpn.py's
own source run on torch.nn; RegionProposalNetwork's forward (proposal filtering, anchor
matching, losses) is compared with a transcription of torchvision's rpn.py on torch tensors
below (its box ops, Matcher, BoxCoder and fixed-draw sampler from tests/rcnn_twin.py), on
small images with the same anchors, weights and sampler draws: proposals and scores in both
modes, the two losses, and their gradients with respect to the head's parameters and the
feature maps. Also the old key ``conv.weight``, the initialisation, the sampler's
reproducibility, the fake-CuPy device path, GeneralizedRCNN's plumbing with a stub RoI
head, and bad input."""
import collections

import numpy as np
import pytest

import minicnn as mc
from minicnn.models.detection import rpn as rpn_module
from minicnn.models.detection.rpn import RegionProposalNetwork, RPNHead
from minicnn.ops import AnchorGenerator, ImageList, misc

from model_twin import copy_weights, ops_twin, torch_twin
from rcnn_twin import FixedSampler, torch_ops


def head_twin(torch):
    twin = torch_twin(rpn_module, torch)
    t_misc = ops_twin(misc, torch, ones=torch.ones, zeros=torch.zeros)
    twin.RPNHead.__init__.__globals__["Conv2dNormActivation"] = t_misc.Conv2dNormActivation
    return twin


# --------------------------------------------- torchvision's pieces, transcribed on torch

def tv_batched_nms(torch, ops, boxes, scores, idxs, threshold):
    """torchvision's coordinate trick (its path for small inputs; rcnn_twin's batched_nms
    is the other one), on rcnn_twin's nms."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return ops["nms"](boxes + offsets[:, None], scores, threshold)


def tv_rpn(torch, head, anchors, image_sizes, features, cfg, training, targets=None,
           sampler=None):
    """torchvision's RegionProposalNetwork.forward on torch tensors (anchors given), with
    rcnn_twin's torch box ops."""
    ops = torch_ops(torch)
    coder = ops["BoxCoder"]((1.0, 1.0, 1.0, 1.0))
    objectness, pred_bbox_deltas = head(features)
    num_images = len(anchors)
    num_anchors_per_level = [o[0].numel() for o in objectness]
    flat_cls, flat_reg = [], []
    for cls, reg in zip(objectness, pred_bbox_deltas):
        N, A, H, W = cls.shape
        flat_cls.append(cls.view(N, -1, 1, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, 1))
        flat_reg.append(reg.view(N, -1, 4, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, 4))
    objectness = torch.cat(flat_cls, dim=1).flatten(0, -2)
    pred_bbox_deltas = torch.cat(flat_reg, dim=1).reshape(-1, 4)
    proposals = coder.decode(pred_bbox_deltas.detach(), anchors)
    proposals = proposals.view(num_images, -1, 4)

    mode = "training" if training else "testing"
    ob = objectness.detach().reshape(num_images, -1)
    levels = torch.cat([torch.full((n,), i, dtype=torch.int64)
                        for i, n in enumerate(num_anchors_per_level)]).reshape(1, -1)
    levels = levels.expand_as(ob)
    r, offset = [], 0
    for o in ob.split(num_anchors_per_level, 1):
        k = min(cfg["pre_nms_top_n"][mode], o.shape[1])
        r.append(o.topk(k, dim=1).indices + offset)
        offset += o.shape[1]
    top_n_idx = torch.cat(r, dim=1)
    batch_idx = torch.arange(num_images)[:, None]
    ob, levels, proposals = ob[batch_idx, top_n_idx], levels[batch_idx, top_n_idx], \
        proposals[batch_idx, top_n_idx]
    prob = torch.sigmoid(ob)
    final_boxes, final_scores = [], []
    for boxes, scores, lvl, (h, w) in zip(proposals, prob, levels, image_sizes):
        boxes = ops["clip_boxes_to_image"](boxes, (h, w))
        keep = ops["remove_small_boxes"](boxes, 1e-3)
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
        keep = torch.where(scores >= cfg["score_thresh"])[0]
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
        keep = tv_batched_nms(torch, ops, boxes, scores, lvl, cfg["nms_thresh"])
        keep = keep[:cfg["post_nms_top_n"][mode]]
        final_boxes.append(boxes[keep])
        final_scores.append(scores[keep])
    if not training:
        return final_boxes, final_scores, {}

    matcher = ops["Matcher"](cfg["fg"], cfg["bg"], allow_low_quality_matches=True)
    labels, matched = [], []
    for anchors_per_image, target in zip(anchors, targets):
        gt = target["boxes"]
        if gt.numel() == 0:
            matched.append(torch.zeros(anchors_per_image.shape, dtype=torch.float32))
            labels.append(torch.zeros((anchors_per_image.shape[0],), dtype=torch.float32))
            continue
        idx = matcher(ops["box_iou"](gt, anchors_per_image))
        matched.append(gt[idx.clamp(min=0)])
        lab = (idx >= 0).to(dtype=torch.float32)
        lab[idx == -1] = 0.0
        lab[idx == -2] = -1.0
        labels.append(lab)
    regression_targets = torch.cat(coder.encode(matched, anchors))
    pos, neg = sampler(labels)
    pos = torch.where(torch.cat(pos, dim=0))[0]
    neg = torch.where(torch.cat(neg, dim=0))[0]
    sampled = torch.cat([pos, neg], dim=0)
    objectness = objectness.flatten()
    labels = torch.cat(labels, dim=0)
    box_loss = torch.nn.functional.smooth_l1_loss(
        pred_bbox_deltas[pos], regression_targets[pos], beta=1 / 9, reduction="sum") \
        / sampled.numel()
    objectness_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        objectness[sampled], labels[sampled].to(objectness.dtype))
    return final_boxes, final_scores, {"loss_objectness": objectness_loss,
                                       "loss_rpn_box_reg": box_loss}


# ---------------------------------------------------------------------------- set-up

CFG = {"fg": 0.7, "bg": 0.3, "batch": 24, "fraction": 0.5, "nms_thresh": 0.4,
       "pre_nms_top_n": {"training": 60, "testing": 40},
       "post_nms_top_n": {"training": 30, "testing": 15}, "score_thresh": 0.0}
SIZES, RATIOS = ((12,), (24,)), ((0.5, 1.0, 2.0),) * 2
IMAGE_SIZES = [(40, 44), (36, 48)]                   # padded batch 40 x 48
TARGETS = [np.array([[3.0, 4.0, 20.0, 30.0], [18.0, 10.0, 40.0, 26.0], [30.0, 2.0, 43.0, 12.5]]),
           np.zeros((0, 4))]


def _setup(torch, cfg=CFG, channels=4, seed=0):
    """Twin and minicnn RPNs with the same head weights, two feature levels, anchors."""
    twin = head_twin(torch)
    torch.manual_seed(seed)
    t_head = twin.RPNHead(channels, 3).double()
    with torch.no_grad():          # larger than N(0, 0.01) so that proposals move around
        for name, p in t_head.named_parameters():
            p.normal_(0, 0.4 if "cls" in name or "conv" in name else 0.15)
    m_head = RPNHead(channels, 3).double()
    copy_weights(t_head, m_head)
    rpn = RegionProposalNetwork(
        AnchorGenerator(SIZES, RATIOS), m_head, cfg["fg"], cfg["bg"], cfg["batch"],
        cfg["fraction"], cfg["pre_nms_top_n"], cfg["post_nms_top_n"], cfg["nms_thresh"],
        score_thresh=cfg["score_thresh"])
    rng = np.random.default_rng(seed + 1)
    feats = [rng.standard_normal((2, channels, 10, 12)), rng.standard_normal((2, channels, 5, 6))]
    images = ImageList(mc.zeros(2, 3, 40, 48, dtype=mc.float64), IMAGE_SIZES)
    m_feats = [mc.tensor(f, requires_grad=True) for f in feats]
    anchors = rpn.anchor_generator(images, m_feats)
    t_anchors = [torch.from_numpy(a.numpy()) for a in anchors]
    t_feats = [torch.from_numpy(f).requires_grad_(True) for f in feats]
    return t_head, rpn, images, m_feats, t_feats, t_anchors


def _close(m, t, what, tol=1e-10):
    t = t.detach().numpy()
    assert tuple(m.shape) == tuple(t.shape), (what, m.shape, t.shape)
    np.testing.assert_allclose(m.numpy(), t, rtol=tol, atol=tol, err_msg=what)


# ------------------------------------------------------------------------------- tests

def test_head_matches_its_twin_keys_init_and_old_keys(torch):
    twin = head_twin(torch)
    torch.manual_seed(0)
    tm = twin.RPNHead(6, 3, conv_depth=2).double()
    mm = RPNHead(6, 3, conv_depth=2).double()
    assert list(mm.state_dict()) == ["conv.0.0.weight", "conv.0.0.bias", "conv.1.0.weight",
                                     "conv.1.0.bias", "cls_logits.weight", "cls_logits.bias",
                                     "bbox_pred.weight", "bbox_pred.bias"]
    copy_weights(tm, mm)
    x = [np.random.default_rng(i).standard_normal((2, 6, 7 - i, 5)) for i in range(2)]
    tl, tr = tm([torch.from_numpy(v) for v in x])
    ml, mr = mm([mc.tensor(v) for v in x])
    for a, b, what in zip(ml + mr, tl + tr, ["logits0", "logits1", "reg0", "reg1"]):
        _close(a, b, what)
    assert tuple(ml[1].shape) == (2, 3, 6, 5) and tuple(mr[0].shape) == (2, 12, 7, 5)
    # N(0, 0.01²) weights, zero biases
    big = RPNHead(256, 3)
    w = big.conv[0][0].weight.numpy()
    assert abs(w.std() - 0.01) < 2e-4 and abs(w.mean()) < 2e-4
    assert not any(p.numpy().any() for n, p in big.named_parameters() if n.endswith("bias"))
    # the released checkpoints' keys (version 1): conv.weight / conv.bias
    old = {k.replace("conv.0.0.", "conv."): v.numpy() + 1 for k, v in
           RPNHead(6, 3).double().state_dict().items()}
    assert "conv.weight" in old
    fresh = RPNHead(6, 3).double()
    fresh.load_state_dict(old)
    np.testing.assert_array_equal(fresh.conv[0][0].weight.numpy(), old["conv.weight"])
    fresh.load_state_dict(RPNHead(6, 3).double().state_dict())          # new keys too


@pytest.mark.parametrize("score_thresh", [0.0, 0.87])
def test_eval_proposals_match_torchvision(torch, score_thresh):
    cfg = dict(CFG, score_thresh=score_thresh)
    t_head, rpn, images, m_feats, t_feats, t_anchors = _setup(torch, cfg)
    rpn.eval()
    boxes, losses = rpn(images, collections.OrderedDict(zip("ab", m_feats)))
    t_boxes, t_scores, _ = tv_rpn(torch, t_head, t_anchors, IMAGE_SIZES, t_feats, cfg, False)
    assert losses == {}
    _, m_scores = _filtered(rpn, images, m_feats)
    for i in range(2):
        assert 0 < boxes[i].shape[0] <= 15
        assert not boxes[i].requires_grad
        _close(boxes[i], t_boxes[i], f"boxes {i}")
        _close(m_scores[i], t_scores[i], f"scores {i}")
        h, w = IMAGE_SIZES[i]
        b = boxes[i].numpy()
        assert (b[:, 0::2] <= w).all() and (b[:, 1::2] <= h).all() and (b >= 0).all()
        if score_thresh:
            assert (m_scores[i].numpy() >= score_thresh).all()
    if score_thresh:
        assert min(b.shape[0] for b in boxes) < 15             # the threshold removed some


def _filtered(rpn, images, m_feats):
    """filter_proposals' scores (forward returns boxes only)."""
    logits, deltas = rpn.head(m_feats)
    counts = [int(o.shape[1] * o.shape[2] * o.shape[3]) for o in logits]
    ob, reg = rpn_module.concat_box_prediction_layers(logits, deltas)
    anchors = rpn.anchor_generator(images, m_feats)
    proposals = rpn.box_coder.decode(reg.detach(), anchors).reshape(2, -1, 4)
    return rpn.filter_proposals(proposals, ob, images.image_sizes, counts)


def test_training_proposals_losses_and_gradients_match_torchvision(torch):
    t_head, rpn, images, m_feats, t_feats, t_anchors = _setup(torch)
    rpn.fg_bg_sampler = FixedSampler(CFG["batch"], CFG["fraction"], wrap=lambda a: a)
    rpn.train()
    targets = [{"boxes": mc.tensor(b)} for b in TARGETS]
    boxes, losses = rpn(images, collections.OrderedDict(zip("ab", m_feats)), targets)
    t_targets = [{"boxes": torch.from_numpy(b)} for b in TARGETS]
    t_boxes, _, t_losses = tv_rpn(torch, t_head, t_anchors, IMAGE_SIZES, t_feats, CFG, True,
                                  t_targets,
                                  FixedSampler(CFG["batch"], CFG["fraction"], torch.from_numpy))
    for i in range(2):
        assert boxes[i].shape[0] <= 30
        _close(boxes[i], t_boxes[i], f"boxes {i}")
    assert list(losses) == ["loss_objectness", "loss_rpn_box_reg"]
    for k in losses:
        assert losses[k].dtype == np.float64
        _close(losses[k], t_losses[k], k, tol=1e-12)
    assert float(losses["loss_rpn_box_reg"].item()) > 0
    # gradients of both losses (weighted) wrt the head and the feature maps
    (losses["loss_objectness"] + 2.0 * losses["loss_rpn_box_reg"]).backward()
    (t_losses["loss_objectness"] + 2.0 * t_losses["loss_rpn_box_reg"]).backward()
    t_params = dict(t_head.named_parameters())
    for name, p in rpn.head.named_parameters():
        assert p.grad is not None and np.abs(p.grad.numpy()).max() > 0, name
        _close(p.grad, t_params[name].grad, f"gradient of {name}", tol=1e-10)
    for i in range(2):
        _close(m_feats[i].grad, t_feats[i].grad, f"gradient of feature {i}", tol=1e-10)


def test_targets_labels_and_sampler_counts():
    """Labels follow the thresholds and low-quality rule; the real sampler draws
    batch_size_per_image anchors with at most half positives, reproducibly."""
    rpn = RegionProposalNetwork(AnchorGenerator(SIZES, RATIOS), RPNHead(4, 3), 0.7, 0.3, 24,
                                0.5, CFG["pre_nms_top_n"], CFG["post_nms_top_n"], 0.7)
    images = ImageList(mc.zeros(2, 3, 40, 48), IMAGE_SIZES)
    feats = [mc.zeros(2, 4, 10, 12), mc.zeros(2, 4, 5, 6)]
    anchors = rpn.anchor_generator(images, feats)
    targets = [{"boxes": mc.tensor(b, dtype=mc.float32)} for b in TARGETS]
    labels, matched = rpn.assign_targets_to_anchors(anchors, targets)
    lab = labels[0].numpy()
    iou = mc.ops.box_iou(TARGETS[0], anchors[0].numpy().astype(np.float64))
    best = iou.max(axis=0)
    assert (lab[best >= 0.7] == 1).all() and (lab[best < 0.3] != -1).all()
    assert (lab[(best >= 0.3) & (best < 0.7)] != 0).all()
    for g in range(3):          # every gt's best anchors are positive (low-quality matches)
        assert (lab[iou[g] == iou[g].max()] == 1).all()
    assert not labels[1].numpy().any() and not matched[1].numpy().any()
    draws = []
    for _ in range(2):
        mc.manual_seed(3)
        pos, neg = rpn.fg_bg_sampler([labels[0].numpy(), labels[1].numpy()])
        draws.append(np.concatenate(pos + neg))
        assert pos[0].sum() == min(12, (lab == 1).sum()) and pos[1].sum() == 0
        assert pos[0].sum() + neg[0].sum() == 24 and neg[1].sum() == 24
    np.testing.assert_array_equal(draws[0], draws[1])


def test_bad_input_errors_name_the_rpn():
    head = RPNHead(4, 3)
    ag = AnchorGenerator(SIZES, RATIOS)
    with pytest.raises(ValueError, match="RegionProposalNetwork: pre_nms_top_n must be a dict"):
        RegionProposalNetwork(ag, head, 0.7, 0.3, 24, 0.5, 100, CFG["post_nms_top_n"], 0.7)
    with pytest.raises(ValueError, match="post_nms_top_n must be a dict"):
        RegionProposalNetwork(ag, head, 0.7, 0.3, 24, 0.5, CFG["pre_nms_top_n"],
                              {"training": 10}, 0.7)
    with pytest.raises(ValueError, match="low_threshold must be <= high_threshold"):
        RegionProposalNetwork(ag, head, 0.3, 0.7, 24, 0.5, CFG["pre_nms_top_n"],
                              CFG["post_nms_top_n"], 0.7)
    rpn = RegionProposalNetwork(ag, head, 0.7, 0.3, 24, 0.5, CFG["pre_nms_top_n"],
                                CFG["post_nms_top_n"], 0.7)
    images = ImageList(mc.zeros(2, 3, 40, 48), IMAGE_SIZES)
    feats = collections.OrderedDict(a=mc.zeros(2, 4, 10, 12), b=mc.zeros(2, 4, 5, 6))
    with pytest.raises(ValueError, match="RegionProposalNetwork: targets should not be None"):
        rpn.train()(images, feats)
    with pytest.raises(ValueError, match="RegionProposalNetwork: 1 targets for 2 images"):
        rpn.train()(images, feats, [{"boxes": mc.zeros(0, 4)}])
    with pytest.raises(TypeError, match="RegionProposalNetwork: images must be an ImageList"):
        rpn.eval()(mc.zeros(2, 3, 40, 48), feats)
    with pytest.raises(TypeError, match="RegionProposalNetwork: features must be an ordered"):
        rpn.eval()(images, list(feats.values()))


# ------------------------------------------------------------------ GeneralizedRCNN

class StubHeads(mc.nn.Module):
    """RoI heads stand-in: the first three proposals as detections, a fixed loss; records
    what it was given."""

    def forward(self, features, proposals, image_sizes, targets=None):
        self.seen = (list(features), proposals, image_sizes, targets)
        detections = [{"boxes": p[:3], "labels": mc.tensor(np.arange(3), dtype=mc.int64)[
            :p.shape[0]], "scores": mc.ones(min(3, p.shape[0]))} for p in proposals]
        losses = {}
        if self.training:
            losses = {"loss_classifier": features["0"].mean() * 0 + 1.5,
                      "loss_box_reg": features["0"].mean() * 0 + 0.5}
        return detections, losses


def _rcnn():
    from minicnn.models.detection.generalized_rcnn import GeneralizedRCNN
    from minicnn.models.detection.transform import GeneralizedRCNNTransform
    mc.manual_seed(0)
    backbone = mc.nn.Conv2d(3, 4, 3, stride=4, padding=1)
    backbone.out_channels = 4
    rpn = RegionProposalNetwork(AnchorGenerator(((16,),), ((0.5, 1.0, 2.0),)), RPNHead(4, 3),
                                0.7, 0.3, 16, 0.5, {"training": 50, "testing": 20},
                                {"training": 20, "testing": 10}, 0.7)
    transform = GeneralizedRCNNTransform(32, 64, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    return GeneralizedRCNN(backbone, rpn, StubHeads(), transform)


def _images():
    rng = np.random.default_rng(0)
    return [mc.tensor(rng.random((3, 24, 30)), dtype=mc.float32),
            mc.tensor(rng.random((3, 20, 26)), dtype=mc.float32)]


def test_generalized_rcnn_train_merges_losses_and_eval_maps_boxes_back():
    model = _rcnn()
    images = _images()
    targets = [{"boxes": mc.tensor([[2.0, 3.0, 12.0, 20.0]]), "labels": mc.tensor([1])},
               {"boxes": mc.zeros(0, 4), "labels": mc.zeros(0, dtype=mc.int64)}]
    losses = model.train()(images, targets)
    assert list(losses) == ["loss_classifier", "loss_box_reg", "loss_objectness",
                            "loss_rpn_box_reg"]
    sum(losses.values()).backward()
    assert model.rpn.head.cls_logits.weight.grad is not None
    feature_names, _, sizes, seen_targets = model.roi_heads.seen
    assert feature_names == ["0"] and sizes == [(32, 40), (32, 41)]
    # the targets reached the heads resized (x by 40/30, y by 32/24), the caller's unchanged
    np.testing.assert_allclose(seen_targets[0]["boxes"].numpy(),
                               [[2 * 40 / 30, 3 * 32 / 24, 12 * 40 / 30, 20 * 32 / 24]],
                               rtol=1e-6)
    assert targets[0]["boxes"].numpy()[0, 2] == 12.0

    detections = model.eval()(images)
    assert isinstance(detections, list) and len(detections) == 2
    _, proposals, sizes, _ = model.roi_heads.seen
    for det, prop, (h, w), img in zip(detections, proposals, sizes, images):
        oh, ow = img.shape[-2:]
        ratio = np.array([np.float32(ow) / np.float32(w), np.float32(oh) / np.float32(h)] * 2,
                         dtype=np.float32)
        np.testing.assert_allclose(det["boxes"].numpy(), prop[:3].numpy() * ratio, rtol=1e-6)
        assert list(det) == ["boxes", "labels", "scores"]


def test_generalized_rcnn_bad_targets():
    model = _rcnn().train()
    images = _images()
    good = {"boxes": mc.tensor([[2.0, 3.0, 12.0, 20.0]]), "labels": mc.tensor([1])}
    cases = [
        (None, ValueError, "GeneralizedRCNN: targets should not be None in training mode"),
        ([good, {"labels": mc.tensor([1])}], ValueError, r"target 1 must be a dict with 'boxes'"),
        ([good, {"boxes": [[1.0, 2.0, 3.0, 4.0]]}], TypeError,
         "expected target boxes to be a tensor of shape"),
        ([good, {"boxes": mc.zeros(2, 5)}], ValueError, r"shape \(K, 4\), got shape \(2, 5\)"),
        ([good, {"boxes": mc.tensor([[1, 2, 3, 4]])}], TypeError,
         "target boxes must be of a floating-point type, got dtype int64 for target 1"),
        ([good, {"boxes": mc.tensor([[1.0, 2.0, 3.0, 4.0]]), "labels": mc.tensor([1, 2])}],
         ValueError, r"target labels must be \(1,\) integers"),
        ([good, {"boxes": mc.tensor([[5.0, 2.0, 5.0, 4.0]])}], ValueError,
         r"positive height and width; found invalid box \[7.88.*for target at index 1"),
    ]
    for targets, error, message in cases:
        with pytest.raises(error, match=message):
            model(images, targets)
    with pytest.raises(ValueError, match=r"GeneralizedRCNN: expected each image to be a \(C, H"):
        model.eval()([mc.zeros(24, 30)])


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_rpn_training_and_eval_stay_on_the_device(monkeypatch):
    """On (fake) CuPy: proposals, losses and the head's gradients are device arrays,
    nothing reaches the host silently, and the numbers are the host's. (The background
    image's zero targets encode to log(0) = -inf, unused, as in torch; the fake's errstate
    does not hide that warning.)"""
    from fake_cupy import FakeDeviceArray, install, refuse_host_conversion, to_device, to_host
    mc.manual_seed(0)
    rpn = RegionProposalNetwork(AnchorGenerator(SIZES, RATIOS), RPNHead(4, 3), 0.7, 0.3, 24,
                                0.5, CFG["pre_nms_top_n"], CFG["post_nms_top_n"], 0.5)
    with mc.no_grad():
        for p in rpn.head.parameters():
            p.array[...] = np.random.default_rng(p.numel()).normal(0, 0.3, p.shape)
    rng = np.random.default_rng(3)
    feats = [rng.standard_normal((2, 4, 10, 12)).astype(np.float32),
             rng.standard_normal((2, 4, 5, 6)).astype(np.float32)]
    boxes = [b.astype(np.float32) for b in TARGETS]

    def run(wrap):
        images = ImageList(wrap(np.zeros((2, 3, 40, 48), np.float32)), IMAGE_SIZES)
        maps = collections.OrderedDict(zip("ab", (wrap(f) for f in feats)))
        mc.manual_seed(5)                             # the sampler's draws
        rpn.train()
        proposals, losses = rpn(images, maps, [{"boxes": wrap(b)} for b in boxes])
        rpn.zero_grad()
        sum(losses.values()).backward()
        rpn.eval()
        return proposals, losses, rpn.head.cls_logits.weight.grad, rpn(images, maps)[0]

    host = run(mc.tensor)
    install(monkeypatch)
    refuse_host_conversion(monkeypatch)
    rpn.to("cuda")
    device = run(lambda a: mc.Tensor._wrap(to_device(a)))
    for got, want in zip(device[0] + device[3], host[0] + host[3]):
        assert isinstance(got.array, FakeDeviceArray)
        np.testing.assert_allclose(to_host(got.array), want.numpy(), rtol=1e-5, atol=1e-4)
    for key, value in device[1].items():
        assert isinstance(value.array, FakeDeviceArray), key
        np.testing.assert_allclose(to_host(value.array), host[1][key].numpy(), rtol=1e-5)
    assert isinstance(device[2].array, FakeDeviceArray)
    np.testing.assert_allclose(to_host(device[2].array), host[2].numpy(), rtol=1e-4,
                               atol=1e-7)
