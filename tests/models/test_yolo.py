"""YOLO v1 (minicnn/models/detection/yolo.py): the paper's layer list, parameter count and
448 -> 7x7x30 grid; the network against the same source on torch.nn (output and
gradients, with and without BN); decoding (scores, thresholds, NMS per class,
clipping) and decode(encode(targets)); the detector contract in training and eval mode;
bad input. That the small model learns is checked by a short slow test; its figure on
the shapes is measured by hand (examples/yolo_shapes.py)."""
import warnings

import numpy as np
import pytest
import torch

import minicnn
from minicnn import nn
from minicnn.models.detection import yolo as Y
from minicnn.nn import functional as F

from model_twin import cheap_init, count, pair, same_layout, set_dropout_eval


def test_paper_layers_and_parameter_count():
    with cheap_init():
        model = Y.yolo_v1()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 24
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 4
    assert [(c.kernel_size[0], c.stride[0], c.out_channels) for c in convs[:2]] == \
        [(7, 2, 64), (3, 1, 192)]
    assert [(c.kernel_size[0], c.stride[0]) for c in convs[-3:]] == [(3, 2), (3, 1), (3, 1)]
    leaky = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 25 and {m.negative_slope for m in leaky} == {0.1}
    assert [type(m).__name__ for m in model.classifier] == \
        ["Linear", "LeakyReLU", "Dropout", "Linear"]
    assert model.classifier[2].p == 0.5
    # spec Appendix A: 60,155,968 in the convolutions + 211,547,582 in the two FC layers
    assert count(model) == 271_703_550
    assert count(model.features) == 60_155_968
    assert (model.classifier[0].in_features, model.classifier[0].out_features,
            model.classifier[3].out_features) == (50_176, 4096, 1470)


def test_448_gives_a_7x7x30_grid():
    with cheap_init():
        model = Y.yolo_v1()
    for p in model.parameters():           # allocated, not initialised: any finite value
        p.array[...] = 0.0
    shapes = []
    model.features.register_forward_hook(lambda m, inputs, out: shapes.append(out.shape))
    with minicnn.no_grad():
        grid = model.eval().grid(minicnn.zeros(1, 3, 448, 448))
    assert shapes == [(1, 1024, 7, 7)]
    assert grid.shape == (1, 7, 7, 30)             # B = 2 boxes x 5 + C = 20 classes


def test_same_layout_as_the_torch_twin():
    assert same_layout(Y, torch, "yolo_v1", width=0.125) == count(Y.yolo_v1(width=0.125))
    assert same_layout(Y, torch, "yolo_v1_small") == count(Y.yolo_v1_small())


@pytest.mark.parametrize("name, kwargs, size", [
    ("yolo_v1", dict(width=1 / 16, num_classes=3, S=3, image_size=128), 128),
    ("yolo_v1_small", dict(num_classes=3), 64),
    ("yolo_v1_small", dict(num_classes=2, S=5, B=3, batch_norm=False, width=0.5), 64),
])
def test_grid_equals_torch(name, kwargs, size):
    """The network (features, classifier, reshape to the grid) on the same weights as
    the same source run on torch.nn: forward in eval and training mode (dropout off, BN
    on batch statistics), input and parameter gradients, float64."""
    tm, mm = pair(Y, torch, name, **kwargs)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, size, size))
    for train in (False, True):
        tm.train(train)
        mm.train(train)
        set_dropout_eval(tm)
        set_dropout_eval(mm)
        tx = torch.tensor(x, requires_grad=True)
        mx = minicnn.tensor(x, requires_grad=True)
        ty, my = tm.grid(tx), mm.grid(mx)
        assert my.shape == tuple(ty.shape)
        np.testing.assert_allclose(my.numpy(), ty.detach().numpy(), rtol=1e-9, atol=1e-10)
        g = rng.standard_normal(my.shape)
        (ty * torch.tensor(g)).sum().backward()
        (my * minicnn.tensor(g)).sum().backward()
        np.testing.assert_allclose(mx.grad.numpy(), tx.grad.numpy(), rtol=1e-8, atol=1e-10)
        tparams = dict(tm.named_parameters())
        for key, p in mm.named_parameters():
            np.testing.assert_allclose(p.grad.numpy(), tparams[key].grad.numpy(),
                                       rtol=1e-8, atol=1e-10, err_msg=key)
            p.grad = tparams[key].grad = None


# ------------------------------------------------------------------------ decoding

def _encoded_as_prediction(grid, B):
    """A perfect prediction from a target grid: box 0 = the object (√w, √h) with
    confidence 1, the other boxes empty, the class channels one-hot."""
    g = grid.numpy()
    n, s, _, d = g.shape
    pred = np.zeros((n, s, s, 5 * B + d - 5))
    pred[..., 0:2] = g[..., 0:2]
    pred[..., 2:4] = np.sqrt(g[..., 2:4])
    pred[..., 4] = g[..., 4]
    pred[..., 5 * B:] = g[..., 5:]
    return minicnn.tensor(pred)


def test_decode_of_encode_recovers_boxes_and_labels():
    boxes = [np.array([[3.0, 5.0, 40.0, 30.0], [50.0, 44.0, 90.0, 59.0],
                       [10.0, 35.0, 20.0, 55.0]]),
             np.zeros((0, 4)),
             np.array([[0.0, 0.0, 100.0, 60.0]])]
    labels = [np.array([2, 3, 1]), np.zeros(0, dtype=np.int64), np.array([3])]
    grid = F.yolo_v1_targets(boxes, labels, S=3, C=3, image_size=(60, 100))
    pred = _encoded_as_prediction(grid, B=2)
    out = Y.yolo_v1_decode(pred, S=3, B=2, C=3, image_size=(60, 100), score_threshold=0.5)
    assert len(out) == 3
    for got, b, t in zip(out, boxes, labels):
        assert got["boxes"].dtype == np.float32 and got["labels"].dtype == np.int64
        assert got["scores"].dtype == np.float32
        order = np.lexsort(got["boxes"].numpy().T[::-1])
        expected = np.lexsort(b.T[::-1])
        np.testing.assert_allclose(got["boxes"].numpy()[order], b[expected], atol=1e-4)
        np.testing.assert_array_equal(got["labels"].numpy()[order], t[expected])
        np.testing.assert_allclose(got["scores"].numpy(), 1.0)


def test_decode_scores_threshold_nms_and_clipping():
    """One 2x2 grid, B = 2, C = 2, a 100x100 image (50-pixel cells)."""
    pred = np.zeros((1, 2, 2, 12))
    # cell (0, 0): two nearly equal boxes, confidences 0.9 and 0.8, classes (0.5, 1.5):
    # class 1 scores 0.45, 0.4; class 2 (clipped to 1) 0.9, 0.8. NMS per class keeps the
    # first box of each class.
    pred[0, 0, 0] = [0.5, 0.5, 0.4, 0.4, 0.9, 0.52, 0.5, 0.4, 0.4, 0.8, 0.5, 1.5]
    # cell (1, 1): a box running over the bottom-right corner (centre (90, 90), 40 wide):
    # clipped to (70, 70, 100, 100), confidence 0.3, class 1 at 0.2 -> score 0.06; box 1
    # has confidence -0.5 and class 2 -0.9: clipped to 0, no positive score from two
    # negatives
    pred[0, 1, 1] = [0.8, 0.8, 0.4 ** 0.5, 0.4 ** 0.5, 0.3, 0.5, 0.5, 0.1, 0.1, -0.5,
                     0.2, -0.9]
    out = Y.yolo_v1_decode(minicnn.tensor(pred), S=2, B=2, C=2, image_size=100,
                           score_threshold=0.05, iou_threshold=0.5)[0]
    np.testing.assert_allclose(out["scores"].numpy(), [0.9, 0.45, 0.06], rtol=1e-6)
    np.testing.assert_array_equal(out["labels"].numpy(), [2, 1, 1])
    # cell (0, 0) box 0: centre (25, 25), 0.4² x 100 = 16 wide
    np.testing.assert_allclose(out["boxes"].numpy(), [[17, 17, 33, 33], [17, 17, 33, 33],
                                                      [70, 70, 100, 100]], atol=1e-4)
    # a higher threshold drops the small scores; max_detections keeps the best
    assert len(Y.yolo_v1_decode(minicnn.tensor(pred), 2, 2, 2, 100, 0.1)[0]["scores"]) == 2
    top = Y.yolo_v1_decode(minicnn.tensor(pred), 2, 2, 2, 100, 0.05, max_detections=1)[0]
    np.testing.assert_allclose(top["scores"].numpy(), [0.9], rtol=1e-6)
    # NMS off (threshold 1): both boxes of cell (0, 0) in both classes
    every = Y.yolo_v1_decode(minicnn.tensor(pred), 2, 2, 2, 100, 0.05, iou_threshold=1.0)[0]
    np.testing.assert_allclose(every["scores"].numpy(), [0.9, 0.8, 0.45, 0.4, 0.06], rtol=1e-6)


def test_decode_errors():
    with pytest.raises(ValueError, match=r"yolo_v1_decode: pred must have shape .*\(N, 2, 2, 12\)"):
        Y.yolo_v1_decode(minicnn.zeros(1, 2, 2, 13), S=2, B=2, C=2, image_size=64)
    with pytest.raises(ValueError, match="yolo_v1_decode: iou_threshold must lie in"):
        Y.yolo_v1_decode(minicnn.zeros(1, 2, 2, 12), 2, 2, 2, 64, iou_threshold=1.5)


# -------------------------------------------------------------- detector contract

def _batch(n=2, size=64, seed=0):
    rng = np.random.default_rng(seed)
    images = minicnn.tensor(rng.standard_normal((n, 3, size, size)).astype(np.float32))
    targets = [{"boxes": minicnn.tensor([[4.0, 6.0, 30.0, 40.0], [35.0, 20.0, 60.0, 50.0]]),
                "labels": minicnn.tensor([1, 3])},
               {"boxes": minicnn.zeros(0, 4), "labels": minicnn.zeros(0, dtype=minicnn.int64)}]
    return images, targets[:n]


def test_training_gives_the_loss_terms():
    model = Y.yolo_v1_small(dropout=0.0).train()
    images, targets = _batch()
    losses = model(images, targets)
    assert list(losses) == ["loss_box", "loss_object", "loss_noobject", "loss_class"]
    assert all(v.shape == () and v.dtype == np.float32 for v in losses.values())
    grid = F.yolo_v1_targets([t["boxes"] for t in targets], [t["labels"] for t in targets],
                             S=4, C=3, image_size=64)
    # dropout is off: the same batch gives the same grid (BN on batch statistics)
    expected = F.yolo_v1_loss(model.grid(images), grid, S=4, B=2, C=3).item()
    losses = model(images, targets)
    assert sum(v.item() for v in losses.values()) == pytest.approx(expected, rel=1e-5)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    # a list of images is the same batch
    again = model(list(images), targets)
    assert sum(again.values()).item() == pytest.approx(expected, rel=1e-5)


def test_eval_gives_detections_in_pixels():
    model = Y.yolo_v1_small(score_threshold=0.0).eval()
    # a bias that makes every confidence and class probability 0.5: 4 x 4 x 2 boxes,
    # 3 classes, all scores 0.25
    last = model.classifier[-1]
    nn.init.zeros_(last.weight)
    bias = np.zeros((4, 4, 13), dtype=np.float32)
    bias[..., [0, 1, 5, 6]] = 0.5
    bias[..., [2, 3, 7, 8]] = 0.5                    # √w = 0.5: 16-pixel boxes
    bias[..., [4, 9, 10, 11, 12]] = 0.5
    last.bias.array[...] = bias.reshape(-1)
    images, _ = _batch()
    out = model(images)
    assert len(out) == 2
    for det in out:
        assert set(det) == {"boxes", "labels", "scores"}
        boxes, scores = det["boxes"].numpy(), det["scores"].numpy()
        # both boxes of a cell coincide: NMS keeps one per cell and class, 16 x 3
        assert boxes.shape == (48, 4) and det["labels"].shape == (48,)
        np.testing.assert_allclose(scores, 0.25, rtol=1e-6)
        assert set(det["labels"].numpy().tolist()) == {1, 2, 3}
        centres = np.sort(np.unique((boxes[:, 0] + boxes[:, 2]) / 2))
        np.testing.assert_allclose(centres, [8, 24, 40, 56], atol=1e-4)   # cell centres
        np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], 16, atol=1e-4)
    with minicnn.no_grad():
        assert len(model(list(images))) == 2


def test_bad_input_is_a_clear_error():
    model = Y.yolo_v1_small()
    images, targets = _batch()
    with pytest.raises(ValueError, match=r"YOLOv1: its fully connected layers take images "
                                         r"of exactly 64x64 .*got 96x96"):
        model(minicnn.zeros(1, 3, 96, 96), targets[:1])
    with pytest.raises(ValueError, match="got 48x48, 64x64"):
        model([minicnn.zeros(3, 64, 64), minicnn.zeros(3, 48, 48)], targets)
    with pytest.raises(ValueError, match=r"YOLOv1: images must be \(N, C, H, W\)"):
        model(minicnn.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="YOLOv1: in training mode forward needs targets"):
        model(images)
    with pytest.raises(ValueError, match="YOLOv1: got 2 images but 1 targets"):
        model(images, targets[:1])
    bad = [{"boxes": minicnn.tensor([[0.0, 0, 8, 8]]), "labels": minicnn.tensor([0])}] * 2
    with pytest.raises(ValueError, match=r"yolo_v1_targets: labels\[0\] must lie in 1..3"):
        model(images, bad)
    with pytest.raises(ValueError, match="yolo_v1: width must be > 0"):
        Y.yolo_v1(width=0)
    with pytest.raises(ValueError, match="yolo_v1_small: image_size .* is too small"):
        Y.yolo_v1_small(image_size=8)
    with pytest.raises(ValueError, match="YOLOv1: num_classes must be a positive integer"):
        Y.yolo_v1_small(num_classes=0)


@pytest.mark.slow
def test_small_model_loss_falls():
    """A few Adam steps on one batch of two images: the loss goes down."""
    model = Y.yolo_v1_small(dropout=0.0).train()
    images, targets = _batch()
    opt = minicnn.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
