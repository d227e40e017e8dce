"""Training losses.

A loss is an ``nn.Module`` called as ``loss(output, target) -> LossOutput`` where ``output`` is the
model's :class:`~seglab.models.outputs.SegOutput` and ``target`` a ``(B, H, W)`` long label map at
image resolution (``ignore_index`` marks unlabelled pixels). Losses are registered by name in
:data:`LOSSES` and built with :func:`build_loss`.

This package depends on torch only (no ray / mlflow / hydra / omegaconf).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from torch import Tensor, nn

from seglab.errors import ConfigError
from seglab.registry import Registry

LOSSES = Registry("loss")


def register_loss(name: Optional[str] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a loss factory (usually the ``nn.Module`` class) under ``name``."""
    return LOSSES.register(name)


def accepted_kwargs(factory: Callable[..., Any]) -> Optional[List[str]]:
    """Keyword names ``factory`` accepts, or ``None`` if it takes ``**kwargs``."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.name != "self"
    ]


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name`` with ``kwargs``.

    Raises :class:`~seglab.errors.ConfigError` for an unknown name (listing the valid names) and
    for an option the loss does not take (listing its options, as ``loss.<option>``).
    """
    factory = LOSSES.get(name)
    accepted = accepted_kwargs(factory)
    if accepted is not None:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            valid = ", ".join(f"loss.{k}" for k in accepted) or "(none)"
            raise ConfigError(
                f"loss '{name}' has no option {', '.join('loss.' + k for k in unknown)}; valid options: {valid}"
            )
    return factory(**kwargs)


def list_losses() -> List[str]:
    """The registered loss names, sorted."""
    return LOSSES.list()


@dataclass
class LossOutput:
    """What a loss returns.

    Attributes:
        total: scalar tensor to call ``backward()`` on (carries the graph).
        terms: detached scalar tensors to log, one per reported term; always has ``"loss"``
            (== ``total``).
    """

    total: Tensor
    terms: Dict[str, Tensor] = field(default_factory=dict)


# Import the implementations so that they register themselves (after the names above exist).
from seglab.losses import ce as _ce  # noqa: E402,F401
from seglab.losses import ohem as _ohem  # noqa: E402,F401
from seglab.losses import ovenet as _ovenet  # noqa: E402,F401
from seglab.losses import semeda as _semeda  # noqa: E402,F401
from seglab.losses import phgmm as _phgmm  # noqa: E402,F401
from seglab.losses.ce import CITYSCAPES_CLASS_WEIGHTS, CrossEntropyLoss, pixel_cross_entropy  # noqa: E402
from seglab.losses.ohem import OhemCrossEntropyLoss, ohem_cross_entropy  # noqa: E402
from seglab.losses.ovenet import OVeNetLoss, confidence_loss, confidence_targets  # noqa: E402
from seglab.losses.semeda import (SemedaEdgeNet, SemedaLoss, SobelLoss, edge_f1, edge_targets,  # noqa: E402
                                  load_edge_net, one_hot_masks, pretrain_edge_net, save_edge_net)
from seglab.losses.phgmm import PHGMMLoss, gaussian_kl_standard, gmm_kl, soft_iou_loss  # noqa: E402

__all__ = [
    "LOSSES",
    "LossOutput",
    "register_loss",
    "build_loss",
    "list_losses",
    "CITYSCAPES_CLASS_WEIGHTS",
    "CrossEntropyLoss",
    "pixel_cross_entropy",
    "OhemCrossEntropyLoss",
    "ohem_cross_entropy",
    "OVeNetLoss",
    "confidence_loss",
    "confidence_targets",
    "SemedaEdgeNet",
    "SemedaLoss",
    "SobelLoss",
    "edge_f1",
    "edge_targets",
    "load_edge_net",
    "one_hot_masks",
    "pretrain_edge_net",
    "save_edge_net",
    "PHGMMLoss",
    "gmm_kl",
    "gaussian_kl_standard",
    "soft_iou_loss",
]
