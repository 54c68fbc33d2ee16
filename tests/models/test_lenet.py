"""LeNet-5: parameter counts, output shapes, forward equal to a torch twin with the same
weights (both variants), and a few optimisation steps lower the loss."""
import numpy as np
import pytest

import minicnn
import minicnn.optim
from minicnn import nn
from minicnn.models import LeNet5, lenet5


def _torch_lenet(torch, variant, in_channels, input_size, num_classes=10):
    tnn = torch.nn
    act, pool = (tnn.Tanh, tnn.AvgPool2d) if variant == "1998" else (tnn.ReLU, tnn.MaxPool2d)

    class TorchLeNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = tnn.Conv2d(in_channels, 6, 5, padding=(32 - input_size) // 2)
            self.s2, self.c3, self.s4 = pool(2, 2), tnn.Conv2d(6, 16, 5), pool(2, 2)
            self.c5, self.f6 = tnn.Conv2d(16, 120, 5), tnn.Linear(120, 84)
            self.output, self.act = tnn.Linear(84, num_classes), act()

        def forward(self, x):
            x = self.s4(self.act(self.c3(self.s2(self.act(self.c1(x))))))
            x = self.act(self.c5(x)).flatten(1)
            return self.output(self.act(self.f6(x)))

    return TorchLeNet().double()


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("variant,in_channels,input_size,expected", [
    ("modern", 1, 28, 61706), ("modern", 3, 32, 62006), ("1998", 1, 32, 61706)])
def test_parameter_count_and_output_shape(variant, in_channels, input_size, expected):
    model = lenet5(num_classes=10, in_channels=in_channels, variant=variant,
                   input_size=input_size)
    assert _count(model) == expected
    out = model(minicnn.randn(2, in_channels, input_size, input_size))
    assert out.shape == (2, 10)
    assert lenet5(num_classes=4)(minicnn.randn(1, 1, 28, 28)).shape == (1, 4)


def test_variants_differ_only_in_activation_and_pooling():
    modern, classic = lenet5(), lenet5(variant="1998")
    assert isinstance(modern.act, nn.ReLU) and isinstance(modern.s2, nn.MaxPool2d)
    assert isinstance(classic.act, nn.Tanh) and isinstance(classic.s2, nn.AvgPool2d)
    assert classic.input_size == 32 and modern.c1.padding in (2, (2, 2))
    assert list(modern.state_dict()) == list(classic.state_dict())


@pytest.mark.parametrize("variant,in_channels,input_size", [
    ("modern", 1, 28), ("1998", 1, 32), ("modern", 3, 32)])
def test_forward_and_gradients_equal_torch_with_the_same_weights(torch, variant, in_channels,
                                                                 input_size):
    reference = _torch_lenet(torch, variant, in_channels, input_size)
    model = LeNet5(10, in_channels, variant, input_size).double()
    model.load_state_dict(reference.state_dict())
    x = np.random.default_rng(0).standard_normal((3, in_channels, input_size, input_size))
    ours = model(minicnn.tensor(x))
    theirs = reference(torch.from_numpy(x))
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
    target = np.array([1, 0, 7])
    nn.functional.cross_entropy(ours, minicnn.tensor(target)).backward()
    torch.nn.functional.cross_entropy(theirs, torch.from_numpy(target)).backward()
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-8, atol=1e-12,
                                   err_msg=name)


def test_a_few_steps_lower_the_loss():
    rng = np.random.default_rng(0)
    x = minicnn.tensor(rng.standard_normal((16, 1, 28, 28)).astype(np.float32))
    y = minicnn.tensor(rng.integers(0, 10, 16))
    model = lenet5()
    optimizer = minicnn.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.4 and losses[-1] == min(losses)


def test_bad_arguments_and_inputs_are_explained():
    with pytest.raises(ValueError, match="variant must be one of"):
        lenet5(variant="1989")
    with pytest.raises(ValueError, match="input_size must be 28"):
        lenet5(input_size=64)
    with pytest.raises(Exception, match="c1|Conv2d|conv2d|channel"):
        lenet5()(minicnn.randn(1, 3, 28, 28))
