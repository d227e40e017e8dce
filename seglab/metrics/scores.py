"""Scores beyond IoU: per-class precision / recall / F1 from a confusion matrix, the streaming
E-measure, and HELEN's per-part F1 (spec A4, B4, C).

The streaming metrics share :class:`~seglab.metrics.ConfusionMatrix`'s input handling
(:func:`~seglab.metrics.confusion.prepare_batch`, :func:`~seglab.metrics.confusion.all_reduce_sum`).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from seglab.metrics.confusion import all_reduce_sum, class_subset, prepare_batch

__all__ = ["precision_recall_f1", "EMeasure", "emeasure_from_confusion", "helen_part_f1", "prepare_batch", "all_reduce_sum"]

EPS = float(np.finfo(np.float64).eps)
"""MATLAB's ``eps`` (2.2e-16), the constant of Fan et al.'s reference E-measure code."""

HELEN_PARTS: Dict[str, Tuple[str, ...]] = {
    "brows": ("left eyebrow", "right eyebrow"),
    "eyes": ("left eye", "right eye"),
    "mouth": ("upper lip", "inner mouth", "lower lip"),
}
"""HELEN part groups, by the class names of :data:`seglab.datasets.helen.CLASS_NAMES`."""


def precision_recall_f1(matrix: Union[Tensor, np.ndarray],
                        classes: Optional[Sequence[int]] = None) -> Dict[str, Union[float, List[float]]]:
    """Per-class precision, recall and F1 (= Dice) from a ``(C, C)`` confusion matrix (rows =
    label, cols = prediction), in float64 (spec B4 eqs. 9-10, C).

    * ``precision_c = TP / (TP + FP)``, ``recall_c = TP / (TP + FN)``,
      ``f1_c = 2 TP / (2 TP + FP + FN)``, so ``f1_c = 2 IoU_c / (1 + IoU_c)``.
    * A class absent from both label and prediction (``TP + FP + FN == 0``) gets NaN in all three
      lists and is left out of the means, as ``ConfusionMatrix`` does for IoU.
    * A class present in only one of them gets 0 for its undefined ratio (precision of a class
      never predicted, recall of a class never labelled): it counts as a miss, like its IoU of 0.
      This is scikit-learn's ``zero_division=0`` over the classes seen in label or prediction.

    Args:
        matrix: ``(C, C)`` counts.
        classes: class ids the means run over (None = all C); see ``ConfusionMatrix.compute``.

    Returns:
        ``precision``, ``recall``, ``f1`` (lists of C floats) and ``mean_precision``,
        ``mean_recall``, ``mean_f1`` (NaN-excluding means over ``classes``; NaN if none is left).
    """
    m = _square(matrix)
    keep = class_subset(classes, m.shape[0])
    tp = m.diagonal()
    label_count = m.sum(dim=1)
    pred_count = m.sum(dim=0)
    seen = label_count + pred_count > 0
    nan = torch.tensor(math.nan, dtype=torch.float64)
    scores = {
        "precision": torch.where(seen, _ratio(tp, pred_count), nan),
        "recall": torch.where(seen, _ratio(tp, label_count), nan),
        "f1": torch.where(seen, _ratio(2 * tp, label_count + pred_count), nan),
    }
    out: Dict[str, Union[float, List[float]]] = {k: v.tolist() for k, v in scores.items()}
    out.update({f"mean_{k}": float(torch.nanmean(v[keep])) for k, v in scores.items()})
    return out


def _square(matrix: Union[Tensor, np.ndarray]) -> Tensor:
    m = torch.as_tensor(matrix).detach().to("cpu", torch.float64)
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be (C, C); got shape {tuple(m.shape)}")
    return m


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with 0 where ``den == 0``."""
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))


class EMeasure:
    """Streaming per-class E-measure (enhanced-alignment measure, Fan et al., IJCAI 2018; spec A4).

    For one image and class c, over its N non-ignored pixels, with the binary maps FM = (pred == c)
    and GT = (label == c), exactly as Fan et al.'s reference code (``Emeasure.m``):

    * ``phi_X = X - mean(X)``; ``xi = 2 phi_GT phi_FM / (phi_GT^2 + phi_FM^2 + eps)``;
      enhanced matrix ``(1 + xi)^2 / 4``;
    * special cases: GT all 0 -> enhanced matrix ``1 - FM``; GT all 1 -> ``FM``;
    * ``E = sum(enhanced matrix) / (N - 1 + eps)`` with ``eps`` = :data:`EPS` (so a perfect
      prediction scores ``N / (N - 1)``, slightly above 1, as in the reference code).

    The maps are binary, so the enhanced matrix takes one value per (GT, FM) pixel type and ``E`` is
    evaluated from the image's ``(C, C)`` confusion counts: no per-pixel float arrays are built.

    Aggregation (spec A4 [proposal]): the per-class score is the mean of E over the images where c
    appears in the label or the prediction (non-ignored pixels); ``mean`` averages the classes
    (of :meth:`compute`'s ``classes``, default all) that have at least one such image. Images with
    fewer than 2 non-ignored pixels are skipped (``N - 1 + eps`` would be ~eps).

    Args:
        num_classes: C.
        ignore_index: label id of pixels left out (their prediction is irrelevant).
        device: where the running sums live (see ``ConfusionMatrix``; float64 is needed).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: Optional[Union[str, torch.device]] = None):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = int(ignore_index)
        self.score_sum = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.image_count = torch.zeros(num_classes, dtype=torch.int64, device=device)

    @property
    def device(self) -> torch.device:
        return self.score_sum.device

    def reset(self) -> None:
        """Zero the running sums."""
        self.score_sum.zero_()
        self.image_count.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: ``pred`` ``(B, H, W)`` ids or ``(B, C, h, w)`` logits, ``target``
        ``(B, H, W)``; validated and resized as in ``ConfusionMatrix.update`` (same errors)."""
        c = self.num_classes
        pred, target, valid = prepare_batch(pred, target, c, self.ignore_index, self.device)
        image = torch.arange(target.shape[0], device=self.device).view(-1, 1, 1).expand_as(target)
        key = (image * c + target) * c + pred
        counts = torch.bincount(key[valid], minlength=target.shape[0] * c * c).view(-1, c, c)
        score, scored = emeasure_from_confusion(counts)
        self.score_sum += torch.where(scored, score, torch.zeros_like(score)).sum(dim=0)
        self.image_count += scored.sum(dim=0)

    def all_reduce(self) -> None:
        """Sum the running sums and image counts over all ``torch.distributed`` ranks (in place);
        a no-op when not initialised. Every rank must call it."""
        all_reduce_sum(self.score_sum, self.image_count)

    def compute(self, classes: Optional[Sequence[int]] = None) -> Dict[str, Union[float, List[float], List[int]]]:
        """``per_class`` (C floats, NaN for a class seen in no image), ``mean`` (over ``classes``
        except those NaN ones; NaN if none is left) and ``image_count`` (C ints: images that scored
        each class).

        Args:
            classes: class ids ``mean`` averages over (a data set's reported classes, e.g. without
                its background); None = all C. ``per_class`` and ``image_count`` do not depend on it.

        Raises:
            ValueError: ``classes`` is empty, repeats an id, or holds an id outside ``[0, C)``.
        """
        keep = class_subset(classes, self.num_classes)
        total = self.score_sum.detach().cpu()
        count = self.image_count.detach().cpu()
        per_class = torch.where(count > 0, total / count.clamp_min(1), torch.tensor(math.nan, dtype=torch.float64))
        return {"per_class": per_class.tolist(), "mean": float(torch.nanmean(per_class[keep])),
                "image_count": count.tolist()}


def emeasure_from_confusion(counts: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-image, per-class E-measure (definition: :class:`EMeasure`) from per-image confusions.

    Args:
        counts: ``(B, C, C)`` int counts of one image each (rows = label, cols = prediction).

    Returns:
        ``(score, scored)``, two ``(B, C)`` tensors: float64 E values and the bool mask of the
        (image, class) pairs that count (class in label or prediction, image with >= 2 pixels).
    """
    m = counts.to(torch.float64)
    n = m.sum(dim=(1, 2)).unsqueeze(1)  # (B, 1)
    n_safe = n.clamp_min(1)
    tp = m.diagonal(dim1=1, dim2=2)
    gt = m.sum(dim=2)  # label == c (GT = 1)
    fm = m.sum(dim=1)  # pred == c (FM = 1)
    pixels = {(1, 1): tp, (1, 0): gt - tp, (0, 1): fm - tp, (0, 0): n - gt - fm + tp}
    total = torch.zeros_like(tp)
    for (g, f), number in pixels.items():
        phi_g = g - gt / n_safe
        phi_f = f - fm / n_safe
        xi = 2 * phi_g * phi_f / (phi_g * phi_g + phi_f * phi_f + EPS)
        total += number * (1 + xi) ** 2 / 4
    total = torch.where(gt == 0, n - fm, total)  # GT all 0: sum(1 - FM)
    total = torch.where(gt == n, fm, total)  # GT all 1: sum(FM)
    scored = (gt + fm > 0) & (n >= 2)
    return total / (n - 1 + EPS), scored


def helen_part_f1(matrix: Union[Tensor, np.ndarray], class_names: Sequence[str],
                  include_skin: bool = True) -> Dict[str, float]:
    """HELEN per-part F1 (SEMEDA Table 6; face-parsing convention, spec A4 [proposal]).

    Each part merges its classes into one "part vs rest" binary problem (confusion rows and
    columns summed), so e.g. a left-eye pixel predicted as right eye is a hit for ``eyes``:

    * ``brows`` = left + right eyebrow; ``eyes`` = left + right eye;
      ``mouth`` = upper lip + inner mouth + lower lip;
    * ``overall`` = every face part except background and hair: brows, eyes, nose, mouth, and
      skin when ``include_skin`` (the spec's reading; False gives the skin-free variant).
      Confusions between two face parts are hits for ``overall``.

    ``F1 = 2 TP / (2 TP + FP + FN)`` of the merged problem; NaN if the part is neither labelled nor
    predicted.

    Args:
        matrix: ``(C, C)`` counts (rows = label, cols = prediction).
        class_names: the C class names, matched case-insensitively against those of
            :data:`seglab.datasets.helen.CLASS_NAMES`.
        include_skin: whether ``overall`` includes skin.

    Raises:
        ValueError: a needed class name is missing (the message names it), or the matrix is not
            ``(len(class_names), len(class_names))``.
    """
    m = _square(matrix)
    if m.shape[0] != len(class_names):
        raise ValueError(f"matrix is {tuple(m.shape)} but {len(class_names)} class names were given")
    groups = dict(HELEN_PARTS)
    groups["overall"] = (("skin",) if include_skin else ()) + HELEN_PARTS["brows"] + HELEN_PARTS["eyes"] \
        + ("nose",) + HELEN_PARTS["mouth"]
    index = {str(name).strip().lower(): i for i, name in enumerate(class_names)}
    out = {}
    for part, names in groups.items():
        missing = [name for name in names if name not in index]
        if missing:
            raise ValueError(f"class name {missing[0]!r} (needed for {part!r}) not in class_names {list(class_names)}")
        out[part] = _group_f1(m, torch.tensor([index[name] for name in names]))
    return out


def _group_f1(m: Tensor, group: Tensor) -> float:
    """F1 of "label in group" vs "prediction in group" on the ``(C, C)`` float64 matrix ``m``."""
    tp = m[group][:, group].sum()
    denominator = m[group].sum() + m[:, group].sum()  # (TP + FN) + (TP + FP)
    return float(2 * tp / denominator) if denominator > 0 else math.nan
