"""Evaluators: the shape of detectron2's ``DatasetEvaluator``.

An evaluator sees every evaluation batch (:meth:`Evaluator.process`), sums its state over the DDP
workers (:meth:`Evaluator.all_reduce`, called by every rank in the same order) and returns flat,
already-named metrics (:meth:`Evaluator.metrics`, e.g. ``{"val_miou": 0.61}``) and, on rank 0,
optional pictures (:meth:`Evaluator.pictures`, name -> ``(H, W, 3)`` uint8).

Every rank creates the same evaluators with the same state shapes up front, so the all-reduce
sequence is identical on every rank even when a rank gets no sample (a split smaller than the
number of workers) or a sample group is missing from a rank's shard. Nothing here knows a method:
the methods (:mod:`seglab.platform.methods`) build their evaluators from these parts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from seglab.metrics import ConfusionMatrix
from seglab.platform.comm import all_reduce_sum

@dataclass
class EvalContext:
    """What an evaluator or a method's picture may need to know about the run being validated."""

    num_classes: int
    ignore_index: int
    class_names: List[str]
    palette: List[Sequence[int]]
    device: torch.device
    run: Any = None  # the RunConfig
    criterion: Optional[nn.Module] = None  # the run's loss (SEMEDA reads its edge net from it)
    groups: Optional[List[str]] = None  # per-sample groups of the validation set (ACDC conditions)
    miou_classes: Optional[List[int]] = None  # classes the reported mean covers (None: all)
    resources: Dict[str, Any] = field(default_factory=dict)  # what the sweep's stages produced
    mean: Sequence[float] = (0.485, 0.456, 0.406)
    std: Sequence[float] = (0.229, 0.224, 0.225)


@dataclass
class EvalBatch:
    """One validation batch: ``images (B, 3, H, W)``, ``labels (B, H, W)``, the data-set
    ``indices`` of its samples, the model's ``output`` and the (unwrapped, eval-mode) ``model``."""

    images: Tensor
    labels: Tensor
    indices: List[int]
    output: Any
    model: nn.Module


class Evaluator:
    """Base class: override :meth:`process`, :meth:`all_reduce` and :meth:`metrics`."""

    def process(self, batch: EvalBatch) -> None:
        raise NotImplementedError

    def all_reduce(self) -> None:
        """Sum the state over DDP ranks (every rank calls it, in the same order)."""

    def metrics(self) -> Dict[str, float]:
        raise NotImplementedError

    def pictures(self) -> Dict[str, np.ndarray]:
        """Rank 0, after :meth:`all_reduce`: name -> ``(H, W, 3)`` uint8 RGB picture."""
        return {}


class PredictionEvaluator(Evaluator):
    """Confusion matrices of extra class maps of the model output (``attribute -> metric name``),
    e.g. OVeNet's ``initial_logits -> val_miou_initial``. A map absent from every batch on every
    rank logs nothing; ``skip_if_main=True`` skips a map that *is* ``output.logits``."""

    def __init__(self, ctx: EvalContext, maps: Dict[str, str], skip_if_main: Sequence[str] = ()) -> None:
        self.ctx, self.maps, self.skip_if_main = ctx, dict(maps), set(skip_if_main)
        self.matrices = {a: ConfusionMatrix(ctx.num_classes, ctx.ignore_index, device=ctx.device) for a in self.maps}
        self.seen = torch.zeros(len(self.maps), dtype=torch.float64, device=ctx.device)

    def process(self, batch: EvalBatch) -> None:
        for j, attribute in enumerate(self.maps):
            logits = getattr(batch.output, attribute, None)
            if logits is None or (attribute in self.skip_if_main and logits is batch.output.logits):
                continue
            self.matrices[attribute].update(logits, batch.labels)
            self.seen[j] += 1

    def all_reduce(self) -> None:
        for attribute in self.maps:
            self.matrices[attribute].all_reduce()
        all_reduce_sum(self.seen)

    def scores(self) -> Dict[str, float]:
        """attribute -> mIoU, for the maps some rank saw."""
        return {a: float(self.matrices[a].compute(classes=self.ctx.miou_classes)["miou"])
                for j, a in enumerate(self.maps) if self.seen[j] > 0}

    def metrics(self) -> Dict[str, float]:
        return {self.maps[a]: v for a, v in self.scores().items()}


class MeanEvaluator(Evaluator):
    """Weighted means of per-batch scalars: ``fn(batch) -> ({name: mean}, weight)`` is summed as
    ``mean * weight`` and divided by the total weight over all ranks (a method's diagnostics)."""

    def __init__(self, ctx: EvalContext, names: Sequence[str], fn) -> None:
        self.names, self.fn = list(names), fn
        self.sums = torch.zeros(len(self.names) + 1, dtype=torch.float64, device=ctx.device)

    def process(self, batch: EvalBatch) -> None:
        values = self.fn(batch)
        if values is None:
            return
        means, weight = values
        self.sums += torch.tensor([means[n] * weight for n in self.names] + [weight], dtype=torch.float64,
                                  device=self.sums.device)

    def all_reduce(self) -> None:
        all_reduce_sum(self.sums)

    def metrics(self) -> Dict[str, float]:
        if self.sums[-1] <= 0:
            return {}
        return {n: (self.sums[j] / self.sums[-1]).item() for j, n in enumerate(self.names)}
