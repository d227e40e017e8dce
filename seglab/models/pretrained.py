"""Load a local checkpoint (e.g. ImageNet weights) into a model. Nothing is fetched from the net."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from torch import nn

from seglab.errors import ConfigError
from seglab.models.layouts import ALLOWED, SEGLAB, Layout, to_seglab_names


def read_state_dict(path: str, key: str = "model.pretrained") -> Dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (a raw state dict, or a dict holding one under
    ``state_dict``/``model``), with ``weights_only=True``: a file that pickles Python objects
    (e.g. an ``argparse.Namespace`` next to the weights) is refused, nothing in it runs."""
    if path and os.path.isdir(path):
        raise ConfigError(f"{key}: {path} is a directory; give the path of a local .pt/.pth checkpoint file")
    if not path or not os.path.isfile(path):
        raise ConfigError(f"{key}: file not found: {path} (give the path of a local .pt/.pth checkpoint)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, not a torch file, pickled objects, unreadable
        raise ConfigError(f"{key}: {_load_error(path, exc)}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{key}: {path} does not hold a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def _load_error(path: str, exc: Exception) -> str:
    """What went wrong reading ``path`` with ``torch.load(weights_only=True)``, in one line."""
    text = str(exc)
    if isinstance(exc, PermissionError):
        return f"cannot read {path}: permission denied"
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"{path} holds pickled Python objects ({found.group(1)}), which are not loaded "
                f"(torch.load weights_only=True); save the tensors only: torch.save(model.state_dict(), path)")
    text = text.partition("WeightsUnpickler error:")[2] or text  # the reason, not the advice around it
    first = next((line.strip() for line in text.splitlines() if line.strip()), "").split(". ")[0]
    return f"cannot read {path} as a torch checkpoint, corrupt or truncated? ({type(exc).__name__}: {first[:200]})"


HEAD_PREFIXES = ("head.", "aux_head.", "cls_head.", "classifier.", "fc.", "offset_head.")
#: Heads a checkpoint may leave out without saying so: a new branch (OVeNet's offsets) starts fresh.
NEW_BRANCH_PREFIXES = ("offset_",)


@dataclass
class CheckpointMatch:
    """What of a checkpoint goes into a model: ``usable`` (seglab names -> tensors), the model's
    keys left ``missing``, the file's ``unexpected`` keys, the recognised ``layout`` and the keys
    ``dropped`` as having no counterpart (constant buffers such as OVeNet's ``coords``)."""

    usable: Dict[str, torch.Tensor]
    missing: List[str]
    unexpected: List[str]
    layout: Layout
    dropped: List[str] = field(default_factory=list)

    def describe(self, key: str, path: str) -> str:
        """One line: what was loaded, from which layout, what is missing / unexpected."""
        dropped = f", {len(self.dropped)} without counterpart dropped ({', '.join(self.dropped[:2])})" \
            if self.dropped else ""
        return (f"{key}: loaded {len(self.usable)} tensors from {path} (layout: {self.layout.title}); "
                f"{len(self.missing)} missing (e.g. {', '.join(self.missing[:2]) or '-'}), {len(self.unexpected)} "
                f"unexpected (e.g. {', '.join(self.unexpected[:2]) or '-'}){dropped}")


def load_pretrained(model: nn.Module, path: str, key: str = "model.pretrained") -> Tuple[int, list, list]:
    """Load the matching tensors of ``path`` into ``model``; returns (loaded, missing, unexpected).

    The official layouts of :mod:`seglab.models.layouts` (HRNet-Semantic-Segmentation
    ``seg_hrnet`` / ``seg_hrnet_ocr``, the OVeNet release, HRNet and torchvision ImageNet weights)
    are renamed to seglab's names first; :func:`load_checkpoint` also says which one it was.
    File keys are matched as they are or with the model's ``pretrained_prefix`` in front (e.g.
    torchvision ResNet keys ``conv1.weight`` -> ``backbone.conv1.weight``). A tensor whose name
    matches but whose shape differs is tolerated only in a classifier/head (another number of
    classes) and reported as missing; anywhere else it means the file is for another architecture
    (e.g. an HRNet-W18 file for a W48 model) and a :class:`ConfigError` says so, as it does when
    nothing matches at all, and when a file of no known layout leaves the model's head out.
    """
    match = load_checkpoint(model, path, key)
    return len(match.usable), match.missing, match.unexpected


def load_checkpoint(model: nn.Module, path: str, key: str = "model.pretrained") -> CheckpointMatch:
    """:func:`load_pretrained` returning the whole :class:`CheckpointMatch` (``describe`` it)."""
    match = match_checkpoint(model, read_state_dict(path, key), path, key)
    model.load_state_dict(match.usable, strict=False)
    return match


def check_pretrained(model: nn.Module, path: str, key: str = "model.pretrained", require_match: bool = True) -> None:
    """Raise what :func:`load_pretrained` would raise for ``path``, without loading anything (the
    model may live on the ``meta`` device: only names and shapes are compared). With
    ``require_match=False`` a file none of whose tensors the model has passes; a tensor of the
    model's with another shape never does."""
    match_checkpoint(model, read_state_dict(path, key), path, key, require_match)


def match_state_dict(model: nn.Module, state: Dict[str, torch.Tensor], path: str, key: str = "model.pretrained",
                     require_match: bool = True) -> Tuple[Dict[str, torch.Tensor], list, list]:
    """(tensors of ``state`` to load into ``model``, the model's keys left missing, the file's
    unexpected keys) of :func:`match_checkpoint`."""
    match = match_checkpoint(model, state, path, key, require_match)
    return match.usable, match.missing, match.unexpected


def match_checkpoint(model: nn.Module, state: Dict[str, torch.Tensor], path: str, key: str = "model.pretrained",
                     require_match: bool = True) -> CheckpointMatch:
    """Rename ``state`` from its layout (:func:`~seglab.models.layouts.to_seglab_names`) and match it
    against ``model``; :class:`ConfigError` when ``state`` is for another architecture, or is of
    no known layout and leaves the model's head out (see :func:`load_pretrained`)."""
    own = model.state_dict()
    state, layout, dropped = to_seglab_names(state, own)
    prefix = getattr(model, "pretrained_prefix", "")
    heads = tuple(getattr(model, "head_prefixes", HEAD_PREFIXES))
    usable, unexpected, wrong_shape = {}, [], []
    for name, tensor in state.items():
        target = name if name in own else (prefix + name if prefix and prefix + name in own else None)
        if target is None:
            unexpected.append(name)
        elif own[target].shape != tensor.shape:
            wrong_shape.append((target, tuple(tensor.shape), tuple(own[target].shape)))
        else:
            usable[target] = tensor
    body = [w for w in wrong_shape if not w[0].startswith(heads)]
    if body:
        name, got, want = body[0]
        raise ConfigError(
            f"{key}: {path} is for a different architecture than {type(model).__name__}: {len(body)} tensors differ "
            f"in shape, e.g. {name} {got} in the file vs {want} in the model")
    if not usable and require_match:
        raise ConfigError(
            f"{key}: no tensor of {path} matches {type(model).__name__} (different architecture?); "
            f"first keys in file: {', '.join(list(state)[:3])}")
    counters = any(k.endswith("num_batches_tracked") for k in state)  # InPlaceABN files have none
    missing = sorted(k for k in set(own) - set(usable) if counters or not k.endswith("num_batches_tracked"))
    reshaped = {w[0] for w in wrong_shape}  # a head of another class count: replaced on purpose
    absent = [k for k in missing if k.startswith(heads) and not k.startswith(NEW_BRANCH_PREFIXES)
              and k not in reshaped]
    if usable and absent and layout is SEGLAB:
        raise ConfigError(
            f"{key}: {path} matches no known checkpoint layout and leaves {len(absent)} head tensors of "
            f"{type(model).__name__} missing (e.g. {absent[0]}; first keys in file: {', '.join(list(state)[:2])}); "
            f"allowed: {ALLOWED}")
    return CheckpointMatch(usable, missing, sorted(unexpected), layout, dropped)
