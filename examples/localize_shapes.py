"""OverFeat's localisation, small: a classifier's convolutional layers, frozen, carry enough
to place a box (seed [002] L1195-1203: "adding a regression part to predict the object's
bounding box ... the convolutional layers are frozen, and the localization layers are
trained with a l2 loss").

1. Train a small CNN to name the one shape in each generated image (square, disk,
   triangle).
2. Freeze its convolutional layers and train a second head on the same features to
   regress the shape's box (centre, width and height as fractions of the image) with the
   mean squared error.
3. Score the boxes on held-out images by their IoU with the true ones.

Run:  python examples/localize_shapes.py  (about a minute on a 2-core CPU)
"""
import argparse
import time

import numpy as np

import minicnn
from minicnn import nn, optim
from minicnn.data import datasets
from minicnn.models import freeze
from minicnn.nn import functional as F
from minicnn.ops import box_convert, box_iou


def arrays(dataset):
    """The whole set as arrays: images (N, 3, S, S), each image's box (N, 4) and class."""
    images, boxes, labels = [], [], []
    for image, target in (dataset[i] for i in range(len(dataset))):
        images.append(image)
        boxes.append(target["boxes"][0])
        labels.append(target["labels"][0])
    return np.stack(images), np.stack(boxes), np.array(labels)


def batches(n, size, rng):
    order = rng.permutation(n)
    return [order[i:i + size] for i in range(0, n, size)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-size", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=6, help="per stage (default 6)")
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()
    started = time.perf_counter()
    minicnn.manual_seed(0)
    rng = np.random.default_rng(0)
    size = args.image_size
    train = datasets.ShapesDetection(args.train_size, image_size=size, seed=0, max_shapes=1)
    test = datasets.ShapesDetection(300, image_size=size, seed=1, max_shapes=1)
    x_train, box_train, y_train = arrays(train)
    x_test, box_test, y_test = arrays(test)
    # the regression target: (cx, cy, w, h) as fractions of the image side
    t_train = box_convert(box_train, "xyxy", "cxcywh") / size

    features = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten())
    width = 64 * (size // 8) ** 2
    classifier = nn.Sequential(nn.Linear(width, 64), nn.ReLU(),
                               nn.Linear(64, train.num_classes))
    regressor = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 4), nn.Sigmoid())

    # 1. classification: features and classifier learn together
    model = nn.Sequential(features, classifier)
    opt = optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        for idx in batches(len(x_train), 32, rng):
            loss = F.cross_entropy(model(minicnn.tensor(x_train[idx])),
                                   minicnn.tensor(y_train[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with minicnn.no_grad():
        predicted = model(minicnn.tensor(x_test)).argmax(dim=1).numpy()
    accuracy = float((predicted == y_test).mean())
    print(f"1. classifier: test accuracy {accuracy:.1%}")

    # 2. localisation: the convolutional layers frozen (eval mode keeps BN's statistics)
    frozen = [p.numpy().copy() for p in features.parameters()]
    freeze(features)
    features.eval()
    opt = optim.Adam(regressor.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        for idx in batches(len(x_train), 32, rng):
            with minicnn.no_grad():
                h = features(minicnn.tensor(x_train[idx]))
            loss = F.mse_loss(regressor(h), minicnn.tensor(t_train[idx].astype(np.float32)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"   regression epoch {epoch + 1}: l2 loss {loss.item():.4f}")
    unchanged = all(np.array_equal(a, p.numpy()) for a, p in zip(frozen, features.parameters()))

    # 3. boxes on held-out images
    regressor.eval()
    with minicnn.no_grad():
        cxcywh = regressor(features(minicnn.tensor(x_test))).numpy() * size
    boxes = box_convert(cxcywh.astype(np.float64), "cxcywh", "xyxy")
    ious = np.diag(box_iou(boxes, box_test.astype(np.float64)))
    print(f"2. localisation with frozen features (unchanged: {unchanged}): "
          f"test mean IoU {ious.mean():.3f}, IoU >= 0.5 for {np.mean(ious >= 0.5):.1%} "
          f"of the images ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
