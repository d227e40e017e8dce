"""Training checkpoints: written atomically (temp file + ``os.replace``), loaded back into a model.

A checkpoint file holds ``model`` (state dict of the unwrapped model), ``optimizer``, ``epoch``
(the last finished epoch, 1-based), ``best_miou``, ``mlflow_run_id`` and ``run`` (the run config
dict), so that :func:`load_model` rebuilds the exact model without any other file.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Any, BinaryIO, Dict, Iterator

import torch
from torch import nn

CHECKPOINT_NAME = "checkpoint.pt"


@contextmanager
def atomic_file(path: str) -> Iterator[BinaryIO]:
    """Write ``path`` through a temp file in the same folder: fsync, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never a torn file; on an
    error the temp file is removed. Creates the folder if needed.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_atomic(obj: Dict[str, Any], path: str) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as f:
        torch.save(obj, f)


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(text.encode())


def load(path: str) -> Dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` (plain tensors and Python values only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP/DataParallel and ``torch.compile`` wrappers (in any order)."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def model_from_state(state: Dict[str, Any]) -> nn.Module:
    """Rebuild the model a checkpoint dict records (``run.model``, ``num_classes``) and load its
    weights (eval mode)."""
    from seglab.models import build_model  # local import: keeps this module light
    from seglab.models.layouts import to_seglab_names
    from seglab.platform.config import ModelConfig

    cfg = ModelConfig.from_dict(state["run"]["model"])
    model = build_model(cfg.name, num_classes=int(state["num_classes"]), **cfg.kwargs)
    if cfg.freeze_bn:
        from seglab.models.frozen_bn import freeze_batchnorm

        model = freeze_batchnorm(model)
    own = model.state_dict()
    # a seglab checkpoint whose weights are an official state dict (renamed; InPlaceABN files have
    # no BatchNorm counters, which only count steps) loads too
    weights, _, _ = to_seglab_names(state["model"], own)
    counters = {k: v for k, v in own.items() if k.endswith("num_batches_tracked") and k not in weights}
    model.load_state_dict({**counters, **weights})
    return model.eval()


def load_model(path: str) -> nn.Module:
    """Rebuild the model recorded in a checkpoint file and load its weights (eval mode)."""
    return model_from_state(load(path))
