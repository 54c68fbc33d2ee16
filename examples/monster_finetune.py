"""Seed 002's "Monster" and its freeze-then-fine-tune loop (Fleuret, EE-559 §7), line for
line on minicnn.

The network: the first layer of an AlexNet (conv 11x11, stride 4: 32x32 -> 7x7), a 3x3
"converter", residual blocks (conv-BN-ReLU-conv-BN, added to their input), a 7x7 average
pool and a linear layer (``minicnn.models.monster``; 1,246,666 parameters for 16 blocks of
64 channels). For the first half of the epochs the AlexNet layer is frozen
(``freeze_features(True)``: its parameters need no gradient), then everything trains.

The seed takes that layer from an ImageNet-trained AlexNet and trains 100 epochs on
CIFAR-10. Offline and on a CPU, this runs a few epochs on generated 32x32 colour shapes;
``--alexnet state.npz`` takes conv1 from a saved AlexNet state dict (as ``minicnn train
--model alexnet`` writes one), and ``--cifar10 ROOT`` uses CIFAR-10's files.

Run:  python examples/monster_finetune.py [--blocks 16 --channels 64 --epochs 6]
"""
import argparse

import numpy as np

import minicnn
from minicnn import models, nn, optim
from minicnn.data import DataLoader, datasets, transforms

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--blocks", type=int, default=4, help="residual blocks (seed: 16)")
parser.add_argument("--channels", type=int, default=32, help="their width (seed: 64)")
parser.add_argument("--epochs", type=int, default=6, help="seed: 100, the first half frozen")
parser.add_argument("--train-size", type=int, default=512)
parser.add_argument("--alexnet", help="an AlexNet state dict whose conv1 to take")
parser.add_argument("--cifar10", metavar="ROOT", help="train on CIFAR-10's files instead")
args = parser.parse_args()

minicnn.manual_seed(0)
to_tensor = transforms.Compose([transforms.ToTensor(),
                                transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
if args.cifar10:
    train_set = datasets.CIFAR10(args.cifar10, train=True, transform=to_tensor)
    test_set = datasets.CIFAR10(args.cifar10, train=False, transform=to_tensor)
    num_classes = 10
else:
    num_classes = 4
    train_set = datasets.SyntheticShapes(args.train_size, image_size=32, channels=3,
                                         num_classes=num_classes, seed=1, transform=to_tensor)
    test_set = datasets.SyntheticShapes(256, image_size=32, channels=3,
                                        num_classes=num_classes, seed=2, transform=to_tensor)
train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
test_loader = DataLoader(test_set, batch_size=128, shuffle=False)

alexnet = None
if args.alexnet:
    alexnet = models.alexnet()
    alexnet.load_state_dict(models.load_model_state(args.alexnet), strict=False)

nb_epochs = args.epochs
nb_epochs_frozen_features = nb_epochs // 2
model = models.monster(args.blocks, args.channels, num_classes=num_classes, alexnet=alexnet)
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=1e-2)
print(f"Monster({args.blocks}, {args.channels}): "
      f"{sum(p.numel() for p in model.parameters()):,} parameters")

conv1_before = model.features[0].weight.numpy().copy()
model.train(True)
for e in range(nb_epochs):
    model.freeze_features(e < nb_epochs_frozen_features)
    acc_loss = 0.0
    for input, target in train_loader:
        output = model(input)
        loss = criterion(output, target)
        acc_loss += loss.item()
        model.zero_grad()
        loss.backward()
        optimizer.step()
    if e == nb_epochs_frozen_features - 1:
        unchanged = np.array_equal(model.features[0].weight.numpy(), conv1_before)
        print(f"(AlexNet layer unchanged while frozen: {unchanged})")
    print(e, f"{acc_loss:.4f}", "frozen" if e < nb_epochs_frozen_features else "fine-tuning")

nb_test_errors, nb_test_samples = 0, 0
model.train(False)
with minicnn.no_grad():
    for input, target in test_loader:
        wta = model(input).numpy().argmax(1)
        nb_test_samples += len(wta)
        nb_test_errors += int((wta != target.numpy()).sum())
print("test_error {:.02f}% ({:d}/{:d})".format(
    100 * nb_test_errors / nb_test_samples, nb_test_errors, nb_test_samples))
