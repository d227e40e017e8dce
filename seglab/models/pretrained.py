"""Load a local checkpoint (e.g. ImageNet weights) into a model. Nothing is fetched from the net."""
from __future__ import annotations

import os
import re
from typing import Dict, Tuple

import torch
from torch import nn

from seglab.errors import ConfigError


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


def load_pretrained(model: nn.Module, path: str, key: str = "model.pretrained") -> Tuple[int, list, list]:
    """Load the matching tensors of ``path`` into ``model``; returns (loaded, missing, unexpected).

    File keys are matched as they are or with the model's ``pretrained_prefix`` in front (e.g.
    torchvision ResNet keys ``conv1.weight`` -> ``backbone.conv1.weight``). A tensor whose name
    matches but whose shape differs is tolerated only in a classifier/head (another number of
    classes) and reported as missing; anywhere else it means the file is for another architecture
    (e.g. an HRNet-W18 file for a W48 model) and a :class:`ConfigError` says so, as it does when
    nothing matches at all.
    """
    usable, missing, unexpected = match_state_dict(model, read_state_dict(path, key), path, key)
    model.load_state_dict(usable, strict=False)
    return len(usable), missing, unexpected


def check_pretrained(model: nn.Module, path: str, key: str = "model.pretrained", require_match: bool = True) -> None:
    """Raise what :func:`load_pretrained` would raise for ``path``, without loading anything (the
    model may live on the ``meta`` device: only names and shapes are compared). With
    ``require_match=False`` a file none of whose tensors the model has passes; a tensor of the
    model's with another shape never does."""
    match_state_dict(model, read_state_dict(path, key), path, key, require_match)


def match_state_dict(model: nn.Module, state: Dict[str, torch.Tensor], path: str, key: str = "model.pretrained",
                     require_match: bool = True) -> Tuple[Dict[str, torch.Tensor], list, list]:
    """(tensors of ``state`` to load into ``model``, the model's keys left missing, the file's
    unexpected keys); :class:`ConfigError` when ``state`` is for another architecture (see
    :func:`load_pretrained`)."""
    own = model.state_dict()
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
    missing = sorted(set(own) - set(usable))
    return usable, missing, sorted(unexpected)
