"""Streaming confusion matrix and the segmentation scores derived from it."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor


class ConfusionMatrix:
    """A ``(C, C)`` int64 confusion matrix accumulated over batches (rows = label, cols = prediction).

    ``matrix[t, p]`` counts the non-ignored pixels with label ``t`` predicted as ``p``; it is updated
    with ``bincount(target * C + pred, minlength=C*C)`` over the valid pixels.

    Score conventions (:meth:`compute`, all computed in float64):

    * ``per_class_iou[c] = TP / (TP + FP + FN)``; a class with ``TP + FP + FN == 0`` (absent from
      both the prediction and the label) gets NaN and is excluded from ``miou`` (the mean of the
      non-NaN IoUs). A class predicted but never in the label counts, with IoU 0.
    * ``per_class_acc[c] = TP / (number of label-c pixels)``; NaN for classes absent from the label;
      ``mean_acc`` averages over the classes present in the label.
    * ``pixel_acc = trace / sum`` over the non-ignored pixels.
    * Every score is NaN if no pixel was counted.

    Args:
        num_classes: C.
        ignore_index: label id of pixels not counted (their prediction is irrelevant).
        device: where the matrix lives; with the NCCL backend, :meth:`all_reduce` needs (or
            temporarily copies to) a CUDA tensor.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: Optional[Union[str, torch.device]] = None):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = int(ignore_index)
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    def reset(self) -> None:
        """Zero the matrix."""
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch.

        Args:
            pred: ``(B, H, W)`` class ids, or ``(B, C, h, w)`` logits/scores; logits are bilinearly
                resized (``align_corners=False``) to the target size, then argmax'ed over C.
            target: ``(B, H, W)`` labels in ``[0, C)`` or ``ignore_index``.

        Raises:
            ValueError: bad shapes, or a label (or predicted id) outside ``[0, C)`` that is not the
                ignore index; the message names the bad value(s).
        """
        c = self.num_classes
        if target.dim() != 3:
            raise ValueError(f"target must be (B, H, W); got shape {tuple(target.shape)}")
        if pred.dim() == 4:
            if pred.shape[1] != c:
                raise ValueError(f"logits have {pred.shape[1]} channels but num_classes={c}")
            if tuple(pred.shape[-2:]) != tuple(target.shape[-2:]):
                pred = F.interpolate(pred.float(), size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False)
            pred = pred.argmax(dim=1)
        elif pred.dtype.is_floating_point:
            raise ValueError(f"a (B, H, W) prediction must hold integer class ids; got dtype {pred.dtype}")
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}"
            )
        pred = pred.to(self.device, torch.int64)
        target = target.to(self.device, torch.int64)

        valid = target != self.ignore_index
        t = target[valid]
        p = pred[valid]
        bad_t = (t < 0) | (t >= c)
        if bool(bad_t.any()):
            values = torch.unique(t[bad_t]).tolist()
            raise ValueError(
                f"label value(s) {values[:10]} outside [0, {c}) and not ignore_index={self.ignore_index}"
            )
        bad_p = (p < 0) | (p >= c)
        if bool(bad_p.any()):
            values = torch.unique(p[bad_p]).tolist()
            raise ValueError(f"predicted class id(s) {values[:10]} outside [0, {c})")
        self.matrix += torch.bincount(t * c + p, minlength=c * c).view(c, c)

    @torch.no_grad()
    def all_reduce(self) -> None:
        """Sum the matrix over all ``torch.distributed`` ranks (in place); a no-op when
        ``torch.distributed`` is unavailable or not initialised. Every rank must call it."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        if dist.get_backend() == "nccl" and not self.matrix.is_cuda:
            buf = self.matrix.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            self.matrix.copy_(buf.cpu())
        else:
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def compute(self) -> Dict[str, Union[float, List[float]]]:
        """Scores from the current matrix: ``miou``, ``pixel_acc``, ``mean_acc`` (floats) and
        ``per_class_iou``, ``per_class_acc`` (lists of C floats, NaN where undefined)."""
        m = self.matrix.detach().to("cpu", torch.float64)
        tp = m.diagonal()
        label_count = m.sum(dim=1)  # TP + FN
        pred_count = m.sum(dim=0)  # TP + FP
        union = label_count + pred_count - tp  # TP + FP + FN
        nan = torch.tensor(math.nan, dtype=torch.float64)
        iou = torch.where(union > 0, tp / union.clamp_min(1), nan)
        acc = torch.where(label_count > 0, tp / label_count.clamp_min(1), nan)
        total = m.sum()
        return {
            "miou": _nanmean(iou),
            "pixel_acc": float(tp.sum() / total) if total > 0 else math.nan,
            "mean_acc": _nanmean(acc),
            "per_class_iou": iou.tolist(),
            "per_class_acc": acc.tolist(),
        }

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pixels={int(self.matrix.sum())})"
        )


def _nanmean(x: Tensor) -> float:
    keep = ~torch.isnan(x)
    return float(x[keep].mean()) if bool(keep.any()) else math.nan
