"""HRNet-OCR: HRNetV2 backbone + OCR head (Yuan et al., ECCV 2020), logits at stride 4.

Registered names: ``hrnet_<width>_ocr`` for every width of
:data:`~seglab.models.backbones.hrnet.HRNET_SPECS` (``hrnet_w18_small_v1_ocr``,
``hrnet_w18_small_v2_ocr``, ``hrnet_w18_ocr``, ``hrnet_w32_ocr``, ``hrnet_w48_ocr``).

``forward(images) -> SegOutput(logits=ocr_logits, aux_logits=soft_object_region_logits)``; train
with ``loss=ce`` or ``loss=ohem`` (they add ``aux_weight * L(aux_logits)``, official 0.4); ``loss=semeda`` and
``loss=sobel`` add the same ``aux_weight * CE(aux_logits)`` to their CE part.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Optional

from torch import Tensor

from seglab.errors import check, is_int
from seglab.models import register_model
from seglab.models.backbones.hrnet import HRNET_SPECS, HRNetBackbone, HRNetSpec, init_hrnet_weights
from seglab.models.heads.ocr_head import OCRHead
from seglab.models.hrnet import check_common_args, resolve_spec
from seglab.models.outputs import SegOutput

#: Defaults of the official HRNet-OCR code (HRNet-Semantic-Segmentation ``HRNet-OCR`` branch,
#: ``lib/models/seg_hrnet_ocr.py``: ``BN_MOMENTUM = 0.1``, ``ALIGN_CORNERS = True``).
OCR_BN_MOMENTUM = 0.1
OCR_ALIGN_CORNERS = True


def check_ocr_args(ocr_mid_channels: Any, ocr_key_channels: Any, ocr_dropout: Any) -> None:
    check(is_int(ocr_mid_channels) and ocr_mid_channels >= 1,
          f"model.ocr_mid_channels must be an integer >= 1 (got {ocr_mid_channels!r})")
    check(is_int(ocr_key_channels) and ocr_key_channels >= 1,
          f"model.ocr_key_channels must be an integer >= 1 (got {ocr_key_channels!r})")
    ok = (isinstance(ocr_dropout, numbers.Real) and not isinstance(ocr_dropout, bool)
          and math.isfinite(ocr_dropout) and 0.0 <= ocr_dropout < 1.0)
    check(ok, f"model.ocr_dropout must be a number in [0, 1) (got {ocr_dropout!r})")


class HRNetOCR(HRNetBackbone):
    """HRNet + OCR for semantic segmentation.

    Args:
        arch: an :data:`HRNET_SPECS` name (e.g. ``"hrnet_w48"``) or an :class:`HRNetSpec`.
        num_classes: number of output classes (>= 1).
        ocr_mid_channels: OCR pixel / region representation width (official ``MID_CHANNELS`` 512).
        ocr_key_channels: attention key width (official ``KEY_CHANNELS`` 256).
        ocr_dropout: Dropout2d after the OCR fusion conv (official 0.05).
        in_chans, weight_init: as :class:`~seglab.models.hrnet.HRNetV2`.
        bn_momentum: BatchNorm momentum (default 0.1: ``BN_MOMENTUM`` of the official ``HRNet-OCR``
            branch's ``seg_hrnet_ocr.py``; its OCR modules use PyTorch's default, also 0.1).
        align_corners: of every bilinear upsampling (default True: ``ALIGN_CORNERS = True`` in the
            official ``seg_hrnet_ocr.py`` and ``MODEL.ALIGN_CORNERS`` in its ``default.py``; the
            Cityscapes OCR yamls do not override it).

    ``forward(images (B, in_chans, H, W)) -> SegOutput(logits, aux_logits)``, both
    ``(B, num_classes, ceil(H/4), ceil(W/4))``. The backbone parameters keep the official names
    (the model *is* an :class:`HRNetBackbone`), so ImageNet HRNet checkpoints load unchanged;
    the OCR modules are under ``head`` (see :mod:`seglab.models.heads.ocr_head`).
    """

    output_stride = 4

    def __init__(self, arch: str | HRNetSpec, num_classes: int, ocr_mid_channels: int = 512,
                 ocr_key_channels: int = 256, ocr_dropout: float = 0.05, in_chans: int = 3,
                 bn_momentum: float = OCR_BN_MOMENTUM, align_corners: bool = OCR_ALIGN_CORNERS,
                 weight_init: str = "kaiming") -> None:
        check_common_args(num_classes, in_chans, bn_momentum, align_corners, weight_init)
        check_ocr_args(ocr_mid_channels, ocr_key_channels, ocr_dropout)
        super().__init__(resolve_spec(arch), in_chans=in_chans, bn_momentum=bn_momentum, align_corners=align_corners)
        self.num_classes = num_classes
        self.head = OCRHead(self.out_channels, num_classes, mid_channels=ocr_mid_channels,
                            key_channels=ocr_key_channels, dropout=float(ocr_dropout), bn_momentum=bn_momentum,
                            align_corners=align_corners)
        init_hrnet_weights(self, weight_init)

    def forward(self, images: Tensor, targets: Optional[Tensor] = None) -> SegOutput:
        """``images (B, in_chans, H, W)``; ``targets`` is unused (accepted for a uniform API)."""
        logits, aux_logits = self.head(self.forward_features(images))
        return SegOutput(logits=logits, aux_logits=aux_logits, output_stride=self.output_stride)


def _make_factory(arch: str) -> Callable[..., HRNetOCR]:
    def factory(num_classes: int, ocr_mid_channels: int = 512, ocr_key_channels: int = 256,
                ocr_dropout: float = 0.05, in_chans: int = 3, bn_momentum: float = OCR_BN_MOMENTUM,
                align_corners: bool = OCR_ALIGN_CORNERS, weight_init: str = "kaiming") -> HRNetOCR:
        return HRNetOCR(arch, num_classes, ocr_mid_channels=ocr_mid_channels, ocr_key_channels=ocr_key_channels,
                        ocr_dropout=ocr_dropout, in_chans=in_chans, bn_momentum=bn_momentum,
                        align_corners=align_corners, weight_init=weight_init)

    factory.__name__ = factory.__qualname__ = f"{arch}_ocr"
    factory.__doc__ = f"HRNet-OCR with the {arch} backbone: OCR logits + soft-region aux logits at stride 4."
    return factory


for _arch in HRNET_SPECS:
    register_model(f"{_arch}_ocr")(_make_factory(_arch))
