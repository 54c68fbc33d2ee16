"""Detection evaluation in minicnn.metrics: PASCAL VOC's matching (match_detections),
its AP in the all-point and 11-point forms (average_precision), mAP at IoU 0.5 and COCO's
mAP@[.5:.95] (mean_average_precision, the streaming DetectionMetric).

Checked against precision/recall tables worked by hand (in the comments), a voc_ap written
here as a direct loop over the recall levels, and two twins written here as direct loops
after the VOC devkit's VOCevaldet.m and pycocotools' COCOeval (evaluateImg + accumulate) on
random sets; plus the matching rules one by one, streaming, the GPU path and bad input."""
import math

import numpy as np
import pytest

import minicnn as mc
from minicnn import metrics, ops
from minicnn.metrics import (DetectionMetric, average_precision, match_detections,
                             mean_average_precision)

from fake_cupy import record_device_to_host, to_device


# ----------------------------------------------------------------------------- helpers

def _image(boxes=(), labels=(), scores=(), gt_boxes=(), gt_labels=(), difficult=None):
    """One image's (detection, target) dicts from lists."""
    det = {"boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
           "labels": np.array(labels, dtype=np.int64).reshape(-1),
           "scores": np.array(scores, dtype=np.float32).reshape(-1)}
    tgt = {"boxes": np.array(gt_boxes, dtype=np.float32).reshape(-1, 4),
           "labels": np.array(gt_labels, dtype=np.int64).reshape(-1)}
    if difficult is not None:
        tgt["difficult"] = np.array(difficult, dtype=bool).reshape(-1)
    return det, tgt


def _split(images):
    return [d for d, _ in images], [t for _, t in images]


def _same(a, b):
    """Two compute() dicts equal, NaN equal to NaN."""
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key], dtype=float),
                                      np.asarray(b[key], dtype=float), err_msg=key)


def reference_voc_ap(recall, precision, use_07_metric=False):
    """The definitions as loops. All-point: for each prediction where the recall rises,
    (rise) x (the highest precision at this recall or beyond); 11-point: the mean over
    t = 0, 0.1, ..., 1 of the highest precision at recall >= t. NaN precisions (rows of
    predictions left out before any TP or FP) never win a max."""
    recall, precision = list(map(float, recall)), list(map(float, precision))
    if use_07_metric:
        total = 0.0
        for k in range(11):
            best = [p for r, p in zip(recall, precision) if r >= k / 10 and not math.isnan(p)]
            total += max(best) if best else 0.0
        return total / 11
    area, previous = 0.0, 0.0
    for i, r in enumerate(recall):
        if r > previous:
            later = [p for p in precision[i:] if not math.isnan(p)]
            area += (r - previous) * max(later)
            previous = r
    return area


def _loop_iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def voc_devkit_twin(detections, targets, cls, threshold, use_07_metric):
    """VOCevaldet.m as loops (continuous IoU, no +1): every prediction of the class over
    the set sorted by score (stable), each compared with its best object (first of equal
    IoUs); rows on difficult objects stay, changing neither TP nor FP."""
    rows = []
    for img, det in enumerate(detections):
        for box, label, score in zip(det["boxes"], det["labels"], det["scores"]):
            if label == cls:
                rows.append((-float(score), len(rows), img, [float(v) for v in box]))
    rows.sort(key=lambda r: (r[0], r[1]))
    gts, npos = [], 0
    for tgt in targets:
        diff = tgt.get("difficult", np.zeros(len(tgt["labels"]), dtype=bool))
        objs = [([float(v) for v in b], bool(d)) for b, label, d in
                zip(tgt["boxes"], tgt["labels"], diff) if label == cls]
        npos += sum(not d for _, d in objs)
        gts.append({"objs": objs, "taken": [False] * len(objs)})
    tp, fp = [], []
    for _, _, img, box in rows:
        ovmax, jmax = -math.inf, -1
        for j, (g, _) in enumerate(gts[img]["objs"]):
            ov = _loop_iou(box, g)
            if ov > ovmax:
                ovmax, jmax = ov, j
        t = f = 0
        if ovmax >= threshold:
            if not gts[img]["objs"][jmax][1]:
                if not gts[img]["taken"][jmax]:
                    t, gts[img]["taken"][jmax] = 1, True
                else:
                    f = 1
        else:
            f = 1
        tp.append(t)
        fp.append(f)
    if npos == 0:
        return math.nan
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    with np.errstate(invalid="ignore"):
        precision = ctp / (ctp + cfp)
    return reference_voc_ap(ctp / npos, precision, use_07_metric)


def cocoeval_twin(detections, targets, num_classes):
    """COCOeval's evaluateImg and accumulate as loops, with difficult as 'ignore', all
    areas, maxDets 100, exact decimal thresholds; returns mAP@[.5:.95]."""
    thresholds = [(50 + 5 * i) / 100 for i in range(10)]
    aps = []
    for cls in range(1, num_classes):
        per_image, npig = [], 0
        for det, tgt in zip(detections, targets):
            diff = tgt.get("difficult", np.zeros(len(tgt["labels"]), dtype=bool))
            gt = [(list(map(float, b)), bool(d)) for b, label, d in
                  zip(tgt["boxes"], tgt["labels"], diff) if label == cls]
            npig += sum(not d for _, d in gt)
            gt = [g for g in gt if not g[1]] + [g for g in gt if g[1]]     # ignore last
            dt = [(float(s), list(map(float, b))) for b, label, s in
                  zip(det["boxes"], det["labels"], det["scores"]) if label == cls]
            dt = sorted(dt, key=lambda d: -d[0])[:100]                     # stable
            matched = [[0] * len(dt) for _ in thresholds]
            ignored = [[0] * len(dt) for _ in thresholds]
            for ti, t in enumerate(thresholds):
                taken = [False] * len(gt)
                for di, (_, box) in enumerate(dt):
                    best, m = min(t, 1 - 1e-10), -1
                    for gi, (g, ig) in enumerate(gt):
                        if taken[gi]:
                            continue
                        if m > -1 and not gt[m][1] and ig:
                            break
                        ov = _loop_iou(box, g)
                        if ov < best:
                            continue
                        best, m = ov, gi
                    if m == -1:
                        continue
                    matched[ti][di], ignored[ti][di] = 1, int(gt[m][1])
                    taken[m] = True
            per_image.append(([s for s, _ in dt], matched, ignored))
        if npig == 0:
            continue
        scores = [s for s, _, _ in per_image for s in s]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])       # stable
        for ti in range(len(thresholds)):
            m = [v for _, mt, _ in per_image for v in mt[ti]]
            ig = [v for _, _, it in per_image for v in it[ti]]
            tp = fp = 0
            rc, pr = [], []
            for i in order:
                tp += m[i] and not ig[i]
                fp += (not m[i]) and not ig[i]
                rc.append(tp / npig)
                pr.append(tp / (tp + fp) if tp + fp else 0.0)
            for i in range(len(pr) - 1, 0, -1):
                if pr[i] > pr[i - 1]:
                    pr[i - 1] = pr[i]
            q = []
            for k in range(101):
                reach = [i for i, r in enumerate(rc) if r >= k / 100]
                q.append(pr[reach[0]] if reach else 0.0)
            aps.append(sum(q) / 101)
    return sum(aps) / len(aps) if aps else math.nan


def _random_set(rng, n_images, num_classes, max_objects=4):
    """Images with a few objects, predictions jittered around them (some duplicated,
    some stray), scores on a coarse grid (ties within and across images), some objects
    difficult."""
    images = []
    for _ in range(n_images):
        g = rng.integers(0, max_objects + 1)
        xy = rng.uniform(0, 60, (g, 2))
        wh = rng.uniform(8, 30, (g, 2))
        gt = np.concatenate([xy, xy + wh], axis=1)
        gt_labels = rng.integers(1, num_classes, g)
        difficult = rng.random(g) < 0.2
        boxes, labels = [], []
        for box, label in zip(gt, gt_labels):
            for _ in range(rng.integers(0, 3)):           # 0, 1 or 2 predictions each
                size = box[2:] - box[:2]
                jitter = rng.normal(0, 0.12, 4) * np.r_[size, size]
                b = box + jitter
                b[2:] = np.maximum(b[2:], b[:2] + 1)
                boxes.append(b)
                labels.append(label if rng.random() < 0.85 else rng.integers(1, num_classes))
        for _ in range(rng.integers(0, 3)):               # strays
            p = rng.uniform(0, 70, 2)
            boxes.append(np.r_[p, p + rng.uniform(5, 25, 2)])
            labels.append(rng.integers(1, num_classes))
        scores = np.round(rng.random(len(boxes)), 1)
        images.append(_image(boxes, labels, scores, gt, gt_labels, difficult))
    return images


# ------------------------------------------------------------------- AP: hand tables

# 3 objects, 5 predictions by decreasing score; tp = 1 0 1 0 1:
#
#   k  tp  TP  FP  precision  recall  envelope (max precision at recall >= this one)
#   1   1   1   0     1        1/3        1
#   2   0   1   1    1/2       1/3       2/3
#   3   1   2   1    2/3       2/3       2/3
#   4   0   2   2    1/2       2/3       3/5
#   5   1   3   2    3/5        1        3/5
#
# all-point: recall steps 0 -> 1/3 -> 2/3 -> 1 at envelope 1, 2/3, 3/5:
#   1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 15/45 + 10/45 + 9/45 = 34/45
# 11-point: t = 0, .1, .2, .3 -> 1 (recall 1/3 >= t); t = .4, .5, .6 -> 2/3;
#   t = .7, .8, .9, 1 -> 3/5:  (4 * 1 + 3 * 2/3 + 4 * 3/5) / 11 = 8.4 / 11 = 42/55
TABLE_RECALL = [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1]
TABLE_PRECISION = [1, 1 / 2, 2 / 3, 1 / 2, 3 / 5]


def test_average_precision_on_the_hand_table():
    assert average_precision(TABLE_RECALL, TABLE_PRECISION) == pytest.approx(34 / 45, abs=1e-15)
    assert average_precision(TABLE_RECALL, TABLE_PRECISION, use_07_metric=True) == \
        pytest.approx(42 / 55, abs=1e-15)
    assert reference_voc_ap(TABLE_RECALL, TABLE_PRECISION) == pytest.approx(34 / 45)
    assert reference_voc_ap(TABLE_RECALL, TABLE_PRECISION, True) == pytest.approx(42 / 55)
    # a curve that stops short of recall 1 gets nothing past its end
    assert average_precision([0.5], [1.0]) == 0.5
    assert average_precision([0.5], [1.0], use_07_metric=True) == pytest.approx(6 / 11)
    assert average_precision([], []) == 0.0
    assert average_precision([], [], use_07_metric=True) == 0.0


def test_the_hand_table_from_boxes():
    # the same five predictions as boxes: G1, G2, G3 three objects side by side; the
    # predictions come in shuffled order and are ranked by score
    g1, g2, g3 = [0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]
    boxes = [[40, 0, 50, 10],          # .5  TP on G3
             [0, 0, 10, 10],           # .9  TP on G1
             [0, 1, 10, 10],           # .6  G1 again: a duplicate, FP
             [70, 70, 80, 80],         # .8  on nothing: FP
             [20, 0, 30, 9]]           # .7  TP on G2 (IoU 0.9)
    scores = [0.5, 0.9, 0.6, 0.8, 0.7]
    match = match_detections(boxes, scores, [g1, g2, g3])
    assert match.order.tolist() == [1, 3, 4, 2, 0]
    assert match.tp.tolist() == [True, False, True, False, True]
    assert match.fp.tolist() == [False, True, False, True, False]
    assert match.gt_index.tolist() == [0, -1, 1, 0, 2]
    assert match.num_gt == 3
    images = [_image(boxes, [1] * 5, scores, [g1, g2, g3], [1, 1, 1])]
    m, per_class = mean_average_precision(*_split(images), num_classes=2)
    assert m == pytest.approx(34 / 45) and per_class[1] == pytest.approx(34 / 45)
    assert math.isnan(per_class[0])
    m07, _ = mean_average_precision(*_split(images), num_classes=2, use_07_metric=True)
    assert m07 == pytest.approx(42 / 55)


# 10 objects, tp = 1 1 1 0 0 1 1 1 1 0:
#
#   k   1    2    3    4    5    6    7    8    9    10
#   TP  1    2    3    3    3    4    5    6    7    7
#   P   1    1    1   3/4  3/5  4/6  5/7  6/8  7/9  7/10
#   R  .1   .2   .3   .3   .3   .4   .5   .6   .7   .7
#
# 11-point: t = 0 ... .3 -> 1 (the recall reaches exactly 0.3 at k = 3); t = .4 ... .7 ->
#   7/9 (k = 9); t = .8, .9, 1 -> 0:  (4 + 4 * 7/9) / 11 = 64/99.
# py-faster-rcnn's np.arange thresholds 0.30000000000000004 and 0.7000000000000001 miss
#   the recalls 0.3 and 0.7 and would give (3 + 4 * 7/9) / 11 = 55/99: here t is k/10.
# all-point: .1 * (1 + 1 + 1) + .1 * 7/9 * 4 = 0.3 + 28/90 = 55/90
def test_eleven_points_count_a_recall_equal_to_the_threshold():
    tp = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 0])
    recall = np.cumsum(tp) / 10
    precision = np.cumsum(tp) / np.arange(1, 11)
    assert recall[2] == 0.3 and recall[8] == 0.7
    assert average_precision(recall, precision, use_07_metric=True) == pytest.approx(64 / 99)
    assert average_precision(recall, precision) == pytest.approx(55 / 90)


@pytest.mark.parametrize("use_07_metric", [False, True])
def test_average_precision_equals_the_loop_on_random_curves(use_07_metric):
    rng = np.random.default_rng(3)
    for _ in range(200):
        d, npos = rng.integers(1, 30), rng.integers(1, 20)
        tp = rng.random(d) < rng.random()
        tp[np.cumsum(tp) > npos] = False                 # at most npos true positives
        recall = np.cumsum(tp) / npos
        precision = np.cumsum(tp) / np.arange(1, d + 1)
        assert average_precision(recall, precision, use_07_metric) == pytest.approx(
            reference_voc_ap(recall, precision, use_07_metric), abs=1e-12)


# ---------------------------------------------------------------- the matching rules

def test_iou_threshold_boundary_is_inclusive():
    # IoU of [0, 0, 10, 5] with [0, 0, 10, 10] is 50 / 100 = 0.5 exactly: a hit (the
    # devkit's ovmax >= minoverlap and the seed's "IoU >= 1/2"; py-faster-rcnn's > would
    # call it a miss)
    gt = [[0, 0, 10, 10]]
    assert ops.box_iou(np.array([[0, 0, 10, 5.0]]), np.array(gt, float))[0, 0] == 0.5
    assert match_detections([[0, 0, 10, 5]], [1.0], gt).tp.tolist() == [True]
    below = match_detections([[0, 0, 10, 4.99]], [1.0], gt)
    assert below.tp.tolist() == [False] and below.fp.tolist() == [True]
    assert below.gt_index.tolist() == [-1]
    # IoU 0.75 exactly at threshold 0.75, just below at 0.76
    assert match_detections([[0, 0, 10, 7.5]], [1.0], gt, iou_threshold=0.75).tp[0]
    assert match_detections([[0, 0, 10, 7.5]], [1.0], gt, iou_threshold=0.76).fp[0]


def test_duplicates_are_false_positives_even_with_a_free_neighbour():
    # A = [0, 0, 10, 10], B = [5, 0, 15, 10]. p1 sits on A; p2 = [2, 0, 12, 10] overlaps
    # A by 80/120 = 2/3 and B by 70/130 = 0.54. VOC compares p2 with its best object A
    # only: taken, so p2 is a false positive although B is free and overlaps it enough.
    gt = [[0, 0, 10, 10], [5, 0, 15, 10]]
    match = match_detections([[2, 0, 12, 10], [0, 0, 10, 10]], [0.8, 0.9], gt)
    assert match.order.tolist() == [1, 0]
    assert match.tp.tolist() == [True, False] and match.fp.tolist() == [False, True]
    assert match.gt_index.tolist() == [0, 0]
    # the same box twice: the better scored one is the TP
    twice = match_detections([[0, 0, 10, 10], [0, 0, 10, 10]], [0.3, 0.7], gt[:1])
    assert twice.order.tolist() == [1, 0] and twice.tp.tolist() == [True, False]


def test_ties_keep_the_input_order_and_the_first_object():
    gt = [[0, 0, 10, 10]]
    # equal scores: the first given is visited first and takes the object, although the
    # second overlaps it more
    match = match_detections([[0, 0, 10, 6], [0, 0, 10, 9]], [0.5, 0.5], gt)
    assert match.order.tolist() == [0, 1] and match.tp.tolist() == [True, False]
    # a box overlapping two objects equally goes to the first (devkit: ov > ovmax)
    gts = [[0, 0, 10, 10], [10, 0, 20, 10]]
    both = match_detections([[5, 0, 15, 10]], [1.0], gts, iou_threshold=0.3)
    assert both.gt_index.tolist() == [0] and both.tp[0]


def test_difficult_objects_are_neither_found_nor_missed():
    gt = [[0, 0, 10, 10], [20, 0, 30, 10]]
    difficult = [True, False]
    match = match_detections([[0, 0, 10, 10], [0, 0, 10, 9], [20, 0, 30, 10], [50, 50, 60, 60]],
                             [0.9, 0.8, 0.7, 0.6], gt, difficult=difficult)
    # two predictions on the difficult object: both ignored (it is never taken)
    assert match.tp.tolist() == [False, False, True, False]
    assert match.fp.tolist() == [False, False, False, True]
    assert match.gt_index.tolist() == [0, 0, 1, -1]
    assert match.num_gt == 1
    # a prediction whose best object is difficult is ignored even if it also overlaps an
    # ordinary object enough (VOC looks at the best one only)
    gt = [[0, 0, 10, 10], [0, 0, 10, 8]]
    best_is_difficult = match_detections([[0, 0, 10, 9.5]], [1.0], gt, difficult=[True, False])
    assert not best_is_difficult.tp[0] and not best_is_difficult.fp[0]
    # the AP: the ignored rows leave the curve; 1 TP, 1 FP over one object
    images = [_image([[0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 60, 60]], [1, 1, 1],
                     [0.9, 0.7, 0.8], [[0, 0, 10, 10], [20, 0, 30, 10]], [1, 1],
                     difficult=[True, False])]
    m, _ = mean_average_precision(*_split(images), num_classes=2)
    # after dropping the difficult hit: FP (.8) then TP (.7): recall 0, 1; precision 0, 1/2
    assert m == pytest.approx(0.5)


def test_empty_predictions_and_images_without_objects():
    none = match_detections(np.zeros((0, 4)), np.zeros(0), [[0, 0, 1, 1]])
    assert none.order.size == 0 and none.tp.size == 0 and none.num_gt == 1
    nothing = match_detections([[0, 0, 1, 1], [2, 2, 3, 3]], [0.2, 0.4], np.zeros((0, 4)))
    assert nothing.fp.tolist() == [True, True] and nothing.gt_index.tolist() == [-1, -1]
    assert nothing.num_gt == 0
    # an image without objects: its predictions are false positives of their class
    images = [_image([[0, 0, 10, 10]], [1], [0.5], [[0, 0, 10, 10]], [1]),
              _image([[5, 5, 9, 9]], [1], [0.9])]                      # no objects
    m, per_class = mean_average_precision(*_split(images), num_classes=2)
    # FP (.9) then TP (.5): recall 0, 1, precision 0, 1/2 -> 1/2
    assert m == pytest.approx(0.5) and per_class[1] == pytest.approx(0.5)
    # no prediction at all: AP 0 for each class with objects
    empty = [_image(gt_boxes=[[0, 0, 5, 5]], gt_labels=[2])]
    m, per_class = mean_average_precision(*_split(empty), num_classes=3)
    assert m == 0.0 and per_class[2] == 0.0 and math.isnan(per_class[1])


def test_classes_without_objects_and_the_background():
    # class 1: found; class 2: predicted but never present (NaN, left out of the mean);
    # class 3: present, never predicted (0); label 0: the background, never scored
    images = [_image([[0, 0, 10, 10], [30, 30, 40, 40], [60, 60, 70, 70]], [1, 2, 0],
                     [0.9, 0.8, 0.99], [[0, 0, 10, 10], [50, 0, 60, 10], [60, 60, 70, 70]],
                     [1, 3, 0])]
    metric = DetectionMetric(4)
    metric.update(*_split(images))
    r = metric.compute()
    assert r["ap_per_class"][1] == 1.0 and r["ap_per_class"][3] == 0.0
    assert math.isnan(r["ap_per_class"][0]) and math.isnan(r["ap_per_class"][2])
    assert r["map_50"] == 0.5
    assert metric.num_gt.tolist() == [0, 1, 0, 1]
    # only difficult objects: the class does not count either
    only_difficult = [_image([[0, 0, 10, 10]], [1], [0.9], [[0, 0, 10, 10]], [1], [True])]
    metric = DetectionMetric(2, coco=True)
    metric.update(*_split(only_difficult))
    r = metric.compute()
    assert math.isnan(r["map_50"]) and math.isnan(r["ap_per_class"][1])
    assert math.isnan(r["map"])


def test_nothing_seen_and_reset():
    metric = DetectionMetric(3, coco=True)
    r = metric.compute()
    assert math.isnan(r["map_50"]) and math.isnan(r["map"])
    assert all(math.isnan(v) for v in r["ap_per_class"])
    metric.update(*_split([_image([[0, 0, 4, 4]], [1], [0.5], [[0, 0, 4, 4]], [1])]))
    assert metric.compute()["map_50"] == 1.0 and metric.images == 1
    metric.reset()
    assert math.isnan(metric.compute()["map_50"]) and metric.images == 0
    assert metric.num_gt.sum() == 0


# --------------------------------------------------------------- the whole-set twins

@pytest.mark.parametrize("use_07_metric", [False, True])
@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_per_class_ap_equals_the_devkit_loop(use_07_metric, threshold):
    rng = np.random.default_rng(11)
    images = _random_set(rng, 40, 4)
    detections, targets = _split(images)
    m, per_class = mean_average_precision(detections, targets, 4, threshold, use_07_metric)
    expected = [voc_devkit_twin(detections, targets, c, threshold, use_07_metric)
                for c in range(1, 4)]
    np.testing.assert_allclose(per_class[1:], expected, rtol=0, atol=1e-12)
    assert m == pytest.approx(np.nanmean(expected), abs=1e-12)
    assert 0.1 < m < 0.95                       # a set with misses, duplicates and strays


def test_coco_map_equals_the_cocoeval_loop():
    rng = np.random.default_rng(12)
    for n_classes in (2, 4):
        images = _random_set(rng, 30, n_classes)
        metric = DetectionMetric(n_classes, coco=True)
        metric.update(*_split(images))
        r = metric.compute()
        expected = cocoeval_twin(*_split(images), n_classes)
        assert r["map"] == pytest.approx(expected, abs=1e-12)
        assert 0.05 < r["map"] < r["map_50"]


# ------------------------------------------------------------------------- COCO by hand

def test_coco_map_perfect_and_one_box():
    gt = [[0, 0, 10, 10], [20, 20, 40, 30]]
    perfect = [_image(gt, [1, 2], [0.9, 0.8], gt, [1, 2])]
    metric = DetectionMetric(3, coco=True)
    metric.update(*_split(perfect))
    r = metric.compute()
    assert r["map"] == 1.0 and r["map_50"] == 1.0        # exactly (no + spacing(1))
    # one object, one box at IoU 0.72: a TP at the thresholds .5 .55 .6 .65 .7 (AP 1:
    # recall 1 at precision 1 reaches all 101 recalls), a FP above (AP 0): 5/10
    one = [_image([[0, 0, 10, 7.2]], [1], [0.9], [[0, 0, 10, 10]], [1])]
    metric = DetectionMetric(2, coco=True)
    metric.update(*_split(one))
    assert metric.compute()["map"] == pytest.approx(0.5)


def test_coco_101_point_interpolation_by_hand():
    # three objects A, B, C; p1 (.9) on A with IoU 0.96, p2 (.8) on B with IoU 0.62,
    # p3 (.7) on nothing; C is missed.
    # t = .5, .55, .6: tp = 1 1 0, recall 1/3 2/3 2/3, precision 1 1 2/3, envelope 1 1 2/3;
    #   the recalls 0 .. .33 are first reached at p1 (envelope 1), .34 .. .66 at p2 (1),
    #   .67 .. 1 never: 67 ones in 101 -> 67/101
    # t = .65 ... .95 (7 thresholds): tp = 1 0 0, recall 1/3 throughout; recalls
    #   0 .. .33 at p1 (1), the rest never: 34/101
    # map = (3 * 67/101 + 7 * 34/101) / 10 = 439/1010; VOC at .5: 1/3 + 1/3 = 2/3
    gt = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    boxes = [[0, 0, 10, 9.6], [20, 0, 30, 6.2], [70, 70, 80, 80]]
    images = [_image(boxes, [1, 1, 1], [0.9, 0.8, 0.7], gt, [1, 1, 1])]
    metric = DetectionMetric(2, coco=True)
    metric.update(*_split(images))
    r = metric.compute()
    assert r["map"] == pytest.approx(439 / 1010, abs=1e-15)
    assert r["map_50"] == pytest.approx(2 / 3, abs=1e-15)


def test_coco_matches_a_free_neighbour_where_voc_does_not():
    # the duplicate case above: at t = .5 COCO gives p2 to the free B (IoU 0.54): tp 1 1,
    # AP 1; at t >= .55 p2 misses: tp 1 0, recall .5 .5 -> recalls 0 .. .5 reached: 51/101.
    # map = (1 + 9 * 51/101) / 10 = 560/1010; VOC at .5 counts p2 a duplicate: 1/2
    gt = [[0, 0, 10, 10], [5, 0, 15, 10]]
    images = [_image([[0, 0, 10, 10], [2, 0, 12, 10]], [1, 1], [0.9, 0.8], gt, [1, 1])]
    metric = DetectionMetric(2, coco=True)
    metric.update(*_split(images))
    r = metric.compute()
    assert r["map"] == pytest.approx(560 / 1010, abs=1e-15)
    assert r["map_50"] == pytest.approx(0.5)


def test_coco_takes_the_last_of_equal_ious():
    # A = [0, 0, 10, 10], B = [2, 0, 12, 10]; p1 (.9) = [1, 0, 11, 10] overlaps both by
    # 90/110 = 0.818; p2 (.8) = A overlaps A by 1 and B by 80/120 = 0.667.
    # COCOeval keeps the last of equal IoUs: p1 takes B, p2 takes A.
    # t = .5 ... .8 (7): tp 1 1, AP 1. t = .85, .9, .95: p1 misses, p2 on A: tp 0 1,
    #   recall 0 .5, precision 0 .5, envelope .5 .5: recalls 0 .. .5 at .5: 25.5/101.
    # map = (7 + 3 * 25.5/101) / 10 = 1567/2020 (taking the first, A, would leave p2 only
    # B: a miss at .7, .75, .8). VOC gives p1 the first (A) and calls p2 a duplicate: 1/2.
    gt = [[0, 0, 10, 10], [2, 0, 12, 10]]
    images = [_image([[1, 0, 11, 10], [0, 0, 10, 10]], [1, 1], [0.9, 0.8], gt, [1, 1])]
    metric = DetectionMetric(2, coco=True)
    metric.update(*_split(images))
    r = metric.compute()
    assert r["map"] == pytest.approx(1567 / 2020, abs=1e-15)
    assert r["map_50"] == pytest.approx(0.5)


def test_coco_recall_thresholds_are_exact_hundredths():
    # 20 objects, 7 found exactly: recall climbs to 7/20 = 0.35 at precision 1, so the
    # recalls 0, .01, ..., .35 are reached: 36/101 at every threshold. (pycocotools'
    # linspace holds 0.35000000000000003 and would give 35/101.)
    gt = [[20 * i, 0, 20 * i + 10, 10] for i in range(20)]
    images = [_image(gt[:7], [1] * 7, np.linspace(0.9, 0.3, 7), gt, [1] * 20)]
    metric = DetectionMetric(2, coco=True)
    metric.update(*_split(images))
    assert metric.compute()["map"] == pytest.approx(36 / 101, abs=1e-15)


def test_coco_prefers_ordinary_objects_and_keeps_100_per_image():
    # the best object of p is difficult, but an ordinary one overlaps it >= every
    # threshold up to .8: COCO takes the ordinary one (TP), VOC ignores p
    gt = [[0, 0, 10, 10], [0, 0, 10, 8]]
    images = [_image([[0, 0, 10, 9.5]], [1], [1.0], gt, [1, 1], difficult=[True, False])]
    metric = DetectionMetric(2, coco=True)
    metric.update(*_split(images))
    r = metric.compute()
    # IoU with the ordinary object 80/95 = 0.842: TP for t <= .8 (7 thresholds)
    assert r["map"] == pytest.approx(0.7)
    assert r["map_50"] == 0.0                  # VOC: no TP, no FP, one object missed
    # 100 false positives above one true positive in one image: COCO drops the 101st
    boxes = [[50 + i, 50, 52 + i, 52] for i in range(100)] + [[0, 0, 10, 10]]
    scores = np.linspace(1.0, 0.5, 100).tolist() + [0.1]
    images = [_image(boxes, [1] * 101, scores, [[0, 0, 10, 10]], [1])]
    metric = DetectionMetric(2, coco=True)
    metric.update(*_split(images))
    r = metric.compute()
    assert r["map"] == 0.0
    assert r["map_50"] == pytest.approx(1 / 101)   # VOC keeps it: recall 1 at 1/101


# -------------------------------------------------------------- streaming and options

def test_streaming_equals_one_shot_on_the_concatenation():
    rng = np.random.default_rng(5)
    images = _random_set(rng, 25, 5)
    once = DetectionMetric(5, iou_thresholds=(0.5, 0.75), coco=True)
    once.update(*_split(images))
    streamed = DetectionMetric(5, iou_thresholds=(0.5, 0.75), coco=True)
    for start, stop in [(0, 3), (3, 4), (4, 4), (4, 17), (17, 25)]:
        streamed.update(*_split(images[start:stop]))
    _same(once.compute(), streamed.compute())
    assert streamed.images == 25
    r = once.compute()
    assert set(r) == {"map_50", "ap_per_class", "map_75", "map"}
    assert r["map_75"] < r["map_50"]
    m, per_class = mean_average_precision(*_split(images), num_classes=5)
    assert m == r["map_50"]
    np.testing.assert_array_equal(per_class, r["ap_per_class"])


def test_thresholds_and_the_07_metric():
    rng = np.random.default_rng(6)
    images = _random_set(rng, 20, 3)
    # 0.5 + 0.05 * 7 = 0.8500000000000001 is read as 0.85; 0.5 is always evaluated
    metric = DetectionMetric(3, iou_thresholds=[0.5 + 0.05 * i for i in range(10)])
    metric.update(*_split(images))
    r = metric.compute()
    assert list(r) == ["map_50", "ap_per_class"] + [f"map_{k}" for k in range(55, 100, 5)]
    assert metric.iou_thresholds[7] == 0.85
    assert DetectionMetric(3, iou_thresholds=(0.75,)).iou_thresholds == (0.5, 0.75)
    values = [r[f"map_{k}"] for k in range(55, 100, 5)]
    assert all(a >= b for a, b in zip([r["map_50"]] + values, values))   # stricter: lower
    voc07 = DetectionMetric(3, use_07_metric=True)
    voc07.update(*_split(images))
    m07, _ = mean_average_precision(*_split(images), 3, use_07_metric=True)
    assert voc07.compute()["map_50"] == m07 != r["map_50"]


def test_tensors_and_the_device_copy_each_field_once(monkeypatch):
    rng = np.random.default_rng(7)
    images = _random_set(rng, 6, 3)
    host = DetectionMetric(3, coco=True)
    host.update(*_split(images))
    as_tensors = DetectionMetric(3, coco=True)
    as_tensors.update([{k: mc.tensor(v) for k, v in d.items()} for d, _ in images],
                      [{k: mc.tensor(v) for k, v in t.items()} for _, t in images])
    _same(host.compute(), as_tensors.compute())

    copies = record_device_to_host(monkeypatch)
    device = DetectionMetric(3, coco=True)
    device.update([{k: mc.Tensor._wrap(to_device(v)) for k, v in d.items()} for d, _ in images],
                  [{k: to_device(v) for k, v in t.items()} for _, t in images])
    # six fields (3 detection, 3 target), one copy each for the six images together
    assert copies.count(True) == 6
    _same(host.compute(), device.compute())


# --------------------------------------------------------------------------- bad input

def test_bad_input_errors_name_the_op():
    with pytest.raises(ValueError, match=r"match_detections: expected pred_boxes of shape "
                                         r"\(K, 4\), one \(x1, y1, x2, y2\) box per row, got "
                                         r"shape \(2, 3\)"):
        match_detections(np.zeros((2, 3)), [0.1, 0.2], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"match_detections: expected pred_scores of shape "
                                         r"\(2,\), one per box, got shape \(3,\)"):
        match_detections([[0, 0, 1, 1], [0, 0, 2, 2]], [0.1, 0.2, 0.3], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"match_detections: expected difficult of shape "
                                         r"\(1,\)"):
        match_detections([[0, 0, 1, 1]], [0.1], [[0, 0, 1, 1]], difficult=[True, False])
    with pytest.raises(ValueError, match=r"match_detections: gt_boxes\[0\] = \[5.0, 0.0, 1.0, "
                                         r"1.0\] has x2 < x1"):
        match_detections([[0, 0, 1, 1]], [0.1], [[5, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"match_detections: iou_threshold must be in "
                                         r"\(0, 1\], got 0"):
        match_detections([[0, 0, 1, 1]], [0.1], [[0, 0, 1, 1]], iou_threshold=0)
    with pytest.raises(ValueError, match="pred_scores holds NaN"):
        match_detections([[0, 0, 1, 1]], [math.nan], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"average_precision: expected recall and precision "
                                         r"of one shape"):
        average_precision([0.1, 0.2], [1.0])

    metric = DetectionMetric(3)
    good = _image([[0, 0, 1, 1]], [1], [0.5], [[0, 0, 1, 1]], [1])
    det, tgt = good
    with pytest.raises(ValueError, match=r"DetectionMetric.update: detections\[1\]\['labels'\] "
                                         r"holds class 3, outside \[0, 3\) for num_classes=3"):
        metric.update([det, {**det, "labels": np.array([3])}], [tgt, tgt])
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] holds class -1"):
        metric.update([det], [{**tgt, "labels": np.array([-1])}])
    with pytest.raises(ValueError, match=r"DetectionMetric.update: expected "
                                         r"targets\[0\]\['boxes'\] of shape \(K, 4\)"):
        metric.update([det], [{**tgt, "boxes": np.zeros((1, 5))}])
    with pytest.raises(ValueError, match=r"expected detections\[0\]\['scores'\] of shape "
                                         r"\(1,\), one per box, got shape \(2,\)"):
        metric.update([{**det, "scores": np.array([0.1, 0.2])}], [tgt])
    with pytest.raises(ValueError, match=r"DetectionMetric.update: 2 detections but 1 "
                                         r"targets"):
        metric.update([det, det], [tgt])
    with pytest.raises(ValueError, match=r"detections\[0\] has no 'scores'"):
        metric.update([{"boxes": det["boxes"], "labels": det["labels"]}], [tgt])
    with pytest.raises(TypeError, match=r"labels'\] must hold integer class indices, got "
                                        r"dtype float32"):
        metric.update([{**det, "labels": np.array([1.0], dtype=np.float32)}], [tgt])
    with pytest.raises(TypeError, match="detections must be a list with one dict per image"):
        metric.update(det, [tgt])
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 2"):
        DetectionMetric(1)
    with pytest.raises(ValueError, match=r"DetectionMetric: iou_thresholds must be in "
                                         r"\(0, 1\], got 1.5"):
        DetectionMetric(3, iou_thresholds=(0.5, 1.5))
    with pytest.raises(ValueError, match=r"mean_average_precision: num_classes must be"):
        mean_average_precision([det], [tgt], 1)
    assert metric.images == 0 and metric.num_gt.sum() == 0   # nothing half-counted


def test_box_iou_and_nms_are_the_ops():
    assert metrics.box_iou is ops.box_iou and metrics.nms is ops.nms
