"""HRNet-OCR: parameter count, output shapes, the aux output, gather / attention shapes, kwargs."""
import math

import pytest
import torch
import torch.nn.functional as F

from seglab.errors import ConfigError
from seglab.models import build_model, model_options
from seglab.models.backbones.hrnet import HRNET_SPECS, HRNetBackbone
from seglab.models.complexity import count_parameters
from seglab.models.heads.ocr_head import ObjectAttentionBlock, SpatialGather, SpatialOCR
from seglab.models.ocr import HRNetOCR
from tests.models.conftest import build_meta


def test_registered_for_every_width():
    for arch in HRNET_SPECS:
        model = build_meta(f"{arch}_ocr", num_classes=19)
        assert isinstance(model, HRNetOCR) and isinstance(model, HRNetBackbone)


def test_w48_ocr_parameter_count():
    # HRNet-OCR paper / HRNet-semantic-segmentation README: HRNetV2-W48 + OCR ~ 70.3-70.4M (19 classes)
    n = count_parameters(build_meta("hrnet_w48_ocr", num_classes=19))
    assert n == pytest.approx(70.4e6, rel=0.005)
    # = HRNetV2-W48 (65.86M) - its head classifier + the OCR modules, computed by hand:
    base = count_parameters(build_meta("hrnet_w48", num_classes=19))
    aux = 0  # the aux head has exactly the HRNetV2 head's shape
    conv3x3 = 720 * 512 * 9 + 512 + 2 * 512
    attention = 2 * (512 * 256 + 2 * 256 + 256 * 256 + 2 * 256) + (512 * 256 + 2 * 256) + (256 * 512 + 2 * 512)
    fuse = 1024 * 512 + 2 * 512
    cls = 512 * 19 + 19
    assert n == base + aux + conv3x3 + attention + fuse + cls


def test_backbone_parameter_names_are_official():
    names = {k for k, _ in build_meta("hrnet_w18_small_v1_ocr", num_classes=19).named_parameters()}
    backbone = {k for k, _ in build_meta("hrnet_w18_small_v1", num_classes=19).named_parameters()}
    backbone = {k for k in backbone if not k.startswith("head.")}
    assert backbone <= names
    assert {"conv1.weight", "stage4.0.fuse_layers.0.1.0.weight", "head.conv3x3_ocr.0.weight",
            "head.aux_head.classifier.weight", "head.classifier.weight",
            "head.ocr_distri_head.object_context_block.f_pixel.0.weight"} <= names


def test_forward_shapes_and_aux():
    torch.manual_seed(0)
    model = build_model("hrnet_w18_small_v1_ocr", num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 50, 70))
    assert out.output_stride == 4
    assert out.logits.shape == (2, 5, 13, 18)
    assert out.aux_logits.shape == (2, 5, 13, 18)
    assert set(out.extras()) == {"aux_logits"}
    assert not torch.allclose(out.logits, out.aux_logits)


def test_head_structure_w48():
    head = build_meta("hrnet_w48_ocr", num_classes=19).head
    assert head.conv3x3_ocr[0].in_channels == 720 and head.conv3x3_ocr[0].out_channels == 512
    assert head.conv3x3_ocr[0].kernel_size == (3, 3)
    assert head.aux_head.bottleneck[0].in_channels == 720 and head.aux_head.bottleneck[0].out_channels == 720
    assert head.aux_head.classifier.out_channels == 19
    block = head.ocr_distri_head.object_context_block
    assert block.key_channels == 256
    assert [m.out_channels for m in block.f_pixel if isinstance(m, torch.nn.Conv2d)] == [256, 256]
    assert [m.out_channels for m in block.f_object if isinstance(m, torch.nn.Conv2d)] == [256, 256]
    assert block.f_up[0].out_channels == 512
    fuse = head.ocr_distri_head.conv_bn_dropout
    assert fuse[0].in_channels == 1024 and fuse[0].out_channels == 512
    assert isinstance(fuse[3], torch.nn.Dropout2d) and fuse[3].p == 0.05
    assert head.classifier.in_channels == 512 and head.classifier.out_channels == 19


def test_spatial_gather_by_hand():
    feats = torch.randn(2, 6, 3, 4)
    logits = torch.randn(2, 5, 3, 4)
    regions = SpatialGather()(feats, logits)
    assert regions.shape == (2, 6, 5, 1)
    probs = F.softmax(logits.reshape(2, 5, 12), dim=2)
    expected = torch.einsum("bkn,bcn->bck", probs, feats.reshape(2, 6, 12))
    torch.testing.assert_close(regions[..., 0], expected)


def test_object_attention_shapes_and_softmax():
    block = ObjectAttentionBlock(in_channels=8, key_channels=4).eval()
    x, regions = torch.randn(2, 8, 3, 5), torch.randn(2, 8, 7, 1)
    sim, context = block.attention(x, regions)
    assert sim.shape == (2, 15, 7) and context.shape == (2, 4, 3, 5)
    torch.testing.assert_close(sim.sum(-1), torch.ones(2, 15))
    q = block.f_pixel(x).reshape(2, 4, 15).permute(0, 2, 1)
    k = block.f_object(regions).reshape(2, 4, 7)
    torch.testing.assert_close(sim, F.softmax(q @ k / math.sqrt(4), dim=-1))
    assert block(x, regions).shape == (2, 8, 3, 5)
    assert SpatialOCR(8, 4, 6).eval()(x, regions).shape == (2, 6, 3, 5)


def test_weight_init_passthrough():
    torch.manual_seed(0)
    model = build_model("hrnet_w18_small_v1_ocr", num_classes=3, weight_init="hrnet")
    assert model.head.conv3x3_ocr[0].weight.std().item() == pytest.approx(0.001, rel=0.1)
    kaiming = build_model("hrnet_w18_small_v1_ocr", num_classes=3)
    std = math.sqrt(2 / (512 * 9))  # fan_out
    assert kaiming.head.conv3x3_ocr[0].weight.std().item() == pytest.approx(std, rel=0.1)


def test_options():
    assert model_options("hrnet_w48_ocr") == [
        "num_classes", "ocr_mid_channels", "ocr_key_channels", "ocr_dropout", "in_chans", "bn_momentum",
        "align_corners", "weight_init"]
    model = build_meta("hrnet_w18_small_v1_ocr", num_classes=4, ocr_mid_channels=64, ocr_key_channels=32,
                       ocr_dropout=0.1)
    assert model.head.conv3x3_ocr[0].out_channels == 64
    assert model.head.ocr_distri_head.object_context_block.key_channels == 32


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"num_classes": 0}, "model.num_classes must be an integer >= 1"),
        ({"ocr_mid_channels": 0}, "model.ocr_mid_channels must be an integer >= 1"),
        ({"ocr_key_channels": 2.5}, "model.ocr_key_channels must be an integer >= 1"),
        ({"ocr_dropout": 1.0}, "model.ocr_dropout must be a number in [0, 1)"),
        ({"ocr_dropout": "0.05"}, "model.ocr_dropout must be a number in [0, 1)"),
        ({"weight_init": "xavier"}, "model.weight_init must be one of"),
        ({"bn_momentum": 0}, "model.bn_momentum must be a number in (0, 1]"),
        ({"tau": 0.5}, "model.tau is not an option of model 'hrnet_w18_small_v1_ocr'"),
    ],
)
def test_bad_kwargs_raise_config_error(kwargs, fragment):
    kwargs = {"num_classes": 19, **kwargs}
    with pytest.raises(ConfigError) as info:
        build_meta("hrnet_w18_small_v1_ocr", **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)
