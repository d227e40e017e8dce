"""Online hard example mining cross-entropy (the ``ohem`` loss), as HRNet's ``OhemCrossEntropy``.

Per image batch, at label resolution: p = softmax probability of the true class of each valid
(non-ignored) pixel. With n valid pixels and ``p_(0) <= p_(1) <= ...`` sorted:

* ``n > min_kept``: ``threshold = max(thresh, p_(min_kept))`` (0-based index, as the official
  ``pred[min(min_kept, n - 1)]``) and the kept pixels are those with ``p < threshold`` -- the hard
  pixels below ``thresh``, but at least (barring ties) the ``min_kept`` hardest ones;
* ``n <= min_kept``: all valid pixels are kept.

``min_kept`` is a pixel count (an int, as the official code) or a fraction of the batch's valid
pixels (a float in (0, 1]): ``min_kept = max(1, floor(fraction * n + 1/2))`` (nearest integer, at
least one pixel) for the n valid pixels of the batch the loss sees -- per process under DDP, as the
official code computes it per GPU. The official Cityscapes setting, 131072 pixels of a per-GPU batch
of 2 crops of 512x1024 (1,048,576 pixels), is the fraction 0.125 of all pixels; a count does not
scale when the batch or crop shrinks (100000 of a 8x128x256 batch keeps every pixel), a fraction
does.

The loss is the mean of the per-pixel (class-weighted, ``w[y] * nll``) CE over the kept pixels; 0
(attached to the graph) if none is kept. The selection itself carries no gradient.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from seglab.errors import check
from seglab.losses import register_loss
from seglab.losses.ce import ClassWeights, CrossEntropyLoss, weights_for, prepare_logits


def kept_count(min_kept: Union[int, float], n: int) -> int:
    """The ``min_kept`` pixel count for a batch of ``n`` valid pixels: an int is a count as given; a
    float in (0, 1] is a fraction of ``n``, rounded to the nearest integer (halves up), at least 1."""
    if isinstance(min_kept, float):
        return max(1, int(math.floor(min_kept * n + 0.5)))
    return int(min_kept)


def ohem_cross_entropy(
    logits: Tensor,
    target: Tensor,
    thresh: float = 0.7,
    min_kept: Union[int, float] = 100000,
    ignore_index: int = 255,
    class_weights: Optional[Tensor] = None,
    check_labels: bool = True,
) -> Tensor:
    """OHEM cross-entropy of ``(B, C, h, w)`` logits (upsampled bilinearly, ``align_corners=False``,
    to the label size) against ``(B, H, W)`` labels; see the module docstring.

    Deviation from the official code: when ``n <= min_kept`` the official
    ``threshold = max(p_(n-1), thresh)`` with ``p < threshold`` drops the easiest pixel(s) if
    their p exceeds ``thresh``; here all valid pixels are kept, as documented for OHEM.
    """
    logits, target = prepare_logits(logits, target, ignore_index, check_labels)
    weight = None if class_weights is None else weights_for(class_weights, logits)
    pixel_losses = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    with torch.no_grad():
        prob = F.softmax(logits.detach(), dim=1).gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)
        valid_prob = prob[valid]
        n = valid_prob.numel()
        kept = kept_count(min_kept, n)
        if n > kept:
            kth = valid_prob.kthvalue(kept + 1).values  # == sorted(valid_prob)[min_kept]
            threshold = torch.clamp(kth, min=thresh)
            keep = valid & (prob < threshold)
        else:
            keep = valid
    kept_losses = torch.where(keep, pixel_losses, torch.zeros_like(pixel_losses))
    return kept_losses.sum() / keep.sum().clamp_min(1).to(kept_losses.dtype)


@register_loss("ohem")
class OhemCrossEntropyLoss(CrossEntropyLoss):
    """OHEM CE (:func:`ohem_cross_entropy`) on ``output.logits``, plus ``aux_weight`` times the same
    loss on ``output.aux_logits`` when the model has them.

    Args:
        ignore_index: label id of unlabelled pixels.
        thresh: probability threshold in (0, 1] (official 0.7 for Cityscapes; 0.9 in the
            HRNet configs' default).
        min_kept: keep at least this many hardest pixels per batch: an int (a pixel count;
            official 100000 -- the official code also uses ``max(1, min_kept)``; here 0 is
            allowed) or a float in (0, 1] (that fraction of the batch's valid pixels, e.g. 0.125).
        class_weights: as for ``ce``: ``None``, ``"cityscapes"`` or one weight per class; they
            multiply the per-pixel losses (official: plain mean of the weighted losses).
        aux_weight, main_weight: ``total = main_weight * L(logits) + aux_weight * L(aux_logits)``.

    Terms: ``{"loss": total}``; with ``aux_logits`` also the unweighted ``loss_main``, ``loss_aux``.
    """

    def __init__(self, ignore_index: int = 255, thresh: float = 0.7, min_kept: int = 100000,
                 class_weights: ClassWeights = None, aux_weight: float = 0.4, main_weight: float = 1.0) -> None:
        super().__init__(ignore_index, class_weights, aux_weight, main_weight)
        ok = isinstance(thresh, (int, float)) and not isinstance(thresh, bool) and math.isfinite(thresh) \
            and 0.0 < thresh <= 1.0
        check(ok, f"loss.thresh must be a probability in (0, 1] (default 0.7); got {thresh!r}")
        self.thresh = float(thresh)
        count = isinstance(min_kept, int) and not isinstance(min_kept, bool) and min_kept >= 0
        fraction = isinstance(min_kept, float) and math.isfinite(min_kept) and 0.0 < min_kept <= 1.0
        check(count or fraction,
              "loss.min_kept must be an integer >= 0 (a pixel count, default 100000) or a float in (0, 1] "
              f"(that fraction of the batch's valid pixels, e.g. 0.125); got {min_kept!r}")
        self.min_kept: Union[int, float] = int(min_kept) if count else float(min_kept)

    def pixel_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return ohem_cross_entropy(logits, target, self.thresh, self.min_kept, self.ignore_index,
                                  self.class_weights, check_labels=False)

    def extra_repr(self) -> str:
        return f"thresh={self.thresh}, min_kept={self.min_kept}, " + super().extra_repr()
