"""Defaults equal the official code's where the paper is silent (issue 22), checked by recomputation.

Sources: HRNet-Semantic-Segmentation ``master`` ``lib/models/seg_hrnet.py`` (``BN_MOMENTUM = 0.01``,
upsampling without ``align_corners``, i.e. False) and its Cityscapes yamls (``ALIGN_CORNERS: False``);
the ``HRNet-OCR`` branch and stamatisalex/OVeNet ``seg_hrnet_ocr.py`` (``BN_MOMENTUM = 0.1``,
``ALIGN_CORNERS = True``); the OVeNet yamls (``OFFSET_THRESHOLD: 0.2``; the paper's tau is 0.5).
"""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from seglab.models import build_model
from seglab.platform.config import ModelConfig
from tests.models.conftest import build_meta

PRESETS = Path(__file__).resolve().parents[2] / "experiments" / "conf" / "model"


def _bn_momenta(model):
    return {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)}


def _interp_flags(model):
    return {m.align_corners for m in model.modules() if hasattr(m, "align_corners")}


@pytest.mark.parametrize("name,momentum,align_corners", [
    ("hrnet_w18_small_v1", 0.01, False), ("ovenet_hrnet_w18_small_v1", 0.01, False),
    ("hrnet_w18_small_v1_ocr", 0.1, True), ("ovenet_hrnet_w18_small_v1_ocr", 0.1, True),
])
def test_default_bn_momentum_and_align_corners_are_the_official_ones(name, momentum, align_corners):
    model = build_meta(name, num_classes=19)
    assert _bn_momenta(model) == {momentum}
    assert _interp_flags(model) == {align_corners}


def test_hrnetv2_default_head_is_a_half_pixel_upsampling_recomputed_by_hand():
    """The default HRNetV2 head = concat(branch 0, interpolate(branch i, align_corners=False)) -> 1x1 conv
    -> BN (eval) -> ReLU -> 1x1 conv, recomputed with functional ops in float64."""
    torch.manual_seed(0)
    model = build_model("hrnet_w18_small_v1", num_classes=5).double().eval()
    images = torch.randn(1, 3, 52, 84, dtype=torch.float64)
    with torch.no_grad():
        branches = model.forward_features(images)
        size = branches[0].shape[-2:]
        feats = torch.cat([branches[0]] + [F.interpolate(b, size=size, mode="bilinear", align_corners=False)
                                           for b in branches[1:]], dim=1)
        conv, bn = model.head.bottleneck[0], model.head.bottleneck[1]
        hidden = F.relu(F.batch_norm(F.conv2d(feats, conv.weight, conv.bias), bn.running_mean, bn.running_var,
                                     bn.weight, bn.bias, False, 0.0, bn.eps))
        expected = F.conv2d(hidden, model.head.classifier.weight, model.head.classifier.bias)
        torch.testing.assert_close(model(images).logits, expected, rtol=0, atol=1e-10)
        corners = torch.cat([branches[0]] + [F.interpolate(b, size=size, mode="bilinear", align_corners=True)
                                             for b in branches[1:]], dim=1)
        assert (model.head.bottleneck(corners) - model.head.bottleneck(feats)).abs().max() > 1e-3


def test_bn_momentum_default_moves_running_stats_by_one_hundredth():
    """One training step of a BatchNorm with the HRNetV2 default: running_mean = 0.99 * 0 + 0.01 * batch mean."""
    model = build_model("hrnet_w18_small_v1", num_classes=3).train()
    images = torch.randn(2, 3, 32, 32) + 3.0
    with torch.no_grad():
        model(images)  # bn1 sees conv1(images) (no bias); its running mean starts at 0
        expected = 0.01 * F.conv2d(images, model.conv1.weight, stride=2, padding=1).mean(dim=(0, 2, 3))
    torch.testing.assert_close(model.bn1.running_mean, expected, rtol=1e-5, atol=1e-6)


def test_ovenet_official_preset_reproduces_the_official_yaml():
    """``model=ovenet_hrnet_w48_ocr_official``: OFFSET_THRESHOLD 0.2, ITERATIVE_REFINEMENT 0, LOGITS true,
    OFFSET_BRANCH 4, STAGE4_2.NUM_MODULES 2, BN 0.1, ALIGN_CORNERS true; the default preset keeps tau 0.5."""
    official = ModelConfig.from_dict(yaml.safe_load((PRESETS / "ovenet_hrnet_w48_ocr_official.yaml").read_text()))
    default = ModelConfig.from_dict(yaml.safe_load((PRESETS / "ovenet_hrnet_w48_ocr.yaml").read_text()))
    assert official.name == default.name == "ovenet_hrnet_w48_ocr"
    assert default.kwargs["tau"] == 0.5
    model = build_meta(official.name, num_classes=19, **official.kwargs)
    assert (model.tau, model.cascade_steps, model.resample_mode, model.branch_stage) == (0.2, 0, "logits", 4)
    assert model.offset_stage_modules == (2,) and len(model.offset_stage) == 2
    assert _bn_momenta(model) == {0.1} and _interp_flags(model) == {True}
    differing = {k for k in official.kwargs if official.kwargs[k] != default.kwargs.get(k, official.kwargs[k])}
    assert differing == {"tau", "offset_modules"}  # offset_modules: 2 written out = the default's null on W48
