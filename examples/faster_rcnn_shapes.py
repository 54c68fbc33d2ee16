"""Faster R-CNN on generated shapes: a region proposal network and a Fast R-CNN head on
one shared feature map.

The recipe of ``minicnn train --task detection --model faster_rcnn_small --epochs 8
--optimizer adam --lr 1e-3 --scheduler cosine``, written out as a plain loop, on 64x64
images with 1 to 3 shapes (square, disk, triangle) on textured backgrounds:

* ``faster_rcnn_small`` (minicnn/models/detection/rcnn.py): a small VGG-style backbone
  (stride 4, 64 channels), the RPN (a 3x3 convolution, then objectness and box offsets
  for 9 anchors per position: sizes 16, 24, 36 x ratios 1:2, 1:1, 2:1; 256 anchors
  sampled per image, at most half positive; NMS at 0.7 keeps 150 proposals per image in
  training, 100 at test), and the Fast R-CNN head (roi_pool 7x7, two fully connected
  layers, class scores and per-class box offsets; 32 RoIs per image, a quarter
  foreground);
* one loss, the sum of the RPN's two terms and Fast R-CNN's two (the papers' "approximate
  joint training"): ``loss_objectness + loss_rpn_box_reg + loss_classifier +
  loss_box_reg``;
* Adam at 1e-3 with weight decay 5e-4 and a cosine decay over the epochs; the CLI's
  augmentation for detection (colour jitter, random scaling and translation, flips).

NOTE, departures from the paper: a small backbone trained from scratch (no ImageNet
pre-training), Adam instead of SGD, anchors scaled to the shapes (see the model's
docstring).

Evaluation: held-out images (another seed), PASCAL VOC's mean average precision at IoU
0.5 (``minicnn.metrics.DetectionMetric``).

Run:  python examples/faster_rcnn_shapes.py   (see the report at the end for the time it took)
"""
import argparse
import time

import minicnn
from minicnn import optim
from minicnn.data import DataLoader, datasets, detection_collate
from minicnn.data import detection_transforms as T
from minicnn.metrics import DetectionMetric
from minicnn.models.detection import faster_rcnn_small


def evaluate(model, loader, num_classes):
    """mAP@0.5 (and the AP of each class) of the model's boxes on a data set."""
    metric = DetectionMetric(num_classes)
    model.eval()
    with minicnn.no_grad():
        for images, targets in loader:
            metric.update(model(images), targets)
    model.train()
    return metric.compute()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--no-augment", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    minicnn.manual_seed(0)

    # the data: 64x64 images, classes 1..3 (0 is the background), test set from seed 1
    train = datasets.ShapesDetection(args.train_size, seed=0, with_masks=False)
    test = datasets.ShapesDetection(args.test_size, seed=1, with_masks=False)
    if not args.no_augment:
        train.transforms = T.Compose([
            T.RandomHSV(), T.RandomScaleTranslate(), T.RandomHorizontalFlip(),
            T.SanitizeBoundingBoxes(),                  # drop boxes pushed out of view
            T.ToTensor(), T.Normalize(train.mean, train.std)])
    train_loader = DataLoader(train, args.batch_size, shuffle=True, drop_last=True,
                              collate_fn=detection_collate)
    test_loader = DataLoader(test, 100, collate_fn=detection_collate)

    # Faster R-CNN counts the background as class 0, as torchvision's detectors do
    model = faster_rcnn_small(num_classes=train.num_classes)
    optimizer = optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    print(f"faster_rcnn_small: {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"{len(train)} training images, {len(test)} test images")

    for epoch in range(1, args.epochs + 1):
        total, terms = 0.0, {}
        for images, targets in train_loader:
            # training mode: the four losses; the RPN's proposals feed the head inside
            losses = model(images, targets)
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            for name, value in losses.items():
                terms[name] = terms.get(name, 0.0) + value.item()
        schedule.step()
        steps = len(train_loader)
        scores = evaluate(model, test_loader, train.num_classes)
        parts = ", ".join(f"{name[5:]} {value / steps:.3f}" for name, value in terms.items())
        print(f"epoch {epoch:2d}  loss {total / steps:.3f} ({parts})  test mAP@0.5 "
              f"{scores['map_50']:.3f}  [{time.perf_counter() - started:.0f} s]", flush=True)

    aps = ", ".join(f"{name} {ap:.3f}" for name, ap in
                    zip(test.classes[1:], scores["ap_per_class"][1:]))
    print(f"test mAP@0.5 {scores['map_50']:.3f} ({aps}) after {args.epochs} epochs, "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
