"""HRNetV2 semantic segmentation models: HRNet backbone + HRNetV2 head, logits at stride 4.

Registered names: ``hrnet_w18_small_v1``, ``hrnet_w18_small_v2``, ``hrnet_w18``, ``hrnet_w32``,
``hrnet_w48`` (the official HRNet-semantic-segmentation Cityscapes configurations).
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Optional

from torch import Tensor

from seglab.errors import check, is_int
from seglab.models import register_model
from seglab.models.backbones.hrnet import HRNET_SPECS, WEIGHT_INITS, HRNetBackbone, HRNetSpec, init_hrnet_weights
from seglab.models.heads.hrnet_head import HRNetV2Head
from seglab.models.outputs import SegOutput

#: Defaults of the official HRNetV2 segmentation code (HRNet-Semantic-Segmentation ``master``,
#: ``lib/models/seg_hrnet.py``: ``BN_MOMENTUM = 0.01``, interpolate without ``align_corners``;
#: every HRNetV2 yaml: ``ALIGN_CORNERS: False``).
HRNETV2_BN_MOMENTUM = 0.01
HRNETV2_ALIGN_CORNERS = False


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_common_args(num_classes: Any, in_chans: Any, bn_momentum: Any, align_corners: Any,
                      weight_init: Any = "kaiming") -> None:
    """Validate the keyword arguments shared by all HRNet-based models (raises ConfigError)."""
    check(weight_init in WEIGHT_INITS, f"model.weight_init must be one of {', '.join(WEIGHT_INITS)} (got {weight_init!r})")
    check(is_int(num_classes) and num_classes >= 1, f"model.num_classes must be an integer >= 1 (got {num_classes!r})")
    check(is_int(in_chans) and in_chans >= 1, f"model.in_chans must be an integer >= 1 (got {in_chans!r})")
    check(_is_real(bn_momentum) and 0.0 < bn_momentum <= 1.0,
          f"model.bn_momentum must be a number in (0, 1] (got {bn_momentum!r})")
    check(isinstance(align_corners, bool), f"model.align_corners must be true or false (got {align_corners!r})")


def resolve_spec(arch: str | HRNetSpec) -> HRNetSpec:
    if isinstance(arch, HRNetSpec):
        return arch
    check(arch in HRNET_SPECS, f"model.arch must be one of {', '.join(sorted(HRNET_SPECS))} (got {arch!r})")
    return HRNET_SPECS[arch]


class HRNetV2(HRNetBackbone):
    """HRNetV2 for semantic segmentation.

    Args:
        arch: an :data:`HRNET_SPECS` name (e.g. ``"hrnet_w48"``) or an :class:`HRNetSpec`.
        num_classes: number of output classes (>= 1).
        in_chans: input image channels.
        bn_momentum: BatchNorm momentum (PyTorch convention; default 0.01, ``BN_MOMENTUM`` of the
            official ``master`` ``seg_hrnet.py``).
        align_corners: of every bilinear upsampling (default False: every official HRNetV2
            segmentation yaml sets ``ALIGN_CORNERS: False`` and ``master``'s ``seg_hrnet.py``
            interpolates without it; HRNet-OCR's default is True, see :mod:`seglab.models.ocr`).
        weight_init: ``"kaiming"`` (default, for training from scratch) or ``"hrnet"`` (official
            N(0, 0.001), meant to be overwritten by ImageNet weights); see :func:`init_hrnet_weights`.

    ``forward(images (B, in_chans, H, W)) -> SegOutput(logits=(B, num_classes, H/4, W/4))``
    (``H/4`` rounded up). It *is* the backbone plus a ``head`` (rather than holding a
    ``backbone`` attribute) so that parameter names are the official ones (``conv1.weight``,
    ``stage4.2.fuse_layers...``) and official ImageNet checkpoints load without renaming.
    """

    output_stride = 4

    def __init__(self, arch: str | HRNetSpec, num_classes: int, in_chans: int = 3,
                 bn_momentum: float = HRNETV2_BN_MOMENTUM, align_corners: bool = HRNETV2_ALIGN_CORNERS,
                 weight_init: str = "kaiming") -> None:
        check_common_args(num_classes, in_chans, bn_momentum, align_corners, weight_init)
        super().__init__(resolve_spec(arch), in_chans=in_chans, bn_momentum=bn_momentum, align_corners=align_corners)
        self.num_classes = num_classes
        self.head = HRNetV2Head(self.out_channels, num_classes, bn_momentum=bn_momentum, align_corners=align_corners)
        init_hrnet_weights(self, weight_init)

    def forward(self, images: Tensor, targets: Optional[Tensor] = None) -> SegOutput:
        """``images (B, in_chans, H, W)``; ``targets`` is unused (accepted for a uniform API)."""
        return SegOutput(logits=self.head(self.forward_features(images)), output_stride=self.output_stride)


def _make_factory(arch: str) -> Callable[..., HRNetV2]:
    def factory(num_classes: int, in_chans: int = 3, bn_momentum: float = HRNETV2_BN_MOMENTUM,
                align_corners: bool = HRNETV2_ALIGN_CORNERS, weight_init: str = "kaiming") -> HRNetV2:
        return HRNetV2(arch, num_classes, in_chans=in_chans, bn_momentum=bn_momentum, align_corners=align_corners,
                       weight_init=weight_init)

    factory.__name__ = factory.__qualname__ = arch
    factory.__doc__ = f"HRNetV2 segmentation model with the {arch} backbone, logits at stride 4."
    return factory


for _arch in HRNET_SPECS:
    register_model(_arch)(_make_factory(_arch))
