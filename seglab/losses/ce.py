"""Pixel-wise cross-entropy with an ignore label (the ``ce`` loss)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.datasets.labels import CITYSCAPES_CLASS_WEIGHTS
from seglab.errors import ConfigError, check
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


def prepare_logits(logits: Tensor, target: Tensor, ignore_index: int, check_labels: bool) -> Tuple[Tensor, Tensor]:
    """Validate shapes (and labels), compute in float32 at least, upsample logits to the label size."""
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, C, h, w); got shape {tuple(logits.shape)}")
    if check_labels:
        check_target(target, logits.shape[1], ignore_index)
    if logits.shape[0] != target.shape[0]:
        raise ValueError(f"batch size of logits {logits.shape[0]} != batch size of target {target.shape[0]}")
    if logits.dtype not in (torch.float32, torch.float64):  # half / bfloat16: compute in float32
        logits = logits.float()
    return resize_to(logits, target.shape[-2:]), target.long()


def pixel_cross_entropy(
    logits: Tensor,
    target: Tensor,
    ignore_index: int = 255,
    check_labels: bool = True,
    class_weights: Optional[Tensor] = None,
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
        class_weights: optional ``(C,)`` per-class weights w; then the result is torch's weighted
            mean ``sum_p w[y_p] * nll_p / sum_p w[y_p]`` over the valid pixels (0 if that
            denominator is 0).

    Returns:
        A scalar: sum of per-pixel CE over valid pixels / number of valid pixels. When no pixel is
        valid the result is 0 (still attached to the graph, with zero gradient), never NaN.
    """
    logits, target = prepare_logits(logits, target, ignore_index, check_labels)
    if class_weights is not None:
        weight = weights_for(class_weights, logits)
        summed = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="sum")
        valid = target != ignore_index
        denominator = torch.where(valid, weight[torch.where(valid, target, 0)], 0.0).sum()
        return summed / torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    summed = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    num_valid = (target != ignore_index).sum()
    # Dividing by max(count, 1) rather than using reduction="mean" keeps an all-ignore batch at
    # 0 (the sum is 0) instead of 0/0 = NaN, and avoids a data-dependent branch (no host sync).
    return summed / num_valid.clamp_min(1).to(summed.dtype)


#: Presets of ``loss.class_weights``: data-set facts, kept with the data sets.
CLASS_WEIGHT_PRESETS: Dict[str, Tuple[float, ...]] = {"cityscapes": CITYSCAPES_CLASS_WEIGHTS}

ClassWeights = Union[None, str, Sequence[float]]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_class_weights(class_weights: object) -> Optional[Tuple[float, ...]]:
    """Validate ``loss.class_weights``: ``None``, a preset name (``"cityscapes"``) or a list of
    finite numbers >= 0 (not all 0). Returns the weights as a tuple, or ``None``."""
    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        check(class_weights in CLASS_WEIGHT_PRESETS,
              f"loss.class_weights must be null, one of {', '.join(sorted(CLASS_WEIGHT_PRESETS))} or a list of "
              f"per-class weights; got {class_weights!r}")
        return CLASS_WEIGHT_PRESETS[class_weights]
    ok = isinstance(class_weights, Sequence) and len(class_weights) > 0 and all(
        _is_number(w) and w >= 0 for w in class_weights) and any(w > 0 for w in class_weights)
    check(ok, "loss.class_weights must be null, a preset name or a non-empty list of finite numbers >= 0 "
              f"(not all 0); got {class_weights!r}")
    return tuple(float(w) for w in class_weights)  # type: ignore[union-attr]


def weights_for(class_weights: Tensor, logits: Tensor) -> Tensor:
    """The weights as a tensor on the logits' device / dtype; ConfigError if the length is wrong."""
    if class_weights.numel() != logits.shape[1]:
        raise ConfigError(
            f"loss.class_weights has {class_weights.numel()} values but the model predicts "
            f"{logits.shape[1]} classes; give one weight per class"
        )
    return class_weights.to(device=logits.device, dtype=logits.dtype)


def check_loss_weight(name: str, value: object, default: float) -> float:
    """Validate a non-negative finite loss weight option ``loss.<name>``."""
    check(_is_number(value) and value >= 0,  # type: ignore[operator]
          f"loss.{name} must be a finite number >= 0 (default {default}); got {value!r}")
    return float(value)  # type: ignore[arg-type]


def main_and_aux_loss(
    output: "SegOutput", loss_fn: Callable[[Tensor], Tensor], main_weight: float, aux_weight: float
) -> LossOutput:
    """``main_weight * L(output.logits) [+ aux_weight * L(output.aux_logits)]``.

    Terms: ``loss`` (the total); and, when the output has ``aux_logits``, the unweighted
    ``loss_main`` and ``loss_aux``.
    """
    loss_main = loss_fn(output.logits)
    aux_logits = getattr(output, "aux_logits", None)
    if aux_logits is None:
        total = loss_main if main_weight == 1.0 else main_weight * loss_main
        return LossOutput(total=total, terms={"loss": total.detach()})
    if aux_logits.shape[1] != output.logits.shape[1]:
        raise ValueError(
            f"aux_logits have {aux_logits.shape[1]} classes but logits have {output.logits.shape[1]}"
        )
    loss_aux = loss_fn(aux_logits)
    total = main_weight * loss_main + aux_weight * loss_aux
    terms = {"loss": total.detach(), "loss_main": loss_main.detach(), "loss_aux": loss_aux.detach()}
    return LossOutput(total=total, terms=terms)


@register_loss("ce")
class CrossEntropyLoss(nn.Module):
    """(Class-weighted) cross-entropy on ``output.logits`` (upsampled to the label size),
    ignoring ``ignore_index``; plus ``aux_weight`` times the same loss on ``output.aux_logits``
    when the model has them (HRNet-OCR: 0.4 on the soft object regions).

    Args:
        ignore_index: label id of unlabelled pixels.
        class_weights: ``None``, ``"cityscapes"`` (the HRNet repository's weights) or one weight
            per class; the mean is then torch's weighted mean (see :func:`pixel_cross_entropy`).
        aux_weight: weight of the auxiliary loss (only used when the output has ``aux_logits``).
        main_weight: weight of the loss on ``output.logits``.

    Terms: ``{"loss": total}``; with ``aux_logits`` also the unweighted ``loss_main``, ``loss_aux``.
    """

    def __init__(self, ignore_index: int = 255, class_weights: ClassWeights = None, aux_weight: float = 0.4,
                 main_weight: float = 1.0) -> None:
        super().__init__()
        self.ignore_index = check_ignore_index(ignore_index)
        weights = check_class_weights(class_weights)
        self.register_buffer("class_weights", None if weights is None else torch.tensor(weights), persistent=False)
        self.aux_weight = check_loss_weight("aux_weight", aux_weight, 0.4)
        self.main_weight = check_loss_weight("main_weight", main_weight, 1.0)

    def pixel_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """The criterion on one logits map (subclasses change only this)."""
        return pixel_cross_entropy(logits, target, self.ignore_index, check_labels=False,
                                   class_weights=self.class_weights)

    def forward(self, output: "SegOutput", target: Tensor) -> LossOutput:
        check_target(target, output.logits.shape[1], self.ignore_index)
        return main_and_aux_loss(output, lambda logits: self.pixel_loss(logits, target), self.main_weight,
                                 self.aux_weight)

    def extra_repr(self) -> str:
        weighted = "none" if self.class_weights is None else f"{self.class_weights.numel()} classes"
        return (f"ignore_index={self.ignore_index}, class_weights={weighted}, aux_weight={self.aux_weight}, "
                f"main_weight={self.main_weight}")
