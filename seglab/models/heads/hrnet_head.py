"""The HRNetV2 segmentation head."""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class HRNetV2Head(nn.Module):
    """Concatenate all branches at the highest resolution, then 1x1 conv -> BN -> ReLU -> 1x1 conv.

    As the official HRNet-semantic-segmentation ``last_layer``: every branch is bilinearly
    upsampled to branch 0's size (stride 4), concatenated (``sum(in_channels)`` channels), mixed
    by a 1x1 conv to the same width (with bias) + BN + ReLU, and projected by a 1x1 conv with
    bias (``classifier``) to ``out_channels``.

    Args:
        in_channels: channels of each branch, highest resolution first.
        out_channels: output channels (number of classes, or 3 for OVeNet's offset head).
    Shapes: branches ``[(B, in_channels[i], H/4/2**i, W/4/2**i)]`` -> ``(B, out_channels, H/4, W/4)``.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, bn_momentum: float = 0.1,
                 align_corners: bool = True) -> None:
        super().__init__()
        width = sum(in_channels)
        self.align_corners = align_corners
        self.bottleneck = nn.Sequential(
            nn.Conv2d(width, width, kernel_size=1),
            nn.BatchNorm2d(width, momentum=bn_momentum),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(width, out_channels, kernel_size=1)

    def forward(self, branches: List[Tensor]) -> Tensor:
        size = branches[0].shape[-2:]
        upsampled = [branches[0]] + [
            F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners) for x in branches[1:]
        ]
        return self.classifier(self.bottleneck(torch.cat(upsampled, dim=1)))
