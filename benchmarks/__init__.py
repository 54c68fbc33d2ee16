"""minicnn against PyTorch on the CPU, side by side in one run.

Run ``minicnn bench`` (or ``python -m benchmarks``); ``--help`` lists the options.

What is compared, all in float32, PyTorch on the CPU:

* ops, forward + backward: conv2d, conv_transpose2d, max_pool2d, batch_norm,
  local_response_norm at shapes taken from LeNet-5, AlexNet, VGG and ResNet;
* one training step (forward, cross-entropy, backward, SGD with momentum) of LeNet-5 at
  batch 64 and of a CIFAR ResNet-18 at batch 32;
* inference of VGG-16 at batch 1 and AlexNet at batch 8 on 224x224 images; of U-Net
  on one 1x380x380 image and FCN-8s on one 3x256x256 image, against their own model
  files run on torch (torchvision has neither); of ``fasterrcnn_resnet50_fpn`` and
  ``ssd300_vgg16`` on one 3x480x640 image (random weights, eval mode) against
  torchvision's when torchvision is importable, otherwise minicnn alone;
* scaling: conv2d time as the batch size doubles and as the image side doubles (a PNG);
* with ``--memory``, each workload's peak memory, each side in its own process;
* instead of the suite, ``--compare-algorithms``: each 3x3 stride-1 conv2d shape with
  every ``conv_algorithm`` (im2col, Winograd F(2x2) and F(4x4), auto) and torch
  (``algorithms.py``).

How (``harness.py``): every workload has a setup per framework that returns ``run``, the
exact work timed; the two sides are warmed up, then sampled in alternation, and the
median of the samples is reported, with the nominal GFLOP/s and the ratio
torch time / minicnn time (above 1: minicnn is faster). Both get the same number of
threads; the machine's float32 matrix-multiply speed, measured in the same run, is the
ceiling shown in the header, with the BLAS NumPy ran (library, version, kernels) and,
where OPENBLAS_CORETYPE pins OpenBLAS's kernels, the ceiling without the pin
(``blas.py``). ``workloads.py`` defines each workload once, written
against the shared torch/minicnn API, and documents the FLOP counts; ``models.py`` holds
the PyTorch-style model definitions; ``report.py`` prints, saves and plots.
"""
