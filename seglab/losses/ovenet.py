"""The OVeNet loss: semantic loss on S_f, S_s, S_i (paper eq. 5) plus the confidence loss (eq. 6).

    L = L(S_f, H) + kappa * L(S_s, H) + lam * L(S_i, H) + conf_weight * L_conf

``L`` is :func:`seglab.losses.ce.pixel_cross_entropy`; ``L_conf`` is :func:`confidence_loss`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Tuple

import torch
from torch import Tensor, nn

from seglab.errors import ConfigError, check
from seglab.losses import LossOutput, register_loss
from seglab.losses.ce import check_ignore_index, check_target, pixel_cross_entropy, resize_to

if TYPE_CHECKING:
    from seglab.models.outputs import SegOutput

#: F is given as a probability (not a pre-sigmoid logit), so the BCE clamps it to
#: [CONF_EPS, 1 - CONF_EPS] before the log: log(1e-6) ~ -13.8 bounds the per-pixel loss and keeps
#: it finite at F = 0 or 1. (The clamp also zeroes the gradient for F outside that range.)
CONF_EPS = 1e-6

_OVENET_FIELDS = ("initial_logits", "seed_logits", "confidence", "offsets")


@torch.no_grad()
def confidence_targets(offsets: Tensor, target: Tensor, ignore_index: int = 255) -> Tuple[Tensor, Tensor]:
    """Targets of the confidence loss, at label resolution.

    For each pixel p = (x, y) the seed is p + o(p), looked up with nearest-neighbour sampling in the
    model's ``grid_sample(align_corners=True)`` convention: ``x' = round(x + o_x * (W - 1) / 2)``,
    ``y' = round(y + o_y * (H - 1) / 2)`` (``torch.round``: halves go to even, as grid_sample's
    nearest mode), clamped to the image (border padding).

    Args:
        offsets: ``(B, 2, h, w)`` offsets, channel 0 = x, channel 1 = y, in normalised coordinates;
            bilinearly resized (``align_corners=False``) to the label size first. Normalised units
            do not depend on the resolution, so the values are not rescaled.
        target: ``(B, H, W)`` labels H.
        ignore_index: label id of unlabelled pixels.

    Returns:
        ``(same, valid)``, both bool ``(B, H, W)``: ``same = H(p) == H(p + o(p))``;
        ``valid`` is False where H(p) or H(p + o(p)) is ``ignore_index``.
        No gradient: the label lookup is discrete, so nothing flows into the offsets.
    """
    if offsets.dim() != 4 or offsets.shape[1] != 2:
        raise ValueError(f"offsets must be (B, 2, h, w); got shape {tuple(offsets.shape)}")
    b, h, w = target.shape
    off = resize_to(offsets.detach().float(), (h, w))
    ys = torch.arange(h, device=target.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=target.device, dtype=torch.float32).view(1, 1, w)
    sx = torch.round(xs + off[:, 0] * ((w - 1) / 2.0)).clamp_(0, w - 1).long()
    sy = torch.round(ys + off[:, 1] * ((h - 1) / 2.0)).clamp_(0, h - 1).long()
    flat = target.reshape(b, h * w)
    seed_label = flat.gather(1, (sy * w + sx).reshape(b, h * w)).reshape(b, h, w)
    same = target == seed_label
    valid = (target != ignore_index) & (seed_label != ignore_index)
    return same, valid


def confidence_loss(confidence: Tensor, offsets: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """OVeNet confidence loss (paper eq. 6), mean over valid pixels at label resolution.

    ``L_f(p) = -1[H(p) = H(p+o(p))] log F(p) - 1[H(p) != H(p+o(p))] log(1 - F(p))``.

    ``confidence`` F ``(B, 1, h, w)`` in [0, 1] is bilinearly upsampled (``align_corners=False``)
    to the label size and clamped to ``[CONF_EPS, 1 - CONF_EPS]``; the targets come from
    :func:`confidence_targets`. Pixels whose own label or whose seed's label is ``ignore_index`` are
    EXCLUDED from the loss and from the count (the mean is over valid pixels only). Note: the
    official OVeNet code (``Confidence_Loss_2`` in stamatisalex/OVeNet ``lib/core/criterion.py``)
    does NOT exclude them: it relabels ignore pixels as class 0 before the comparison and divides
    by all H*W pixels. We exclude them because an unlabelled pixel carries no information on
    whether the seed lies in the same segment (and class 0 would get spurious targets).

    Returns 0 (attached to the graph, zero gradient) when no pixel is valid. Gradient flows into
    ``confidence`` only, not into ``offsets``.
    """
    if confidence.dim() != 4 or confidence.shape[1] != 1:
        raise ValueError(f"confidence must be (B, 1, h, w); got shape {tuple(confidence.shape)}")
    same, valid = confidence_targets(offsets, target, ignore_index)
    f = resize_to(confidence.float(), target.shape[-2:])[:, 0].clamp(CONF_EPS, 1.0 - CONF_EPS)
    per_pixel = -torch.where(same, torch.log(f), torch.log1p(-f))
    per_pixel = torch.where(valid, per_pixel, torch.zeros_like(per_pixel))
    return per_pixel.sum() / valid.sum().clamp_min(1).to(per_pixel.dtype)


def _check_weight(name: str, value: object, default: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    check(ok, f"loss.{name} must be a finite number >= 0 (paper default {default}); got {value!r}")
    return float(value)  # type: ignore[arg-type]


@register_loss("ovenet")
class OVeNetLoss(nn.Module):
    """``L = L(S_f) + kappa*L(S_s) + lam*L(S_i) + conf_weight*L_conf`` (paper eqs. 5-7).

    ``L`` is the ignore-aware CE of :func:`pixel_cross_entropy` (logits upsampled to the labels);
    ``L_conf`` is :func:`confidence_loss`. S_f is ``output.logits``, S_s ``output.seed_logits``,
    S_i ``output.initial_logits``; F is ``output.confidence`` and o ``output.offsets``.

    Terms: ``loss`` (total), and the unweighted ``loss_final``, ``loss_seed``, ``loss_initial``,
    ``loss_conf``.
    """

    def __init__(
        self, kappa: float = 0.5, lam: float = 0.5, conf_weight: float = 1.0, ignore_index: int = 255
    ) -> None:
        super().__init__()
        self.kappa = _check_weight("kappa", kappa, 0.5)
        self.lam = _check_weight("lam", lam, 0.5)
        self.conf_weight = _check_weight("conf_weight", conf_weight, 1.0)
        self.ignore_index = check_ignore_index(ignore_index)

    def forward(self, output: "SegOutput", target: Tensor) -> LossOutput:
        missing = [name for name in _OVENET_FIELDS if getattr(output, name, None) is None]
        if missing:
            raise ConfigError(
                "loss 'ovenet' needs an OVeNet model output (initial_logits, seed_logits, confidence, "
                f"offsets); got a model without them (missing: {', '.join(missing)}) "
                "— use model=ovenet_* or loss=ce"
            )
        check_target(target, output.logits.shape[1], self.ignore_index)
        ce = lambda logits: pixel_cross_entropy(logits, target, self.ignore_index, check_labels=False)  # noqa: E731
        loss_final = ce(output.logits)
        loss_seed = ce(output.seed_logits)
        loss_initial = ce(output.initial_logits)
        loss_conf = confidence_loss(output.confidence, output.offsets, target, self.ignore_index)
        total = loss_final + self.kappa * loss_seed + self.lam * loss_initial + self.conf_weight * loss_conf
        terms = {
            "loss": total,
            "loss_final": loss_final,
            "loss_seed": loss_seed,
            "loss_initial": loss_initial,
            "loss_conf": loss_conf,
        }
        return LossOutput(total=total, terms={k: v.detach() for k, v in terms.items()})

    def extra_repr(self) -> str:
        return (
            f"kappa={self.kappa}, lam={self.lam}, conf_weight={self.conf_weight}, "
            f"ignore_index={self.ignore_index}"
        )
