"""Mask R-CNN (minicnn/models/detection/mask_rcnn.py): torchvision's keys and shapes and its
published parameter count (44,401,393 for 91 classes); the released checkpoints' old keys
(``rpn.head.conv.weight``, ``roi_heads.mask_head.mask_fcn1.weight`` ...) load as the new
ones, with eps 0 as torchvision's builder gives those weights; the heads' initialisation;
and the whole model on small images in float64 against the torch twin of its RoI heads
(mask branch included): training losses (with ``loss_mask``) and gradients, eval
detections and the masks pasted into the images."""
import math

import numpy as np
import pytest

import minicnn as mc
from minicnn.models.detection import faster_rcnn, mask_rcnn
from minicnn.ops import misc
from minicnn.ops.misc import FrozenBatchNorm2d

from model_twin import cheap_init, count, ops_twin, torch_twin
from rcnn_twin import one_torch_thread  # noqa: F401 (a fixture)
from test_faster_rcnn import (buffers_of, check_eval, check_training, faster_rcnn_layout,
                              faster_twins, small_model, twin_heads)

MASK_KEYS = ([(f"roi_heads.mask_head.{i}.0.{k}", s) for i in range(4)
              for k, s in (("weight", (256, 256, 3, 3)), ("bias", (256,)))]
             + [("roi_heads.mask_predictor.conv5_mask.weight", (256, 256, 2, 2)),
                ("roi_heads.mask_predictor.conv5_mask.bias", (256,))])


def mask_rcnn_layout(num_classes):
    return faster_rcnn_layout(num_classes) + MASK_KEYS + [
        ("roi_heads.mask_predictor.mask_fcn_logits.weight", (num_classes, 256, 1, 1)),
        ("roi_heads.mask_predictor.mask_fcn_logits.bias", (num_classes,))]


def test_keys_shapes_and_parameter_count():
    with cheap_init():
        model = mask_rcnn.maskrcnn_resnet50_fpn(num_classes=91,
                                                norm_layer=FrozenBatchNorm2d)
    want = mask_rcnn_layout(91)
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert [k for k, _ in got] == [k for k, _ in want]
    assert got == want
    assert count(model) == 44_401_393 == sum(math.prod(s) for _, s in want) - buffers_of(want)
    pool = model.roi_heads.mask_roi_pool
    assert pool.featmap_names == ["0", "1", "2", "3"]
    assert (pool.output_size, pool.sampling_ratio) == ((14, 14), 2)
    assert isinstance(model, faster_rcnn.FasterRCNN)
    assert model.roi_heads.has_mask()


def test_heads_initialisation():
    mc.manual_seed(0)
    heads = mask_rcnn.MaskRCNNHeads(64, (64, 64), 1)
    predictor = mask_rcnn.MaskRCNNPredictor(64, 32, 5)
    for block in heads:
        conv = block[0]
        assert (conv.padding, conv.dilation) == ((1, 1), (1, 1))
        assert np.all(conv.bias.numpy() == 0)
        # He normal, fan out = 64 * 3 * 3
        assert abs(conv.weight.numpy().std() / math.sqrt(2 / 576) - 1) < 0.05
    assert abs(predictor.conv5_mask.weight.numpy().std() / math.sqrt(2 / (64 * 4)) - 1) < 0.05
    assert abs(predictor.mask_fcn_logits.weight.numpy().std() / math.sqrt(2 / 5) - 1) < 0.15
    assert predictor.conv5_mask.bias.numpy().any()      # biases keep the default init
    dilated = mask_rcnn.MaskRCNNHeads(8, (8,), 2)
    assert (dilated[0][0].padding, dilated[0][0].dilation) == ((2, 2), (2, 2))
    with mc.no_grad():
        y = predictor(heads(mc.zeros(2, 64, 14, 14)))
    assert y.shape == (2, 5, 28, 28)


def test_old_keys_of_the_released_checkpoints_load(torch, tmp_path):
    with cheap_init():
        model = mask_rcnn.maskrcnn_resnet50_fpn(num_classes=4)
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(v.shape).astype(np.float32)
             for k, v in model.state_dict().items()}

    def old_key(k):
        # the 2019 files: FPN, RPN head and mask head before torchvision's version 2
        if k.startswith("backbone.fpn.") and k.split(".")[4] == "0":
            return k.replace(".0.weight", ".weight").replace(".0.bias", ".bias")
        if k.startswith("rpn.head.conv.0.0."):
            return "rpn.head.conv." + k.rsplit(".", 1)[1]
        if k.startswith("roi_heads.mask_head."):
            i, _, kind = k.split(".")[2:]
            return f"roi_heads.mask_head.mask_fcn{int(i) + 1}.{kind}"
        return k

    old = {old_key(k): torch.from_numpy(v) for k, v in state.items()}
    assert "roi_heads.mask_head.mask_fcn4.bias" in old and "rpn.head.conv.weight" in old
    assert "backbone.fpn.layer_blocks.3.bias" in old
    path = tmp_path / "maskrcnn_v1.pth"
    torch.save(old, path)
    with cheap_init():
        released = mask_rcnn.maskrcnn_resnet50_fpn(weights=str(path))
    for k, v in released.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k], err_msg=k)
    assert all(m.eps == 0.0 for m in released.modules() if isinstance(m, FrozenBatchNorm2d))
    # the new keys, as a state dict: the same values, eps untouched
    with cheap_init():
        current = mask_rcnn.maskrcnn_resnet50_fpn(weights=state)
    np.testing.assert_array_equal(current.roi_heads.mask_head[3][0].bias.numpy(),
                                  state["roi_heads.mask_head.3.0.bias"])
    assert all(m.eps == 1e-5 for m in current.modules() if isinstance(m, FrozenBatchNorm2d))
    # the head alone, as torchvision's version hook
    head = mask_rcnn.MaskRCNNHeads(3, (2, 2), 1)
    w = {f"mask_fcn{i + 1}.{kind}": np.full(v.shape, i + 0.5) for i in range(2)
         for kind, v in (("weight", head[i][0].weight), ("bias", head[i][0].bias))}
    head.load_state_dict(w)
    assert head[1][0].bias.numpy().tolist() == [1.5, 1.5]
    assert "mask_fcn1.weight" in w                     # the caller's mapping is untouched


def test_constructor_errors():
    backbone = mc.nn.Conv2d(3, 8, 3)
    backbone.out_channels = 8
    with pytest.raises(TypeError, match="MaskRCNN: mask_roi_pool should be a "
                                        "MultiScaleRoIAlign"):
        mask_rcnn.MaskRCNN(backbone, 2, mask_roi_pool=mc.ops.RoIAlign(14, 1.0, 2))
    with pytest.raises(ValueError, match="MaskRCNN: num_classes should be None when "
                                         "mask_predictor"):
        mask_rcnn.MaskRCNN(backbone, 2, mask_predictor=mask_rcnn.MaskRCNNPredictor(8, 8, 2))
    with pytest.raises(ValueError, match="maskrcnn_resnet50_fpn: in_channels must be 3"):
        mask_rcnn.maskrcnn_resnet50_fpn(in_channels=4)


# ---------------------------------------------------- the model against the twin heads

def mask_twins(torch):
    """The torch twins of the box and mask heads (mask_rcnn.py on torch, with the twin
    of ops/misc.py's Conv2dNormActivation)."""
    t_misc = ops_twin(misc, torch, ones=torch.ones, zeros=torch.zeros)
    t = torch_twin(mask_rcnn, torch)
    t.MaskRCNNHeads.__init__.__globals__["Conv2dNormActivation"] = t_misc.Conv2dNormActivation

    def heads(m):
        return t.MaskRCNNHeads(m[0][0].in_channels, [b[0].out_channels for b in m],
                               m[0][0].dilation[0])

    def predictor(m):
        return t.MaskRCNNPredictor(m.conv5_mask.in_channels, m.conv5_mask.out_channels,
                                   m.mask_fcn_logits.out_channels)

    return {**faster_twins(torch), "MaskRCNNHeads": heads, "MaskRCNNPredictor": predictor}


@pytest.mark.slow
def test_training_losses_and_head_gradients_match_the_twin(torch):
    model = small_model(mask_rcnn.maskrcnn_resnet50_fpn)
    check_training(torch, model, twin_heads(torch, model, mask_twins(torch)), masks=True)


@pytest.mark.slow
def test_eval_detections_and_pasted_masks_match_the_twin(torch):
    # 15 detections per image: each costs the mask head 0.46 GMAC, here in float64
    model = small_model(mask_rcnn.maskrcnn_resnet50_fpn, box_detections_per_img=15)
    check_eval(torch, model, twin_heads(torch, model, mask_twins(torch)), masks=True)
