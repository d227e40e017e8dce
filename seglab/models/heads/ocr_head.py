"""The OCR (object-contextual representations) head of HRNet-OCR.

Yuan, Chen, Wang, "Object-Contextual Representations for Semantic Segmentation" (ECCV 2020), as
built in the HRNet-semantic-segmentation ``HRNet-OCR`` branch (``seg_hrnet_ocr.py``):

1. ``feats``: the 4 HRNet branches bilinearly upsampled to branch 0 (stride 4), concatenated
   (``C = sum(branch channels)``, 720 for W48).
2. ``aux_head`` (the soft object regions): 1x1 conv C->C (bias) + BN + ReLU + 1x1 conv C->K (bias),
   the same shape as the HRNetV2 head. Its logits are the auxiliary output.
3. ``conv3x3_ocr``: 3x3 conv C->mid (512, bias) + BN + ReLU: the pixel representations.
4. ``ocr_gather_head`` (:class:`SpatialGather`): softmax of the region logits over all pixels,
   then per class the probability-weighted sum of the pixel representations: ``(B, mid, K, 1)``.
5. ``ocr_distri_head`` (:class:`SpatialOCR`): :class:`ObjectAttentionBlock` (pixel queries vs
   object-region keys, key channels 256, softmax with scale ``key_channels**-0.5``) gives the
   object context per pixel; ``concat(context, feats)`` -> 1x1 conv 2*mid->mid + BN + ReLU +
   Dropout2d(0.05).
6. ``classifier`` (official ``cls_head``): 1x1 conv mid->K (bias).

Sub-module names are the official ones (``aux_head``, ``conv3x3_ocr``, ``ocr_gather_head``,
``ocr_distri_head.object_context_block.f_pixel`` ...) except that they live under the model's
``head`` attribute, the final classifier is called ``classifier`` (official ``cls_head``) and the
auxiliary head's two convs are ``aux_head.bottleneck.0`` / ``aux_head.classifier`` (official
``aux_head.0`` / ``aux_head.3``), mirroring :class:`~seglab.models.heads.hrnet_head.HRNetV2Head`.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel_size: int = 1, bias: bool = False,
                 bn_momentum: float = 0.1) -> List[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel_size=kernel_size, padding=kernel_size // 2, bias=bias),
        nn.BatchNorm2d(out_ch, momentum=bn_momentum),
        nn.ReLU(inplace=True),
    ]


class AuxHead(nn.Module):
    """Soft object regions: 1x1 conv C->C (bias) + BN + ReLU, then 1x1 conv C->K (bias).

    ``(B, C, h, w) -> (B, K, h, w)``; the same layers (and names) as the HRNetV2 head, applied
    to already concatenated features.
    """

    def __init__(self, in_channels: int, num_classes: int, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.bottleneck = nn.Sequential(*conv_bn_relu(in_channels, in_channels, 1, bias=True, bn_momentum=bn_momentum))
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.bottleneck(x))


class SpatialGather(nn.Module):
    """Object-region representations: ``f_k = sum_i softmax_i(m_ki) x_i`` (paper eq. 2).

    ``feats (B, C, h, w)``, ``region_logits (B, K, h, w)`` -> ``(B, C, K, 1)`` (official layout:
    the K regions as a K x 1 "image"). The softmax runs over the h*w pixels of each class map,
    after multiplying the logits by ``scale`` (official: 1).
    """

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, feats: Tensor, region_logits: Tensor) -> Tensor:
        b, k = region_logits.shape[:2]
        c = feats.shape[1]
        probs = F.softmax(self.scale * region_logits.reshape(b, k, -1), dim=2)  # (B, K, N)
        pixels = feats.reshape(b, c, -1).permute(0, 2, 1)  # (B, N, C)
        regions = torch.matmul(probs, pixels)  # (B, K, C)
        return regions.permute(0, 2, 1).unsqueeze(3)  # (B, C, K, 1)


class ObjectAttentionBlock(nn.Module):
    """Pixel-region relation + object contextual representation (paper eqs. 3-4).

    ``query = f_pixel(x)``, ``key = f_object(regions)``, ``value = f_down(regions)`` (all with
    ``key_channels``); ``w = softmax_k(key_channels**-0.5 * query . key)``; context
    ``f_up(sum_k w_ik value_k)`` back to ``in_channels``. Every transform is 1x1 conv (no bias)
    + BN + ReLU; ``f_pixel`` / ``f_object`` are two of them.

    Shapes: ``x (B, C, h, w)``, ``regions (B, C, K, 1)`` -> ``(B, C, h, w)``.
    """

    def __init__(self, in_channels: int, key_channels: int, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.key_channels = key_channels
        kw = dict(bn_momentum=bn_momentum)
        self.f_pixel = nn.Sequential(*conv_bn_relu(in_channels, key_channels, **kw),
                                     *conv_bn_relu(key_channels, key_channels, **kw))
        self.f_object = nn.Sequential(*conv_bn_relu(in_channels, key_channels, **kw),
                                      *conv_bn_relu(key_channels, key_channels, **kw))
        self.f_down = nn.Sequential(*conv_bn_relu(in_channels, key_channels, **kw))
        self.f_up = nn.Sequential(*conv_bn_relu(key_channels, in_channels, **kw))

    def attention(self, x: Tensor, regions: Tensor) -> Tuple[Tensor, Tensor]:
        """``(sim_map (B, h*w, K), context (B, key_channels, h, w))`` before ``f_up``."""
        b, _, h, w = x.shape
        query = self.f_pixel(x).reshape(b, self.key_channels, -1).permute(0, 2, 1)  # (B, N, Ck)
        key = self.f_object(regions).reshape(b, self.key_channels, -1)  # (B, Ck, K)
        value = self.f_down(regions).reshape(b, self.key_channels, -1).permute(0, 2, 1)  # (B, K, Ck)
        sim_map = F.softmax(torch.matmul(query, key) * (self.key_channels ** -0.5), dim=-1)  # (B, N, K)
        context = torch.matmul(sim_map, value).permute(0, 2, 1).reshape(b, self.key_channels, h, w)
        return sim_map, context

    def forward(self, x: Tensor, regions: Tensor) -> Tensor:
        return self.f_up(self.attention(x, regions)[1])


class SpatialOCR(nn.Module):
    """Augmented representation: ``concat(context, feats)`` -> 1x1 conv (no bias) + BN + ReLU + Dropout2d."""

    def __init__(self, in_channels: int, key_channels: int, out_channels: int, dropout: float = 0.05,
                 bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.object_context_block = ObjectAttentionBlock(in_channels, key_channels, bn_momentum=bn_momentum)
        self.conv_bn_dropout = nn.Sequential(*conv_bn_relu(2 * in_channels, out_channels, bn_momentum=bn_momentum),
                                             nn.Dropout2d(dropout))

    def forward(self, feats: Tensor, regions: Tensor) -> Tensor:
        context = self.object_context_block(feats, regions)
        return self.conv_bn_dropout(torch.cat([context, feats], dim=1))


class OCRHead(nn.Module):
    """HRNet branches -> ``(ocr_logits, aux_logits)``, both ``(B, num_classes, H/4, W/4)``.

    Args:
        in_channels: channels of each HRNet branch, highest resolution first.
        num_classes: K.
        mid_channels: width of the pixel / region representations (official 512).
        key_channels: width of the attention keys (official 256).
        dropout: Dropout2d probability after the fusion conv (official 0.05).
        bn_momentum, align_corners: as the HRNetV2 head.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, mid_channels: int = 512,
                 key_channels: int = 256, dropout: float = 0.05, bn_momentum: float = 0.1,
                 align_corners: bool = True) -> None:
        super().__init__()
        width = sum(in_channels)
        self.align_corners = align_corners
        self.aux_head = AuxHead(width, num_classes, bn_momentum=bn_momentum)
        self.conv3x3_ocr = nn.Sequential(*conv_bn_relu(width, mid_channels, 3, bias=True, bn_momentum=bn_momentum))
        self.ocr_gather_head = SpatialGather()
        self.ocr_distri_head = SpatialOCR(mid_channels, key_channels, mid_channels, dropout=dropout,
                                          bn_momentum=bn_momentum)
        self.classifier = nn.Conv2d(mid_channels, num_classes, kernel_size=1)

    def concat_branches(self, branches: List[Tensor]) -> Tensor:
        size = branches[0].shape[-2:]
        upsampled = [branches[0]] + [
            F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners) for x in branches[1:]
        ]
        return torch.cat(upsampled, dim=1)

    def forward(self, branches: List[Tensor]) -> Tuple[Tensor, Tensor]:
        feats = self.concat_branches(branches)
        aux_logits = self.aux_head(feats)
        feats = self.conv3x3_ocr(feats)
        regions = self.ocr_gather_head(feats, aux_logits)
        feats = self.ocr_distri_head(feats, regions)
        return self.classifier(feats), aux_logits
