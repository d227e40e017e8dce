"""Checkpoint layouts of the official releases, mapped onto seglab's names by pure renames.

Recognised (first match wins; keys after the wrappers are taken off):

* ``ovenet`` -- the OVeNet release (stamatisalex/OVeNet ``seg_hrnet_ocr.py``): the HRNet-OCR names
  plus the offset branch ``transition{s-1}_2`` / ``stage{s}_2`` and ``aux_head_offset``, and the
  constant sampling grid ``coords`` (no counterpart: seglab computes it).
* ``seg_hrnet_ocr`` -- HRNet-Semantic-Segmentation ``HRNet-OCR`` branch: ``aux_head.{0,1,3}``,
  ``conv3x3_ocr``, ``ocr_distri_head`` (its ``BNReLU`` nested as ``.1.0`` / ``.3.0``), ``cls_head``.
* ``seg_hrnet`` -- HRNet-Semantic-Segmentation ``seg_hrnet`` (HRNetV2): ``last_layer.{0,1,3}``.
  Into an OCR model its ``last_layer`` becomes the soft-region head, as the official HRNet-OCR
  ``init_weights`` does (``last_layer`` -> ``aux_head``).
* ``hrnet_imagenet`` -- HRNet-Image-Classification weights (``hrnetv2_w48_imagenet_pretrained.pth``,
  ``hrnet_w18_small_model_v1.pth``): the body under the seglab names plus ``incre_modules``,
  ``downsamp_modules``, ``final_layer``, ``classifier`` (the ImageNet head: not loaded).
* ``torchvision_resnet`` -- torchvision ResNet ImageNet weights: ``conv1``, ``layer1..4``, ``fc``
  (the model's ``pretrained_prefix`` puts them under ``backbone.``; ``fc`` is not loaded).
* ``seglab`` -- anything else: the model's own names.

Wrappers taken off first: a ``state_dict`` / ``model`` entry (:func:`~seglab.models.pretrained.read_state_dict`),
``module.`` (DataParallel / DDP) and ``model.`` (the official ``FullModel`` that the official
``tools/train.py`` saves; its ``loss.*`` buffers, e.g. the class weights of the criterion, have no
counterpart). This module holds names only, no official code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

from torch import Tensor

OCR_BLOCK = "ocr_distri_head.object_context_block."


def _ocr_head_renames() -> List[Tuple[str, Tuple[str, ...]]]:
    """Official OCR head prefixes -> seglab's (under ``head.``); ``BNReLU`` = ``Sequential(BN, ReLU)``."""
    pairs = [("cls_head.", "head.classifier."), ("conv3x3_ocr.", "head.conv3x3_ocr."),
             ("aux_head.0.", "head.aux_head.bottleneck.0."), ("aux_head.1.", "head.aux_head.bottleneck.1."),
             ("aux_head.3.", "head.aux_head.classifier."),
             ("ocr_distri_head.conv_bn_dropout.0.", "head.ocr_distri_head.conv_bn_dropout.0."),
             ("ocr_distri_head.conv_bn_dropout.1.0.", "head.ocr_distri_head.conv_bn_dropout.1.")]
    for name, steps in (("f_pixel", 2), ("f_object", 2), ("f_down", 1), ("f_up", 1)):
        for step in range(steps):  # official conv at 2*step, BNReLU at 2*step+1; seglab conv/BN/ReLU at 3*step
            pairs.append((f"{OCR_BLOCK}{name}.{2 * step}.", f"head.{OCR_BLOCK}{name}.{3 * step}."))
            pairs.append((f"{OCR_BLOCK}{name}.{2 * step + 1}.0.", f"head.{OCR_BLOCK}{name}.{3 * step + 1}."))
    return [(official, (ours,)) for official, ours in pairs]


def _offset_renames() -> List[Tuple[str, Tuple[str, ...]]]:
    pairs = [("transition3_2.", "offset_transition."), ("stage4_2.", "offset_stage.")]
    for stage in (2, 3):
        pairs += [(f"transition{stage - 1}_2.", f"offset_transition{stage - 1}."),
                  (f"stage{stage}_2.", f"offset_stage{stage}.")]
    pairs += [("aux_head_offset.0.", "offset_head.bottleneck.0."), ("aux_head_offset.1.", "offset_head.bottleneck.1."),
              ("aux_head_offset.3.", "offset_head.classifier.")]
    return [(official, (ours,)) for official, ours in pairs]


_LAST_LAYER = [("last_layer.0.", ("head.bottleneck.0.", "head.aux_head.bottleneck.0.")),
               ("last_layer.1.", ("head.bottleneck.1.", "head.aux_head.bottleneck.1.")),
               ("last_layer.3.", ("head.classifier.", "head.aux_head.classifier."))]


@dataclass(frozen=True)
class Layout:
    """A checkpoint layout: how to tell it (``detect`` on the unwrapped keys), its renames
    (official prefix -> seglab prefixes, the first one the model has wins) and the tensors with
    no counterpart that are dropped silently (constant buffers)."""

    name: str
    title: str
    detect: Callable[[Sequence[str]], bool]
    renames: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()
    constants: Tuple[str, ...] = ()


def _has(*names: str) -> Callable[[Sequence[str]], bool]:
    return lambda keys: all(n in keys for n in names)


def _has_prefix(prefix: str) -> Callable[[Sequence[str]], bool]:
    return lambda keys: any(k.startswith(prefix) for k in keys)


LAYOUTS: Tuple[Layout, ...] = (
    Layout("ovenet", "OVeNet release (stamatisalex/OVeNet seg_hrnet_ocr)", _has("aux_head_offset.3.weight"),
           tuple(_offset_renames() + _ocr_head_renames()), constants=("coords",)),
    Layout("seg_hrnet_ocr", "HRNet-Semantic-Segmentation HRNet-OCR (seg_hrnet_ocr)",
           _has("cls_head.weight", "conv3x3_ocr.0.weight"), tuple(_ocr_head_renames())),
    Layout("seg_hrnet", "HRNet-Semantic-Segmentation HRNetV2 (seg_hrnet)", _has("last_layer.3.weight"),
           tuple(_LAST_LAYER)),
    Layout("hrnet_imagenet", "HRNet-Image-Classification ImageNet weights (cls_hrnet)", _has_prefix("incre_modules.")),
    Layout("torchvision_resnet", "torchvision ResNet ImageNet weights",
           lambda keys: _has("conv1.weight", "fc.weight")(keys) and _has_prefix("layer4.")(keys)),
)
SEGLAB = Layout("seglab", "seglab state dict", lambda keys: True)
#: What a checkpoint given to ``model.pretrained`` / ``model.body_checkpoint`` may be (for messages).
ALLOWED = ("a seglab state dict of this model, " + ", ".join(layout.title for layout in LAYOUTS))


def unwrap_prefixes(state: Mapping[str, Tensor], own: Sequence[str]) -> Tuple[Dict[str, Tensor], List[str]]:
    """Take ``module.`` and the ``FullModel`` wrapper (``model.`` + ``loss.*``) off the keys, unless
    the model itself has keys under that prefix. Returns (state, dropped ``loss.*`` keys)."""
    own_set = set(own)
    out = dict(state)
    for prefix in ("module.", "model."):
        if any(k.startswith(prefix) for k in own_set) or not any(k.startswith(prefix) for k in out):
            continue
        wrapped = [k for k in out if k.startswith(prefix)]
        if prefix == "model." and len(wrapped) < len(out) / 2:
            continue
        out = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in out.items()}
    dropped = [k for k in out if k.startswith("loss.") and k not in own_set]
    return {k: v for k, v in out.items() if k not in dropped}, dropped


def detect_layout(keys: Sequence[str]) -> Layout:
    """The first layout of :data:`LAYOUTS` whose marker keys ``keys`` has, else :data:`SEGLAB`."""
    keys = list(keys)
    return next((layout for layout in LAYOUTS if layout.detect(keys)), SEGLAB)


def rename_key(name: str, layout: Layout, own: Mapping[str, object]) -> str:
    """``name`` in ``layout`` -> the seglab name (the longest matching official prefix; among its
    seglab prefixes the first that ``own`` has; unchanged when none matches)."""
    best = max((pair for pair in layout.renames if name.startswith(pair[0])), key=lambda p: len(p[0]), default=None)
    if best is None:
        return name
    official, candidates = best
    renamed = [ours + name[len(official):] for ours in candidates]
    return next((n for n in renamed if n in own), renamed[0])


def to_seglab_names(state: Mapping[str, Tensor], own: Mapping[str, object]) -> Tuple[Dict[str, Tensor], Layout, List[str]]:
    """``state`` (any recognised layout) -> (state under seglab's names, its layout, the keys dropped:
    constant buffers such as OVeNet's ``coords`` and the ``FullModel`` loss buffers)."""
    state, dropped = unwrap_prefixes(state, list(own))
    layout = detect_layout(list(state))
    renamed: Dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name in layout.constants and name not in own:
            dropped.append(name)
            continue
        renamed[rename_key(name, layout, own)] = tensor
    return renamed, layout, dropped
