"""The OVeNet loss: semantic loss on S_f, S_s, S_i (paper eq. 5) plus the confidence loss (eq. 6).

    L = L_f(S_f, H) + kappa * L_s(S_s, H) + lam * L_i(S_i, H) + conf_weight * L_conf

Each ``L_t`` is a base criterion chosen per term (``criterion``, overridden by ``criterion_final``,
``criterion_seed``, ``criterion_initial``): ``"ce"`` (:func:`seglab.losses.ce.pixel_cross_entropy`)
or ``"ohem"`` (:func:`seglab.losses.ohem.ohem_cross_entropy`, the paper's choice), optionally with
``class_weights``. On an OVeNet built on HRNet+OCR each ``L_t`` is
``main_weight * L(main map) + aux_weight * L(aux map)`` (HRNet-OCR weighting 1.0 / 0.4).
``L_conf`` is :func:`confidence_loss` on the offsets that resampled S_i.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from seglab.errors import ConfigError, check
from seglab.losses import LossOutput, register_loss
from seglab.losses.ce import (ClassWeights, CrossEntropyLoss, check_class_weights, check_ignore_index,
                              check_loss_weight, check_target, resize_to)
from seglab.losses.ohem import OhemCrossEntropyLoss

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
    # a NaN offset (a diverged model) points at the pixel itself instead of an invalid index; the
    # loss terms computed from the NaN outputs are non-finite and the training loop stops the run
    off = torch.nan_to_num(resize_to(offsets.detach().float(), (h, w)), nan=0.0)
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


#: Base criteria of the OVeNet terms and the options each takes besides its name.
CRITERIA: Dict[str, Tuple[str, ...]] = {"ce": (), "ohem": ("thresh", "min_kept")}
TERMS = ("final", "seed", "initial")

CriterionSpec = Any  # "ce" | "ohem" | {"name": "ohem", "thresh": 0.7, "min_kept": 100000}


def build_criterion(spec: CriterionSpec, key: str, ignore_index: int,
                    class_weights: Optional[Tuple[float, ...]] = None) -> CrossEntropyLoss:
    """``loss.<key>`` -> the ``ce`` / ``ohem`` loss module whose ``pixel_loss(logits, target)`` is the
    term's criterion (the very code of those losses, with ``class_weights`` and ``ignore_index``).

    ``spec``: ``"ce"``, ``"ohem"`` (OHEM defaults thresh 0.7, min_kept 100000) or a mapping with
    ``name`` and that criterion's options (``ohem``: ``thresh``, ``min_kept`` -- a pixel count or a
    float in (0, 1], a fraction of the batch's valid pixels, as in ``loss=ovenet_paper``).
    """
    names = ", ".join(CRITERIA)
    form = f"loss.{key} must be one of {names} or a mapping like {{name: ohem, thresh: 0.7, min_kept: 100000}}"
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, Mapping):
        check("name" in spec, f"{form}; the mapping has no name (got {dict(spec)!r})")
        name, options = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    else:
        raise ConfigError(f"{form} (got {spec!r})")
    check(isinstance(name, str) and name in CRITERIA, f"{form} (unknown criterion {name!r})")
    unknown = sorted(str(k) for k in options if k not in CRITERIA[name])
    check(not unknown, f"loss.{key}.{unknown[0] if unknown else ''} is not an option of criterion {name!r}; "
                       f"valid options: {', '.join(CRITERIA[name]) or '(none)'}")
    try:
        if name == "ohem":
            return OhemCrossEntropyLoss(ignore_index, class_weights=class_weights, **options)
        return CrossEntropyLoss(ignore_index, class_weights=class_weights)
    except ConfigError as error:  # "loss.thresh must ..." -> "loss.<key>.thresh must ..."
        raise ConfigError(str(error).replace("loss.", f"loss.{key}.", 1)) from None


@register_loss("ovenet")
class OVeNetLoss(nn.Module):
    """``L = L_f(S_f) + kappa*L_s(S_s) + lam*L_i(S_i) + conf_weight*L_conf`` (paper eqs. 5-7).

    Args:
        kappa, lam, conf_weight: weights of the seed, initial and confidence terms (>= 0;
            paper 0.5, 0.5, 1).
        ignore_index: label id of unlabelled pixels.
        criterion: base criterion of every term: ``"ce"`` (default), ``"ohem"`` or a mapping
            ``{name: ohem, thresh: 0.7, min_kept: 100000}`` (see :func:`build_criterion`;
            ``loss=ovenet_paper`` is OHEM on every term with ``thresh: 0.9, min_kept: 0.125``).
        criterion_final, criterion_seed, criterion_initial: per-term overrides (same forms;
            ``None`` = ``criterion``).
        class_weights: ``None``, a preset name (``"cityscapes"``) or one weight per class, applied to
            every term's CE / OHEM.
        main_weight, aux_weight: on OCR outputs each term is ``main_weight * L(main) +
            aux_weight * L(aux)`` (defaults 1.0 / 0.4); without aux maps ``main_weight * L(main)``.

    Reads ``output.final_logits`` (S_f; ``output.logits`` if that is ``None``), ``seed_logits``,
    ``initial_logits``, ``confidence`` and ``offsets``; on OCR outputs (``aux_logits`` set) also
    ``aux_logits`` (fused), ``seed_aux_logits`` and ``initial_aux_logits``.

    Terms (detached scalars): ``loss`` (total), the unweighted ``loss_final``, ``loss_seed``,
    ``loss_initial``, ``loss_conf``, and on OCR outputs ``loss_final_aux``, ``loss_seed_aux``,
    ``loss_initial_aux``.
    """

    def __init__(
        self,
        kappa: float = 0.5,
        lam: float = 0.5,
        conf_weight: float = 1.0,
        ignore_index: int = 255,
        criterion: CriterionSpec = "ce",
        criterion_final: CriterionSpec = None,
        criterion_seed: CriterionSpec = None,
        criterion_initial: CriterionSpec = None,
        class_weights: ClassWeights = None,
        main_weight: float = 1.0,
        aux_weight: float = 0.4,
    ) -> None:
        super().__init__()
        self.kappa = check_loss_weight("kappa", kappa, 0.5)
        self.lam = check_loss_weight("lam", lam, 0.5)
        self.conf_weight = check_loss_weight("conf_weight", conf_weight, 1.0)
        self.main_weight = check_loss_weight("main_weight", main_weight, 1.0)
        self.aux_weight = check_loss_weight("aux_weight", aux_weight, 0.4)
        self.ignore_index = check_ignore_index(ignore_index)
        weights = check_class_weights(class_weights)
        build_criterion(criterion, "criterion", self.ignore_index, weights)  # validates it even if all overridden
        overrides = {"final": criterion_final, "seed": criterion_seed, "initial": criterion_initial}
        self.criteria = nn.ModuleDict({
            term: build_criterion(criterion if overrides[term] is None else overrides[term],
                                  "criterion" if overrides[term] is None else f"criterion_{term}",
                                  self.ignore_index, weights)
            for term in TERMS
        })

    def forward(self, output: "SegOutput", target: Tensor) -> LossOutput:
        missing = [name for name in _OVENET_FIELDS if getattr(output, name, None) is None]
        if missing:
            raise ConfigError(
                "loss 'ovenet' needs an OVeNet model output (initial_logits, seed_logits, confidence, "
                f"offsets); got a model without them (missing: {', '.join(missing)}) "
                "— use model=ovenet_* or loss=ce"
            )
        final_logits = getattr(output, "final_logits", None)
        maps = {
            "final": output.logits if final_logits is None else final_logits,
            "seed": output.seed_logits,
            "initial": output.initial_logits,
        }
        aux_maps = None
        if getattr(output, "aux_logits", None) is not None:
            aux_maps = {"final": output.aux_logits, "seed": getattr(output, "seed_aux_logits", None),
                        "initial": getattr(output, "initial_aux_logits", None)}
            if any(m is None for m in aux_maps.values()):
                raise ValueError("an OVeNet output with aux_logits needs seed_aux_logits and initial_aux_logits too")
        check_target(target, maps["final"].shape[1], self.ignore_index)
        weights = {"final": 1.0, "seed": self.kappa, "initial": self.lam}
        terms: Dict[str, Tensor] = {}
        total = None
        for term in TERMS:
            pixel_loss = self.criteria[term].pixel_loss
            loss_main = pixel_loss(maps[term], target)
            terms[f"loss_{term}"] = loss_main
            term_loss = self.main_weight * loss_main
            if aux_maps is not None:
                loss_aux = pixel_loss(aux_maps[term], target)
                terms[f"loss_{term}_aux"] = loss_aux
                term_loss = term_loss + self.aux_weight * loss_aux
            total = weights[term] * term_loss if total is None else total + weights[term] * term_loss
        loss_conf = confidence_loss(output.confidence, output.offsets, target, self.ignore_index)
        terms["loss_conf"] = loss_conf
        total = total + self.conf_weight * loss_conf
        return LossOutput(total=total, terms={"loss": total.detach(), **{k: v.detach() for k, v in terms.items()}})

    def extra_repr(self) -> str:
        return (
            f"kappa={self.kappa}, lam={self.lam}, conf_weight={self.conf_weight}, "
            f"ignore_index={self.ignore_index}, main_weight={self.main_weight}, aux_weight={self.aux_weight}"
        )
