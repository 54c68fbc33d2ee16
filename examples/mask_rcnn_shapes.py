"""Mask R-CNN on generated shapes: Faster R-CNN plus a mask for every detected object.

He, Gkioxari, Dollár & Girshick, "Mask R-CNN" (ICCV 2017), at the scale of 64x64 images
with 1 to 3 shapes (square, disk, triangle) on textured backgrounds, whose instance masks
``ShapesDetection`` draws with the boxes:

* ``maskrcnn_small`` (minicnn/models/detection/rcnn.py): torchvision's generic
  ``MaskRCNN`` (minicnn/models/detection/mask_rcnn.py) on the teaching Faster R-CNN's
  backbone (stride 4, 64 channels) and anchors (16, 24, 36 x 1:2, 1:1, 2:1); RoIAlign
  7x7 for the box head, 14x14 for the mask head (two 3x3 convolutions, a 2x2 transposed
  convolution to 28x28, one mask per class);
* one loss, the sum of five: the RPN's two, Fast R-CNN's two, and ``loss_mask`` (binary
  cross-entropy of the true class's 28x28 mask, against the object's mask cut out of the
  image by the same RoIAlign);
* Adam at 1e-3 with weight decay 5e-4 and a cosine decay over the epochs; the CLI's
  augmentation for detection (colour jitter, random scaling and translation, flips: the
  masks move with the image).

Evaluation on held-out images (another seed): the boxes' mAP@0.5 (PASCAL VOC), and the
mean mask IoU on matched detections -- every detection scoring at least 0.5 that VOC's
matching counts as a true positive (same class, box IoU >= 0.5, first come) is compared
with its object's mask: its pasted mask, thresholded at 0.5, against the true one
(``minicnn.metrics.MaskIoUMetric``; ``minicnn train --task detection --model
maskrcnn_small`` reports the same measure per epoch as ``mask_iou``).

Run:  python examples/mask_rcnn_shapes.py   (see the report at the end for the time it took)
"""
import argparse
import time

import minicnn
from minicnn import optim
from minicnn.data import DataLoader, datasets, detection_collate
from minicnn.data import detection_transforms as T
from minicnn.metrics import DetectionMetric, MaskIoUMetric
from minicnn.models.detection import maskrcnn_small


def evaluate(model, loader, num_classes, min_score=0.5):
    """``(box mAP@0.5, mean mask IoU on matched detections, matched count)``."""
    boxes = DetectionMetric(num_classes)
    masks = MaskIoUMetric(min_score=min_score)    # VOC's matching, then each mask's IoU
    model.eval()
    with minicnn.no_grad():
        for images, targets in loader:
            outputs = model(images)
            boxes.update(outputs, targets)
            masks.update(outputs, targets)
    model.train()
    result = masks.compute()
    mean = result["mask_iou"] if result["matched"] else 0.0
    return boxes.compute()["map_50"], mean, result["matched"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
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
    # (with their instance masks: one (H, W) mask per box)
    train = datasets.ShapesDetection(args.train_size, seed=0)
    test = datasets.ShapesDetection(args.test_size, seed=1)
    if not args.no_augment:
        train.transforms = T.Compose([
            T.RandomHSV(), T.RandomScaleTranslate(), T.RandomHorizontalFlip(),
            T.SanitizeBoundingBoxes(),                  # drop boxes pushed out of view
            T.ToTensor(), T.Normalize(train.mean, train.std)])
    train_loader = DataLoader(train, args.batch_size, shuffle=True, drop_last=True,
                              collate_fn=detection_collate)
    test_loader = DataLoader(test, 100, collate_fn=detection_collate)

    # Mask R-CNN counts the background as class 0, as torchvision's detectors do
    model = maskrcnn_small(num_classes=train.num_classes)
    optimizer = optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    print(f"maskrcnn_small: {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"{len(train)} training images, {len(test)} test images")

    for epoch in range(1, args.epochs + 1):
        total, terms = 0.0, {}
        for images, targets in train_loader:
            # training mode: five losses; the RPN's proposals feed both heads inside
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
        parts = ", ".join(f"{name[5:]} {value / steps:.3f}" for name, value in terms.items())
        print(f"epoch {epoch:2d}  loss {total / steps:.3f} ({parts})  "
              f"[{time.perf_counter() - started:.0f} s]", flush=True)

    # pasting every detection's mask into the image costs time: the test set is scored
    # once, at the end
    box_map, mean_mask_iou, matched = evaluate(model, test_loader, train.num_classes)

    print(f"test mAP@0.5 {box_map:.3f}, mean mask IoU {mean_mask_iou:.3f} on {matched} "
          f"matched detections, after {args.epochs} epochs, "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
