"""OVeNet: Offset Vector Network on HRNetV2 or HRNetV2+OCR (paper 001, §3; thesis ch. 4-5).

Structure (``OVeNet`` on ``hrnet_w48``, ``branch_stage=4`` = Table 5.1 of the thesis)::

    images -> shared body: stem, layer1, stages 2 .. branch_stage-1 (with their transitions)
                 ├─ main path:   transitions/stages branch_stage..4 -> head        -> S_i (initial logits)
                 └─ offset path: own copies of them (fewer modules)  -> offset_head -> 3 channels
                        o = tanh(ch 0:2) * tau      (normalised coords, channel 0 = x, 1 = y; see tau_mode)
                        o <- cascaded refinement    (``cascade_steps`` times, see cascade_offsets)
                        F = sigmoid(ch 2)           (confidence)
    S_s = resample(S_i, o)                   (seed logits, S_i(p + o(p)), bilinear, border clamp)
    S_f = (1 - F) * S_i + F * S_s            (fused logits)

Switches (keyword arguments of :class:`OVeNet` and of the registered factories):

* **Base network** -- ``ovenet_hrnet_<w>``: HRNetV2 head; ``ovenet_hrnet_<w>_ocr``: the OCR head of
  :mod:`seglab.models.heads.ocr_head` (``ocr_mid_channels``, ``ocr_key_channels``,
  ``ocr_dropout`` as :class:`~seglab.models.ocr.HRNetOCR`). On OCR, the OCR logits and the
  auxiliary soft-object-region logits are both resampled with the same offsets and fused with
  the same confidence (``aux_logits`` = fused aux, plus ``initial_aux_logits`` /
  ``seed_aux_logits``). The offset head is an HRNetV2 head with 3 outputs on both bases.
* **Branch point** ``branch_stage`` in {2, 3, 4} (default 4, the paper's): the offset branch owns
  copies of the transitions and stages from that stage on. Module names: the copy of
  ``transition3``/``stage4`` is ``offset_transition``/``offset_stage`` (the names of the original
  stage-4-only model, so its checkpoints keep loading); earlier copies are
  ``offset_transition{s-1}``/``offset_stage{s}`` (``offset_transition1``, ``offset_stage2``,
  ``offset_transition2``, ``offset_stage3``). ``offset_modules``: HighResolutionModules per
  copied stage, ``null`` = :func:`default_offset_modules` (``max(1, main - 1)`` per stage: 1, 3, 2
  for stages 2, 3, 4 of W18/W32/W48, the thesis' "repeated 1, 3 and 2 times"), an int (only with
  ``branch_stage=4``) or a list with one count per copied stage, in stage order.
* **Defaults of bn_momentum / align_corners** follow the official code of the base: HRNetV2 base
  0.01 / False (as :class:`~seglab.models.hrnet.HRNetV2`), OCR base 0.1 / True (the official
  OVeNet ``seg_hrnet_ocr.py`` and HRNet-OCR). ``tau`` defaults to the paper's 0.5 (the official
  yamls use ``OFFSET_THRESHOLD: 0.2``: preset ``model=ovenet_hrnet_w48_ocr_official``).
* **Offset bound** ``tau`` > 0 and ``tau_mode``:

  - ``"normalized"`` (default; the paper / official code): ``o = tanh(raw) * tau`` per component
    in ``grid_sample(align_corners=True)`` normalised coordinates, i.e. at most
    ``tau * (w - 1) / 2`` pixels horizontally and ``tau * (h - 1) / 2`` vertically on the
    ``(h, w)`` output map (anisotropic in pixels when ``h != w``).
  - ``"isotropic"``: the same bound in pixels on both axes, ``tau * (w - 1) / 2`` (tau is a
    fraction of the half-*width*): ``o_x = tanh(raw_x) * tau`` and
    ``o_y = tanh(raw_y) * tau * (w - 1) / (h - 1)`` (``h = 1``: factor 1, the row does not move).

  ``SegOutput.offsets`` is in normalised coordinates in both modes (pixels:
  ``o_x * (w - 1) / 2``, ``o_y * (h - 1) / 2``).
* **Cascaded refinement** ``cascade_steps`` N >= 0 (default 0): :func:`cascade_offsets`,
  ``o_0 = o``, ``o_{n+1}(p) = o_n(p) + o_n(p + o_n(p))`` (the current field sampled bilinearly
  at the current seed, border clamp: the official ``ITERATIVE_REFINEMENT`` loop).
  ``o_N`` resamples S_i and is ``SegOutput.offsets`` (the confidence loss uses it).
* **What is resampled** ``resample``: ``"logits"`` (default, the paper's final model) or
  ``"probs"``: ``P_i = softmax(S_i)``, ``P_s = resample(P_i, o)``, ``P_f = (1 - F) P_i + F P_s``
  (computed in float32 at least), and the returned initial / seed / final maps are
  ``log(max(P, PROB_EPS))``. Their softmax is P again (up to the eps), so cross-entropy on them
  is the negative log-likelihood of the probabilities and argmax is unchanged. On OCR only the
  OCR output goes through the softmax; the soft-region (aux) map is resampled and fused as
  logits, as the official ``LOGITS: false`` path does.
* **Frozen body** ``freeze_body`` (thesis/paper ablation "Fr"): everything outside the offset
  branch -- the shared body, the main path's own stages and the main head (HRNetV2 or OCR) -- gets
  ``requires_grad=False`` and stays in eval mode (BatchNorm statistics and OCR dropout frozen),
  also after ``model.train()``. Load the trained baseline into it with :meth:`OVeNet.load_body_state`;
  build the optimizer over the parameters with ``requires_grad``.
* **Inference map** ``inference_output``: ``"final"`` (default) | ``"initial"`` | ``"seed"``: in
  eval mode ``SegOutput.logits`` is S_f, S_i or S_s; in training mode it is always S_f.
  ``final_logits`` (S_f), ``initial_logits``, ``seed_logits`` are always set.

Other choices:

* The offset head's last 1x1 conv (``offset_head.classifier``) is initialised to zero weights and
  bias, so at initialisation o = 0 exactly, F = 0.5 and S_s = S_f = S_i: the model starts as its
  baseline and the offsets grow from there (the zero conv itself gets a non-zero gradient).
* OVeNet subclasses the backbone, so the main path has the official HRNet names plus ``head``:
  official ImageNet checkpoints and trained HRNetV2 / HRNet-OCR state dicts load into it
  (``strict=False``; only ``offset_*`` stays missing). With branch 4 and 19 classes on W48 the
  model has 98.8M parameters and 234.7 GFLOPs at 512x1024, the thesis' Table 5.5 figures.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglab.errors import ConfigError, check, is_int
from seglab.models import register_model
from seglab.models.backbones.hrnet import (HRNET_SPECS, HRNetBackbone, HRNetSpec, apply_transition,
                                           init_hrnet_weights, make_stage, make_transition)
from seglab.models.heads.hrnet_head import HRNetV2Head
from seglab.models.heads.ocr_head import OCRHead
from seglab.models.hrnet import check_common_args, resolve_spec
from seglab.models.ocr import check_ocr_args
from seglab.models.outputs import SegOutput
from seglab.models.resample import resample as resample_offsets

DEFAULT_TAU = 0.5
BASES = ("hrnet", "hrnet_ocr")
BRANCH_STAGES = (2, 3, 4)
TAU_MODES = ("normalized", "isotropic")
RESAMPLE_MODES = ("logits", "probs")
INFERENCE_OUTPUTS = ("final", "initial", "seed")
#: Floor of the probabilities before the log in ``resample="probs"`` (log(1e-12) ~ -27.6).
PROB_EPS = 1e-12
#: Prefix of every module of the offset branch (and of nothing else).
OFFSET_PREFIX = "offset_"

#: Official (bn_momentum, align_corners) per base: HRNet-Semantic-Segmentation ``master``
#: ``seg_hrnet.py`` (0.01, False as its yamls) and OVeNet / HRNet-OCR ``seg_hrnet_ocr.py`` (0.1, True).
BASE_DEFAULTS = {"hrnet": (0.01, False), "hrnet_ocr": (0.1, True)}

OffsetModules = Union[None, int, Sequence[int]]


def default_offset_modules(spec: HRNetSpec, stage: int = 4) -> int:
    """Modules of the offset branch's copy of ``stage`` (2..4): one fewer than the main stage,
    at least 1 (W48: 1, 3, 2 for stages 2, 3, 4)."""
    return max(1, getattr(spec, f"stage{stage}").num_modules - 1)


def resolve_offset_modules(spec: HRNetSpec, branch_stage: int, offset_modules: OffsetModules) -> Tuple[int, ...]:
    """Validate ``model.offset_modules`` -> one module count per copied stage ``branch_stage..4``."""
    stages = list(range(branch_stage, 5))
    if offset_modules is None:
        return tuple(default_offset_modules(spec, s) for s in stages)
    if is_int(offset_modules):
        check(offset_modules >= 1 and branch_stage == 4,
              f"model.offset_modules must be an integer >= 1 (only with branch_stage 4), a list of {len(stages)} "
              f"integers >= 1 (one per offset-branch stage {', '.join(map(str, stages))}) or null "
              f"(got {offset_modules!r} with branch_stage {branch_stage})")
        return (int(offset_modules),)
    ok = (isinstance(offset_modules, Sequence) and not isinstance(offset_modules, str)
          and len(offset_modules) == len(stages) and all(is_int(n) and n >= 1 for n in offset_modules))
    check(ok, f"model.offset_modules must be an integer >= 1 (only with branch_stage 4), a list of {len(stages)} "
              f"integers >= 1 (one per offset-branch stage {', '.join(map(str, stages))}) or null "
              f"(got {offset_modules!r} with branch_stage {branch_stage})")
    return tuple(int(n) for n in offset_modules)  # type: ignore[union-attr]


def fuse_logits(initial_logits: Tensor, seed_logits: Tensor, confidence: Tensor) -> Tensor:
    """``S_f = (1 - F) * S_i + F * S_s`` (paper eq. 4); ``confidence`` ``(B, 1, h, w)`` broadcasts."""
    return (1 - confidence) * initial_logits + confidence * seed_logits


def bound_offsets(raw: Tensor, tau: float, tau_mode: str = "normalized") -> Tensor:
    """Raw offset-head outputs ``(B, 2, h, w)`` -> offsets in normalised coordinates (x, y).

    ``"normalized"``: ``tanh(raw) * tau`` per component (pixel bounds ``tau (w-1)/2`` in x and
    ``tau (h-1)/2`` in y). ``"isotropic"``: the y component is further scaled by
    ``(w - 1) / (h - 1)`` so that both pixel bounds are ``tau (w - 1) / 2`` (factor 1 when h = 1).
    """
    offsets = torch.tanh(raw) * tau
    if tau_mode == "isotropic":
        h, w = raw.shape[-2:]
        y_scale = (w - 1) / (h - 1) if h > 1 else 1.0
        offsets = torch.cat([offsets[:, :1], offsets[:, 1:2] * y_scale], dim=1)
    return offsets


def cascade_offsets(offsets: Tensor, steps: int) -> Tensor:
    """Cascaded refinement (thesis §4.2): ``o_0 = o``, ``o_{n+1}(p) = o_n(p) + o_n(p + o_n(p))``.

    ``offsets`` ``(B, 2, h, w)`` in normalised coordinates; ``o_n(p + o_n(p))`` is
    :func:`~seglab.models.resample.resample` of the *current* field at the current seed (bilinear,
    positions clamped to the border), as the official OVeNet loop (``ITERATIVE_REFINEMENT``:
    ``du = du + grid_sample(du, clamp(coords + offset))``) does; one step equals
    ``o + o(p + o)``. Returns ``o_steps`` (``offsets`` itself for 0 steps; a zero field stays
    exactly zero).
    """
    refined = offsets
    for _ in range(steps):
        refined = refined + resample_offsets(refined, refined)
    return refined


def _check_choice(key: str, value: Any, allowed: Sequence[Any]) -> None:
    check(value in allowed and not isinstance(value, bool),
          f"model.{key} must be one of {', '.join(map(str, allowed))} (got {value!r})")


class OVeNet(HRNetBackbone):
    """OVeNet on an HRNetV2 backbone with an HRNetV2 or OCR head (see the module docstring).

    Args:
        arch: an HRNet spec name (e.g. ``"hrnet_w48"``) or an :class:`HRNetSpec`.
        num_classes: number of classes (>= 1).
        tau: maximum offset component in normalised image coordinates (> 0; paper default 0.5).
        offset_modules: HighResolutionModules per copied stage: ``None`` (default
            :func:`default_offset_modules`), an int (``branch_stage=4`` only) or one int per
            stage ``branch_stage..4``.
        in_chans, weight_init: as :class:`~seglab.models.hrnet.HRNetV2`.
        bn_momentum, align_corners: ``None`` (default) = the official value of the base (HRNetV2:
            0.01 / False; OCR: 0.1 / True).
        base: ``"hrnet"`` (HRNetV2 head) or ``"hrnet_ocr"`` (OCR head).
        tau_mode: ``"normalized"`` or ``"isotropic"``.
        branch_stage: 2, 3 or 4.
        cascade_steps: steps of cascaded refinement (>= 0).
        resample: ``"logits"`` or ``"probs"``.
        freeze_body: freeze everything outside the offset branch (ablation "Fr").
        inference_output: ``"final"``, ``"initial"`` or ``"seed"`` (``logits`` in eval mode).
        ocr_mid_channels, ocr_key_channels, ocr_dropout: the OCR head's options (``base="hrnet_ocr"``).

    ``forward(images (B, in_chans, H, W))`` returns ``SegOutput(logits, final_logits=S_f,
    initial_logits=S_i, seed_logits=S_s, offsets=o (B, 2, h, w), confidence=F (B, 1, h, w))``, class
    maps ``(B, num_classes, h, w)`` with ``h, w = ceil(H/4), ceil(W/4)``; on OCR also ``aux_logits``,
    ``initial_aux_logits``, ``seed_aux_logits``.

    Attributes: ``offset_stage_modules`` (module count per copied stage), ``offset_modules`` (that
    of the stage-4 copy, an int), ``branch_stage``, ``tau``, ``tau_mode``, ``cascade_steps``,
    ``resample_mode``, ``freeze_body``, ``inference_output``, ``base``.
    """

    output_stride = 4

    def __init__(self, arch: str | HRNetSpec, num_classes: int, tau: float = DEFAULT_TAU,
                 offset_modules: OffsetModules = None, in_chans: int = 3, bn_momentum: Optional[float] = None,
                 align_corners: Optional[bool] = None, weight_init: str = "kaiming", *, base: str = "hrnet",
                 tau_mode: str = "normalized", branch_stage: int = 4, cascade_steps: int = 0,
                 resample: str = "logits", freeze_body: bool = False, inference_output: str = "final",
                 ocr_mid_channels: int = 512, ocr_key_channels: int = 256, ocr_dropout: float = 0.05) -> None:
        _check_choice("base", base, BASES)
        bn_default, ac_default = BASE_DEFAULTS[base]
        bn_momentum = bn_default if bn_momentum is None else bn_momentum
        align_corners = ac_default if align_corners is None else align_corners
        check_common_args(num_classes, in_chans, bn_momentum, align_corners, weight_init)
        check(isinstance(tau, numbers.Real) and not isinstance(tau, bool) and tau > 0,
              f"model.tau must be > 0 (got {tau!r})")
        _check_choice("tau_mode", tau_mode, TAU_MODES)
        check(is_int(branch_stage) and branch_stage in BRANCH_STAGES,
              f"model.branch_stage must be one of 2, 3, 4 (got {branch_stage!r})")
        check(is_int(cascade_steps) and cascade_steps >= 0,
              f"model.cascade_steps must be an integer >= 0 (got {cascade_steps!r})")
        _check_choice("resample", resample, RESAMPLE_MODES)
        check(isinstance(freeze_body, bool), f"model.freeze_body must be true or false (got {freeze_body!r})")
        _check_choice("inference_output", inference_output, INFERENCE_OUTPUTS)
        if base == "hrnet_ocr":
            check_ocr_args(ocr_mid_channels, ocr_key_channels, ocr_dropout)
        spec = resolve_spec(arch)
        counts = resolve_offset_modules(spec, int(branch_stage), offset_modules)
        kw = dict(bn_momentum=bn_momentum, align_corners=align_corners)
        super().__init__(spec, in_chans=in_chans, **kw)
        self.num_classes = num_classes
        self.base = base
        self.tau = float(tau)
        self.tau_mode = tau_mode
        self.branch_stage = int(branch_stage)
        self.cascade_steps = int(cascade_steps)
        self.resample_mode = resample
        self.freeze_body = freeze_body
        self.inference_output = inference_output
        self.offset_stage_modules: Tuple[int, ...] = counts
        self.offset_modules = counts[-1]
        if base == "hrnet_ocr":
            self.head: nn.Module = OCRHead(self.out_channels, num_classes, mid_channels=ocr_mid_channels,
                                           key_channels=ocr_key_channels, dropout=float(ocr_dropout), **kw)
        else:
            self.head = HRNetV2Head(self.out_channels, num_classes, **kw)
        for stage, count in zip(range(self.branch_stage, 5), counts):
            previous, current = getattr(spec, f"stage{stage - 1}"), getattr(spec, f"stage{stage}")
            transition_name, stage_name = self._offset_names(stage)
            self.add_module(transition_name, make_transition(previous.out_channels, current.out_channels, bn_momentum))
            self.add_module(stage_name, make_stage(current, current.out_channels, num_modules=count, **kw))
        self.offset_head = HRNetV2Head(spec.stage4.out_channels, 3, **kw)
        init_hrnet_weights(self, weight_init)
        nn.init.zeros_(self.offset_head.classifier.weight)
        nn.init.zeros_(self.offset_head.classifier.bias)
        if freeze_body:
            for module in self.main_modules().values():
                module.requires_grad_(False)
        self.train(self.training)

    @staticmethod
    def _offset_names(stage: int) -> Tuple[str, str]:
        """Names of the offset branch's copies of ``(transition{stage-1}, stage{stage})``."""
        if stage == 4:
            return "offset_transition", "offset_stage"
        return f"offset_transition{stage - 1}", f"offset_stage{stage}"

    def offset_pairs(self) -> List[Tuple[nn.ModuleList, nn.Sequential, nn.ModuleList, nn.Sequential]]:
        """Per copied stage ``branch_stage..4``: ``(offset transition, offset stage, main transition,
        main stage)``."""
        pairs = []
        for stage in range(self.branch_stage, 5):
            transition_name, stage_name = self._offset_names(stage)
            pairs.append((getattr(self, transition_name), getattr(self, stage_name), *self.stage_layers(stage)))
        return pairs

    def main_modules(self) -> Dict[str, nn.Module]:
        """The direct children outside the offset branch: shared body, main path and ``head``
        (exactly the modules of the baseline HRNetV2 / HRNet-OCR model)."""
        return {name: m for name, m in self.named_children() if not name.startswith(OFFSET_PREFIX)}

    def train(self, mode: bool = True) -> "OVeNet":
        """As ``nn.Module.train``; with ``freeze_body`` the main modules stay in eval mode."""
        super().train(mode)
        if getattr(self, "freeze_body", False):
            for module in self.main_modules().values():
                module.train(False)
        return self

    @torch.no_grad()
    def init_offset_branch_from_main(self, loaded: Collection[str] = ()) -> None:
        """Copy every duplicated transition and the first modules of every duplicated stage from
        the main path into the offset branch (call after loading ImageNet weights: the thesis
        initialises the second head from them too). Offset stages with more modules than the main
        stage keep their own weights for the extra ones; the offset head keeps its own (zero last
        conv) weights. Nothing is copied when ``loaded`` (the keys a checkpoint just filled) holds
        any of the branch's transitions or stages (e.g. the OVeNet release)."""
        if any(k.startswith(OFFSET_PREFIX) and not k.startswith("offset_head.") for k in loaded):
            return
        for offset_transition, offset_stage, main_transition, main_stage in self.offset_pairs():
            offset_transition.load_state_dict(main_transition.state_dict())
            for offset_module, main_module in zip(offset_stage, main_stage):
                offset_module.load_state_dict(main_module.state_dict())

    @torch.no_grad()
    def load_body_state(self, state_dict: Mapping[str, Tensor]) -> int:
        """Load a trained baseline's state dict into everything outside the offset branch.

        ``state_dict``: as saved from ``hrnet_<w>`` (HRNetV2 base) or ``hrnet_<w>_ocr`` (OCR base) of
        the same width and class count; keys may carry a leading ``"module."`` (DDP). Every key of the
        shared body, main path and ``head`` must be present with the model's shape, otherwise a
        :class:`ConfigError` names the first missing / mismatched key. Other keys (e.g. ``offset_*``)
        are ignored and the offset branch is not touched. Values are copied in place, so
        ``requires_grad`` flags stay as they are. Returns the number of tensors loaded.
        """
        given = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}
        own = {k: v for k, v in self.state_dict().items() if not k.startswith(OFFSET_PREFIX)}
        for key, target in own.items():
            if key not in given:
                raise ConfigError(f"body state dict has no key {key!r}: it must be a trained "
                                  f"{'hrnet_<w>_ocr' if self.base == 'hrnet_ocr' else 'hrnet_<w>'} state dict "
                                  "of the same width")
            if tuple(given[key].shape) != tuple(target.shape):
                raise ConfigError(f"body state dict key {key!r} has shape {tuple(given[key].shape)}, the model "
                                  f"needs {tuple(target.shape)} (other width or class count?)")
        for key, target in own.items():
            target.copy_(given[key])
        return len(own)

    def _heads(self, features: List[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        if self.base == "hrnet_ocr":
            return self.head(features)
        return self.head(features), None

    def _resample_and_fuse(self, initial: Tensor, offsets: Tensor, confidence: Tensor,
                           as_logits: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
        """``(initial, seed, final)`` maps: logits, or log-probabilities for ``resample="probs"``
        (unless ``as_logits``: the OCR aux map, fused as logits in both modes)."""
        if self.resample_mode == "logits" or as_logits:
            seed = resample_offsets(initial, offsets)
            return initial, seed, fuse_logits(initial, seed, confidence)
        probs = F.softmax(initial.to(torch.promote_types(initial.dtype, torch.float32)), dim=1)
        seed = resample_offsets(probs, offsets)
        final = fuse_logits(probs, seed, confidence.to(probs.dtype))
        return tuple(torch.log(p.clamp_min(PROB_EPS)) for p in (probs, seed, final))  # type: ignore[return-value]

    def forward(self, images: Tensor, targets: Optional[Tensor] = None) -> SegOutput:
        """``images (B, in_chans, H, W)``; ``targets`` is unused (accepted for a uniform API)."""
        shared = self.forward_to_stage(images, self.branch_stage - 1)
        initial, initial_aux = self._heads(self.forward_stages(shared, self.branch_stage))
        feats = shared
        for offset_transition, offset_stage, _, _ in self.offset_pairs():
            feats = offset_stage(apply_transition(offset_transition, feats))
        raw = self.offset_head(feats)
        offsets = cascade_offsets(bound_offsets(raw[:, :2], self.tau, self.tau_mode), self.cascade_steps)
        confidence = torch.sigmoid(raw[:, 2:3])
        initial, seed, final = self._resample_and_fuse(initial, offsets, confidence)
        aux = {}
        if initial_aux is not None:
            initial_aux, seed_aux, final_aux = self._resample_and_fuse(initial_aux, offsets, confidence, as_logits=True)
            aux = dict(aux_logits=final_aux, initial_aux_logits=initial_aux, seed_aux_logits=seed_aux)
        logits = final
        if not self.training:
            logits = {"final": final, "initial": initial, "seed": seed}[self.inference_output]
        return SegOutput(logits=logits, initial_logits=initial, seed_logits=seed, offsets=offsets,
                         confidence=confidence, output_stride=self.output_stride, final_logits=final, **aux)


def _make_factory(arch: str, base: str) -> Callable[..., OVeNet]:
    common = dict(base=base)

    def factory(num_classes: int, tau: float = DEFAULT_TAU, offset_modules: OffsetModules = None,
                tau_mode: str = "normalized", branch_stage: int = 4, cascade_steps: int = 0, resample: str = "logits",
                freeze_body: bool = False, inference_output: str = "final", in_chans: int = 3,
                bn_momentum: float = 0.01, align_corners: bool = False, weight_init: str = "kaiming") -> OVeNet:
        return OVeNet(arch, num_classes, tau=tau, offset_modules=offset_modules, in_chans=in_chans,
                      bn_momentum=bn_momentum, align_corners=align_corners, weight_init=weight_init,
                      tau_mode=tau_mode, branch_stage=branch_stage, cascade_steps=cascade_steps, resample=resample,
                      freeze_body=freeze_body, inference_output=inference_output, **common)

    def ocr_factory(num_classes: int, tau: float = DEFAULT_TAU, offset_modules: OffsetModules = None,
                    tau_mode: str = "normalized", branch_stage: int = 4, cascade_steps: int = 0,
                    resample: str = "logits", freeze_body: bool = False, inference_output: str = "final",
                    ocr_mid_channels: int = 512, ocr_key_channels: int = 256, ocr_dropout: float = 0.05,
                    in_chans: int = 3, bn_momentum: float = 0.1, align_corners: bool = True,
                    weight_init: str = "kaiming") -> OVeNet:
        return OVeNet(arch, num_classes, tau=tau, offset_modules=offset_modules, in_chans=in_chans,
                      bn_momentum=bn_momentum, align_corners=align_corners, weight_init=weight_init,
                      tau_mode=tau_mode, branch_stage=branch_stage, cascade_steps=cascade_steps, resample=resample,
                      freeze_body=freeze_body, inference_output=inference_output, ocr_mid_channels=ocr_mid_channels,
                      ocr_key_channels=ocr_key_channels, ocr_dropout=ocr_dropout, **common)

    if base == "hrnet_ocr":
        ocr_factory.__name__ = ocr_factory.__qualname__ = f"ovenet_{arch}_ocr"
        ocr_factory.__doc__ = (f"OVeNet on {arch} + OCR: fused OCR logits (S_f) and fused soft-region aux "
                               "logits at stride 4.")
        return ocr_factory
    factory.__name__ = factory.__qualname__ = f"ovenet_{arch}"
    factory.__doc__ = f"OVeNet on {arch}: logits (fused S_f) at stride 4."
    return factory


for _arch in HRNET_SPECS:
    register_model(f"ovenet_{_arch}")(_make_factory(_arch, "hrnet"))
    register_model(f"ovenet_{_arch}_ocr")(_make_factory(_arch, "hrnet_ocr"))
