"""Validation as a list of evaluators (the shape of detectron2's ``DatasetEvaluator``).

An evaluator sees every validation batch (:meth:`Evaluator.process`), sums its state over the DDP
workers (:meth:`Evaluator.all_reduce`, called by every rank in the same order) and returns flat,
already-named metrics (:meth:`Evaluator.metrics`, e.g. ``{"val_miou": 0.61}``) and, on rank 0,
optional pictures (:meth:`Evaluator.pictures`, name -> ``(H, W, 3)`` uint8). The train loop builds
the list once per validation -- :class:`SegmentationEvaluator` for every run plus what the run's
method (and its sweep's method) add -- and :func:`evaluate` drives it. Nothing here knows a method.

Every rank creates the same evaluators with the same state shapes up front, so the all-reduce
sequence is identical on every rank even when a rank gets no validation sample (a validation
set smaller than the number of workers) or a sample group is missing from a rank's shard.

Bad samples (``dataset.on_bad_sample=skip``) are left out of evaluation, not replaced: the shards
read them with :func:`seglab.datasets.eval_items.evaluation_item`, the loaders batch with
:func:`~seglab.datasets.eval_items.collate_evaluation`, and :func:`evaluate` reports how many it
left out as ``val_skipped_samples`` (summed over the ranks; absent when none), which the report
split's scores carry as ``test_skipped_samples`` / ``final_test_skipped_samples``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from seglab.datasets.eval_items import evaluation_item
from seglab.metrics import ConfusionMatrix
from seglab.metrics.confusion import all_reduce_sum as _all_reduce


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over the DDP workers in place and return it (see :func:`seglab.metrics.confusion.all_reduce_sum`)."""
    _all_reduce(t)
    return t


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


class SegmentationEvaluator(Evaluator):
    """Confusion matrix of ``output.logits``: ``val_miou``, ``val_pixel_acc``, ``val_mean_acc``,
    ``val_iou_<class>`` and, for data sets with sample groups, ``val_miou_<group>``."""

    def __init__(self, ctx: EvalContext) -> None:
        self.ctx = ctx
        self.matrix = ConfusionMatrix(ctx.num_classes, ctx.ignore_index, device=ctx.device)
        names = sorted(set(ctx.groups)) if ctx.groups else []
        self.group_matrices = {g: ConfusionMatrix(ctx.num_classes, ctx.ignore_index, device=ctx.device)
                               for g in names}
        self.scores: Dict[str, Any] = {}

    def process(self, batch: EvalBatch) -> None:
        logits = batch.output.logits
        self.matrix.update(logits, batch.labels)
        groups = self.ctx.groups
        if groups is None:
            return
        for g, cm in self.group_matrices.items():
            rows = torch.tensor([groups[int(i)] == g for i in batch.indices], device=logits.device)
            if bool(rows.any()):
                cm.update(logits[rows], batch.labels[rows])

    def all_reduce(self) -> None:
        self.matrix.all_reduce()
        for g in sorted(self.group_matrices):
            self.group_matrices[g].all_reduce()

    def metrics(self) -> Dict[str, float]:
        self.scores = self.matrix.compute(classes=self.ctx.miou_classes)
        out = {"val_miou": self.scores["miou"], "val_pixel_acc": self.scores["pixel_acc"],
               "val_mean_acc": self.scores["mean_acc"]}
        for g, cm in sorted(self.group_matrices.items()):
            out[f"val_miou_{g.replace(' ', '_')}"] = cm.compute(classes=self.ctx.miou_classes)["miou"]
        for name, iou in zip(self.ctx.class_names, self.scores["per_class_iou"]):
            if not math.isnan(iou):
                out[f"val_iou_{name.replace(' ', '_')}"] = iou
        return out


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


class IndexedSubset(torch.utils.data.Dataset):
    """``(image, label, index)`` for a subset of ``dataset`` (index into the full data set), read with
    :func:`~seglab.datasets.eval_items.evaluation_item`: a bad sample that ``on_bad_sample=skip``
    leaves out is ``(None, None, index)``, never another sample; batch with ``collate_evaluation``."""

    def __init__(self, dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        item = evaluation_item(self.dataset, self.indices[i])
        image, label = (None, None) if item is None else item
        return image, label, self.indices[i]


def validation_shard(dataset, rank: int, world: int) -> IndexedSubset:
    """Rank ``rank``'s share of an evaluation split: samples ``rank, rank + world, ...``, without
    the padding DistributedSampler adds (a repeated sample would bias the scores); a rank may get
    none when the split is smaller than the number of workers."""
    return IndexedSubset(dataset, range(rank, len(dataset), world))


def evaluate(model: nn.Module, loader, evaluators: List[Evaluator], device: torch.device,
             forward=None) -> Dict[str, float]:
    """Run ``model`` over ``loader`` (batches ``(images, labels, indices)``, or
    :func:`~seglab.datasets.eval_items.collate_evaluation`'s ``(images, labels, indices, skipped)``),
    feed every evaluator, all-reduce them in order and return their merged metrics, plus
    ``val_skipped_samples`` (bad samples left out, summed over the DDP ranks) when it is above 0.
    ``forward(model, images)`` defaults to ``model(images)`` (no labels: evaluation never needs them)."""
    from seglab.platform.checkpoint import unwrap

    model.eval()
    skipped = torch.zeros(1, dtype=torch.float64)
    with torch.no_grad():
        for images, labels, indices, *rest in loader:
            skipped += float(rest[0]) if rest else 0.0
            if images is None:  # every sample of the batch was bad
                continue
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            out = forward(model, images) if forward else model(images)
            batch = EvalBatch(images, labels, [int(i) for i in indices], out, unwrap(model))
            for ev in evaluators:
                ev.process(batch)
    metrics: Dict[str, float] = {}
    for ev in evaluators:
        ev.all_reduce()
    if all_reduce_sum(skipped).item() > 0:  # every rank, after the evaluators (the same sequence everywhere)
        metrics["val_skipped_samples"] = skipped.item()
    for ev in evaluators:
        metrics.update(ev.metrics())
    return metrics


class TrimapEvaluator(Evaluator):
    """Boundary-band scores against the band width w (:class:`seglab.metrics.Trimap`):
    ``val_trimap_miou_w<w>`` (mIoU inside the band of width w around the ground-truth edges),
    ``val_nonboundary_miou_w<w>`` (mIoU of the other pixels) and ``val_trimap_error_w<w>`` (pixel
    error inside the band, PHGMM's Fig. 7); picture ``trimap``: both mIoUs and the error vs w."""

    def __init__(self, ctx: EvalContext, widths: Sequence[int]) -> None:
        from seglab.metrics import Trimap

        self.trimap = Trimap(ctx.num_classes, tuple(widths), ignore_index=ctx.ignore_index, device=ctx.device)
        self.result: Dict[int, Dict[str, Any]] = {}

    def process(self, batch: EvalBatch) -> None:
        self.trimap.update(batch.output.logits, batch.labels)

    def all_reduce(self) -> None:
        self.trimap.all_reduce()

    def metrics(self) -> Dict[str, float]:
        self.result = self.trimap.compute()
        out: Dict[str, float] = {}
        for w, r in sorted(self.result.items()):
            out[f"val_trimap_miou_w{w}"] = r["boundary_miou"]
            out[f"val_nonboundary_miou_w{w}"] = r["nonboundary_miou"]
            out[f"val_trimap_error_w{w}"] = r["boundary_pixel_error"]
        return out

    def pictures(self) -> Dict[str, np.ndarray]:
        from seglab.platform.plots import trimap_curve

        if not self.result:
            return {}
        return {"trimap": trimap_curve(self.result)}


class ScoresEvaluator(Evaluator):
    """Per-class and mean F1 (= Dice), precision and recall from the data-set-level confusion, the
    E-measure (Fan et al. 2018) per image and class, and, for HELEN's classes, the per-part F1:
    ``val_f1``, ``val_precision``, ``val_recall``, ``val_emeasure`` (means over the data set's reported
    classes), ``val_{f1,precision,recall,emeasure}_<class>``, ``val_f1_{brows,eyes,mouth,overall}``."""

    def __init__(self, ctx: EvalContext, emeasure: bool = True) -> None:
        from seglab.metrics import EMeasure

        self.ctx = ctx
        self.matrix = ConfusionMatrix(ctx.num_classes, ctx.ignore_index, device=ctx.device)
        self.emeasure = EMeasure(ctx.num_classes, ctx.ignore_index, device=ctx.device) if emeasure else None

    def process(self, batch: EvalBatch) -> None:
        self.matrix.update(batch.output.logits, batch.labels)
        if self.emeasure is not None:
            self.emeasure.update(batch.output.logits, batch.labels)

    def all_reduce(self) -> None:
        self.matrix.all_reduce()
        if self.emeasure is not None:
            self.emeasure.all_reduce()

    def metrics(self) -> Dict[str, float]:
        from seglab.metrics import helen_part_f1, precision_recall_f1

        scores = precision_recall_f1(self.matrix.matrix, classes=self.ctx.miou_classes)
        out = {"val_f1": scores["mean_f1"], "val_precision": scores["mean_precision"],
               "val_recall": scores["mean_recall"]}
        names = [n.replace(" ", "_") for n in self.ctx.class_names]
        for score in ("f1", "precision", "recall"):
            out.update({f"val_{score}_{n}": v for n, v in zip(names, scores[score]) if not math.isnan(v)})
        if self.emeasure is not None:
            em = self.emeasure.compute()
            out["val_emeasure"] = em["mean"]
            out.update({f"val_emeasure_{n}": v for n, v in zip(names, em["per_class"]) if not math.isnan(v)})
        try:
            parts = helen_part_f1(self.matrix.matrix, self.ctx.class_names)
        except ValueError:  # not HELEN's classes
            parts = {}
        out.update({f"val_f1_{part}": v for part, v in parts.items()})
        return out
