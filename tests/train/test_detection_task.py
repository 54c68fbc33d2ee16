"""The Detection task: a detector's own losses in training, mAP@0.5 over the test set,
the picture of boxes, through the same Trainer as every task."""
import json
import os

import numpy as np
import pytest

import minicnn
from minicnn import nn, optim
from minicnn.nn import functional as F
from minicnn.data import DataLoader, datasets, detection_collate
from minicnn.train import Detection, Trainer, plot_detections


class OneBoxDetector(nn.Module):
    """Predicts one box and one class per image, in torchvision's detector convention:
    losses in training (the first object of each target), detections in eval."""

    def __init__(self, num_classes, image_size):
        super().__init__()
        self.image_size = image_size
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(8 * 16, 4 + num_classes)

    def forward(self, images, targets=None):
        out = self.head(self.features(images))
        boxes = out[:, :4].sigmoid() * self.image_size
        logits = out[:, 4:]
        if self.training:
            first_boxes = minicnn.stack([t["boxes"][0] for t in targets])
            first_labels = minicnn.stack([t["labels"][0] for t in targets])
            return {"loss_box": F.smooth_l1_loss(boxes / self.image_size,
                                                 first_boxes / self.image_size),
                    "loss_class": F.cross_entropy(logits, first_labels)}
        probs = logits.softmax(dim=1)
        scores = probs.max(dim=1).values
        labels = probs.argmax(dim=1)
        return [{"boxes": boxes[i:i + 1], "labels": labels[i:i + 1],
                 "scores": scores[i:i + 1]} for i in range(len(images))]


def _loaders(n_train=48, n_test=16, size=32):
    train = datasets.ShapesDetection(n_train, image_size=size, seed=0, max_shapes=1)
    test = datasets.ShapesDetection(n_test, image_size=size, seed=1, max_shapes=1)
    return (DataLoader(train, batch_size=8, shuffle=True, collate_fn=detection_collate),
            DataLoader(test, batch_size=8, collate_fn=detection_collate), train)


def test_detection_task_trains_and_reports_map(tmp_path):
    minicnn.manual_seed(0)
    train_loader, test_loader, train = _loaders()
    model = OneBoxDetector(train.num_classes, 32)
    trainer = Trainer(model, optim.Adam(model.parameters(), lr=1e-2), progress=False,
                      log=False, task=Detection(train.num_classes, train.classes),
                      out_dir=tmp_path / "run")
    trainer.fit(train_loader, test_loader, epochs=3)
    history = trainer.history
    assert [set(m) >= {"train_loss", "train_loss_box", "train_loss_class", "eval_map_50"}
            for m in history] == [True] * 3
    assert "train_map_50" not in history[0]          # mAP is measured on the test set only
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(0.0 <= m["eval_map_50"] <= 1.0 for m in history)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["eval_map_50"] for line in lines] == \
        [m["eval_map_50"] for m in history]
    assert (tmp_path / "run" / "predictions" / "epoch-003.png").stat().st_size > 1000
    assert (tmp_path / "run" / "curves.png").exists()


def test_detection_meter_scores_perfect_detections_as_one():
    """An oracle that answers with the true boxes scores mAP 1; one that answers with
    boxes in the wrong place scores 0."""
    task = Detection(4)
    _, test_loader, _ = _loaders(n_test=16)
    perfect, wrong = task.metrics(), task.metrics()
    for images, targets in test_loader:
        answers = [{"boxes": t["boxes"], "labels": t["labels"],
                    "scores": minicnn.ones(len(t["labels"]))} for t in targets]
        perfect.update(answers, (images, targets))
        moved = [{**a, "boxes": a["boxes"] + 1000.0} for a in answers]
        wrong.update(moved, (images, targets))
    assert perfect.compute() == {"map_50": 1.0}
    assert wrong.compute() == {"map_50": 0.0}
    assert task.metrics().compute() == {}         # nothing seen yet: no number to show
    assert len(perfect.examples) == 4


def test_detection_meter_ignores_training_batches():
    meter = Detection(4).metrics()
    meter.update(None, None)
    assert meter.compute() == {}


def test_plot_detections_draws_truth_and_prediction(tmp_path):
    image = np.random.default_rng(0).random((3, 32, 32))
    example = {"image": image, "boxes": np.array([[2.0, 3.0, 20.0, 25.0]]),
               "labels": np.array([1]), "predicted_boxes": np.array([[1.0, 2, 19, 24],
                                                                     [5.0, 5, 9, 9]]),
               "predicted_labels": np.array([1, 2]), "scores": np.array([0.9, 0.1])}
    path = str(tmp_path / "boxes.png")
    assert plot_detections([example, example], path, ["background", "square", "disk"])
    assert os.path.getsize(path) > 1000
    assert not os.path.exists(path + ".tmp.png")
