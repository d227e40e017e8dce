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
        self._fast_counts = _FastCounter()

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
        pred, target = _ids_and_labels(pred, target, c, self.device, to_int64=False)
        counts = self._fast_counts(pred, target, c, self.ignore_index)
        if counts is None:  # unusual input (negative ignore index, out-of-range ids...): the checked path
            pred, target, valid = prepare_batch(pred, target, c, self.ignore_index, self.device)
            index = torch.where(valid, target * c + pred, c * c)
            counts = torch.bincount(index.view(-1), minlength=c * c + 1)[: c * c]
        self.matrix += counts.view(c, c)

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
    pred, target = _ids_and_labels(pred, target, c, device)
    valid = target != ignore_index
    bad_label = valid & ((target < 0) | (target >= c))
    if bool(bad_label.any()):
        raise ValueError(f"label value(s) {_first_values(target, bad_label)} outside [0, {c}) and not "
                         f"ignore_index={ignore_index}")
    bad_pred = valid & ((pred < 0) | (pred >= c))
    if bool(bad_pred.any()):
        raise ValueError(f"predicted class id(s) {_first_values(pred, bad_pred)} outside [0, {c})")
    return pred, target, valid


def _ids_and_labels(pred: Tensor, target: Tensor, num_classes: int, device: torch.device,
                    to_int64: bool = True) -> Tuple[Tensor, Tensor]:
    """Shape checks, logits -> ids; returns ``(pred, target)`` on ``device`` (as int64 unless
    ``to_int64`` is False: then in their own integer dtypes)."""
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
    if to_int64:
        return pred.to(device, torch.int64), target.to(device, torch.int64)
    return pred.to(device), target.to(device)


def _first_values(ids: Tensor, bad: Tensor) -> List[int]:
    return torch.unique(ids[bad]).tolist()[:10]


_CPU_CHUNK = 1 << 18  # pixels per pass on CPU: the int32 work buffers (1 MiB each) stay in cache


class _FastCounter:
    """The ``C*C`` counts of a batch in a few cache-sized passes, or None when the batch needs the
    checked path (nothing is counted then).

    Each chunk of pixels is copied into reused int32 buffers and binned as ``target * C + pred``
    over every pixel, ignored ones included: with ``pred`` in ``[0, C)`` and the ignore index
    ``I >= C``, ignored pixels land in the bins ``[I*C, I*C + C)`` beyond the matrix and any other
    label in ``[C, I)`` between the two, so one ``bincount`` also validates the labels. Compared
    with masking int64 tensors (``t[valid]``), this never allocates a full-size temporary and reads
    each input once (benchmarks/p6_confusion.py measures it against numpy).
    """

    def __init__(self) -> None:
        self._buffers: Optional[Tuple[Tensor, Tensor]] = None

    def __call__(self, pred: Tensor, target: Tensor, num_classes: int, ignore_index: int) -> Optional[Tensor]:
        c, ig = num_classes, ignore_index
        n = target.numel()
        if ig < c or n == 0 or (ig + 1) * c > 2**31 - 1:
            return None
        tf, pf = target.reshape(-1), pred.reshape(-1)
        chunk = n if tf.is_cuda else _CPU_CHUNK
        tbuf, pbuf = self._work_buffers(min(n, chunk), tf.device)
        bins = (ig + 1) * c
        counts = torch.zeros(bins, dtype=torch.int64, device=tf.device)
        for start in range(0, n, chunk):
            t, p = tf[start: start + chunk], pf[start: start + chunk]
            pmin, pmax = torch.aminmax(p)
            tmin, tmax = torch.aminmax(t)
            pmin, pmax, tmin, tmax = torch.stack([pmin, pmax, tmin, tmax]).tolist()
            if pmin < 0 or pmax >= c or tmin < 0 or tmax > ig:
                return None
            tb, pb = tbuf[: t.numel()], pbuf[: t.numel()]
            tb.copy_(t)  # exact: every value is in [0, ignore_index]
            pb.copy_(p)
            counts += torch.bincount(tb.mul_(c).add_(pb), minlength=bins)
        if bool(counts[c * c: ig * c].any()):  # labels in [C, ignore_index)
            return None
        return counts[: c * c]

    def _work_buffers(self, size: int, device: torch.device) -> Tuple[Tensor, Tensor]:
        bufs = self._buffers
        if bufs is None or bufs[0].numel() < size or bufs[0].device != device:
            bufs = self._buffers = tuple(torch.empty(size, dtype=torch.int32, device=device) for _ in range(2))
        return bufs


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
