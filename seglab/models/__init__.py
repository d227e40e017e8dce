"""Segmentation models, built by name with plain keyword arguments.

>>> from seglab.models import build_model, list_models
>>> model = build_model("ovenet_hrnet_w18_small_v1", num_classes=19, tau=0.5)
>>> out = model(images)            # SegOutput; out.logits is (B, 19, H/4, W/4)

Every registered factory takes ``num_classes`` plus its own keyword arguments; any other keyword
raises :class:`~seglab.errors.ConfigError` naming the key and the valid ones. This package
imports torch only (never ray, mlflow, hydra or omegaconf).
"""
from __future__ import annotations

import inspect
from typing import Any, List

from torch import nn

from seglab.errors import ConfigError
from seglab.models.outputs import SegOutput
from seglab.registry import Registry

MODELS = Registry("model")
register_model = MODELS.register

# Importing the model modules registers their factories (they use ``register_model`` above).
from seglab.models import deeplab, hrnet, ovenet  # noqa: E402,F401  (registration side effect)
from seglab.models import ocr  # noqa: E402,F401  (registration side effect)
from seglab.models import phgmm  # noqa: E402,F401  (registration side effect)


def list_models() -> List[str]:
    """Sorted names of all registered models."""
    return MODELS.list()


def model_options(name: str) -> List[str]:
    """The keyword arguments model ``name`` accepts (``num_classes`` first)."""
    return list(inspect.signature(MODELS.get(name)).parameters)


def build_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build model ``name`` (see :func:`list_models`) with ``num_classes`` outputs.

    Raises:
        ConfigError: unknown ``name`` (message lists the valid names), a keyword the model does
            not take (message names it and the valid ones), or a bad value.
    """
    valid = model_options(name)
    for key in kwargs:
        if key not in valid:
            raise ConfigError(f"model.{key} is not an option of model '{name}'; valid options: {', '.join(valid)}")
    return MODELS.build(name, num_classes=num_classes, **kwargs)


__all__ = ["MODELS", "SegOutput", "build_model", "list_models", "model_options", "register_model"]
