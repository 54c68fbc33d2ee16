"""minicnn.nn layers against torch.nn: same weights in, same outputs and gradients out.

Each case is one factory run against both libraries (``lambda nn: nn.Conv2d(3, 4, 3)``),
so the constructor call itself is checked to be torch's. torch's freshly initialised
state dict is loaded into the minicnn layer, then both run in float64 on the same input
and back-propagate the same random upstream gradient; outputs, the input's gradient,
every parameter's gradient, buffers, state-dict keys and repr must agree.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import minicnn
import minicnn.nn as mnn
from strategies import conv2d_arguments, conv_transpose2d_arguments, spelled

RTOL, ATOL = 1e-10, 1e-12


def _to_torch(torch, value):
    return torch.from_numpy(np.array(value)) if isinstance(value, np.ndarray) else value


def run_both(torch, factory, inputs, mode="train", steps=1, seed=0, grad_inputs=(0,),
             rtol=RTOL, atol=ATOL, non_leaf=False):
    """Build ``factory(nn)`` in both libraries, copy torch's weights into minicnn, run
    ``steps`` forward/backward passes in ``mode`` and compare everything.
    ``non_leaf`` feeds ``x * 1`` instead of ``x`` (torch refuses in-place ops on leaves)."""
    rng = np.random.default_rng(seed)
    tlayer = factory(torch.nn).double()
    mlayer = factory(mnn).double()
    assert list(mlayer.state_dict()) == list(tlayer.state_dict()), "state_dict keys differ"
    assert repr(mlayer) == repr(tlayer)
    mlayer.load_state_dict({k: v.numpy() for k, v in tlayer.state_dict().items()})
    tlayer.train(mode == "train")
    mlayer.train(mode == "train")
    for _ in range(steps):
        t_in = [_to_torch(torch, v) for v in inputs]
        m_in = [minicnn.tensor(v) if isinstance(v, np.ndarray) else v for v in inputs]
        for i in grad_inputs:
            t_in[i].requires_grad_(True)
            m_in[i].requires_grad_(True)
        t_args = [t_in[0] * 1.0] + t_in[1:] if non_leaf else t_in
        m_args = [m_in[0] * 1.0] + m_in[1:] if non_leaf else m_in
        t_out, m_out = tlayer(*t_args), mlayer(*m_args)
        if isinstance(t_out, tuple):     # (values, indices)
            for t_extra, m_extra in zip(t_out[1:], m_out[1:]):
                np.testing.assert_array_equal(m_extra.numpy(), t_extra.numpy())
            t_out, m_out = t_out[0], m_out[0]
        assert m_out.shape == tuple(t_out.shape)
        assert m_out.dtype == np.float64
        np.testing.assert_allclose(m_out.numpy(), t_out.detach().numpy(), rtol, atol,
                                   err_msg="forward")
        if not t_out.requires_grad:
            continue
        g = rng.standard_normal(tuple(t_out.shape))
        t_out.backward(torch.from_numpy(g))
        m_out.backward(g)
        for i in grad_inputs:
            np.testing.assert_allclose(m_in[i].grad.numpy(), t_in[i].grad.numpy(), rtol,
                                       atol, err_msg=f"gradient of input {i}")
    t_params = dict(tlayer.named_parameters())
    m_params = dict(mlayer.named_parameters())
    assert list(m_params) == list(t_params)
    for name, tp in t_params.items():
        if tp.grad is None:
            assert m_params[name].grad is None
            continue
        np.testing.assert_allclose(m_params[name].grad.numpy(), tp.grad.numpy(), rtol, atol,
                                   err_msg=f"gradient of {name}")
    for name, tb in tlayer.named_buffers():
        mb = dict(mlayer.named_buffers())[name]
        assert mb.dtype == np.dtype(str(tb.dtype).replace("torch.", "")), name
        np.testing.assert_allclose(mb.numpy(), tb.numpy(), rtol, atol, err_msg=f"buffer {name}")
    return mlayer, tlayer


def randn(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------- layer table

CASES = [
    # (id, factory, input shape)
    ("linear", lambda nn: nn.Linear(5, 3), (4, 5)),
    ("linear_nobias_3d", lambda nn: nn.Linear(5, 3, bias=False), (2, 4, 5)),
    ("linear_1d_input", lambda nn: nn.Linear(5, 2), (5,)),
    ("conv", lambda nn: nn.Conv2d(3, 4, 3), (2, 3, 7, 6)),
    ("conv_stride_pad_dil", lambda nn: nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2),
                                                 dilation=(1, 2)), (2, 2, 8, 7)),
    ("conv_groups_nobias", lambda nn: nn.Conv2d(4, 6, 3, groups=2, bias=False), (1, 4, 5, 5)),
    ("conv_same_even", lambda nn: nn.Conv2d(2, 3, 4, padding="same"), (2, 2, 6, 5)),
    ("conv_same_odd", lambda nn: nn.Conv2d(2, 3, 3, padding="same", dilation=2), (2, 2, 6, 5)),
    ("conv_valid", lambda nn: nn.Conv2d(2, 3, 3, padding="valid"), (2, 2, 6, 5)),
    ("conv_unbatched", lambda nn: nn.Conv2d(3, 2, 3), (3, 6, 5)),
    ("conv_transpose", lambda nn: nn.ConvTranspose2d(3, 4, 3), (2, 3, 4, 5)),
    ("conv_transpose_full", lambda nn: nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3),
                                                          padding=1, output_padding=(1, 2),
                                                          groups=2, dilation=(2, 1)),
     (2, 4, 4, 3)),
    ("maxpool", lambda nn: nn.MaxPool2d(2), (2, 3, 6, 7)),
    ("maxpool_full", lambda nn: nn.MaxPool2d(3, stride=2, padding=1, dilation=1,
                                             ceil_mode=True), (2, 2, 7, 8)),
    ("maxpool_indices", lambda nn: nn.MaxPool2d((2, 3), return_indices=True), (1, 2, 6, 7)),
    ("avgpool", lambda nn: nn.AvgPool2d(3, stride=2, padding=1), (2, 2, 7, 6)),
    ("avgpool_options", lambda nn: nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False,
                                                divisor_override=None), (1, 2, 5, 5)),
    ("adaptive_avg", lambda nn: nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 7, 5)),
    ("adaptive_avg_int", lambda nn: nn.AdaptiveAvgPool2d(1), (2, 3, 4, 5)),
    ("adaptive_max", lambda nn: nn.AdaptiveMaxPool2d((2, 3)), (2, 2, 5, 7)),
    ("adaptive_max_indices", lambda nn: nn.AdaptiveMaxPool2d(2, return_indices=True),
     (1, 2, 5, 4)),
    ("lrn", lambda nn: nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=1.5), (2, 5, 3, 4)),
    ("lrn_default", lambda nn: nn.LocalResponseNorm(5), (2, 6, 3, 3)),
    ("bn2d", lambda nn: nn.BatchNorm2d(3), (4, 3, 3, 2)),
    ("bn2d_options", lambda nn: nn.BatchNorm2d(3, eps=1e-3, momentum=0.3), (2, 3, 2, 2)),
    ("bn2d_noaffine", lambda nn: nn.BatchNorm2d(2, affine=False), (3, 2, 2, 2)),
    ("bn2d_no_stats", lambda nn: nn.BatchNorm2d(2, track_running_stats=False), (3, 2, 2, 2)),
    ("bn2d_nobias", lambda nn: nn.BatchNorm2d(2, bias=False), (3, 2, 2, 2)),
    ("bn1d", lambda nn: nn.BatchNorm1d(4), (5, 4)),
    ("bn1d_3d", lambda nn: nn.BatchNorm1d(3, momentum=None), (2, 3, 4)),
    ("layernorm", lambda nn: nn.LayerNorm(5), (3, 5)),
    ("layernorm_2d", lambda nn: nn.LayerNorm((3, 4), eps=1e-3), (2, 2, 3, 4)),
    ("layernorm_noaffine", lambda nn: nn.LayerNorm(4, elementwise_affine=False), (3, 4)),
    ("layernorm_nobias", lambda nn: nn.LayerNorm(4, bias=False), (3, 4)),
    ("groupnorm", lambda nn: nn.GroupNorm(2, 4), (3, 4, 3, 2)),
    ("groupnorm_noaffine", lambda nn: nn.GroupNorm(3, 6, eps=1e-3, affine=False), (2, 6, 3)),
    ("relu", lambda nn: nn.ReLU(), (3, 4)),
    ("relu_inplace", lambda nn: nn.ReLU(inplace=True), (3, 4)),
    ("leaky", lambda nn: nn.LeakyReLU(0.2), (3, 4)),
    ("leaky_default", lambda nn: nn.LeakyReLU(), (3, 4)),
    ("leaky_inplace", lambda nn: nn.LeakyReLU(0.1, inplace=True), (3, 4)),
    ("elu", lambda nn: nn.ELU(alpha=0.7), (3, 4)),
    ("elu_inplace", lambda nn: nn.ELU(inplace=True), (3, 4)),
    ("gelu", lambda nn: nn.GELU(), (3, 4)),
    ("gelu_tanh", lambda nn: nn.GELU(approximate="tanh"), (3, 4)),
    ("sigmoid", lambda nn: nn.Sigmoid(), (3, 4)),
    ("tanh", lambda nn: nn.Tanh(), (3, 4)),
    ("softmax", lambda nn: nn.Softmax(dim=1), (3, 4, 2)),
    ("logsoftmax", lambda nn: nn.LogSoftmax(dim=-1), (3, 4)),
    ("flatten", lambda nn: nn.Flatten(), (2, 3, 2, 2)),
    ("flatten_dims", lambda nn: nn.Flatten(0, 2), (2, 3, 2, 2)),
    ("unflatten", lambda nn: nn.Unflatten(1, (3, 2)), (2, 6, 2)),
    ("unflatten_neg", lambda nn: nn.Unflatten(-1, (2, -1)), (2, 6)),
    ("identity", lambda nn: nn.Identity(3, arg=1), (2, 3)),
    ("zeropad", lambda nn: nn.ZeroPad2d(2), (2, 3, 3, 4)),
    ("zeropad_tuple", lambda nn: nn.ZeroPad2d((1, 0, 2, 1)), (2, 3, 3, 4)),
    ("constpad", lambda nn: nn.ConstantPad2d((1, 2, 0, 1), 3.5), (2, 3, 3, 4)),
    ("dropout_eval", lambda nn: nn.Dropout(0.3), (3, 4)),
    ("dropout2d_eval", lambda nn: nn.Dropout2d(0.3), (2, 3, 2, 2)),
    ("dropout_inplace_eval", lambda nn: nn.Dropout(0.2, inplace=True), (3, 4)),
    ("upsample", lambda nn: nn.Upsample(scale_factor=2), (1, 2, 3, 3)),
    ("upsample_bilinear", lambda nn: nn.Upsample(size=(5, 4), mode="bilinear",
                                                 align_corners=False), (1, 2, 3, 3)),
    ("pixelshuffle", lambda nn: nn.PixelShuffle(2), (2, 8, 3, 2)),
]

# layers that the eval-mode run must also cover (they behave differently there)
EVAL_TOO = {"bn2d", "bn2d_options", "bn2d_noaffine", "bn2d_no_stats", "bn1d", "bn1d_3d",
            "dropout_eval", "dropout2d_eval", "dropout_inplace_eval"}


@pytest.mark.parametrize("name,factory,shape", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_torch(torch, name, factory, shape):
    x = randn(*shape)
    non_leaf = "inplace" in name
    if not name.startswith("dropout"):     # dropout is random in training mode
        run_both(torch, factory, [x], mode="train", non_leaf=non_leaf)
    if name in EVAL_TOO:
        run_both(torch, factory, [x], mode="eval")


def _padding_fits(padding_mode, padding, kernel, dilation, size):
    """torch pads with F.pad before convolving when padding_mode is not 'zeros':
    'reflect' needs each side's padding below the input length, 'circular' at most it."""
    if padding_mode == "zeros":
        return True
    for axis, n in enumerate(size):
        if padding == "same":          # torch puts the odd one on the right/bottom
            total = dilation[axis] * (kernel[axis] - 1)
            pad = total - total // 2
        else:
            pad = 0 if padding == "valid" else np.broadcast_to(padding, 2)[axis]
        if pad > n or (padding_mode == "reflect" and pad == n):
            return False
    return True


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=conv2d_arguments(bias=False), bias=st.booleans(), data=st.data(),
       padding_mode=st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
def test_conv2d_hyperparameters(torch, args, bias, data, padding_mode):
    (x_shape, w_shape, _), kw = args
    assume(_padding_fits(padding_mode, kw["padding"], w_shape[2:],
                         np.broadcast_to(kw["dilation"], 2), x_shape[2:]))
    kernel = data.draw(spelled(w_shape[2:]), label="kernel_size")

    def factory(nn):
        return nn.Conv2d(x_shape[1], w_shape[0], kernel, bias=bias, padding_mode=padding_mode,
                         **kw)
    run_both(torch, factory, [randn(*x_shape)])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=conv_transpose2d_arguments(bias=False), bias=st.booleans(), data=st.data())
def test_conv_transpose2d_hyperparameters(torch, args, bias, data):
    (x_shape, w_shape, _), kw = args
    kernel = data.draw(spelled(w_shape[2:]), label="kernel_size")
    run_both(torch, lambda nn: nn.ConvTranspose2d(
        x_shape[1], w_shape[1] * kw["groups"], kernel, kw["stride"], kw["padding"],
        kw["output_padding"], kw["groups"], bias, kw["dilation"]), [randn(*x_shape)])


def test_conv_transpose2d_output_size(torch):
    x = randn(2, 3, 4, 5)
    m, t = run_both(torch, lambda nn: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1), [x])
    for size in [(7, 9), (8, 10), [2, 2, 8, 9]]:
        expected = t(torch.from_numpy(x), output_size=size).detach().numpy()
        got = m(minicnn.tensor(x), output_size=size).numpy()
        np.testing.assert_allclose(got, expected, RTOL, ATOL)
    with pytest.raises(ValueError, match=r"ConvTranspose2d\(3, 2.*output size of \(9, 9\)"):
        m(minicnn.tensor(x), output_size=(9, 9))


def test_maxunpool_roundtrip(torch):
    # (input shape, output_size): the default size only fits an input the pooling tiles
    for shape, size in [((2, 3, 6, 4), None), ((2, 3, 7, 5), (7, 5)), ((1, 2, 7, 5), [1, 2, 7, 5])]:
        x = randn(*shape)
        tpool = torch.nn.MaxPool2d(2, return_indices=True)
        mpool = mnn.MaxPool2d(2, return_indices=True)
        t_out, t_idx = tpool(torch.from_numpy(x))
        m_out, m_idx = mpool(minicnn.tensor(x))
        tu, mu = torch.nn.MaxUnpool2d(2), mnn.MaxUnpool2d(2)
        assert repr(tu) == repr(mu)
        tv = t_out.detach().clone().requires_grad_(True)
        mv = minicnn.tensor(m_out.numpy(), requires_grad=True)
        ty, my = tu(tv, t_idx, size), mu(mv, m_idx, size)
        np.testing.assert_allclose(my.numpy(), ty.detach().numpy(), RTOL, ATOL)
        g = randn(*ty.shape, seed=3)
        ty.backward(torch.from_numpy(g))
        my.backward(g)
        np.testing.assert_allclose(mv.grad.numpy(), tv.grad.numpy(), RTOL, ATOL)


# --------------------------------------------------------------- BatchNorm details

@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_batchnorm_running_stats_after_training(torch, momentum):
    """Several training steps (different batches), then eval: buffers and outputs match,
    num_batches_tracked is int64 and counts the steps."""
    def factory(nn):
        return nn.BatchNorm2d(3, momentum=momentum)
    tlayer, mlayer = factory(torch.nn).double(), factory(mnn).double()
    mlayer.load_state_dict({k: v.numpy() for k, v in tlayer.state_dict().items()})
    for step in range(5):
        x = randn(2 + step, 3, 3, 2, seed=10 + step) * (1 + step) + step
        tlayer(torch.from_numpy(x))
        mlayer(minicnn.tensor(x))
    assert mlayer.num_batches_tracked.dtype == np.int64
    assert int(mlayer.num_batches_tracked.item()) == 5
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(mlayer, name).numpy(),
                                   getattr(tlayer, name).numpy(), RTOL, ATOL, err_msg=name)
    tlayer.eval(), mlayer.eval()
    x = randn(2, 3, 3, 2, seed=99)
    np.testing.assert_allclose(mlayer(minicnn.tensor(x)).numpy(),
                               tlayer(torch.from_numpy(x)).detach().numpy(), RTOL, ATOL)


def test_batchnorm_buffers_float32_default_and_eval_does_not_update():
    bn = mnn.BatchNorm2d(2)
    assert bn.weight.dtype == np.float32 and bn.running_var.dtype == np.float32
    assert bn.num_batches_tracked.shape == ()
    bn.eval()
    bn(minicnn.tensor(randn(3, 2, 2, 2).astype(np.float32)))
    np.testing.assert_array_equal(bn.running_mean.numpy(), 0)
    np.testing.assert_array_equal(bn.running_var.numpy(), 1)
    assert int(bn.num_batches_tracked.item()) == 0
    bn.train()
    bn(minicnn.tensor(randn(3, 2, 2, 2).astype(np.float32)))
    assert int(bn.num_batches_tracked.item()) == 1
    assert bn.running_mean.dtype == np.float32
    bn.reset_running_stats()
    assert int(bn.num_batches_tracked.item()) == 0


# --------------------------------------------------------------- LRN conventions

def test_lrn_paper_convention_is_torch_with_alpha_times_size(torch):
    x = randn(2, 7, 3, 3)
    paper = mnn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0, alpha_scaling="paper")
    ref = torch.nn.LocalResponseNorm(5, alpha=5e-2, beta=0.75, k=2.0)
    np.testing.assert_allclose(paper(minicnn.tensor(x)).numpy(),
                               ref(torch.from_numpy(x)).numpy(), RTOL, ATOL)
    # and the paper formula written out: b = a / (k + α Σ_{5 neighbours} a²)^β
    sq = np.pad(x ** 2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window_sum = sum(sq[:, i:i + 7] for i in range(5))
    np.testing.assert_allclose(paper(minicnn.tensor(x)).numpy(),
                               x / (2.0 + 1e-2 * window_sum) ** 0.75, RTOL, ATOL)
    assert "alpha_scaling='paper'" in repr(paper)
    with pytest.raises(ValueError, match="alpha_scaling"):
        mnn.LocalResponseNorm(5, alpha_scaling="caffe")


@pytest.mark.parametrize("scaling", ["torch", "paper"])
def test_lrn_spatial_layer(scaling):
    x = randn(2, 3, 5, 4)
    size, alpha, beta, k = 3, 0.3, 0.75, 1.5
    layer = mnn.LocalResponseNormSpatial(size, alpha, beta, k, alpha_scaling=scaling)
    # the within-channel formula, written out: zero-padded size×size window sums of a²
    sq = np.pad(x ** 2, ((0, 0), (0, 0), (1, 1), (1, 1)))
    window_sum = sum(sq[:, :, i:i + 5, j:j + 4] for i in range(3) for j in range(3))
    a = alpha / size ** 2 if scaling == "torch" else alpha
    np.testing.assert_allclose(layer(minicnn.tensor(x)).numpy(),
                               x / (k + a * window_sum) ** beta, RTOL, ATOL)


# --------------------------------------------------------------- dropout in training

@pytest.mark.parametrize("cls,shape", [(mnn.Dropout, (200, 100)), (mnn.Dropout2d, (40, 500, 2, 2))])
def test_dropout_training_statistics(cls, shape):
    p = 0.3
    layer = cls(p)
    x = np.ones(shape)
    y = layer(minicnn.tensor(x)).numpy()
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) < 0.02
    np.testing.assert_allclose(y[kept], 1 / (1 - p))
    if cls is mnn.Dropout2d:   # whole channels
        per_channel = kept.reshape(shape[0], shape[1], -1)
        assert np.all(per_channel.all(-1) | ~per_channel.any(-1))
    layer.eval()
    np.testing.assert_array_equal(layer(minicnn.tensor(x)).numpy(), x)
    with pytest.raises(ValueError, match="between 0 and 1"):
        cls(1.5)


# --------------------------------------------------------------- losses

def _loss_inputs(rng, kind):
    logits = rng.standard_normal((5, 4))
    if kind == "class":
        return [logits, np.array([0, 3, 1, 1, 2])]
    if kind == "logprob":
        return [logits - np.log(np.exp(logits).sum(1, keepdims=True)), np.array([0, 3, 1, 1, 2])]
    if kind == "prob":
        return [1 / (1 + np.exp(-logits)), rng.uniform(0, 1, (5, 4))]
    if kind == "binary_logits":
        return [logits, (rng.uniform(0, 1, (5, 4)) > 0.5).astype(np.float64)]
    return [logits, rng.standard_normal((5, 4))]


LOSS_CASES = [
    ("ce", lambda nn: nn.CrossEntropyLoss(), "class"),
    ("ce_sum", lambda nn: nn.CrossEntropyLoss(reduction="sum"), "class"),
    ("ce_smooth_ignore", lambda nn: nn.CrossEntropyLoss(ignore_index=1, label_smoothing=0.1), "class"),
    ("ce_legacy", lambda nn: nn.CrossEntropyLoss(size_average=False), "class"),
    ("nll", lambda nn: nn.NLLLoss(), "logprob"),
    ("nll_none", lambda nn: nn.NLLLoss(reduction="none"), "logprob"),
    ("mse", lambda nn: nn.MSELoss(), "regression"),
    ("mse_legacy_none", lambda nn: nn.MSELoss(reduce=False), "regression"),
    ("l1", lambda nn: nn.L1Loss(reduction="sum"), "regression"),
    ("smoothl1", lambda nn: nn.SmoothL1Loss(beta=0.5), "regression"),
    ("bce", lambda nn: nn.BCELoss(), "prob"),
    ("bcelogits", lambda nn: nn.BCEWithLogitsLoss(), "binary_logits"),
]


@pytest.mark.parametrize("factory,kind", [c[1:] for c in LOSS_CASES], ids=[c[0] for c in LOSS_CASES])
def test_loss_matches_torch(torch, factory, kind, rng):
    run_both(torch, factory, _loss_inputs(rng, kind))


def test_weighted_losses_match_torch_and_keep_weights_as_buffers(torch, rng):
    w = rng.uniform(0.5, 2, 4)
    cases = [
        (lambda nn, W: nn.CrossEntropyLoss(weight=W), "class"),
        (lambda nn, W: nn.NLLLoss(weight=W), "logprob"),
        (lambda nn, W: nn.BCELoss(weight=W), "prob"),
        (lambda nn, W: nn.BCEWithLogitsLoss(weight=W, pos_weight=W * 2), "binary_logits"),
    ]
    for make, kind in cases:
        inputs = _loss_inputs(rng, kind)
        tl, ml = make(torch.nn, torch.from_numpy(w)), make(mnn, w)
        assert list(ml.state_dict()) == list(tl.state_dict())
        t_in = [torch.from_numpy(v) for v in inputs]
        t_in[0].requires_grad_(True)
        m_in = [minicnn.tensor(v) for v in inputs]
        m_in[0].requires_grad_(True)
        t_out, m_out = tl(*t_in), ml(*m_in)
        t_out.backward()
        m_out.backward()
        np.testing.assert_allclose(m_out.numpy(), t_out.detach().numpy(), RTOL, ATOL)
        np.testing.assert_allclose(m_in[0].grad.numpy(), t_in[0].grad.numpy(), RTOL, ATOL)


def test_loss_bad_reduction():
    with pytest.raises(ValueError, match="MSELoss: reduction must be one of"):
        mnn.MSELoss(reduction="avg")


# --------------------------------------------------------------- a small model

def test_small_cnn_matches_torch_end_to_end(torch):
    def factory(nn):
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.LocalResponseNorm(3), nn.Tanh(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.0), nn.Linear(6, 3))
    m, t = run_both(torch, factory, [randn(3, 1, 8, 8)], steps=2)
    assert str(m) == str(t)


# --------------------------------------------------------------- errors

def test_conv_wrong_channels_message():
    conv = mnn.Conv2d(3, 16, 5)
    with pytest.raises(ValueError) as info:
        conv(minicnn.tensor(np.zeros((8, 1, 28, 28), np.float32)))
    assert str(info.value) == ("Conv2d(3, 16, kernel_size=(5, 5), stride=(1, 1)): expected "
                               "input with 3 channels, got shape (8, 1, 28, 28)")
    with pytest.raises(ValueError, match=r"Conv2d\(3, 16.*4-D input.*got shape \(28, 28\)"):
        conv(minicnn.tensor(np.zeros((28, 28), np.float32)))


@pytest.mark.parametrize("make,shape,pattern", [
    (lambda: mnn.Linear(4, 2), (3, 5), r"Linear\(in_features=4, out_features=2, bias=True\): "
                                       r"expected input with 4 features.*\(3, 5\)"),
    (lambda: mnn.ConvTranspose2d(3, 2, 3), (1, 2, 4, 4), r"ConvTranspose2d\(3, 2.*3 channels"),
    (lambda: mnn.BatchNorm2d(3), (2, 4, 3, 3), r"BatchNorm2d\(3, .*3 channels.*\(2, 4, 3, 3\)"),
    (lambda: mnn.BatchNorm2d(3), (2, 3, 3), r"BatchNorm2d\(3, .*4-D input"),
    (lambda: mnn.BatchNorm1d(3), (2, 3, 3, 3), r"BatchNorm1d\(3, .*2-D or 3-D input"),
    (lambda: mnn.LayerNorm((3, 4)), (2, 4, 3), r"LayerNorm\(\(3, 4\).*last 2 dimension"),
    (lambda: mnn.GroupNorm(2, 4), (2, 6, 3), r"GroupNorm\(2, 4.*4 channels"),
    (lambda: mnn.MaxPool2d(2), (4, 4), r"MaxPool2d\(kernel_size=2.*got shape \(4, 4\)"),
    (lambda: mnn.Unflatten(1, (2, 2)), (3, 5), r"Unflatten.*cannot be split into \(2, 2\)"),
])
def test_layer_input_errors(make, shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()(minicnn.tensor(np.zeros(shape, np.float32)))


@pytest.mark.parametrize("make,pattern", [
    (lambda: mnn.Conv2d(3, 4, 3, groups=2), "in_channels \\(3\\) must be divisible by groups"),
    (lambda: mnn.Conv2d(4, 3, 3, groups=2), "out_channels \\(3\\) must be divisible"),
    (lambda: mnn.Conv2d(4, 4, 3, stride=2, padding="same"), "not supported for strided"),
    (lambda: mnn.Conv2d(4, 4, 3, padding="full"), "padding must be"),
    (lambda: mnn.Conv2d(4, 4, 3, padding_mode="mirror"), "padding_mode must be one of"),
    (lambda: mnn.ConvTranspose2d(4, 4, 3, padding_mode="reflect"), "only padding_mode='zeros'"),
    (lambda: mnn.ConvTranspose2d(4, 4, 3, stride=2, output_padding=2), "output_padding"),
    (lambda: mnn.GroupNorm(3, 4), "divisible by num_groups"),
    (lambda: mnn.GELU(approximate="fast"), "approximate"),
])
def test_constructor_errors(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_constructor_rejects_a_kernel_that_is_not_a_pair():
    # the layers check (h, w) arguments with the ops' own check: a TypeError
    with pytest.raises(TypeError, match=r"Conv2d: kernel_size must be an int or a pair of "
                                        r"ints, got \(3, 3, 3\)"):
        mnn.Conv2d(4, 4, (3, 3, 3))


def test_load_state_dict_problems_are_listed():
    model = mnn.Sequential(mnn.Conv2d(1, 2, 3), mnn.BatchNorm2d(2))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    state["0.weight"] = np.zeros((2, 1, 5, 5), np.float32)
    del state["1.running_var"]
    state["2.weight"] = np.zeros(3, np.float32)
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(state)
    text = str(info.value)
    assert "Missing key(s): 1.running_var" in text
    assert "Unexpected key(s): 2.weight" in text
    assert "0.weight: checkpoint shape (2, 1, 5, 5), model shape (2, 1, 3, 3)" in text


def test_float32_default_parameters_and_float32_output():
    model = mnn.Sequential(mnn.Conv2d(1, 2, 3), mnn.BatchNorm2d(2), mnn.ReLU(),
                           mnn.Flatten(), mnn.LazyLinear(3))
    y = model(minicnn.tensor(randn(2, 1, 5, 5).astype(np.float32)))
    assert y.dtype == np.float32
    assert all(p.dtype == np.float32 for p in model.parameters())
