"""Pixel-wise cross-entropy with an ignore label (the ``ce`` loss)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import check
from seglab.losses import LossOutput, register_loss

if TYPE_CHECKING:  # only for annotations: the losses work on any object with these attributes
    from seglab.models.outputs import SegOutput


def check_ignore_index(ignore_index: object) -> int:
    """Validate the ``loss.ignore_index`` option (an int, not a bool)."""
    check(
        isinstance(ignore_index, int) and not isinstance(ignore_index, bool),
        f"loss.ignore_index must be an integer label id (usually 255); got {ignore_index!r}",
    )
    return int(ignore_index)  # type: ignore[arg-type]


def resize_to(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """Bilinearly resize a ``(B, C, h, w)`` map to ``size`` (``align_corners=False``); no-op if equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def check_target(target: Tensor, num_classes: int, ignore_index: int) -> None:
    """Raise ``ValueError`` unless ``target`` is a ``(B, H, W)`` integer map with ids in
    ``[0, num_classes)`` or ``ignore_index``. (Costs one device sync.)"""
    if target.dim() != 3:
        raise ValueError(f"target must be a (B, H, W) label map; got shape {tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"target must be an integer label map; got dtype {target.dtype}")
    bad = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
    if bool(bad.any()):
        values = torch.unique(target[bad]).tolist()
        raise ValueError(
            f"target has label value(s) {values[:10]} outside [0, {num_classes}) that are not "
            f"ignore_index={ignore_index}; map the dataset's labels to train ids first"
        )


def pixel_cross_entropy(
    logits: Tensor, target: Tensor, ignore_index: int = 255, check_labels: bool = True
) -> Tensor:
    """Mean cross-entropy over the non-ignored pixels of ``target``.

    Args:
        logits: ``(B, C, h, w)`` class logits at any resolution; they are bilinearly upsampled
            (``align_corners=False``) to the label size before the loss; half precision is
            computed in float32.
        target: ``(B, H, W)`` long labels; ``ignore_index`` pixels do not count.
        ignore_index: the label id to ignore.
        check_labels: validate the label values first (clear ``ValueError`` instead of an
            index error / device assert); callers that already checked pass ``False``.

    Returns:
        A scalar: sum of per-pixel CE over valid pixels / number of valid pixels. When no pixel is
        valid the result is 0 (still attached to the graph, with zero gradient), never NaN.
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, C, h, w); got shape {tuple(logits.shape)}")
    if check_labels:
        check_target(target, logits.shape[1], ignore_index)
    if logits.shape[0] != target.shape[0]:
        raise ValueError(f"batch size of logits {logits.shape[0]} != batch size of target {target.shape[0]}")
    if logits.dtype not in (torch.float32, torch.float64):  # half / bfloat16: compute in float32
        logits = logits.float()
    logits = resize_to(logits, target.shape[-2:])
    target = target.long()
    summed = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    num_valid = (target != ignore_index).sum()
    # Dividing by max(count, 1) rather than using reduction="mean" keeps an all-ignore batch at
    # 0 (the sum is 0) instead of 0/0 = NaN, and avoids a data-dependent branch (no host sync).
    return summed / num_valid.clamp_min(1).to(summed.dtype)


@register_loss("ce")
class CrossEntropyLoss(nn.Module):
    """Cross-entropy on ``output.logits`` (upsampled to the label size), ignoring ``ignore_index``.

    Terms: ``{"loss": total}``.
    """

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = check_ignore_index(ignore_index)

    def forward(self, output: "SegOutput", target: Tensor) -> LossOutput:
        total = pixel_cross_entropy(output.logits, target, self.ignore_index)
        return LossOutput(total=total, terms={"loss": total.detach()})

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"
