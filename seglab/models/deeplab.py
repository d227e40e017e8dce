"""Baseline segmentation models on dilated ResNet trunks, plus a classic U-Net.

Registered names:

* ``deeplabv3plus_r50`` / ``deeplabv3plus_r101``: DeepLabV3+ (Chen et al. 2018). Dilated ResNet
  (``output_stride`` 16 -> ASPP rates 6/12/18, or 8 -> 12/24/36); ASPP = 1x1 + three 3x3 atrous
  convs + image pooling, 256 ch each with BN+ReLU, concat -> 1x1 256 + BN + ReLU + Dropout(0.5)
  (the dropout of the reference implementation); decoder: layer1 -> 1x1 48 + BN + ReLU, concat with
  the ASPP output upsampled to stride 4 -> two 3x3 256 convs (BN+ReLU) -> 1x1 classifier.
  Logits at stride 4.
* ``deeplabv2_r101``: DeepLabV2 (Chen et al. 2017). ResNet-101 at output stride 8, ASPP-L: four
  3x3 convs (rates 6/12/18/24, with bias) straight to ``num_classes``, summed. Logits at stride 8.
* ``fcn_r50``: FCN on a dilated ResNet-50 (output stride 8, as in torchvision/mmseg FCN baselines):
  3x3 conv 2048->512 + BN + ReLU + Dropout(0.1) + 1x1 classifier on layer4, with FCN-8s-style skip
  fusion (Shelhamer et al.): class scores of layer2 (stride 8, 1x1 conv) are added, the sum is
  upsampled x2 (bilinear) and the class scores of layer1 (stride 4, 1x1 conv) are added.
  Logits at stride 4.
* ``unet``: classic U-Net (Ronneberger et al. 2015) with BN and "same" padding: 4 down levels of
  two 3x3 conv+BN+ReLU, 2x2 max pooling, 2x2 transposed-conv upsampling, concat skips.
  ``base_width`` (default 64 -> 31.0M parameters). Logits at full resolution (stride 1); sizes not
  divisible by 16 are handled by zero-padding the upsampled map to its skip's size.

The ResNet-based models hold the trunk at ``self.backbone`` (torchvision parameter names) and have
``pretrained_prefix = "backbone."`` so a loader maps ``conv1.weight`` -> ``backbone.conv1.weight``.
All use Kaiming init by default (:func:`~seglab.models.backbones.hrnet.init_hrnet_weights`).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import check, is_int
from seglab.models import register_model
from seglab.models.backbones.hrnet import init_hrnet_weights
from seglab.models.backbones.resnet import RESNET_LAYERS, ResNetBackbone
from seglab.models.hrnet import check_common_args
from seglab.models.outputs import SegOutput

ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
DEEPLABV2_RATES = (6, 12, 18, 24)


def _check_output_stride(output_stride: Any) -> None:
    check(is_int(output_stride) and output_stride in (8, 16),
          f"model.output_stride must be 8 or 16 (got {output_stride!r})")


def _conv_bn_relu(cin: int, cout: int, kernel: int, bn_momentum: float, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout, momentum=bn_momentum), nn.ReLU(inplace=True))


def _resize(x: Tensor, size: Sequence[int], align_corners: bool) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


# --------------------------------------------------------------------------------------- DeepLabV3+
class ASPPPooling(nn.Module):
    """Image-level branch: global average pool -> 1x1 conv + BN + ReLU -> upsample to the input size.
    (Its BN sees one value per channel and image: training needs a batch of >= 2 images.)"""

    def __init__(self, cin: int, cout: int, bn_momentum: float, align_corners: bool) -> None:
        super().__init__()
        self.conv = _conv_bn_relu(cin, cout, 1, bn_momentum)
        self.align_corners = align_corners

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(F.adaptive_avg_pool2d(x, 1))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLabV3: 1x1 + three atrous 3x3 + image pooling."""

    def __init__(self, cin: int, rates: Sequence[int], cout: int = 256, bn_momentum: float = 0.1,
                 align_corners: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        branches: List[nn.Module] = [_conv_bn_relu(cin, cout, 1, bn_momentum)]
        branches += [_conv_bn_relu(cin, cout, 3, bn_momentum, dilation=r) for r in rates]
        branches.append(ASPPPooling(cin, cout, bn_momentum, align_corners))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(_conv_bn_relu(cout * len(branches), cout, 1, bn_momentum), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class DeepLabV3PlusHead(nn.Module):
    """ASPP on the deep features + the DeepLabV3+ decoder on the stride-4 features."""

    def __init__(self, deep_channels: int, low_channels: int, num_classes: int, rates: Sequence[int],
                 bn_momentum: float = 0.1, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.aspp = ASPP(deep_channels, rates, 256, bn_momentum, align_corners)
        self.low_proj = _conv_bn_relu(low_channels, 48, 1, bn_momentum)
        self.fuse = nn.Sequential(_conv_bn_relu(256 + 48, 256, 3, bn_momentum),
                                  _conv_bn_relu(256, 256, 3, bn_momentum))
        self.classifier = nn.Conv2d(256, num_classes, 1)

    def forward(self, low: Tensor, deep: Tensor) -> Tensor:
        low = self.low_proj(low)
        deep = _resize(self.aspp(deep), low.shape[-2:], self.align_corners)
        return self.classifier(self.fuse(torch.cat([deep, low], dim=1)))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ on a dilated ResNet (``arch`` = ``"resnet50"`` or ``"resnet101"``); logits at stride 4."""

    pretrained_prefix = "backbone."
    output_stride = 4  # of the logits; ``backbone_output_stride`` is the trunk's

    def __init__(self, arch: str, num_classes: int, output_stride: int = 16, in_chans: int = 3,
                 bn_momentum: float = 0.1, align_corners: bool = False, weight_init: str = "kaiming") -> None:
        check_common_args(num_classes, in_chans, bn_momentum, align_corners, weight_init)
        _check_output_stride(output_stride)
        super().__init__()
        self.num_classes = num_classes
        self.backbone_output_stride = output_stride
        self.backbone = ResNetBackbone(RESNET_LAYERS[arch], output_stride, in_chans, bn_momentum)
        ch = self.backbone.out_channels
        self.head = DeepLabV3PlusHead(ch["layer4"], ch["layer1"], num_classes, ASPP_RATES[output_stride],
                                      bn_momentum, align_corners)
        init_hrnet_weights(self, weight_init)

    def forward(self, images: Tensor, targets: Optional[Tensor] = None) -> SegOutput:
        feats = self.backbone(images)
        return SegOutput(logits=self.head(feats["layer1"], feats["layer4"]), output_stride=self.output_stride)


# ---------------------------------------------------------------------------------------- DeepLabV2
class ASPPL(nn.Module):
    """DeepLabV2 ASPP-L: parallel 3x3 atrous convs straight to class scores (with bias), summed."""

    def __init__(self, cin: int, num_classes: int, rates: Sequence[int] = DEEPLABV2_RATES) -> None:
        super().__init__()
        self.classifier = nn.ModuleList(nn.Conv2d(cin, num_classes, 3, padding=r, dilation=r) for r in rates)

    def forward(self, x: Tensor) -> Tensor:
        out = self.classifier[0](x)
        for conv in self.classifier[1:]:
            out = out + conv(x)
        return out


class DeepLabV2(nn.Module):
    """DeepLabV2 (ResNet-101, output stride 8, ASPP-L); logits at stride 8."""

    pretrained_prefix = "backbone."
    output_stride = 8

    def __init__(self, num_classes: int, in_chans: int = 3, bn_momentum: float = 0.1,
                 weight_init: str = "kaiming") -> None:
        check_common_args(num_classes, in_chans, bn_momentum, False, weight_init)
        super().__init__()
        self.num_classes = num_classes
        self.backbone = ResNetBackbone(RESNET_LAYERS["resnet101"], 8, in_chans, bn_momentum)
        self.head = ASPPL(self.backbone.out_channels["layer4"], num_classes)
        init_hrnet_weights(self, weight_init)
        if weight_init == "kaiming":  # reference impl: classifier ~ N(0, 0.01); fan_out Kaiming would give
            for conv in self.head.classifier:  # std ~ 0.1-0.3 on 4 summed 2048-ch convs (huge initial logits)
                nn.init.normal_(conv.weight, std=0.01)

    def forward(self, images: Tensor, targets: Optional[Tensor] = None) -> SegOutput:
        return SegOutput(logits=self.head(self.backbone(images)["layer4"]), output_stride=self.output_stride)


# ---------------------------------------------------------------------------------------------- FCN
class FCNHead(nn.Module):
    """3x3 conv 2048->512 + BN + ReLU + Dropout(0.1) + 1x1 classifier, plus FCN-8s-style skip scores."""

    def __init__(self, deep_channels: int, skip_channels: Dict[str, int], num_classes: int, mid: int = 512,
                 bn_momentum: float = 0.1, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.conv = nn.Sequential(_conv_bn_relu(deep_channels, mid, 3, bn_momentum), nn.Dropout(0.1))
        self.classifier = nn.Conv2d(mid, num_classes, 1)
        self.skip_scores = nn.ModuleDict({k: nn.Conv2d(c, num_classes, 1) for k, c in skip_channels.items()})

    def forward(self, feats: Dict[str, Tensor]) -> Tensor:
        scores = self.classifier(self.conv(feats["layer4"]))  # stride 8
        for key in ("layer2", "layer1"):  # deep -> shallow: stride 8, then stride 4
            skip = self.skip_scores[key](feats[key])
            scores = _resize(scores, skip.shape[-2:], self.align_corners) + skip
        return scores


class FCN(nn.Module):
    """FCN on a dilated ResNet-50 (output stride 8) with skip fusion from layer2 and layer1; logits at stride 4."""

    pretrained_prefix = "backbone."
    output_stride = 4

    def __init__(self, num_classes: int, in_chans: int = 3, bn_momentum: float = 0.1, align_corners: bool = False,
                 weight_init: str = "kaiming") -> None:
        check_common_args(num_classes, in_chans, bn_momentum, align_corners, weight_init)
        super().__init__()
        self.num_classes = num_classes
        self.backbone = ResNetBackbone(RESNET_LAYERS["resnet50"], 8, in_chans, bn_momentum)
        ch = self.backbone.out_channels
        self.head = FCNHead(ch["layer4"], {"layer2": ch["layer2"], "layer1": ch["layer1"]}, num_classes,
                            bn_momentum=bn_momentum, align_corners=align_corners)
        init_hrnet_weights(self, weight_init)

    def forward(self, images: Tensor, targets: Optional[Tensor] = None) -> SegOutput:
        return SegOutput(logits=self.head(self.backbone(images)), output_stride=self.output_stride)


# -------------------------------------------------------------------------------------------- U-Net
class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, bn_momentum: float) -> None:
        super().__init__(_conv_bn_relu(cin, cout, 3, bn_momentum), _conv_bn_relu(cout, cout, 3, bn_momentum))


class UpBlock(nn.Module):
    """2x2 transposed conv (halves channels), pad to the skip's size, concat, DoubleConv."""

    def __init__(self, cin: int, cout: int, bn_momentum: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = DoubleConv(cin // 2 + cout, cout, bn_momentum)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dh or dw:  # input size not divisible by 16: pooling floored, so the skip is 1 px larger
            x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Classic U-Net with BN and padded convs; logits at full resolution."""

    output_stride = 1

    def __init__(self, num_classes: int, base_width: int = 64, in_chans: int = 3, bn_momentum: float = 0.1,
                 weight_init: str = "kaiming") -> None:
        check_common_args(num_classes, in_chans, bn_momentum, False, weight_init)
        check(is_int(base_width) and base_width >= 2, f"model.base_width must be an integer >= 2 (got {base_width!r})")
        super().__init__()
        self.num_classes = num_classes
        self.base_width = base_width
        widths = [base_width * 2 ** i for i in range(5)]
        self.inc = DoubleConv(in_chans, widths[0], bn_momentum)
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1], bn_momentum) for i in range(4))
        self.up = nn.ModuleList(UpBlock(widths[i + 1], widths[i], bn_momentum) for i in reversed(range(4)))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        init_hrnet_weights(self, weight_init)

    def forward(self, images: Tensor, targets: Optional[Tensor] = None) -> SegOutput:
        x = self.inc(images)
        skips = [x]
        for block in self.down:
            x = block(F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return SegOutput(logits=self.classifier(x), output_stride=self.output_stride)


# ---------------------------------------------------------------------------------------- factories
def _deeplabv3plus_factory(name: str, arch: str) -> Callable[..., DeepLabV3Plus]:
    def factory(num_classes: int, output_stride: int = 16, in_chans: int = 3, bn_momentum: float = 0.1,
                align_corners: bool = False, weight_init: str = "kaiming") -> DeepLabV3Plus:
        return DeepLabV3Plus(arch, num_classes, output_stride=output_stride, in_chans=in_chans,
                             bn_momentum=bn_momentum, align_corners=align_corners, weight_init=weight_init)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"DeepLabV3+ on a dilated {arch} (output_stride 16 or 8), logits at stride 4."
    return factory


register_model("deeplabv3plus_r50")(_deeplabv3plus_factory("deeplabv3plus_r50", "resnet50"))
register_model("deeplabv3plus_r101")(_deeplabv3plus_factory("deeplabv3plus_r101", "resnet101"))


@register_model("deeplabv2_r101")
def deeplabv2_r101(num_classes: int, in_chans: int = 3, bn_momentum: float = 0.1,
                   weight_init: str = "kaiming") -> DeepLabV2:
    """DeepLabV2 (ResNet-101, output stride 8, ASPP-L rates 6/12/18/24 summed), logits at stride 8."""
    return DeepLabV2(num_classes, in_chans=in_chans, bn_momentum=bn_momentum, weight_init=weight_init)


@register_model("fcn_r50")
def fcn_r50(num_classes: int, in_chans: int = 3, bn_momentum: float = 0.1, align_corners: bool = False,
            weight_init: str = "kaiming") -> FCN:
    """FCN on a dilated ResNet-50 (output stride 8) with layer2/layer1 skip scores, logits at stride 4."""
    return FCN(num_classes, in_chans=in_chans, bn_momentum=bn_momentum, align_corners=align_corners,
               weight_init=weight_init)


@register_model("unet")
def unet(num_classes: int, base_width: int = 64, in_chans: int = 3, bn_momentum: float = 0.1,
         weight_init: str = "kaiming") -> UNet:
    """Classic U-Net (4 levels, BN, transposed-conv upsampling), logits at full resolution."""
    return UNet(num_classes, base_width=base_width, in_chans=in_chans, bn_momentum=bn_momentum,
                weight_init=weight_init)
