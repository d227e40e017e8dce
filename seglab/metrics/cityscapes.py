"""Cityscapes' official pixel-level scores: class and category IoU, and the instance-weighted iIoU.

:class:`CityscapesScores` reproduces the maths of cityscapesScripts'
``evaluation/evalPixelLevelSemanticLabeling.py`` (the benchmark's evaluation), in Cityscapes
*labelIds* (0..33, ``seglab.datasets.cityscapes.CITYSCAPES_LABELS``), streaming over images:

* one ``34 x 34`` confusion matrix of (ground-truth labelId, predicted labelId) over every pixel;
  rows of labels that are not evaluated (trainId 255 / -1: ``unlabeled``, ``parking``,
  ``caravan``...) never count, whatever was predicted there;
* class IoU of an evaluated label l: ``TP = M[l, l]``, ``FN = sum(M[l, :]) - TP`` (a prediction of
  a non-evaluated label on an l pixel is a miss), ``FP = sum of M[k, l]`` over the evaluated rows
  ``k != l``; NaN when ``TP + FP + FN = 0``;
* category IoU: the same with the category's *evaluated* labelIds merged (``flat`` = road +
  sidewalk; ``void`` has none: NaN), FP over the evaluated rows of other categories;
* iIoU (instance-level IoU) of a class with instances: every ground-truth instance
  (``*_instanceIds``: ``labelId * 1000 + k``) weighs its pixels by ``avg_size(class) / size(instance)``
  (:data:`AVERAGE_INSTANCE_SIZE`, the benchmark's constants), so large and small objects count
  alike: ``iIoU = TPw / (TPw + FPu + FNw)``, ``TPw`` / ``FNw`` the weighted hits / misses of the
  class's instances, ``FPu`` the plain pixel FP of the class IoU;
* category iIoU for the categories whose every label has instances (``human``, ``vehicle``): an
  instance pixel is a hit when the prediction is *any* labelId of the category (``vehicle``'s
  include ``caravan`` and ``trailer``, which are not evaluated), FP as for the category IoU but
  over those labelIds;
* the means (``miou``, ``iiou``, ``category_miou``, ``category_iiou``) average the non-NaN scores.

Besides those, ``compute`` gives seglab's usual ``pixel_acc`` / ``mean_acc`` and per-class
precision / recall / F1 (:func:`~seglab.metrics.scores.precision_recall_f1`) over the 19 classes,
a prediction of a non-evaluated label counting as a miss.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from seglab.metrics.confusion import all_reduce_sum
from seglab.metrics.scores import precision_recall_f1

__all__ = ["CityscapesScores", "AVERAGE_INSTANCE_SIZE", "train_ids_to_label_ids"]

NUM_LABEL_IDS = 34  # labelIds 0..33 (the license plate, -1, is never drawn)

#: Average instance size in pixels per class over the Cityscapes training set: the constants of
#: cityscapesScripts' evaluation (``args.avgClassSize``), which weigh every instance in the iIoU.
AVERAGE_INSTANCE_SIZE: Dict[str, float] = {
    "person": 3462.4756337644, "rider": 3930.4788056518, "car": 12794.0202738185,
    "truck": 27855.1264367816, "bus": 35732.1511111111, "caravan": 36771.8241758242,
    "trailer": 16926.9763313609, "train": 67583.7075812274, "motorcycle": 6298.7200839748,
    "bicycle": 4672.3249222261,
}


def _labels():
    from seglab.datasets.cityscapes import CITYSCAPES_LABELS  # core -> core; lazy: keeps metrics light

    return [lab for lab in CITYSCAPES_LABELS if lab.id >= 0]


def _evaluated(lab) -> bool:
    return 0 <= lab.train_id < 255


def train_ids_to_label_ids() -> np.ndarray:
    """A lookup table train id (0..18) -> Cityscapes labelId (road 0 -> 7, ..., bicycle 18 -> 33);
    index 255 (ignore) maps to 0 (``unlabeled``), so an ignore prediction counts as a miss."""
    lut = np.zeros(256, dtype=np.int64)
    for lab in _labels():
        if _evaluated(lab):
            lut[lab.train_id] = lab.id
    return lut


class CityscapesScores:
    """Streaming cityscapesScripts scores (definitions: the module docstring).

    Call :meth:`update` once per image with labelId maps (or :meth:`update_train_ids` with a
    predicted train-id map), :meth:`all_reduce` on every DDP rank, then :meth:`compute`.

    Args:
        device: where the running sums live (float64 / int64 tensors).
    """

    def __init__(self, device: Optional[Union[str, torch.device]] = None) -> None:
        labels = _labels()
        self.labels = labels
        self.eval_ids = [lab.id for lab in labels if _evaluated(lab)]  # labelIds of the 19 classes, train-id order
        self.eval_ids.sort(key=lambda i: next(lab.train_id for lab in labels if lab.id == i))
        self.class_names = [next(lab.name for lab in labels if lab.id == i) for i in self.eval_ids]
        self.categories: List[str] = []
        for lab in labels:
            if lab.category not in self.categories:
                self.categories.append(lab.category)
        # categories whose every label (id >= 0) has instances: their category iIoU is defined
        self.instance_categories = [c for c in self.categories
                                    if all(lab.has_instances for lab in labels if lab.category == c)]
        self._category_of = {lab.id: lab.category for lab in labels}
        self.confusion = torch.zeros(NUM_LABEL_IDS, NUM_LABEL_IDS, dtype=torch.int64, device=device)
        self.class_weighted = torch.zeros(2, NUM_LABEL_IDS, dtype=torch.float64, device=device)  # TPw, FNw
        self.category_weighted = torch.zeros(2, len(self.instance_categories), dtype=torch.float64, device=device)
        self.images_without_instances = torch.zeros(1, dtype=torch.int64, device=device)
        self._avg_size = np.zeros(NUM_LABEL_IDS)
        self._instance_label = np.zeros(NUM_LABEL_IDS, dtype=bool)  # evaluated labels with instances
        self._instance_category = np.full(NUM_LABEL_IDS, -1, dtype=np.int64)
        self._category_member = np.zeros((max(1, len(self.instance_categories)), 256), dtype=bool)
        for lab in labels:
            if lab.has_instances and _evaluated(lab):
                self._instance_label[lab.id] = True
                self._avg_size[lab.id] = AVERAGE_INSTANCE_SIZE[lab.name]
            if lab.category in self.instance_categories:
                j = self.instance_categories.index(lab.category)
                self._instance_category[lab.id] = j
                self._category_member[j, lab.id] = True

    @property
    def device(self) -> torch.device:
        return self.confusion.device

    def reset(self) -> None:
        for t in (self.confusion, self.class_weighted, self.category_weighted, self.images_without_instances):
            t.zero_()

    def update(self, pred: Union[np.ndarray, Tensor], target: Union[np.ndarray, Tensor],
               instances: Union[np.ndarray, Tensor, None] = None) -> None:
        """Add one image.

        Args:
            pred: ``(H, W)`` predicted labelIds in 0..33.
            target: ``(H, W)`` ground-truth labelIds in 0..33 (the ``*_gtFine_labelIds.png``).
            instances: ``(H, W)`` instance ids (the ``*_gtFine_instanceIds.png``); None: the image
                adds nothing to the iIoU sums, and :meth:`compute` reports iIoU as NaN.

        Raises:
            ValueError: shapes differ, or a value outside 0..33 (an instance id ``>= 1000`` whose
                ``id // 1000`` is not a labelId); the message names the values.
        """
        pred, target = _numpy(pred), _numpy(target)
        if pred.shape != target.shape or pred.ndim != 2:
            raise ValueError(f"prediction {pred.shape} and ground truth {target.shape} must be the same (H, W)")
        for what, ids in (("predicted", pred), ("ground-truth", target)):
            bad = np.unique(ids[(ids < 0) | (ids >= NUM_LABEL_IDS)]) if ids.size else ids
            if bad.size:
                raise ValueError(f"{what} labelId(s) {bad[:8].tolist()} outside the Cityscapes labelIds 0..33")
        pred, target = pred.astype(np.int64), target.astype(np.int64)
        counts = np.bincount((target * NUM_LABEL_IDS + pred).ravel(), minlength=NUM_LABEL_IDS ** 2)
        self.confusion += torch.from_numpy(counts.reshape(NUM_LABEL_IDS, NUM_LABEL_IDS)).to(self.device)
        if instances is None:
            self.images_without_instances += 1
            return
        inst = _numpy(instances).astype(np.int64)
        if inst.shape != target.shape:
            raise ValueError(f"instance ids {inst.shape} and ground truth {target.shape} differ in size")
        objects = inst > 1000  # cityscapesScripts: instance ids above 1000
        if not objects.any():
            return
        ids, index = np.unique(inst[objects], return_inverse=True)
        label_of = ids // 1000
        if (label_of >= NUM_LABEL_IDS).any():
            raise ValueError(f"instance id(s) {ids[label_of >= NUM_LABEL_IDS][:8].tolist()}: id // 1000 is not a "
                             f"Cityscapes labelId (0..33)")
        keep = self._instance_label[label_of]  # caravan / trailer instances are not evaluated
        sizes = np.bincount(index, minlength=len(ids)).astype(np.float64)
        pixel_pred = pred[objects]
        hits = np.bincount(index, weights=(pixel_pred == label_of[index]), minlength=len(ids))
        weight = np.where(keep, self._avg_size[label_of] / sizes, 0.0)
        tp_w = np.bincount(label_of, weights=hits * weight, minlength=NUM_LABEL_IDS)
        fn_w = np.bincount(label_of, weights=(sizes - hits) * weight, minlength=NUM_LABEL_IDS)
        self.class_weighted += torch.from_numpy(np.stack([tp_w, fn_w])).to(self.device)
        category = self._instance_category[label_of]
        counted = keep & (category >= 0)
        if counted.any() and self.instance_categories:
            in_category = self._category_member[np.maximum(category[index], 0), pixel_pred]
            cat_hits = np.bincount(index, weights=in_category, minlength=len(ids))
            c = np.where(counted, category, 0)
            w = np.where(counted, weight, 0.0)
            n = len(self.instance_categories)
            cat_tp = np.bincount(c, weights=cat_hits * w, minlength=n)
            cat_fn = np.bincount(c, weights=(sizes - cat_hits) * w, minlength=n)
            self.category_weighted += torch.from_numpy(np.stack([cat_tp, cat_fn])).to(self.device)

    def update_train_ids(self, pred: Union[np.ndarray, Tensor], target: Union[np.ndarray, Tensor],
                         instances: Union[np.ndarray, Tensor, None] = None) -> None:
        """:meth:`update` with a prediction in train ids (0..18; 255 counts as a miss), e.g. a
        model's argmax; ``target`` and ``instances`` as in :meth:`update` (labelIds)."""
        pred = _numpy(pred).astype(np.int64)
        if pred.size and (pred.min() < 0 or pred.max() > 255):
            raise ValueError(f"predicted train ids must lie in 0..18 or 255 (got {pred.min()}..{pred.max()})")
        self.update(train_ids_to_label_ids()[pred], target, instances)

    def all_reduce(self) -> None:
        """Sum every running sum over the ``torch.distributed`` ranks (in place; every rank calls it)."""
        all_reduce_sum(self.confusion, self.class_weighted, self.category_weighted, self.images_without_instances)

    def compute(self) -> Dict[str, Union[float, List[float], List[str]]]:
        """The scores (fractions in [0, 1], NaN where undefined):

        ``miou``, ``pixel_acc``, ``mean_acc``, ``per_class_iou`` / ``per_class_acc`` (19 floats,
        train-id order; ``class_names``), ``iiou`` / ``per_class_iiou`` (NaN for classes without
        instances), ``category_names`` / ``per_category_iou`` / ``category_miou``,
        ``instance_category_names`` / ``per_category_iiou`` / ``category_iiou``, and
        ``precision`` / ``recall`` / ``f1`` (19 each) with ``mean_precision`` / ``mean_recall`` /
        ``mean_f1``. iIoU values are NaN if some image came without instance ids.
        """
        m = self.confusion.detach().to("cpu", torch.float64).numpy()
        ev = np.array(self.eval_ids)
        rows = m[ev]  # evaluated ground-truth rows, every predicted labelId
        tp = rows[:, ev].diagonal()
        label_count = rows.sum(axis=1)
        pred_count = rows[:, ev].sum(axis=0)
        nan = math.nan
        iou = _div(tp, label_count + pred_count - tp)
        acc = _div(tp, label_count)
        total = rows.sum()
        cw = self.class_weighted.detach().cpu().numpy()
        with_instances = int(self.images_without_instances.item()) == 0
        iiou = np.full(len(ev), nan)
        for j, l in enumerate(ev):
            if self._instance_label[l] and with_instances:
                iiou[j] = _ratio(cw[0, l], cw[0, l] + cw[1, l] + (pred_count[j] - tp[j]))
        # categories: rows of evaluated labels only
        evaluated_category = np.array([self._category_of[int(i)] for i in ev])
        cat_iou = []
        for cat in self.categories:
            ids = ev[evaluated_category == cat]
            if not len(ids):
                cat_iou.append(nan)
                continue
            c_tp = m[np.ix_(ids, ids)].sum()
            c_fn = m[ids].sum() - c_tp
            c_fp = m[np.ix_(ev[evaluated_category != cat], ids)].sum()
            cat_iou.append(_ratio(c_tp, c_tp + c_fp + c_fn))
        cat_w = self.category_weighted.detach().cpu().numpy()
        cat_iiou = []
        for j, cat in enumerate(self.instance_categories):
            ids = np.flatnonzero(self._category_member[j, :NUM_LABEL_IDS])
            c_fp = m[np.ix_(ev[evaluated_category != cat], ids)].sum()
            cat_iiou.append(_ratio(cat_w[0, j], cat_w[0, j] + cat_w[1, j] + c_fp) if with_instances else nan)
        # precision / recall / F1 over the 19 classes, predictions of other labels as one extra column
        square = np.zeros((len(ev) + 1, len(ev) + 1))
        square[:-1, :-1] = rows[:, ev]
        square[:-1, -1] = label_count - rows[:, ev].sum(axis=1)
        prf = precision_recall_f1(square, classes=range(len(ev)))
        out: Dict[str, Union[float, List[float], List[str]]] = {
            "miou": _nanmean(iou), "pixel_acc": _ratio(tp.sum(), total), "mean_acc": _nanmean(acc),
            "per_class_iou": iou.tolist(), "per_class_acc": acc.tolist(), "class_names": list(self.class_names),
            "iiou": _nanmean(iiou), "per_class_iiou": iiou.tolist(),
            "category_names": list(self.categories), "per_category_iou": cat_iou, "category_miou": _nanmean(cat_iou),
            "instance_category_names": list(self.instance_categories), "per_category_iiou": cat_iiou,
            "category_iiou": _nanmean(cat_iiou),
        }
        for key in ("precision", "recall", "f1"):
            out[key] = list(prf[key][:-1])
            out[f"mean_{key}"] = prf[f"mean_{key}"]
        return out


def _numpy(x: Union[np.ndarray, Tensor]) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.where(den > 0, den, 1), math.nan)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


def _nanmean(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan
