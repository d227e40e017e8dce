"""Load a local checkpoint (e.g. ImageNet weights) into a model. Nothing is fetched from the net."""
from __future__ import annotations

import os
from typing import Dict, Tuple

import torch
from torch import nn

from seglab.errors import ConfigError


def read_state_dict(path: str, key: str = "model.pretrained") -> Dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (a raw state dict, or a dict holding one under
    ``state_dict``/``model``), with ``weights_only=True``."""
    if not path or not os.path.isfile(path):
        raise ConfigError(f"{key}: file not found: {path} (give the path of a local .pt/.pth checkpoint)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, not a torch file
        raise ConfigError(f"{key}: cannot read {path} as a torch checkpoint ({type(exc).__name__}: {exc})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{key}: {path} does not hold a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_pretrained(model: nn.Module, path: str, key: str = "model.pretrained") -> Tuple[int, list, list]:
    """Load matching tensors of ``path`` into ``model``; returns (loaded, missing, unexpected).

    Tensors whose name exists in the model but whose shape differs (e.g. a classifier for another
    number of classes) are skipped and reported as missing. If nothing matches, the file is for a
    different architecture and a :class:`ConfigError` says so.
    """
    state = read_state_dict(path, key)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ConfigError(
            f"{key}: no tensor of {path} matches {type(model).__name__} (different architecture?); "
            f"first keys in file: {', '.join(list(state)[:3])}"
        )
    missing = sorted(set(own) - set(usable))
    unexpected = sorted(set(state) - set(usable))
    model.load_state_dict(usable, strict=False)
    return len(usable), missing, unexpected
