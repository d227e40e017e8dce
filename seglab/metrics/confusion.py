"""Streaming confusion matrix and the segmentation scores derived from it."""
from __future__ import annotations

import math
import operator
from typing import Dict, List, Optional, Sequence, Tuple, Union

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
        pred, target, valid = prepare_batch(pred, target, c, self.ignore_index, self.device)
        t, p = target[valid], pred[valid]
        self.matrix += torch.bincount(t * c + p, minlength=c * c).view(c, c)

    @torch.no_grad()
    def all_reduce(self) -> None:
        """Sum the matrix over all ``torch.distributed`` ranks (in place); a no-op when
        ``torch.distributed`` is unavailable or not initialised. Every rank must call it."""
        all_reduce_sum(self.matrix)

    def compute(self, classes: Optional[Sequence[int]] = None) -> Dict[str, Union[float, List[float]]]:
        """Scores from the current matrix: ``miou``, ``pixel_acc``, ``mean_acc`` (floats) and
        ``per_class_iou``, ``per_class_acc`` (lists of C floats, NaN where undefined).

        Args:
            classes: class ids over which ``miou`` and ``mean_acc`` are averaged (e.g. all but a
                background class that a data set leaves out of its reported mean); None = all C.
                The per-class lists and ``pixel_acc`` do not depend on it.

        Raises:
            ValueError: ``classes`` is empty, repeats an id, or holds an id outside ``[0, C)``.
        """
        keep = class_subset(classes, self.num_classes)
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
            "miou": _nanmean(iou[keep]),
            "pixel_acc": float(tp.sum() / total) if total > 0 else math.nan,
            "mean_acc": _nanmean(acc[keep]),
            "per_class_iou": iou.tolist(),
            "per_class_acc": acc.tolist(),
        }

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"pixels={int(self.matrix.sum())})"
        )


def class_subset(classes: Optional[Sequence[int]], num_classes: int) -> Tensor:
    """Validated class ids as an int64 index tensor; None -> all of ``[0, num_classes)``.

    Raises:
        ValueError: empty, repeated, non-integer or out-of-range ids (the message names them).
    """
    if classes is None:
        return torch.arange(num_classes)
    given = list(classes)
    try:
        ids = [operator.index(i) for i in given if not isinstance(i, bool)]
    except TypeError:
        ids = []
    if not ids or len(ids) != len(given):
        raise ValueError(f"classes must be a non-empty sequence of int class ids; got {classes!r}")
    bad = sorted({i for i in ids if not 0 <= i < num_classes})
    if bad:
        raise ValueError(f"classes {bad} outside [0, {num_classes})")
    if len(set(ids)) != len(ids):
        raise ValueError(f"classes repeats an id: {ids}")
    return torch.tensor(ids, dtype=torch.int64)


def _nanmean(x: Tensor) -> float:
    keep = ~torch.isnan(x)
    return float(x[keep].mean()) if bool(keep.any()) else math.nan


@torch.no_grad()
def prepare_batch(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int,
                  device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
    """Validate a batch exactly as ``ConfusionMatrix.update`` does and return ``(pred, target,
    valid)``, three ``(B, H, W)`` tensors on ``device``: int64 predicted ids, int64 labels and the
    bool mask ``target != ignore_index``.

    Args:
        pred: ``(B, H, W)`` class ids, or ``(B, C, h, w)`` logits/scores, bilinearly resized
            (``align_corners=False``) to the target size, then argmax'ed over C.
        target: ``(B, H, W)`` labels in ``[0, C)`` or ``ignore_index``.

    Raises:
        ValueError: bad shapes, or a label (or a predicted id at a non-ignored pixel) outside
            ``[0, C)`` that is not the ignore index; the message names the bad value(s).
    """
    c = num_classes
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
        raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
    pred = pred.to(device, torch.int64)
    target = target.to(device, torch.int64)
    valid = target != ignore_index
    _check_range(target[valid], c, f"label value(s) {{}} outside [0, {c}) and not ignore_index={ignore_index}")
    _check_range(pred[valid], c, f"predicted class id(s) {{}} outside [0, {c})")
    return pred, target, valid


def _check_range(ids: Tensor, num_classes: int, message: str) -> None:
    bad = (ids < 0) | (ids >= num_classes)
    if bool(bad.any()):
        raise ValueError(message.format(torch.unique(ids[bad]).tolist()[:10]))


@torch.no_grad()
def all_reduce_sum(*tensors: Tensor) -> None:
    """Sum each tensor over all ``torch.distributed`` ranks, in place; a no-op when
    ``torch.distributed`` is unavailable or not initialised. With NCCL, CPU tensors travel through
    a temporary CUDA copy. Every rank must call it with the same tensors (shapes, dtypes, order)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    for t in tensors:
        if dist.get_backend() == "nccl" and not t.is_cuda:
            buf = t.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            t.copy_(buf.cpu())
        else:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
