"""RoIHeads and the Fast/Mask R-CNN functions (minicnn/models/detection/roi_heads.py)
against their torch twin: the same source run on torch, with torch versions of the box
operations (tests/rcnn_twin.py, written from torchvision's) in place of minicnn.ops'.
float64: the training losses (classification, box regression, mask) and the gradients of
every head parameter and of the feature maps, with the sampler's draws fixed on both
sides; eval detections and masks; paste_masks_in_image on a hand-worked case; the
vectorised roi_align of the twin against minicnn's; errors naming RoIHeads."""
import numpy as np
import pytest

import minicnn as mc
from minicnn import nn as mnn
from minicnn import ops
from minicnn.models.detection import roi_heads

from model_twin import torch_twin
from rcnn_twin import FixedSampler, one_torch_thread, torch_ops  # noqa: F401 (a fixture)

C, NUM_CLASSES = 4, 5
SHAPES = [(128, 128), (112, 128)]                  # image sizes inside the 128x128 batch


# ------------------------------------------------------------------ building both sides

def twin_module(torch):
    twin = torch_twin(roi_heads, torch)
    torch_versions = torch_ops(torch)
    twin.RoIHeads.__init__.__globals__.update(torch_versions)
    vars(twin).update(torch_versions)
    return twin


def small_heads(nn, rep=24):
    """A two-layer box head, a predictor and a small mask head/predictor, on either nn."""

    class BoxHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc6 = nn.Linear(C * 7 * 7, rep)
            self.fc7 = nn.Linear(rep, rep)

        def forward(self, x):
            return self.fc7(self.fc6(x.flatten(start_dim=1)).relu()).relu()

    class Predictor(nn.Module):
        def __init__(self):
            super().__init__()
            self.cls_score = nn.Linear(rep, NUM_CLASSES)
            self.bbox_pred = nn.Linear(rep, NUM_CLASSES * 4)

        def forward(self, x):
            return self.cls_score(x), self.bbox_pred(x)

    mask_head = nn.Sequential(nn.Conv2d(C, 6, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
    mask_predictor = nn.Sequential(nn.ConvTranspose2d(6, 6, 2, 2), nn.ReLU(),
                                   nn.Conv2d(6, NUM_CLASSES, 1))
    return BoxHead(), Predictor(), mask_head, mask_predictor


def build(module, nn, pool_cls, wrap, masks=True, batch=48, **kwargs):
    box_head, predictor, mask_head, mask_predictor = small_heads(nn)
    pool = dict(canonical_scale=56, canonical_level=3)    # boxes of 10-90 px on both maps
    extra = {}
    if masks:
        extra = dict(mask_roi_pool=pool_cls(["0", "1"], 14, 2, **pool),
                     mask_head=mask_head, mask_predictor=mask_predictor)
    args = dict(fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=batch,
                positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05,
                nms_thresh=0.5, detections_per_img=100)
    args.update(kwargs)
    heads = module.RoIHeads(pool_cls(["0", "1"], 7, 2, **pool), box_head, predictor,
                            **args, **extra).double()
    heads.fg_bg_sampler = FixedSampler(batch, 0.25, wrap)
    return heads


def pair(torch, masks=True, **kwargs):
    twin = twin_module(torch)
    torch.manual_seed(0)
    tm = build(twin, torch.nn, twin.MultiScaleRoIAlign, torch.from_numpy, masks, **kwargs)
    with torch.no_grad():                        # larger weights: confident, varied scores
        for p in tm.parameters():
            p.mul_(3.0)
    mm = build(roi_heads, mnn, ops.MultiScaleRoIAlign, mc.tensor, masks, **kwargs)
    mm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    assert list(mm.state_dict()) == list(tm.state_dict())
    return tm, mm


def inputs(seed=0, proposals_per_image=40):
    """Features of a 128x128 batch at strides 4 and 8, proposals (some near the gt boxes),
    gt boxes, labels and masks per image."""
    rng = np.random.default_rng(seed)
    feats = {"0": rng.standard_normal((2, C, 32, 32)), "1": rng.standard_normal((2, C, 16, 16))}
    proposals, targets = [], []
    for h, w in SHAPES:
        gt = []
        for _ in range(3):
            bw, bh = rng.uniform(12, 70, 2)
            x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            gt.append([x1, y1, x1 + bw, y1 + bh])
        gt = np.array(gt)
        near = np.repeat(gt, 6, 0) + rng.normal(0, 4, (18, 4))
        free = []
        for _ in range(proposals_per_image - len(near)):
            bw, bh = rng.uniform(8, 90, 2)
            x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            free.append([x1, y1, x1 + bw, y1 + bh])
        boxes = np.concatenate([near, np.array(free)])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        proposals.append(np.clip(boxes, 0, [w, h, w, h]))
        masks = np.zeros((3, h, w), np.uint8)
        for k, (x1, y1, x2, y2) in enumerate(gt):       # an ellipse in each gt box
            yy, xx = np.mgrid[:h, :w] + 0.5
            cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            masks[k] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        targets.append({"boxes": gt, "labels": rng.integers(1, NUM_CLASSES, 3),
                        "masks": masks})
    return feats, proposals, targets


def on_side(wrap, feats, proposals, targets, grad=False):
    f = {k: wrap(v) for k, v in feats.items()}
    if grad:
        for v in f.values():
            v.requires_grad_(True)
    p = [wrap(b) for b in proposals]
    t = [{k: wrap(v) for k, v in d.items()} for d in targets]
    return f, p, t


def train_both(torch, tm, mm, feats, proposals, targets):
    """Both sides in training mode on the same inputs; the losses compared. Returns the
    feature maps (with their gradients to come), the caller's inputs and the losses."""
    tf, tp, tt = on_side(torch.from_numpy, feats, proposals, targets, grad=True)
    mf, mp, mt = on_side(mc.tensor, feats, proposals, targets, grad=True)
    tm.train()
    mm.train()
    t_result, t_losses = tm(tf, tp, SHAPES, tt)
    m_result, m_losses = mm(mf, mp, SHAPES, mt)
    assert t_result == [] and m_result == []
    assert list(m_losses) == list(t_losses)
    for k in t_losses:
        np.testing.assert_allclose(m_losses[k].item(), t_losses[k].item(), rtol=1e-10,
                                   err_msg=k)
    return tf, mf, mp, mt, t_losses, m_losses


# ------------------------------------------------------------------------- tests

def test_twin_roi_align_matches_minicnn(torch):
    """The twin's vectorised roi_align (boxes partly outside, adaptive and fixed sampling)
    against minicnn's, itself checked statement by statement in tests/ops/test_roi.py."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 11))
    rois = np.array([[0, -3, -2, 5.5, 4], [1, 2.2, 1.1, 10.9, 8.8], [1, 7, 6, 14, 12],
                     [0, 3, 3, 3.2, 3.1], [1, 0.5, 0.5, 30, 2]])
    roi_align = torch_ops(torch)["roi_align"]
    for sampling in (-1, 2):
        for scale in (1.0, 0.5):
            want = ops.roi_align(mc.tensor(x), mc.tensor(rois), (3, 4), scale, sampling)
            got = roi_align(torch.from_numpy(x), torch.from_numpy(rois), (3, 4), scale,
                            sampling)
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


def test_training_losses_and_gradients_match_the_twin(torch):
    tm, mm = pair(torch)
    tf, mf, mp, mt, t_losses, m_losses = train_both(torch, tm, mm, *inputs())
    assert list(m_losses) == ["loss_classifier", "loss_box_reg", "loss_mask"]
    assert t_losses["loss_box_reg"].item() > 0 and t_losses["loss_mask"].item() > 0
    weights = {"loss_classifier": 0.7, "loss_box_reg": 1.3, "loss_mask": 0.9}
    sum(w * t_losses[k] for k, w in weights.items()).backward()
    sum(w * m_losses[k] for k, w in weights.items()).backward()
    mparams = dict(mm.named_parameters())
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(mparams[name].grad.numpy(), p.grad.numpy(), rtol=1e-8,
                                   atol=1e-10 * max(1e-3, p.grad.abs().max().item()),
                                   err_msg=name)
    for k in tf:
        np.testing.assert_allclose(mf[k].grad.numpy(), tf[k].grad.numpy(), rtol=1e-8,
                                   atol=1e-12, err_msg=f"features {k}")
    # the caller's targets and proposals are left alone
    assert len(mp[0]) == 40 and mt[0]["boxes"].shape == (3, 4)


def test_select_training_samples_matches_the_twin(torch):
    """Proposals (with the gt boxes appended), matches, labels (0 below IoU 0.5) and
    regression targets (weights 10, 10, 5, 5) of the drawn samples."""
    tm, mm = pair(torch, masks=False)
    feats, proposals, targets = inputs(seed=2)
    _, tp, tt = on_side(torch.from_numpy, feats, proposals, targets)
    _, mp, mt = on_side(mc.tensor, feats, proposals, targets)
    want = tm.select_training_samples(tp, tt)
    got = mm.select_training_samples(mp, mt)
    for t_list, m_list in zip(want, got):
        for t, m in zip(t_list, m_list):
            np.testing.assert_allclose(m.numpy(), t.numpy(), rtol=1e-12, atol=1e-12)
    labels = got[2]
    # 12 positives per image (48 x 0.25; more are available), then every negative
    all_props = mm.add_gt_proposals(mp, [t["boxes"] for t in mt])
    _, before = mm.assign_targets_to_proposals(all_props, [t["boxes"] for t in mt],
                                               [t["labels"] for t in mt])
    for lab, every in zip(labels, before):
        lab, every = lab.numpy(), every.numpy()
        assert (every > 0).sum() > 12 and (lab > 0).sum() == 12
        assert (lab == 0).sum() == min(36, (every == 0).sum())


def test_background_image_and_no_positives(torch):
    """An image without gt boxes: every proposal background, loss_box_reg 0 and the mask
    loss a zero in the graph, as torchvision's."""
    tm, mm = pair(torch)
    feats, proposals, targets = inputs(seed=3)
    for t in targets:
        t["boxes"] = np.zeros((0, 4))
        t["labels"] = np.zeros((0,), np.int64)
        t["masks"] = np.zeros((0,) + t["masks"].shape[1:], np.uint8)
    _, _, _, _, t_losses, m_losses = train_both(torch, tm, mm, feats, proposals, targets)
    assert m_losses["loss_box_reg"].item() == 0 and m_losses["loss_mask"].item() == 0
    sum(m_losses.values()).backward()
    assert mm.mask_predictor[2].weight.grad is not None


def test_eval_detections_and_masks_match_the_twin(torch):
    tm, mm = pair(torch)
    feats, proposals, _ = inputs(seed=4, proposals_per_image=60)
    tf, tp, _ = on_side(torch.from_numpy, feats, proposals, [])
    mf, mp, _ = on_side(mc.tensor, feats, proposals, [])
    tm.eval()
    mm.eval()
    with torch.no_grad():
        want, t_losses = tm(tf, tp, SHAPES)
    with mc.no_grad():
        got, m_losses = mm(mf, mp, SHAPES)
    assert t_losses == {} and m_losses == {}
    assert len(got) == 2
    total = 0
    for t, m in zip(want, got):
        assert list(m) == ["boxes", "labels", "scores", "masks"]
        n = len(t["scores"])
        total += n
        assert m["labels"].dtype == np.int64 and m["masks"].shape == (n, 1, 28, 28)
        for k in t:
            np.testing.assert_allclose(m[k].numpy(), t[k].numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=k)
        scores = m["scores"].numpy()
        assert (np.diff(scores) <= 0).all() and (scores > 0.05).all()
        assert (m["labels"].numpy() >= 1).all()
    assert total > 20                             # enough detections to compare


def test_detections_per_img_and_score_thresh(torch):
    tm, mm = pair(torch, masks=False, detections_per_img=7, score_thresh=0.3)
    feats, proposals, _ = inputs(seed=5, proposals_per_image=60)
    mm.eval()
    tm.eval()
    with mc.no_grad():
        got, _ = mm(*on_side(mc.tensor, feats, proposals, [])[:2], SHAPES)
    with torch.no_grad():
        want, _ = tm(*on_side(torch.from_numpy, feats, proposals, [])[:2], SHAPES)
    for t, m in zip(want, got):
        assert len(m["scores"]) == len(t["scores"]) <= 7
        assert "masks" not in m
        np.testing.assert_allclose(m["boxes"].numpy(), t["boxes"].numpy(), rtol=1e-10)
        assert (m["scores"].numpy() > 0.3).all()


def test_paste_masks_in_image_by_hand():
    """Two 2x2 masks (top row on, bottom row off), padded to 4x4 (scale 2), pasted into a
    6x8 image. Box (2, 2, 4, 4) grows to (1, 1, 5, 5): a 5x5 resize of the padded mask,
    separable: rows [0, .7, .5, 0, 0] (resampling [0, 1, 0, 0] at (i + .5)·4/5 - .5),
    columns [0, .7, 1, .7, 0] (from [0, 1, 1, 0]). Box (6.2, .4, 8.2, 2.4) grows to
    (5.2, -.6, 9.2, 3.4), truncated toward zero to (5, 0, 9, 3) (flooring would give
    y1 = -1): 5 wide as before, 4 high, so its rows are the padded rows [0, 1, 0, 0]
    themselves; columns 5-7 of the image get the resized columns 0-2."""
    rows = np.array([0, .7, .5, 0, 0])
    cols = np.array([0, .7, 1, .7, 0])
    resized = np.outer(rows, cols)
    mask = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)
    masks = mc.tensor(np.stack([mask, mask])[:, None])
    boxes = mc.tensor(np.array([[2, 2, 4, 4], [6.2, 0.4, 8.2, 2.4]], np.float32))
    out = roi_heads.paste_masks_in_image(masks, boxes, (6, 8))
    assert out.shape == (2, 1, 6, 8) and out.dtype == np.float32
    want = np.zeros((2, 6, 8))
    want[0, 1:6, 1:6] = resized
    want[1, 0:4, 5:8] = np.outer([0, 1, 0, 0], cols[0:3])
    np.testing.assert_allclose(out.numpy()[:, 0], want, atol=1e-6)
    empty = roi_heads.paste_masks_in_image(mc.zeros((0, 1, 28, 28)), mc.zeros((0, 4)), (5, 7))
    assert empty.shape == (0, 1, 5, 7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_paste_masks_matches_the_twin(torch, dtype):
    """Boxes inside or partly outside the 100x130 image (as clipped detections grown by
    the padding are), thin and wide, in both dtypes (the growth by scale and the
    truncation computed in the boxes' dtype, as torch does). A box wholly outside is an
    error in torchvision's slicing; detections never are."""
    twin = twin_module(torch)
    rng = np.random.default_rng(6)
    masks = rng.uniform(0, 1, (40, 1, 28, 28)).astype(dtype)
    xy = rng.uniform(-10, 90, (40, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.3, 90, (40, 2))], 1).astype(dtype)
    want = twin.paste_masks_in_image(torch.from_numpy(masks), torch.from_numpy(boxes),
                                     (100, 130))
    got = roi_heads.paste_masks_in_image(mc.tensor(masks), mc.tensor(boxes), (100, 130))
    assert got.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=tol, atol=tol)


def test_maskrcnn_inference_picks_each_label_channel():
    x = np.random.default_rng(7).standard_normal((5, 3, 2, 2))
    labels = [mc.tensor([2, 0]), mc.tensor([1, 1, 2])]
    out = roi_heads.maskrcnn_inference(mc.tensor(x), labels)
    assert [o.shape for o in out] == [(2, 1, 2, 2), (3, 1, 2, 2)]
    picked = np.concatenate([o.numpy() for o in out])[:, 0]
    want = 1 / (1 + np.exp(-x[np.arange(5), [2, 0, 1, 1, 2]]))
    np.testing.assert_allclose(picked, want, rtol=1e-12)


def test_errors_name_roi_heads(torch):
    _, mm = pair(torch)
    feats, proposals, targets = inputs()
    mf, mp, mt = on_side(mc.tensor, feats, proposals, targets)
    mm.train()
    with pytest.raises(ValueError, match="RoIHeads: targets should not be None"):
        mm(mf, mp, SHAPES)
    bad = [dict(t, labels=t["labels"].to(dtype=mc.int32)) for t in mt]
    with pytest.raises(TypeError, match="RoIHeads: target labels must be of type int64"):
        mm(mf, mp, SHAPES, bad)
    bad = [{k: v for k, v in t.items() if k != "masks"} for t in mt]
    with pytest.raises(ValueError, match="RoIHeads: target 0 has no 'masks'"):
        mm(mf, mp, SHAPES, bad)
    with pytest.raises(NotImplementedError, match="RoIHeads: the keypoint branch"):
        roi_heads.RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.05, 0.5, 100,
                           keypoint_head=mnn.ReLU())


def test_no_detections_give_empty_masks():
    """Nothing above score_thresh: empty boxes, labels, scores and (0, 1, 28, 28) masks,
    and the transform pastes them into (0, 1, H, W)."""
    heads = build(roi_heads, mnn, ops.MultiScaleRoIAlign, mc.tensor, score_thresh=1.0)
    feats, proposals, _ = inputs(seed=8)
    heads.eval()
    with mc.no_grad():
        result, _ = heads({k: mc.tensor(v) for k, v in feats.items()},
                          [mc.tensor(p) for p in proposals], SHAPES)
    for r in result:
        assert r["boxes"].shape == (0, 4) and r["scores"].shape == (0,)
        assert r["labels"].shape == (0,) and r["masks"].shape == (0, 1, 28, 28)
    pasted = roi_heads.paste_masks_in_image(result[0]["masks"], result[0]["boxes"], (50, 60))
    assert pasted.shape == (0, 1, 50, 60)
