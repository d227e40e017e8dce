"""The evaluators every run (or a method's sweep) uses: the confusion matrix of the deployed map
(:class:`SegmentationEvaluator`), the trimap (:class:`TrimapEvaluator`) and F1 / precision / recall /
E-measure (:class:`ScoresEvaluator`)."""
from __future__ import annotations

import math
from typing import Any, Dict, Sequence

import numpy as np
import torch

from seglab.metrics import ConfusionMatrix
from seglab.platform.evaluation.evaluator import EvalBatch, EvalContext, Evaluator

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


class TrimapEvaluator(Evaluator):
    """Boundary-band scores against the band width w (:class:`seglab.metrics.Trimap`):
    ``val_trimap_miou_w<w>`` (mIoU inside the band of width w around the ground-truth edges),
    ``val_nonboundary_miou_w<w>`` (mIoU of the other pixels), both over the data set's reported
    classes (``ctx.miou_classes``) as ``val_miou``, and ``val_trimap_error_w<w>`` (pixel error
    inside the band, PHGMM's Fig. 7); picture ``trimap``: both mIoUs and the error vs w."""

    def __init__(self, ctx: EvalContext, widths: Sequence[int]) -> None:
        from seglab.metrics import Trimap

        self.classes = ctx.miou_classes
        self.trimap = Trimap(ctx.num_classes, tuple(widths), ignore_index=ctx.ignore_index, device=ctx.device)
        self.result: Dict[int, Dict[str, Any]] = {}

    def process(self, batch: EvalBatch) -> None:
        self.trimap.update(batch.output.logits, batch.labels)

    def all_reduce(self) -> None:
        self.trimap.all_reduce()

    def metrics(self) -> Dict[str, float]:
        self.result = self.trimap.compute(classes=self.classes)
        out: Dict[str, float] = {}
        for w, r in sorted(self.result.items()):
            out[f"val_trimap_miou_w{w}"] = r["boundary_miou"]
            out[f"val_nonboundary_miou_w{w}"] = r["nonboundary_miou"]
            out[f"val_trimap_error_w{w}"] = r["boundary_pixel_error"]
        return out

    def pictures(self) -> Dict[str, np.ndarray]:
        from seglab.platform.viz.charts import trimap_curve

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
            em = self.emeasure.compute(classes=self.ctx.miou_classes)
            out["val_emeasure"] = em["mean"]
            out.update({f"val_emeasure_{n}": v for n, v in zip(names, em["per_class"]) if not math.isnan(v)})
        try:
            parts = helen_part_f1(self.matrix.matrix, self.ctx.class_names)
        except ValueError:  # not HELEN's classes
            parts = {}
        out.update({f"val_f1_{part}": v for part, v in parts.items()})
        return out
