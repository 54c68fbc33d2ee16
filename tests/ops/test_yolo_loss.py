"""YOLO v1's target grid and loss (minicnn/functional/detection.py): a 2x2-grid case
worked by hand, the responsible-predictor rule, the encoding rules (first box wins a
cell, centres on the border), the formula written again in plain torch autograd with
loops (values and gradients, float64, drawn problems), finite differences, reductions,
and every error."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import minicnn as mc
from minicnn import functional as F
from minicnn.utils.gradcheck import gradcheck

SETTINGS = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**31 - 1)


def _cell(x, y, sw, sh, c):
    return [x, y, sw, sh, c]


def _toy():
    """Two 100x100 images, S = 2 (50-pixel cells), B = 2, C = 2.

    Image 0 holds one object of label 2: box (7, 67, 43, 83), centre (25, 75), so cell
    (row 1, column 0), offsets x = 25/50 = 0.5, y = 75/50 - 1 = 0.5, size w = 36/100 =
    0.36 (√w = 0.6), h = 16/100 = 0.16 (√h = 0.4). Image 1 holds nothing."""
    pred = np.zeros((2, 2, 2, 12))
    # image 0, cell (1, 0): box 0 = the object's centre, √w 0.3, √h 0.2, c 0.5;
    # box 1 = its size, moved right by 0.2 cell, c 0.8; classes (0.3, 0.6)
    pred[0, 1, 0] = _cell(0.5, 0.5, 0.3, 0.2, 0.5) + _cell(0.7, 0.5, 0.6, 0.4, 0.8) + [0.3, 0.6]
    # the three empty cells: confidences (0.2, -0.4), (0.1, 0), (0, 0.3); boxes and
    # classes anything (they must not count)
    pred[0, 0, 0] = _cell(0.1, 0.9, 0.5, 0.5, 0.2) + _cell(0.3, 0.3, 0.2, 0.7, -0.4) + [0.9, 0.9]
    pred[0, 0, 1] = _cell(0.4, 0.2, 0.1, 0.3, 0.1) + _cell(0.6, 0.8, 0.9, 0.1, 0.0) + [-2, 3]
    pred[0, 1, 1] = _cell(0.8, 0.1, 0.4, 0.6, 0.0) + _cell(0.2, 0.5, 0.3, 0.3, 0.3) + [5, 0]
    # image 1: every confidence 0.2
    pred[1, ..., 4] = pred[1, ..., 9] = 0.2
    boxes = [np.array([[7.0, 67.0, 43.0, 83.0]]), np.zeros((0, 4))]
    labels = [np.array([2]), np.zeros(0, dtype=np.int64)]
    return pred, F.yolo_v1_targets(boxes, labels, S=2, C=2, image_size=100)


def test_toy_case_by_hand():
    pred, grid = _toy()
    # the grid: only cell (1, 0) of image 0, [x, y, w, h, 1, one-hot of label 2]
    expected = np.zeros((2, 2, 2, 7))
    expected[0, 1, 0] = [0.5, 0.5, 0.36, 0.16, 1, 0, 1]
    np.testing.assert_allclose(grid.numpy(), expected, rtol=0, atol=1e-15)

    # IoUs in image units (object: 0.36 x 0.16, area 0.0576):
    # box 0: 0.09 x 0.04 with the same centre, inside the object: 0.0036 / 0.0576 = 1/16
    # box 1: same size moved 0.2 cell = 0.1 image right: overlap (0.36 - 0.1) x 0.16 =
    #   0.0416, union 2 * 0.0576 - 0.0416 = 0.0736, IoU = 0.0416 / 0.0736 = 13/23
    # -> box 1 is responsible (not the first box), its confidence target is 13/23
    box = 5 * (0.7 - 0.5) ** 2                       # λ_coord (x error only) = 0.2
    obj = (13 / 23 - 0.8) ** 2                       # = 29.16 / 529
    # λ_noobj · Σ ĉ² over every other box: image 0: 0.5² (box 0 of the object's cell)
    # + 0.2² + 0.4² + 0.1² + 0 + 0 + 0.3² = 0.55; image 1: 8 boxes at 0.2² = 0.32
    noobj = 0.5 * (0.55 + 0.32)
    cls = (0 - 0.3) ** 2 + (1 - 0.6) ** 2            # = 0.25, the object's cell only
    terms = F.yolo_v1_loss_terms(mc.tensor(pred), grid, S=2, B=2, C=2, reduction="sum")
    got = {k: v.item() for k, v in terms.items()}
    assert got == pytest.approx({"loss_box": box, "loss_object": obj,
                                 "loss_noobject": noobj, "loss_class": cls}, abs=1e-12)
    total = box + obj + noobj + cls                  # 0.98012287...
    assert total == pytest.approx(0.2 + 29.16 / 529 + 0.435 + 0.25, abs=1e-12)
    s = F.yolo_v1_loss(mc.tensor(pred), grid, S=2, B=2, C=2, reduction="sum").item()
    m = F.yolo_v1_loss(mc.tensor(pred), grid, S=2, B=2, C=2).item()
    per_image = F.yolo_v1_loss(mc.tensor(pred), grid, S=2, B=2, C=2, reduction="none")
    assert s == pytest.approx(total, abs=1e-12)
    assert m == pytest.approx(total / 2, abs=1e-12)              # 'mean': ÷ batch size
    np.testing.assert_allclose(per_image.numpy(), [total - 0.5 * 0.32, 0.5 * 0.32],
                               atol=1e-12)


def test_toy_gradient_by_hand():
    pred, grid = _toy()
    p = mc.tensor(pred, requires_grad=True)
    F.yolo_v1_loss(p, grid, S=2, B=2, C=2, reduction="sum").backward()
    g = p.grad.numpy()
    # responsible box 1: d/dx̂ 5 (0.5 - x̂)² = -10 (0.5 - 0.7) = 2; d/dĉ (13/23 - ĉ)² =
    # -2 (13/23 - 0.8); the IoU target carries no gradient
    np.testing.assert_allclose(g[0, 1, 0, 5:10], [2, 0, 0, 0, -2 * (13 / 23 - 0.8)],
                               atol=1e-12)
    # box 0 is not responsible: only its confidence, 2 · 0.5 · 0.5 = 0.5
    np.testing.assert_allclose(g[0, 1, 0, 0:5], [0, 0, 0, 0, 0.5], atol=1e-12)
    np.testing.assert_allclose(g[0, 1, 0, 10:], [0.6, -0.8], atol=1e-12)   # 2 (p̂ - p)
    # an empty cell: confidences 2 · 0.5 · ĉ, nothing else (its classes do not count)
    np.testing.assert_allclose(g[0, 0, 0], [0, 0, 0, 0, 0.2, 0, 0, 0, 0, -0.4, 0, 0],
                               atol=1e-12)


def test_equal_ious_make_the_first_predictor_responsible():
    """Both predicted boxes miss the object (IoU 0): box 0 is responsible, with
    confidence target 0."""
    grid = F.yolo_v1_targets([np.array([[0.0, 0.0, 10.0, 10.0]])], [np.array([1])],
                             S=1, C=1, image_size=100)
    pred = np.array([[[[0.9, 0.9, 0.1, 0.1, 0.7, 0.9, 0.9, 0.1, 0.1, 0.3, 1.0]]]])
    terms = F.yolo_v1_loss_terms(mc.tensor(pred), grid, S=1, B=2, C=1, reduction="sum")
    # target (0.05, 0.05, √0.1, √0.1): box 0's error (0.85² · 2 + 2 (√0.1 - 0.1)²) · 5
    coord = 2 * 0.85 ** 2 + 2 * (math.sqrt(0.1) - 0.1) ** 2
    assert terms["loss_box"].item() == pytest.approx(5 * coord, abs=1e-12)
    assert terms["loss_object"].item() == pytest.approx(0.7 ** 2, abs=1e-12)
    assert terms["loss_noobject"].item() == pytest.approx(0.5 * 0.3 ** 2, abs=1e-12)


def test_targets_first_box_wins_a_cell_and_border_centres():
    boxes = [np.array([[0, 0, 20, 20], [2, 2, 18, 18], [60, 30, 64, 34],
                       [90, 90, 130, 130]], dtype=np.float32)]
    labels = [np.array([1, 2, 3, 2])]
    grid = F.yolo_v1_targets(boxes, labels, S=4, C=3, image_size=64).numpy()[0]
    assert grid.dtype == np.float32 and grid.shape == (4, 4, 8)
    # boxes 0 and 1 share cell (0, 0): box 0 (label 1) wins
    np.testing.assert_allclose(grid[0, 0], [10 / 16, 10 / 16, 20 / 64, 20 / 64, 1, 1, 0, 0])
    # centre (62, 32): column 3, row 2 (32 / 16 = 2 exactly, the lower edge of row 2)
    np.testing.assert_allclose(grid[2, 3], [14 / 16, 0, 4 / 64, 4 / 64, 1, 0, 0, 1])
    # centre (110, 110), outside the image: moved onto its corner, cell (3, 3), offset 1
    np.testing.assert_allclose(grid[3, 3], [1, 1, 40 / 64, 40 / 64, 1, 0, 1, 0])
    assert grid[..., 4].sum() == 3


def test_targets_non_square_image_and_dtypes():
    boxes = [mc.tensor([[30.0, 10.0, 90.0, 20.0]], dtype=mc.float64), mc.zeros(0, 4)]
    labels = [mc.tensor([1]), mc.zeros(0, dtype=mc.int64)]
    grid = F.yolo_v1_targets(boxes, labels, S=3, C=2, image_size=(60, 120))
    assert grid.dtype == np.float64 and grid.shape == (2, 3, 3, 7)
    # centre (60, 15) in 120 x 60: column 60 / 40 = 1.5 -> 1, row 15 / 20 = 0.75 -> 0
    np.testing.assert_allclose(grid.numpy()[0, 0, 1], [0.5, 0.75, 0.5, 10 / 60, 1, 1, 0])
    assert grid.numpy()[1].sum() == 0
    int_boxes = [np.array([[0, 0, 8, 8]])]
    assert F.yolo_v1_targets(int_boxes, [np.array([1])], 2, 1, 16).dtype == np.float32
    assert F.yolo_v1_targets([], [], S=2, C=3, image_size=8).shape == (0, 2, 2, 8)


# ---------------------------------------------------------------------- torch twin

def _torch_loss(torch, pred, boxes, labels, S, B, C, size, lambdas):
    """The seed's formula (eq. 3) with loops over images, cells and predictors, in
    pixels, on torch tensors; the target grid is worked out here too. Returns the 'sum'
    and the number of images."""
    height, width = size
    lc, lo, ln, lcls = lambdas
    total = pred.sum() * 0
    for n in range(pred.shape[0]):
        cells = {}
        for (x1, y1, x2, y2), label in zip(boxes[n].tolist(), labels[n].tolist()):
            cx = min(max((x1 + x2) / 2, 0), width)
            cy = min(max((y1 + y2) / 2, 0), height)
            j, i = min(int(cx / width * S), S - 1), min(int(cy / height * S), S - 1)
            if (i, j) not in cells:                           # the first box wins
                cells[i, j] = (cx, cy, x2 - x1, y2 - y1, label)
        for i in range(S):
            for j in range(S):
                out = pred[n, i, j]
                if (i, j) not in cells:
                    for b in range(B):
                        total = total + ln * out[5 * b + 4] ** 2
                    continue
                cx, cy, w, h, label = cells[i, j]
                x, y = cx / width * S - j, cy / height * S - i
                with torch.no_grad():
                    ious = []
                    for b in range(B):
                        px, py, sw, sh = out[5 * b: 5 * b + 4].tolist()
                        pcx, pcy = (j + px) / S * width, (i + py) / S * height
                        pw, ph = sw ** 2 * width, sh ** 2 * height
                        ix = max(0.0, min(pcx + pw / 2, cx + w / 2) - max(pcx - pw / 2, cx - w / 2))
                        iy = max(0.0, min(pcy + ph / 2, cy + h / 2) - max(pcy - ph / 2, cy - h / 2))
                        union = pw * ph + w * h - ix * iy
                        ious.append(ix * iy / union if union > 0 else 0.0)
                r = ious.index(max(ious))                     # the first of equal IoUs
                for b in range(B):
                    px, py, sw, sh, c = (out[5 * b + k] for k in range(5))
                    if b == r:
                        total = total + lc * ((x - px) ** 2 + (y - py) ** 2
                                              + (math.sqrt(w / width) - sw) ** 2
                                              + (math.sqrt(h / height) - sh) ** 2)
                        total = total + lo * (ious[b] - c) ** 2
                    else:
                        total = total + ln * c ** 2
                onehot = torch.zeros(C, dtype=pred.dtype)
                onehot[label - 1] = 1
                total = total + lcls * ((onehot - out[5 * B:]) ** 2).sum()
    return total


@st.composite
def yolo_problem(draw):
    """Random predictions near the targets (so IoUs are mixed) and random boxes in a
    non-square image, several per cell at times, some empty images."""
    rng = np.random.default_rng(draw(SEEDS))
    S, B, C = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    n = draw(st.integers(1, 3))
    height, width = draw(st.sampled_from([(48, 80), (64, 64), (30, 45)]))
    boxes, labels = [], []
    for _ in range(n):
        k = int(rng.integers(0, 5))
        centre = rng.uniform(0, 1, (k, 2)) * [width, height]
        size = rng.uniform(0.05, 0.9, (k, 2)) * [width, height]
        boxes.append(np.concatenate([centre - size / 2, centre + size / 2], 1))
        labels.append(rng.integers(1, C + 1, k))
    pred = rng.standard_normal((n, S, S, 5 * B + C)) * 0.5
    for b in range(B):                                  # x, y in the cell, √w, √h > 0
        pred[..., 5 * b: 5 * b + 2] = rng.uniform(0, 1, (n, S, S, 2))
        pred[..., 5 * b + 2: 5 * b + 4] = rng.uniform(0.1, 0.9, (n, S, S, 2))
    lambdas = draw(st.sampled_from([(5.0, 1.0, 0.5, 1.0), (1.3, 0.7, 2.0, 0.4)]))
    return pred, boxes, labels, S, B, C, (height, width), lambdas


@SETTINGS
@given(yolo_problem(), st.sampled_from(["sum", "mean", "none"]))
def test_loss_and_gradient_equal_the_torch_formula(problem, reduction):
    pred, boxes, labels, S, B, C, size, lambdas = problem
    grid = F.yolo_v1_targets(boxes, labels, S=S, C=C, image_size=size)
    p = mc.tensor(pred, requires_grad=True)
    loss = F.yolo_v1_loss(p, grid, S, B, C, *lambdas, reduction=reduction)
    upstream = np.random.default_rng(1).standard_normal(loss.shape)
    (loss * mc.tensor(upstream)).sum().backward()

    tp = torch.tensor(pred, requires_grad=True)
    per_image = torch.stack([_torch_loss(torch, tp[n:n + 1], boxes[n:n + 1], labels[n:n + 1],
                                         S, B, C, size, lambdas)
                             for n in range(len(boxes))])
    expected = {"none": per_image, "sum": per_image.sum(),
                "mean": per_image.sum() / len(boxes)}[reduction]
    (expected * torch.tensor(upstream)).sum().backward()
    np.testing.assert_allclose(loss.numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_gradcheck():
    """Finite differences also move the IoU targets, which the formula holds fixed (no
    gradient flows through them): check the box outputs with λ_obj = 0, and the
    confidences and classes (which no IoU depends on) with every term on."""
    rng = np.random.default_rng(3)
    boxes = [np.array([[5.0, 5.0, 30.0, 20.0], [40.0, 30.0, 60.0, 60.0]]),
             np.array([[0.0, 10.0, 64.0, 50.0]])]
    labels = [np.array([1, 3]), np.array([2])]
    grid = F.yolo_v1_targets(boxes, labels, S=2, C=3, image_size=64)
    pred = rng.uniform(0.1, 0.9, (2, 2, 2, 13))
    pred[..., [4, 9]] = rng.standard_normal((2, 2, 2, 2))
    for reduction in ("mean", "none"):
        gradcheck(lambda a: F.yolo_v1_loss(a, grid, 2, 2, 3, lambda_obj=0.0,
                                           reduction=reduction),
                  mc.tensor(pred, requires_grad=True))
    # at √ŵ = 0 and below the loss stays a polynomial: finite, differentiable (box 1
    # sits in the middle of each cell, overlaps every object and stays responsible)
    pred[..., 2:4] = [0.0, -0.3]
    pred[..., 5:9] = 0.5
    gradcheck(lambda a: F.yolo_v1_loss(a, grid, 2, 2, 3, lambda_obj=0.0),
              mc.tensor(pred, requires_grad=True))

    const = mc.tensor(pred)

    def loss_of_scores(conf, classes):
        full = mc.cat([const[..., 0:4], conf[..., 0:1], const[..., 5:9], conf[..., 1:2],
                       classes], -1)
        return F.yolo_v1_loss(full, grid, 2, 2, 3, reduction="none")

    gradcheck(loss_of_scores, mc.tensor(pred[..., [4, 9]], requires_grad=True),
              mc.tensor(pred[..., 10:], requires_grad=True))


def test_float32_and_terms_sum_to_the_loss():
    pred, grid = _toy()
    p32 = mc.tensor(pred.astype(np.float32))
    loss = F.yolo_v1_loss(p32, grid, S=2, B=2, C=2)
    assert loss.dtype == np.float32
    terms = F.yolo_v1_loss_terms(mc.tensor(pred), grid, S=2, B=2, C=2)
    assert sum(t.item() for t in terms.values()) == pytest.approx(loss.item(), rel=1e-6)
    empty = F.yolo_v1_loss(mc.zeros(0, 2, 2, 12), mc.zeros(0, 2, 2, 7), 2, 2, 2,
                           reduction="sum")
    assert empty.item() == 0


# -------------------------------------------------------------------------- errors

def test_errors_name_the_op():
    pred, grid = _toy()
    p = mc.tensor(pred)
    with pytest.raises(ValueError, match=r"yolo_v1_loss: pred must have shape .*\(N, 2, 2, 13\)"):
        F.yolo_v1_loss(p, grid, S=2, B=2, C=3)                  # C mismatch
    with pytest.raises(ValueError, match=r"yolo_v1_loss: pred must have shape"):
        F.yolo_v1_loss(p.reshape(2, 48), grid, S=2, B=2, C=2)
    with pytest.raises(ValueError, match=r"yolo_v1_loss: targets must have shape"):
        F.yolo_v1_loss(p, grid[:1], S=2, B=2, C=2)
    with pytest.raises(TypeError, match="yolo_v1_loss: targets must be the .* grid"):
        F.yolo_v1_loss(p, [{"boxes": np.zeros((0, 4))}] * 2, S=2, B=2, C=2)
    with pytest.raises(ValueError, match="yolo_v1_loss: reduction"):
        F.yolo_v1_loss(p, grid, S=2, B=2, C=2, reduction="avg")
    with pytest.raises(ValueError, match="yolo_v1_loss: lambda_noobj must be a number >= 0"):
        F.yolo_v1_loss(p, grid, S=2, B=2, C=2, lambda_noobj=-1)
    with pytest.raises(ValueError, match="yolo_v1_loss: B must be a positive integer"):
        F.yolo_v1_loss(p, grid, S=2, B=0, C=2)
    with pytest.raises(TypeError, match="yolo_v1_loss: expected a floating-point"):
        F.yolo_v1_loss(mc.zeros(2, 2, 2, 12, dtype=mc.int64), grid, S=2, B=2, C=2)


def test_target_errors_name_the_op():
    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    with pytest.raises(ValueError, match=r"yolo_v1_targets: labels\[0\] must lie in 1..3 .*"
                                         r"background.* from 0 to 0"):
        F.yolo_v1_targets([box], [np.array([0])], S=2, C=3, image_size=32)
    with pytest.raises(ValueError, match=r"labels\[0\] must lie in 1..3"):
        F.yolo_v1_targets([box], [np.array([4])], S=2, C=3, image_size=32)
    with pytest.raises(ValueError, match=r"yolo_v1_targets: boxes\[1\] must have shape \(K, 4\)"):
        F.yolo_v1_targets([box, np.zeros((2, 5))], [np.array([1]), np.array([1, 1])], 2, 3, 32)
    with pytest.raises(ValueError, match=r"yolo_v1_targets: boxes\[0\] must be xyxy with x2 >= x1"):
        F.yolo_v1_targets([np.array([[10.0, 0, 5, 5]])], [np.array([1])], 2, 3, 32)
    with pytest.raises(ValueError, match=r"yolo_v1_targets: labels\[0\] must have shape \(1,\)"):
        F.yolo_v1_targets([box], [np.array([1, 2])], 2, 3, 32)
    with pytest.raises(TypeError, match=r"yolo_v1_targets: labels\[0\] must be integers"):
        F.yolo_v1_targets([box], [np.array([1.0])], 2, 3, 32)
    with pytest.raises(ValueError, match="yolo_v1_targets: got boxes for 1 images and labels for 2"):
        F.yolo_v1_targets([box], [np.array([1]), np.array([1])], 2, 3, 32)
    with pytest.raises(TypeError, match="yolo_v1_targets: boxes and labels must be lists"):
        F.yolo_v1_targets(box, np.array([1]), 2, 3, 32)
    with pytest.raises(ValueError, match="yolo_v1_targets: image_size must be >= 1"):
        F.yolo_v1_targets([box], [np.array([1])], 2, 3, 0)
