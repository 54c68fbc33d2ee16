"""The Detection task with a mask detector: when the eval outputs and the targets carry
``masks`` the epoch also reports ``mask_iou`` (minicnn.metrics.MaskIoUMetric), logged,
printed and drawn as map_50 is; box-only detectors report no such key. A fake detector
with fixed outputs (no learning) gives numbers worked by hand."""
import json

import numpy as np

import minicnn
from minicnn import nn, optim
from minicnn.data import DataLoader, detection_collate
from minicnn.train import Detection, Trainer


def _rect(x1, y1, x2, y2, size=8):
    m = np.zeros((size, size), np.float32)
    m[y1:y2, x1:x2] = 1
    return m


# two 8x8 images, one object each (class 1 top-left 4x4, class 2 bottom-right 4x4)
_TARGETS = [{"boxes": minicnn.tensor(np.array([[0, 0, 4, 4]], np.float32)),
             "labels": minicnn.tensor(np.array([1])),
             "masks": minicnn.tensor(_rect(0, 0, 4, 4)[None].astype(np.uint8))},
            {"boxes": minicnn.tensor(np.array([[4, 4, 8, 8]], np.float32)),
             "labels": minicnn.tensor(np.array([2])),
             "masks": minicnn.tensor(_rect(4, 4, 8, 8)[None].astype(np.uint8))}]


class FixedMaskDetector(nn.Module):
    """Always the same detections: on image 0 the object with its exact mask (IoU 1) and
    a low-score copy (ignored); on image 1 the object's box with half its mask (IoU 1/2)
    and a wrong-class box (ignored). Training returns one loss of a dummy parameter."""

    def __init__(self, masks=True):
        super().__init__()
        self.w = nn.Parameter(minicnn.ones(1))
        self.masks = masks

    def forward(self, images, targets=None):
        if self.training:
            return {"loss_dummy": (self.w * self.w).sum()}
        outputs = [{"boxes": np.array([[0, 0, 4, 4], [0, 0, 4, 4]], np.float32),
                    "labels": np.array([1, 1]), "scores": np.array([0.9, 0.2], np.float32),
                    "masks": np.stack([_rect(0, 0, 4, 4), _rect(0, 0, 2, 2)])[:, None]},
                   {"boxes": np.array([[4, 4, 8, 8], [4, 4, 8, 8]], np.float32),
                    "labels": np.array([2, 1]), "scores": np.array([0.8, 0.99], np.float32),
                    "masks": np.stack([0.7 * _rect(4, 4, 8, 6), _rect(4, 4, 8, 8)])[:, None]}]
        outputs = [{k: minicnn.tensor(v) for k, v in o.items()
                    if self.masks or k != "masks"} for o in outputs]
        return outputs[:len(images)]


def _batches():
    return DataLoader([(minicnn.zeros(3, 8, 8), t) for t in _TARGETS], batch_size=2,
                      collate_fn=detection_collate)


def test_mask_detector_reports_mask_iou_per_epoch(tmp_path, capsys):
    model = FixedMaskDetector()
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), progress=False,
                      log=True, task=Detection(3, preview=0), out_dir=tmp_path / "run")
    trainer.fit(_batches(), _batches(), epochs=2)
    # image 0: IoU 1 (the 0.2 copy is under 0.5); image 1: 8 of 16 pixels (the class-1
    # box has no class-1 object)
    assert [m["eval_mask_iou"] for m in trainer.history] == [0.75, 0.75]
    # boxes: class 2 AP 1; class 1 AP 1/2 (the 0.99 false positive ranks first)
    assert [m["eval_map_50"] for m in trainer.history] == [0.75, 0.75]
    assert "train_mask_iou" not in trainer.history[0]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["eval_mask_iou"] for line in lines] == [0.75, 0.75]
    assert "mask IoU 75.00%" in capsys.readouterr().out
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000


def test_box_only_detector_reports_no_mask_iou():
    model = FixedMaskDetector(masks=False)
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), progress=False,
                      log=False, task=Detection(3, preview=0))
    trainer.fit(_batches(), _batches(), epochs=1)
    assert "eval_mask_iou" not in trainer.history[0]
    assert trainer.history[0]["eval_map_50"] == 0.75
    meter = Detection(3, preview=0).metrics()         # targets without masks: none either
    meter.update(FixedMaskDetector().eval()(minicnn.zeros(2, 3, 8, 8)),
                 (None, [{k: v for k, v in t.items() if k != "masks"} for t in _TARGETS]))
    assert meter.compute() == {"map_50": 0.75}
