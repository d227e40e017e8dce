"""Semantic edges of a label map (the 8-neighbour rule shared by SEMEDA's edge ground truth and the
trimap metric), the trimap bands around them and the streaming :class:`Trimap` metric.

A pixel is an *edge* pixel when one of its 8 neighbours inside the image carries a different label
(SEMEDA paper, eq. above 7: E*_ij = 1 iff some (di, dj) in {-1, 0, 1}^2 \\ {(0, 0)} has
S*_{i+di, j+dj} != S*_ij). Both sides of a boundary are marked, so a boundary between two regions
is a band two pixels thick; border pixels compare only with neighbours inside the image; the void
label (``ignore_index``) is a label of its own, so the pixels on either side of a void band are
edges too (on VOC the void bands are the object outlines).

Trimap (SEMEDA S:327-346 and Fig. 4, PHGMM Fig. 7; spec A4): ``band_w`` = the pixels within Chebyshev
distance ``w - 1`` of an edge pixel (``w = 1``: the edges themselves); the boundary subset is
``band_w`` minus the void pixels, the non-boundary subset the other non-void pixels.
"""
from __future__ import annotations

import operator
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seglab.metrics.confusion import ConfusionMatrix, class_subset
from seglab.metrics.scores import all_reduce_sum, prepare_batch

__all__ = ["semantic_edges", "band", "Trimap", "DEFAULT_WIDTHS"]

DEFAULT_WIDTHS: Tuple[int, ...] = (1, 2, 3, 5, 7, 10, 15, 20)
"""Trimap widths of spec A4 (SEMEDA); PHGMM's Fig. 7 proposal adds 30 and 40."""


def semantic_edges(labels: Union[Tensor, np.ndarray], ignore_index: int = 255) -> Tensor:
    """``(H, W)`` or ``(B, H, W)`` integer labels -> bool tensor of the same shape, True on edges.

    ``ignore_index`` is accepted for symmetry with the metrics: void is simply one more label in
    the neighbour test (a void pixel next to a labelled one is an edge, and so is the labelled one).

    Computed as ``max3x3(labels) != min3x3(labels)`` with replicate padding (a padded value is
    always the pixel itself or one of its in-image neighbours, so the image border adds no edges).
    """
    del ignore_index  # void is a label of its own (see the module docstring)
    t = torch.as_tensor(labels)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"semantic_edges expects integer labels, got dtype {t.dtype}")
    if t.dim() not in (2, 3):
        raise ValueError(f"semantic_edges expects (H, W) or (B, H, W) labels, got shape {tuple(t.shape)}")
    unbatched = t.dim() == 2
    x = (t[None] if unbatched else t)[:, None].to(torch.float64)  # exact for any int32 label
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    high = F.max_pool2d(x, 3, stride=1)
    low = -F.max_pool2d(-x, 3, stride=1)
    edges = (high != low)[:, 0]
    return edges[0] if unbatched else edges


def band(edges: Union[Tensor, np.ndarray], width: int) -> Tensor:
    """``(H, W)`` or ``(B, H, W)`` bool edges -> bool band of the same shape: the pixels within
    Chebyshev distance ``width - 1`` of an edge pixel (``width == 1``: the edges themselves).

    A max-pool dilation with a ``(2 width - 1)``-square kernel, stride 1 and padding ``width - 1``
    (max-pool pads with -inf, so nothing wraps around the border), run as its two separable 1-D
    passes (rows, then columns) so that the cost grows with ``width``, not ``width^2``.

    Raises:
        ValueError: ``width`` is not a positive int, or ``edges`` is not bool ``(H, W)``/``(B, H, W)``.
    """
    _check_width(width, "width")
    e = torch.as_tensor(edges)
    if e.dtype != torch.bool or e.dim() not in (2, 3):
        raise ValueError(f"band expects bool (H, W) or (B, H, W) edges; got {e.dtype} {tuple(e.shape)}")
    unbatched = e.dim() == 2
    x = (e[None] if unbatched else e)[:, None].to(torch.float32)
    r, k = width - 1, 2 * width - 1
    x = F.max_pool2d(x, (k, 1), stride=1, padding=(r, 0))
    x = F.max_pool2d(x, (1, k), stride=1, padding=(0, r))
    out = x[:, 0] > 0
    return out[0] if unbatched else out


def _check_width(width: object, name: str) -> int:
    """``width`` as an int; ValueError naming ``name`` unless it is a positive int (bools refused)."""
    try:
        w = None if isinstance(width, bool) else operator.index(width)
    except TypeError:
        w = None
    if w is None or w < 1:
        raise ValueError(f"{name}: expected positive ints, got {width!r}")
    return w


def _check_widths(widths: Sequence[int]) -> Tuple[int, ...]:
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise ValueError(f"widths must be a non-empty sequence of positive ints; got {widths!r}")
    checked = tuple(_check_width(w, "widths") for w in widths)
    if not checked:
        raise ValueError("widths must be a non-empty sequence of positive ints; got an empty one")
    if len(set(checked)) != len(checked):
        raise ValueError(f"widths repeats a value: {checked}")
    return checked


class Trimap:
    """Streaming trimap metric: scores inside / outside a band of width ``w`` around the label's
    semantic edges, for several widths at once (SEMEDA boundary / non-boundary mIoU, PHGMM
    boundary pixel error).

    For each width ``w`` the band is ``band(semantic_edges(target), w)`` (void a label of its own in
    the edge test) restricted to non-void pixels; the other non-void pixels are the non-boundary
    subset. One int64 tensor ``counts`` of shape ``(len(widths), 2, C, C)`` holds a confusion
    matrix per width and subset (index 0 = boundary, 1 = non-boundary), updated with bincount.

    Args:
        num_classes: C.
        widths: distinct positive ints (default :data:`DEFAULT_WIDTHS`).
        ignore_index: label id of void pixels (never counted, but they do create edges).
        device: where ``counts`` lives (see ``ConfusionMatrix`` for NCCL).
    """

    def __init__(self, num_classes: int, widths: Sequence[int] = DEFAULT_WIDTHS, ignore_index: int = 255,
                 device: Optional[Union[str, torch.device]] = None):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
        self.num_classes = num_classes
        self.widths = _check_widths(widths)
        self.ignore_index = int(ignore_index)
        self.counts = torch.zeros(len(self.widths), 2, num_classes, num_classes, dtype=torch.int64, device=device)

    @property
    def device(self) -> torch.device:
        return self.counts.device

    def reset(self) -> None:
        """Zero the counts."""
        self.counts.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: ``pred`` ``(B, H, W)`` ids or ``(B, C, h, w)`` logits, ``target``
        ``(B, H, W)``; validated and resized as in ``ConfusionMatrix.update`` (same errors)."""
        c = self.num_classes
        pred, target, valid = prepare_batch(pred, target, c, self.ignore_index, self.device)
        code = target * c + pred  # meaningful on valid pixels only
        whole = torch.bincount(code[valid], minlength=c * c).view(c, c)
        edges = semantic_edges(target, self.ignore_index)
        for i, w in enumerate(self.widths):
            inside = torch.bincount(code[band(edges, w) & valid], minlength=c * c).view(c, c)
            self.counts[i, 0] += inside
            self.counts[i, 1] += whole - inside

    def all_reduce(self) -> None:
        """Sum the counts over all ``torch.distributed`` ranks (in place); a no-op when not
        initialised. Every rank must call it."""
        all_reduce_sum(self.counts)

    def compute(self, classes: Optional[Sequence[int]] = None) -> Dict[int, Dict[str, object]]:
        """``{w: scores}`` per width. Each ``scores`` holds, for ``s`` in ``boundary`` /
        ``nonboundary``: ``{s}_miou``, ``{s}_pixel_acc`` (floats), ``{s}_per_class_iou`` (C floats)
        and ``{s}_pixels`` (int), all with ``ConfusionMatrix.compute``'s conventions (a class absent
        from label and prediction in that subset is NaN and left out of the mean; NaN when the
        subset is empty), plus ``boundary_pixel_error`` = 1 - correct / valid inside the band.

        Args:
            classes: class ids the two mIoUs average over (a data set's reported classes, e.g.
                without its background); None = all C. The per-class lists, pixel accuracies,
                pixel counts and the pixel error do not depend on it.

        Raises:
            ValueError: ``classes`` is empty, repeats an id, or holds an id outside ``[0, C)``.
        """
        class_subset(classes, self.num_classes)  # fail before any work, with ConfusionMatrix's message
        return {w: self._scores(i, classes) for i, w in enumerate(self.widths)}

    def _scores(self, i: int, classes: Optional[Sequence[int]]) -> Dict[str, object]:
        out: Dict[str, object] = {}
        for j, subset in enumerate(("boundary", "nonboundary")):
            cm = ConfusionMatrix(self.num_classes, self.ignore_index)
            cm.matrix.copy_(self.counts[i, j])
            scores = cm.compute(classes=classes)
            out[f"{subset}_miou"] = scores["miou"]
            out[f"{subset}_pixel_acc"] = scores["pixel_acc"]
            out[f"{subset}_per_class_iou"] = scores["per_class_iou"]
            out[f"{subset}_pixels"] = int(cm.matrix.sum())
        out["boundary_pixel_error"] = 1.0 - out["boundary_pixel_acc"]  # NaN stays NaN
        return out
