"""Mask R-CNN with torchvision's released weights, run by minicnn: boxes and masks on a
picture, without PyTorch.

    python examples/maskrcnn_checkpoint.py --checkpoint maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth \\
        --image street.jpg --out detections.png

The steps a reader can follow:

1. ``minicnn.load_torch_checkpoint`` reads the ``.pth`` file that torchvision publishes
   (https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth, 170 MB,
   trained on COCO) into NumPy arrays. It does not import torch and runs no code from the
   file: its unpickler admits tensors and containers only.
2. ``maskrcnn_resnet50_fpn(weights=state)`` builds the same network as torchvision's
   builder (ResNet-50 with frozen batch norm, feature pyramid, region proposal network,
   RoIAlign box and mask heads) and copies the arrays in with ``load_state_dict``. The
   released file is older than torchvision's current layout (``rpn.head.conv.weight``,
   ``mask_head.mask_fcn1``): the model renames those keys as it loads them, and gives the
   frozen batch norms eps 0, as torchvision's builder does for that file.
3. In eval mode the model takes a list of (3, H, W) images with values in [0, 1] and
   returns, per image, ``boxes`` (x1, y1, x2, y2 in the image's pixels), ``labels``
   (COCO category ids, 1..90), ``scores`` and ``masks`` (N, 1, H, W): each object's
   probability per pixel, pasted into the full image.
4. The picture: every detection scoring at least ``--min-score``, its mask (where the
   probability exceeds 0.5) filled in a colour, its box and its name and score.

Without ``--checkpoint`` the weights are random: the script still runs every step and
draws whatever the random network proposes, but real detections need the released file.
Without ``--image`` a generated 480x640 picture is used.
"""
import argparse
import os
import time

import numpy as np

import minicnn
from minicnn.models.detection import maskrcnn_resnet50_fpn

RELEASED = "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
RELEASED_URL = "https://download.pytorch.org/models/" + RELEASED

# COCO's category names indexed by the label torchvision's COCO models predict (the ids
# of the 2014 annotation files: 90 ids with gaps, marked N/A, and 0 the background).
COCO_CATEGORIES = [
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup",
    "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "N/A", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
]


def read_weights(path):
    """The state dict in a torchvision-format checkpoint, as NumPy arrays: a bare state
    dict (the released files) or a training checkpoint holding one under "model" (what
    torchvision's reference training scripts save)."""
    state = minicnn.load_torch_checkpoint(path)
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def read_image(path):
    """(3, H, W) float32 in [0, 1] from an image file (Pillow reads it)."""
    from PIL import Image
    with Image.open(path) as picture:
        pixels = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    return pixels.transpose(2, 0, 1).copy()


def generated_image(height=480, width=640):
    """A stand-in picture: a sky-to-ground gradient with a few flat-coloured shapes."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([0.45 + 0.3 * y / height, 0.6 + 0.2 * y / height,
                      0.9 - 0.5 * y / height])
    shapes = [((0.80, 0.15, 0.10), (y - 0.62 * height) ** 2 / 0.04
               + (x - 0.25 * width) ** 2 / 0.06 < (0.2 * height) ** 2),          # an ellipse
              ((0.15, 0.35, 0.75), (abs(x - 0.62 * width) < 0.12 * width)
               & (abs(y - 0.55 * height) < 0.2 * height)),                       # a block
              ((0.95, 0.85, 0.20), (y - 0.2 * height) ** 2
               + (x - 0.85 * width) ** 2 < (0.08 * height) ** 2)]                # a sun
    for colour, inside in shapes:
        image[:, inside] = np.asarray(colour, dtype=np.float32)[:, None]
    return image


def draw(image, detection, path, min_score):
    """Save the image with each detection scoring at least ``min_score``: mask filled,
    box outlined, category and score written. Returns how many were drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib import colormaps

    boxes, labels, scores = (detection[k].numpy() for k in ("boxes", "labels", "scores"))
    masks = detection["masks"].numpy()[:, 0]                   # (N, H, W) probabilities
    keep = np.flatnonzero(scores >= min_score)
    height, width = image.shape[1:]
    picture = image.transpose(1, 2, 0).astype(np.float64)
    colours = colormaps["tab10"]
    for rank, i in enumerate(keep):                            # masks first, boxes on top
        inside = masks[i] > 0.5
        picture[inside] = 0.45 * picture[inside] + 0.55 * np.asarray(colours(rank % 10)[:3])
    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_axes([0, 0, 1, 1])
    ax.imshow(picture.clip(0, 1), interpolation="nearest")
    for rank, i in enumerate(keep):
        x1, y1, x2, y2 = boxes[i]
        colour = colours(rank % 10)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                               linewidth=2))
        label = int(labels[i])
        name = COCO_CATEGORIES[label] if label < len(COCO_CATEGORIES) else str(label)
        ax.text(x1, y1 - 2, f"{name} {scores[i]:.2f}", color="white", fontsize=8,
                va="bottom", bbox=dict(facecolor=colour, edgecolor="none", pad=1))
    ax.set_axis_off()
    figure.savefig(path)
    return len(keep)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help=f"a torchvision-format Mask R-CNN state dict "
                        f"(e.g. {RELEASED}); without it, random weights")
    parser.add_argument("--image", help="an image file (default: a generated picture)")
    parser.add_argument("--out", default="maskrcnn_detections.png", help="the PNG to write")
    parser.add_argument("--min-score", type=float, default=0.5,
                        help="draw the detections scoring at least this (default 0.5)")
    parser.add_argument("--min-size", type=int, default=800,
                        help="the model resizes the image's short side to this (torchvision's "
                             "default 800; smaller is faster and coarser)")
    parser.add_argument("--max-size", type=int, default=1333,
                        help="... and its long side to at most this (default 1333)")
    parser.add_argument("--max-detections", type=int, default=100,
                        help="keep at most this many detections (torchvision's "
                             "box_detections_per_img, default 100)")
    args = parser.parse_args(argv)

    state = None
    if args.checkpoint:
        if not os.path.isfile(args.checkpoint):
            parser.error(f"--checkpoint {args.checkpoint!r}: no such file (the released "
                         f"weights are at {RELEASED_URL})")
        state = read_weights(args.checkpoint)
        print(f"read {len(state)} tensors from {args.checkpoint} (no torch involved)")
    else:
        print(f"no --checkpoint: random weights, so the detections below mean nothing. "
              f"Real detections need torchvision's released file {RELEASED} "
              f"({RELEASED_URL}); pass it with --checkpoint.")
    minicnn.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=state, weights_backbone=None,
                                  min_size=args.min_size, max_size=args.max_size,
                                  box_detections_per_img=args.max_detections).eval()

    image = read_image(args.image) if args.image else generated_image()
    print(f"image: {args.image or 'generated'}, {image.shape[1]}x{image.shape[2]} pixels")
    started = time.perf_counter()
    with minicnn.no_grad():
        detection = model([minicnn.tensor(image)])[0]
    seconds = time.perf_counter() - started
    scores = detection["scores"].numpy()
    print(f"{len(scores)} detections in {seconds:.1f} s "
          f"({int((scores >= args.min_score).sum())} scoring at least {args.min_score})")
    for box, label, score in zip(detection["boxes"].numpy()[:10],
                                 detection["labels"].numpy()[:10], scores[:10]):
        name = COCO_CATEGORIES[int(label)] if int(label) < len(COCO_CATEGORIES) else label
        print(f"  {name:<14} {score:.3f}  box {[round(float(v), 1) for v in box]}")
    drawn = draw(image, detection, args.out, args.min_score)
    print(f"drew {drawn} detection(s) with their masks: {args.out}")


if __name__ == "__main__":
    main()
