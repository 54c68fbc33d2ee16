"""LeNet-5 on the offline digits, with the training loop written out: the five lines every
framework hides (forward, loss, zero_grad, backward, step), then a checkpoint.

Run:  python examples/lenet_digits_by_hand.py      (about half a minute on a CPU)
"""
import os
import tempfile
import time

import minicnn
import minicnn.nn.functional as F
from minicnn import optim
from minicnn.data import DataLoader, datasets, transforms as T
from minicnn.models import lenet5

minicnn.manual_seed(0)

# 1,438 training and 359 test images, 8x8 upsampled to 28x28 (scikit-learn, no download)
augment = T.Compose([T.ToTensor(), T.RandomCrop(28, padding=3), T.RandomRotation(10),
                     T.Normalize((0.2,), (0.3,))])
plain = T.Compose([T.ToTensor(), T.Normalize((0.2,), (0.3,))])
train_loader = DataLoader(datasets.Digits(train=True, transform=augment), batch_size=32,
                          shuffle=True, num_workers=1)     # one thread prepares batches ahead
test_loader = DataLoader(datasets.Digits(train=False, transform=plain), batch_size=256)

model = lenet5(variant="modern")                 # ReLU + max pooling, C1 padded by 2
optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=12)

for epoch in range(12):
    start, total, correct = time.perf_counter(), 0.0, 0
    model.train()
    for images, labels in train_loader:          # images (32, 1, 28, 28), labels (32,)
        logits = model(images)                   # (32, 10)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()                          # every op's hand-written backward
        optimizer.step()
        total += loss.item() * len(labels)
    scheduler.step()

    model.eval()
    with minicnn.no_grad():
        for images, labels in test_loader:
            correct += int((model(images).argmax(1) == labels).sum().item())
    print(f"epoch {epoch + 1:2d}  train loss {total / len(train_loader.dataset):.4f}  "
          f"test accuracy {correct / len(test_loader.dataset):.2%}  "
          f"({time.perf_counter() - start:.1f} s)")

# A checkpoint is plain data in a .npz: loading it never runs code. (Written to a
# temporary folder, so running the example leaves nothing behind.)
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "lenet5_digits.npz")
    minicnn.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "epoch": 12}, path)
    restored = lenet5()
    restored.load_state_dict(minicnn.load(path)["model"])
print("saved lenet5_digits.npz and loaded it back into a fresh LeNet-5")
