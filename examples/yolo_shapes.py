"""YOLO v1 on generated shapes: one network, one pass, boxes and classes for every object.

The paper's recipe (Redmon et al. 2016, section 2.2; seed [002] L1300-1330), scaled down
to 64x64 images with 1 to 3 shapes (square, disk, triangle) on textured backgrounds:

* the small YOLO v1 (``yolo_v1_small``: a strided first convolution, 1x1 reductions and
  3x3 convolutions with leaky ReLU, a fully connected layer, a last one reshaped to a
  4x4 grid of 2 boxes + 3 class probabilities per cell) trained with the paper's
  sum-squared loss (lambda_coord = 5, lambda_noobj = 0.5, square roots of the sizes);
* the paper's augmentation: random scaling and translation by up to 20 % of the image,
  exposure and saturation jitter up to a factor 1.5 in HSV, plus horizontal flips;
* weight decay 5e-4 and a warm-up of the learning rate, then its decay.

NOTE, departures: Adam instead of SGD with momentum 0.9 (from scratch, without the
paper's ImageNet pre-training, Adam gets there in far fewer epochs), with a one-cycle
schedule (a warm-up to the peak over the first 30 % of the steps, then a cosine decay)
instead of the paper's steps; batch 16 instead of 64; batch normalisation and no dropout
in the small network (see ``yolo_v1_small``).

Evaluation: held-out images (another seed), PASCAL VOC's mean average precision at IoU
0.5 (``minicnn.metrics.DetectionMetric``).

Run:  python examples/yolo_shapes.py   (40 epochs, 247 s on the quiet 2-core machine; test
mAP@0.5 0.900 -- per class: square 0.904, disk 0.922, triangle 0.874)
"""
import argparse
import time

import minicnn
from minicnn import optim
from minicnn.data import DataLoader, datasets, detection_collate
from minicnn.data import detection_transforms as T
from minicnn.metrics import DetectionMetric
from minicnn.models.detection import yolo_v1_small


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
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="the peak learning rate")
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
            T.RandomHSV(saturation=1.5, exposure=1.5),                  # colours
            T.RandomScaleTranslate(scale=0.2, translate=0.2),           # YOLO's geometry
            T.RandomHorizontalFlip(),
            T.SanitizeBoundingBoxes(),                  # drop boxes pushed out of view
            T.ToTensor(), T.Normalize(train.mean, train.std)])
    train_loader = DataLoader(train, args.batch_size, shuffle=True, drop_last=True,
                              collate_fn=detection_collate)
    test_loader = DataLoader(test, 100, collate_fn=detection_collate)

    # YOLO counts the object classes only: num_classes=3 (the data set's 4 include the
    # background)
    model = yolo_v1_small(num_classes=train.num_classes - 1)
    optimizer = optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                             steps_per_epoch=len(train_loader))
    print(f"yolo_v1_small: {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"{len(train)} training images, {len(test)} test images")

    for epoch in range(1, args.epochs + 1):
        total, terms = 0.0, {}
        for images, targets in train_loader:
            losses = model(images, targets)        # loss_box, loss_object, ... (a dict)
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
            for name, value in losses.items():
                terms[name] = terms.get(name, 0.0) + value.item()
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
