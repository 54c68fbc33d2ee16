"""The Trainer: progress bars, a run folder (metrics, learning curves, checkpoint) and a
resume that continues an interrupted run exactly where it stopped.

Run:  python examples/train_and_resume.py      (a few seconds on a CPU)

The same from the command line:
    minicnn train --dataset synthetic --epochs 4 --out runs/shapes
    minicnn train --resume runs/shapes          # after an interruption (Ctrl-C)
"""
import numpy as np

import minicnn
from minicnn import nn, optim
from minicnn.data import DataLoader, datasets, transforms as T
from minicnn.train import Trainer


def make_run(out_dir):
    """Everything a run consists of, built from the seed."""
    minicnn.manual_seed(0)
    shapes = dict(image_size=28, num_classes=4)     # squares, disks, triangles, plus signs
    train_set = datasets.SyntheticShapes(800, seed=1, **shapes, transform=T.Compose(
        [T.ToTensor(), T.RandomCrop(28, padding=2)]))
    test_set = datasets.SyntheticShapes(200, seed=2, **shapes, transform=T.ToTensor())
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(16 * 7 * 7, 4))   # (N, 16, 7, 7) -> (N, 4)
    optimizer = optim.Adam(model.parameters(), lr=3e-3)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
    trainer = Trainer(model, optimizer, scheduler=scheduler, out_dir=out_dir)
    loaders = (DataLoader(train_set, batch_size=32, shuffle=True, num_workers=1),
               DataLoader(test_set, batch_size=100))
    return trainer, loaders


class Interrupted(Exception):
    pass


def stop_after_two(trainer, metrics):
    if metrics["epoch"] == 2:
        raise Interrupted


# A run that is interrupted after 2 of its 4 epochs ...
trainer, loaders = make_run("runs/example-resume")
try:
    trainer.fit(*loaders, epochs=4, callbacks=[stop_after_two])
except Interrupted:
    print("-- interrupted; the checkpoint of epoch 2 is in runs/example-resume --")

# ... is rebuilt (a new process would do the same) and resumed from its checkpoint,
trainer, loaders = make_run("runs/example-resume")
trainer.fit(*loaders, epochs=4, resume="runs/example-resume")

# and ends with the very weights of a run that never stopped.
reference, loaders = make_run(None)
reference.progress = reference.log = False
reference.fit(*loaders, epochs=4)
same = all(np.array_equal(a.numpy(), b.numpy()) for a, b in
           zip(trainer.model.state_dict().values(), reference.model.state_dict().values()))
print(f"resumed weights identical to an uninterrupted run: {same}")
print("see runs/example-resume/curves.png and metrics.jsonl")
