"""OVeNet: Offset Vector Network on HRNetV2, branching at stage 4 (paper 001, §3.2; thesis §4-5).

Structure (``OVeNet`` on ``hrnet_w48`` = Table 5.1 of the thesis, branch at stage 4)::

    images -> stem..stage3 (shared body: conv1 .. stage3)
                 ├─ transition3       -> stage4       (3 modules) -> head        -> S_i  (initial logits)
                 └─ offset_transition -> offset_stage (2 modules) -> offset_head -> 3 channels
                        offsets    o = tanh(ch 0:2) * tau     (normalised coords, 0 = x, 1 = y)
                        confidence F = sigmoid(ch 2)
    S_s = resample(S_i, o)                   (seed logits, S_i(p + o(p)), bilinear)
    S_f = (1 - F) * S_i + F * S_s            (fused logits = ``SegOutput.logits``)

Choices (documented deviations / decisions):

* The offset branch has its own copy of the stage-3 -> stage-4 transition and a stage-4 copy
  with ``offset_modules`` HighResolutionModules. Default ``max(1, main - 1)``: 2 for W18/W32/W48
  (main stage 4 has 3, thesis: "repeated 1, 3 and 2 times" for the offset head's stages 2-4),
  1 for W18-small-v1 (main 1) and W18-small-v2 (main 2). With this, OVeNet-W48 has 98.8M
  parameters, the thesis figure.
* The offset head is an HRNetV2 head with 3 outputs. Its last 1x1 conv (``offset_head.classifier``)
  is initialised to zero weights and bias, so at initialisation o = 0 exactly, F = 0.5 and
  S_s = S_f = S_i: the model starts as its HRNet baseline and the offsets grow from there
  (the first step still updates the zero conv, whose gradient is non-zero).
* Fusion is on logits (the thesis' final model fuses and supervises logits, not softmaxes).
* Like :class:`~seglab.models.hrnet.HRNetV2`, OVeNet subclasses the backbone, so its main part
  has the official HRNet names plus ``head``: official ImageNet checkpoints and trained HRNetV2
  state dicts load into it (``strict=False``; only ``offset_*`` stays missing).
"""
from __future__ import annotations

import numbers
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from seglab.errors import check
from seglab.models import register_model
from seglab.models.backbones.hrnet import (HRNET_SPECS, HRNetBackbone, HRNetSpec, apply_transition,
                                           init_hrnet_weights, make_stage, make_transition)
from seglab.models.heads.hrnet_head import HRNetV2Head
from seglab.models.hrnet import check_common_args, resolve_spec
from seglab.models.outputs import SegOutput
from seglab.models.resample import resample

DEFAULT_TAU = 0.5


def default_offset_modules(spec: HRNetSpec) -> int:
    """Modules of the offset branch's stage 4: one fewer than the main stage 4, at least 1."""
    return max(1, spec.stage4.num_modules - 1)


def fuse_logits(initial_logits: Tensor, seed_logits: Tensor, confidence: Tensor) -> Tensor:
    """``S_f = (1 - F) * S_i + F * S_s`` (paper eq. 4); ``confidence`` ``(B, 1, h, w)`` broadcasts."""
    return (1 - confidence) * initial_logits + confidence * seed_logits


class OVeNet(HRNetBackbone):
    """OVeNet on an HRNetV2 backbone, branching at stage 4.

    Args:
        arch: an HRNet spec name (e.g. ``"hrnet_w48"``) or an :class:`HRNetSpec`.
        num_classes: number of classes (>= 1).
        tau: maximum offset length in normalised image coordinates (> 0; paper default 0.5).
        offset_modules: HighResolutionModules in the offset branch's stage 4 (>= 1;
            default :func:`default_offset_modules`).
        in_chans, bn_momentum, align_corners, weight_init: as :class:`~seglab.models.hrnet.HRNetV2`.

    ``forward(images (B, in_chans, H, W))`` returns ``SegOutput(logits=S_f, initial_logits=S_i,
    seed_logits=S_s, offsets=o (B, 2, H/4, W/4), confidence=F (B, 1, H/4, W/4))``, class maps
    ``(B, num_classes, H/4, W/4)``.
    """

    output_stride = 4

    def __init__(self, arch: str | HRNetSpec, num_classes: int, tau: float = DEFAULT_TAU,
                 offset_modules: Optional[int] = None, in_chans: int = 3, bn_momentum: float = 0.1,
                 align_corners: bool = True, weight_init: str = "kaiming") -> None:
        check_common_args(num_classes, in_chans, bn_momentum, align_corners, weight_init)
        check(isinstance(tau, numbers.Real) and not isinstance(tau, bool) and tau > 0,
              f"model.tau must be > 0 (got {tau!r})")
        check(offset_modules is None or (isinstance(offset_modules, numbers.Integral)
                                         and not isinstance(offset_modules, bool) and offset_modules >= 1),
              f"model.offset_modules must be an integer >= 1 or null (got {offset_modules!r})")
        spec = resolve_spec(arch)
        kw = dict(bn_momentum=bn_momentum, align_corners=align_corners)
        super().__init__(spec, in_chans=in_chans, **kw)
        self.num_classes = num_classes
        self.tau = float(tau)
        self.offset_modules = default_offset_modules(spec) if offset_modules is None else int(offset_modules)
        self.head = HRNetV2Head(self.out_channels, num_classes, **kw)
        s3, s4 = spec.stage3, spec.stage4
        self.offset_transition = make_transition(s3.out_channels, s4.out_channels, bn_momentum)
        self.offset_stage = make_stage(s4, s4.out_channels, num_modules=self.offset_modules, **kw)
        self.offset_head = HRNetV2Head(s4.out_channels, 3, **kw)
        init_hrnet_weights(self, weight_init)
        nn.init.zeros_(self.offset_head.classifier.weight)
        nn.init.zeros_(self.offset_head.classifier.bias)

    @torch.no_grad()
    def init_offset_branch_from_main(self) -> None:
        """Copy ``transition3`` and the first ``offset_modules`` modules of ``stage4`` into the offset
        branch (call after loading ImageNet weights: the thesis initialises the second head from
        them too). The offset head keeps its own (zero-initialised last conv) weights."""
        self.offset_transition.load_state_dict(self.transition3.state_dict())
        for offset_module, main_module in zip(self.offset_stage, self.stage4):
            offset_module.load_state_dict(main_module.state_dict())

    def forward(self, images: Tensor, targets: Optional[Tensor] = None) -> SegOutput:
        """``images (B, in_chans, H, W)``; ``targets`` is unused (accepted for a uniform API)."""
        stage3 = self.forward_to_stage3(images)
        initial_logits = self.head(self.forward_stage4(stage3))
        raw = self.offset_head(self.offset_stage(apply_transition(self.offset_transition, stage3)))
        offsets = torch.tanh(raw[:, :2]) * self.tau
        confidence = torch.sigmoid(raw[:, 2:3])
        seed_logits = resample(initial_logits, offsets)
        return SegOutput(
            logits=fuse_logits(initial_logits, seed_logits, confidence),
            initial_logits=initial_logits,
            seed_logits=seed_logits,
            offsets=offsets,
            confidence=confidence,
            output_stride=self.output_stride,
        )


def _make_factory(arch: str) -> Callable[..., OVeNet]:
    def factory(num_classes: int, tau: float = DEFAULT_TAU, offset_modules: Optional[int] = None, in_chans: int = 3,
                bn_momentum: float = 0.1, align_corners: bool = True, weight_init: str = "kaiming") -> OVeNet:
        return OVeNet(arch, num_classes, tau=tau, offset_modules=offset_modules, in_chans=in_chans,
                      bn_momentum=bn_momentum, align_corners=align_corners, weight_init=weight_init)

    factory.__name__ = factory.__qualname__ = f"ovenet_{arch}"
    factory.__doc__ = f"OVeNet on {arch}, branching at stage 4; logits (fused S_f) at stride 4."
    return factory


for _arch in HRNET_SPECS:
    register_model(f"ovenet_{_arch}")(_make_factory(_arch))
