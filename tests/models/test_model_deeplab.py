"""DeepLabV3+, DeepLabV2, FCN and U-Net baselines: parameter counts, options, shapes, errors."""
import math

import pytest
import torch

from seglab.errors import ConfigError
from seglab.models import build_model, model_options
from seglab.models.backbones.resnet import resnet101
from seglab.models.complexity import count_parameters
from tests.models.conftest import build_meta

R50, R101 = 23_508_032, 42_500_160  # torchvision trunks without fc

# DeepLabV3+ head, hand-counted (convs without bias before BN; BN = 2 params per channel):
ASPP = (2048 * 256 + 512) * 2 + 3 * (2048 * 256 * 9 + 512) + (5 * 256 * 256 + 512)
DECODER = (256 * 48 + 96) + (304 * 256 * 9 + 512) + (256 * 256 * 9 + 512)


def test_deeplabv3plus_r101_parameter_count():
    n = count_parameters(build_meta("deeplabv3plus_r101", num_classes=19))
    assert n == R101 + ASPP + DECODER + 256 * 19 + 19 == 59_343_795
    assert abs(n - 59.3e6) / 59.3e6 < 0.005  # the paper-style ~59.3M
    assert count_parameters(build_meta("deeplabv3plus_r101", num_classes=19, output_stride=8)) == n


def test_deeplabv3plus_r50_parameter_count():
    assert count_parameters(build_meta("deeplabv3plus_r50", num_classes=19)) == R50 + ASPP + DECODER + 256 * 19 + 19


def test_deeplabv2_parameter_count():
    assert count_parameters(build_meta("deeplabv2_r101", num_classes=19)) == R101 + 4 * (2048 * 19 * 9 + 19)


def test_fcn_parameter_count():
    head = 2048 * 512 * 9 + 2 * 512 + 512 * 19 + 19
    skips = 512 * 19 + 19 + 256 * 19 + 19
    assert count_parameters(build_meta("fcn_r50", num_classes=19)) == R50 + head + skips


def test_unet_parameter_count_is_classic():
    n = count_parameters(build_meta("unet", num_classes=2))
    assert abs(n - 31.0e6) / 31.0e6 < 0.01  # classic U-Net, base width 64: 31.0M
    assert count_parameters(build_meta("unet", num_classes=2, base_width=32)) < n / 3.9


@pytest.mark.parametrize("output_stride, rates", [(16, (6, 12, 18)), (8, (12, 24, 36))])
def test_aspp_rates_follow_output_stride(output_stride, rates):
    model = build_meta("deeplabv3plus_r50", num_classes=3, output_stride=output_stride)
    assert model.backbone_output_stride == output_stride and model.output_stride == 4
    atrous = [b[0] for b in model.head.aspp.branches[1:4]]
    assert tuple(c.dilation[0] for c in atrous) == rates
    assert all(c.padding[0] == c.dilation[0] for c in atrous)


def test_deeplabv2_aspp_l_is_a_sum_of_four_biased_atrous_convs():
    model = build_meta("deeplabv2_r101", num_classes=3)
    convs = model.head.classifier
    assert [c.dilation[0] for c in convs] == [6, 12, 18, 24]
    assert all(c.bias is not None and c.out_channels == 3 and c.kernel_size == (3, 3) for c in convs)
    torch.manual_seed(0)
    x = torch.randn(1, 2048, 5, 6)
    head = build_model("deeplabv2_r101", num_classes=3).head
    expected = sum(c(x) for c in head.classifier)
    assert torch.allclose(head(x), expected, atol=1e-5)


@pytest.mark.parametrize("name, size, logits_size", [
    ("deeplabv3plus_r50", (50, 70), (13, 18)),
    ("deeplabv2_r101", (50, 70), (7, 9)),
    ("fcn_r50", (50, 70), (13, 18)),
    ("unet", (50, 70), (50, 70)),
    ("unet", (37, 45), (37, 45)),
])
def test_odd_input_sizes(name, size, logits_size):
    kwargs = {"base_width": 8} if name == "unet" else {}
    model = build_meta(name, num_classes=3, **kwargs)
    out = model(torch.empty(2, 3, *size, device="meta"))
    assert out.logits.shape == (2, 3, *logits_size)
    assert out.output_stride == model.output_stride
    assert logits_size == tuple(math.ceil(s / model.output_stride) for s in size)


def test_unet_small_forward_backward():
    torch.manual_seed(0)
    model = build_model("unet", num_classes=3, base_width=8)
    out = model(torch.randn(2, 3, 33, 47))
    assert out.logits.shape == (2, 3, 33, 47) and out.output_stride == 1
    out.logits.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["deeplabv3plus_r50", "deeplabv3plus_r101", "deeplabv2_r101", "fcn_r50"])
def test_resnet_models_map_torchvision_keys(name):
    model = build_meta(name, num_classes=3)
    assert model.pretrained_prefix == "backbone."
    with torch.device("meta"):
        trunk_keys = set(resnet101().state_dict() if "r101" in name else
                         build_meta("fcn_r50", num_classes=3).backbone.state_dict())
    own = set(model.state_dict())
    assert {model.pretrained_prefix + k for k in trunk_keys} <= own
    assert "backbone.conv1.weight" in own and "backbone.layer1.0.downsample.0.weight" in own


def test_load_torchvision_style_state_dict_with_prefix():
    torch.manual_seed(0)
    trunk = resnet101(output_stride=8)
    model = build_model("deeplabv2_r101", num_classes=3)
    state = {"backbone." + k: v for k, v in trunk.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("head.") for k in missing)
    assert torch.equal(model.backbone.layer3[5].conv2.weight, trunk.layer3[5].conv2.weight)


def test_kaiming_init_by_default():
    torch.manual_seed(0)
    model = build_model("fcn_r50", num_classes=3)
    w = model.head.conv[0][0].weight  # 3x3 2048->512: fan_out = 512 * 9
    assert abs(w.std().item() - math.sqrt(2 / (512 * 9))) < 0.002
    assert torch.all(model.backbone.bn1.weight == 1) and torch.all(model.backbone.bn1.bias == 0)


def test_model_options():
    common = ["in_chans", "bn_momentum", "align_corners", "weight_init"]
    assert model_options("deeplabv3plus_r101") == ["num_classes", "output_stride", *common]
    assert model_options("deeplabv3plus_r50") == ["num_classes", "output_stride", *common]
    assert model_options("deeplabv2_r101") == ["num_classes", "in_chans", "bn_momentum", "weight_init"]
    assert model_options("fcn_r50") == ["num_classes", *common]
    assert model_options("unet") == ["num_classes", "base_width", "in_chans", "bn_momentum", "weight_init"]


@pytest.mark.parametrize("name, kwargs, message", [
    ("deeplabv3plus_r101", {"output_stride": 4}, "model.output_stride must be 8 or 16 (got 4)"),
    ("deeplabv3plus_r50", {"output_stride": 32}, "model.output_stride must be 8 or 16 (got 32)"),
    ("deeplabv3plus_r50", {"output_stride": 16.0}, "model.output_stride must be 8 or 16 (got 16.0)"),
    ("unet", {"base_width": 0}, "model.base_width must be an integer >= 2 (got 0)"),
    ("fcn_r50", {"num_classes": 0}, "model.num_classes must be an integer >= 1 (got 0)"),
    ("deeplabv2_r101", {"weight_init": "xavier"}, "model.weight_init must be one of kaiming, hrnet"),
    ("deeplabv2_r101", {"output_stride": 16}, "model.output_stride is not an option of model 'deeplabv2_r101'"),
])
def test_bad_options_raise_one_line_config_errors(name, kwargs, message):
    kwargs = {"num_classes": 3, **kwargs}
    with pytest.raises(ConfigError) as info:
        build_meta(name, **kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
