"""Torch versions of the box operations the R-CNN model files import from minicnn.ops,
for their torch twins (``model_twin.torch_twin`` runs a model file on torch; these take
the place of the ops it imported by name).

Each follows torchvision's code (``ops/boxes.py``, ``ops/poolers.py``,
``models/detection/_utils.py``, ``csrc/ops/cpu/roi_align_kernel.cpp``) in torch, written
here from its semantics; ``roi_align`` samples each box as two small matrix products (the
statement-by-statement twin in tests/ops/test_roi.py is too slow for hundreds of boxes)
and checked against that one in tests/models/test_roi_heads.py.

The sampler is the one piece that is not torchvision's: :class:`FixedSampler` draws from
a NumPy generator with a fixed seed, so that minicnn and its twin draw the same proposals.
"""
import math

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Imported by a test module, runs each of its tests with torch on one thread: a twin
    runs many small ops, which torch's thread pool slows down badly on a busy machine."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torch_ops(torch):
    """A dict name -> torch implementation, for a twin's namespace."""

    def box_area(b):
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    def box_iou(boxes1, boxes2):
        area1, area2 = box_area(boxes1), box_area(boxes2)
        lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
        rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[:, :, 0] * wh[:, :, 1]
        return inter / (area1[:, None] + area2 - inter)

    def clip_boxes_to_image(boxes, size):
        dim = boxes.dim()
        height, width = size
        bx = boxes[..., 0::2].clamp(min=0, max=width)
        by = boxes[..., 1::2].clamp(min=0, max=height)
        return torch.stack((bx, by), dim=dim).reshape(boxes.shape)

    def remove_small_boxes(boxes, min_size):
        ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        return torch.where((ws >= min_size) & (hs >= min_size))[0]

    def nms(boxes, scores, thr):
        # the greedy loop of torchvision's CPU kernel (IoU > thr suppresses), on numpy
        order = scores.sort(descending=True, stable=True)[1].numpy()
        b = boxes.numpy()
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        suppressed = np.zeros(len(order), bool)
        keep = []
        for a, i in enumerate(order):
            if suppressed[a]:
                continue
            keep.append(i)
            j = order[a + 1:]
            w = np.maximum(0.0, np.minimum(b[i, 2], b[j, 2]) - np.maximum(b[i, 0], b[j, 0]))
            h = np.maximum(0.0, np.minimum(b[i, 3], b[j, 3]) - np.maximum(b[i, 1], b[j, 1]))
            inter = w * h
            suppressed[a + 1:] |= inter / (areas[i] + areas[j] - inter) > thr
        return torch.tensor(keep, dtype=torch.int64)

    def batched_nms(boxes, scores, idxs, thr):
        # torchvision's _batched_nms_vanilla
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for class_id in torch.unique(idxs):
            curr = torch.where(idxs == class_id)[0]
            keep_mask[curr[nms(boxes[curr].detach(), scores[curr].detach(), thr)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[scores[keep].sort(descending=True, stable=True)[1]]

    class Matcher:
        BELOW_LOW_THRESHOLD = -1
        BETWEEN_THRESHOLDS = -2

        def __init__(self, high, low, allow_low_quality_matches=False):
            self.high, self.low = high, low
            self.allow_low_quality_matches = allow_low_quality_matches

        def __call__(self, q):
            matched_vals, matches = q.max(dim=0)
            all_matches = matches.clone()
            below = matched_vals < self.low
            between = (matched_vals >= self.low) & (matched_vals < self.high)
            matches[below] = -1
            matches[between] = -2
            if self.allow_low_quality_matches:
                highest, _ = q.max(dim=1)
                pairs = torch.where(q == highest[:, None])
                matches[pairs[1]] = all_matches[pairs[1]]
            return matches

    class BoxCoder:
        def __init__(self, weights, bbox_xform_clip=math.log(1000.0 / 16)):
            self.weights, self.bbox_xform_clip = weights, bbox_xform_clip

        def encode(self, reference_boxes, proposals):
            sizes = [len(b) for b in reference_boxes]
            ref, prop = torch.cat(reference_boxes), torch.cat(proposals)
            wx, wy, ww, wh = torch.as_tensor(self.weights, dtype=ref.dtype)
            ex_w = prop[:, 2:3] - prop[:, 0:1]
            ex_h = prop[:, 3:4] - prop[:, 1:2]
            ex_x = prop[:, 0:1] + 0.5 * ex_w
            ex_y = prop[:, 1:2] + 0.5 * ex_h
            gt_w = ref[:, 2:3] - ref[:, 0:1]
            gt_h = ref[:, 3:4] - ref[:, 1:2]
            gt_x = ref[:, 0:1] + 0.5 * gt_w
            gt_y = ref[:, 1:2] + 0.5 * gt_h
            targets = torch.cat((wx * (gt_x - ex_x) / ex_w, wy * (gt_y - ex_y) / ex_h,
                                 ww * torch.log(gt_w / ex_w), wh * torch.log(gt_h / ex_h)), 1)
            return targets.split(sizes, 0)

        def decode(self, rel_codes, boxes):
            concat = torch.cat(boxes, 0)
            total = concat.shape[0]
            rel_codes = rel_codes.reshape(total, -1)
            concat = concat.to(rel_codes.dtype)
            widths = concat[:, 2] - concat[:, 0]
            heights = concat[:, 3] - concat[:, 1]
            ctr_x = concat[:, 0] + 0.5 * widths
            ctr_y = concat[:, 1] + 0.5 * heights
            wx, wy, ww, wh = self.weights
            dx, dy = rel_codes[:, 0::4] / wx, rel_codes[:, 1::4] / wy
            dw = torch.clamp(rel_codes[:, 2::4] / ww, max=self.bbox_xform_clip)
            dh = torch.clamp(rel_codes[:, 3::4] / wh, max=self.bbox_xform_clip)
            px = dx * widths[:, None] + ctr_x[:, None]
            py = dy * heights[:, None] + ctr_y[:, None]
            half_w = torch.tensor(0.5, dtype=py.dtype) * (torch.exp(dw) * widths[:, None])
            half_h = torch.tensor(0.5, dtype=py.dtype) * (torch.exp(dh) * heights[:, None])
            out = torch.stack((px - half_w, py - half_h, px + half_w, py + half_h), dim=2)
            return out.flatten(1).reshape(total, -1, 4)

    def roi_align(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1,
                  aligned=False):
        if isinstance(rois, (list, tuple)):
            rois = torch.cat([torch.cat([torch.full((len(b), 1), i, dtype=b.dtype), b], 1)
                              for i, b in enumerate(rois)])
        OH, OW = (output_size, output_size) if isinstance(output_size, int) else output_size
        N, C, H, W = input.shape
        T = np.float64 if input.dtype == torch.float64 else np.float32
        out = []
        for r in rois.detach().numpy().astype(T):
            offset = T(0.5) if aligned else T(0)
            x1, y1, x2, y2 = (r[k] * T(spatial_scale) - offset for k in (1, 2, 3, 4))
            rw, rh = x2 - x1, y2 - y1
            if not aligned:
                rw, rh = max(rw, T(1)), max(rh, T(1))
            bh, bw = rh / T(OH), rw / T(OW)
            gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / T(OH))
            gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / T(OW))
            count = max(gh * gw, 1)
            ys = np.array([y1 + T(p) * bh + T(i + .5) * bh / T(gh)
                           for p in range(OH) for i in range(gh)], dtype=T)
            xs = np.array([x1 + T(p) * bw + T(i + .5) * bw / T(gw)
                           for p in range(OW) for i in range(gw)], dtype=T)
            # bilinear sampling is separable: out[c] = Wy @ plane[c] @ Wx^T / count, Wy[p, y]
            # the summed weights of row y over the gh samples of output row p
            wy, wx = _weights(ys, H, OH, gh, T), _weights(xs, W, OW, gw, T)
            plane = input[int(r[0])]
            val = torch.einsum("py,cyx,qx->cpq", torch.from_numpy(wy), plane,
                               torch.from_numpy(wx))
            out.append(val / count)
        if not out:
            return input.new_zeros((0, C, OH, OW))
        return torch.stack(out)

    class MultiScaleRoIAlign(torch.nn.Module):
        def __init__(self, featmap_names, output_size, sampling_ratio, *,
                     canonical_scale=224, canonical_level=4):
            super().__init__()
            if isinstance(output_size, int):
                output_size = (output_size, output_size)
            self.featmap_names, self.output_size = featmap_names, tuple(output_size)
            self.sampling_ratio = sampling_ratio
            self.canonical_scale, self.canonical_level = canonical_scale, canonical_level

        def forward(self, x, boxes, image_shapes):
            feats = [v for k, v in x.items() if k in self.featmap_names]
            hmax = max(s[0] for s in image_shapes)
            scales = [2 ** float(torch.tensor(f.shape[-2] / hmax).log2().round()) for f in feats]
            kw = dict(output_size=self.output_size, sampling_ratio=self.sampling_ratio)
            rois = torch.cat([torch.cat([torch.full((len(b), 1), i, dtype=b.dtype), b], 1)
                              for i, b in enumerate(boxes)])
            if len(feats) == 1:
                return roi_align(feats[0], rois, spatial_scale=scales[0], **kw)
            k_min = int(-torch.log2(torch.tensor(scales[0], dtype=torch.float32)).item())
            k_max = int(-torch.log2(torch.tensor(scales[-1], dtype=torch.float32)).item())
            s = torch.sqrt(torch.cat([box_area(b) for b in boxes]))
            lvl = torch.floor(self.canonical_level + torch.log2(s / self.canonical_scale)
                              + torch.tensor(1e-6, dtype=s.dtype))
            levels = lvl.clamp(min=k_min, max=k_max).to(torch.int64) - k_min
            C = feats[0].shape[1]
            result = feats[0].new_zeros((rois.shape[0], C) + self.output_size)
            for level, (f, scale) in enumerate(zip(feats, scales)):
                idx = torch.where(levels == level)[0]
                if len(idx):
                    result = result.index_put((idx,), roi_align(f, rois[idx],
                                                                spatial_scale=scale, **kw))
            return result

    return dict(box_iou=box_iou, clip_boxes_to_image=clip_boxes_to_image,
                remove_small_boxes=remove_small_boxes, nms=nms, batched_nms=batched_nms,
                Matcher=Matcher, BoxCoder=BoxCoder, roi_align=roi_align,
                MultiScaleRoIAlign=MultiScaleRoIAlign)


def _weights(coords, size, out, grid, T):
    """torchvision's bilinear_interpolate along one axis, for the ``out · grid`` sample
    coordinates: the (out, size) matrix of each output cell's weight on each input cell
    (a point outside [-1, size] weighs nothing; below 0 it reads 0; at or past the last
    cell it reads the last one alone)."""
    valid = (coords >= -1.0) & (coords <= size)
    c = np.where(coords <= 0, T(0), coords).astype(T)
    low = c.astype(np.int64)
    last = low >= size - 1
    low = np.where(last, size - 1, low)
    high = np.where(last, size - 1, low + 1)
    c = np.where(last, low.astype(T), c)
    lw = (c - low.astype(T)).astype(T)
    hw = (T(1) - lw).astype(T)
    m = np.zeros((out, size), dtype=T)
    rows = np.repeat(np.arange(out), max(grid, 1))[:len(coords)]
    np.add.at(m, (rows, low), np.where(valid, hw, T(0)))
    np.add.at(m, (rows, high), np.where(valid, lw, T(0)))
    return m


class FixedSampler:
    """BalancedPositiveNegativeSampler's rule with draws from NumPy's generator at a
    fixed seed (the same proposals on the minicnn side and the torch side); ``wrap``
    turns the uint8 masks into the side's tensors."""

    def __init__(self, batch_size_per_image, positive_fraction, wrap, seed=0):
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.wrap, self.seed = wrap, seed

    def __call__(self, labels):
        rng = np.random.default_rng(self.seed)
        pos_masks, neg_masks = [], []
        for lab in labels:
            a = np.asarray(lab.tolist())
            positive, negative = np.nonzero(a >= 1)[0], np.nonzero(a == 0)[0]
            num_pos = min(len(positive), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(len(negative), self.batch_size_per_image - num_pos)
            pos = np.zeros(a.shape, np.uint8)
            neg = np.zeros(a.shape, np.uint8)
            pos[rng.permutation(positive)[:num_pos]] = 1
            neg[rng.permutation(negative)[:num_neg]] = 1
            pos_masks.append(self.wrap(pos))
            neg_masks.append(self.wrap(neg))
        return pos_masks, neg_masks
