"""DatasetScores of one evaluated split, and how ``seglab eval`` shows and records them.

:class:`DatasetScores` accumulates a confusion matrix (precision / recall / F1 from it) for any data
set, or cityscapesScripts' maths (:class:`seglab.metrics.CityscapesScores`: class and category IoU,
iIoU, category iIoU) for the 19-class Cityscapes; :func:`format_result` is the printed table,
:func:`json_result` the ``--json`` file, :func:`metric_names` the evaluation run's metrics.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Dict, Optional

PROGRESS_DESC = "eval"


class ProgressBar:
    """tqdm on stderr (or nothing)."""

    def __init__(self, total: int, enabled: bool, desc: str = PROGRESS_DESC) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class DatasetScores:
    """ConfusionMatrix (+ precision/recall/F1) for any data set; CityscapesScores for Cityscapes."""

    def __init__(self, ds, cityscapes: bool) -> None:
        from seglab.metrics import CityscapesScores, ConfusionMatrix

        self.ds = ds
        self.cityscapes = CityscapesScores() if cityscapes else None
        self.matrix = None if cityscapes else ConfusionMatrix(int(ds.num_classes), int(getattr(ds, "ignore_index", 255)))

    def result(self) -> Dict[str, Any]:
        from seglab.metrics import precision_recall_f1

        names = [str(n) for n in self.ds.class_names]
        if self.cityscapes is not None:
            s = self.cityscapes.compute()
            out = {k: s[k] for k in ("miou", "pixel_acc", "mean_acc", "iiou", "category_miou", "category_iiou",
                                     "mean_precision", "mean_recall", "mean_f1")}
            out["per_class"] = {n: {"iou": s["per_class_iou"][i], "acc": s["per_class_acc"][i],
                                    "precision": s["precision"][i], "recall": s["recall"][i], "f1": s["f1"][i],
                                    "iiou": s["per_class_iiou"][i]} for i, n in enumerate(names)}
            out["per_category_iou"] = dict(zip(s["category_names"], s["per_category_iou"]))
            out["per_category_iiou"] = dict(zip(s["instance_category_names"], s["per_category_iiou"]))
            return out
        classes = getattr(self.ds, "miou_classes", None)
        s = self.matrix.compute(classes=classes)
        prf = precision_recall_f1(self.matrix.matrix, classes=classes)
        out = {"miou": s["miou"], "pixel_acc": s["pixel_acc"], "mean_acc": s["mean_acc"],
               "mean_precision": prf["mean_precision"], "mean_recall": prf["mean_recall"], "mean_f1": prf["mean_f1"]}
        out["per_class"] = {n: {"iou": s["per_class_iou"][i], "acc": s["per_class_acc"][i],
                                "precision": prf["precision"][i], "recall": prf["recall"][i], "f1": prf["f1"][i]}
                            for i, n in enumerate(names)}
        if classes is not None:
            out["miou_classes"] = [names[i] for i in classes]
        return out



def pct(value: Optional[float]) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def format_result(result: Dict[str, Any], title: str = "") -> str:
    """The table ``seglab eval`` prints: headline scores, then one row per class (percent)."""
    lines = [f"seglab eval: {title}" if title else "seglab eval",
             f"data set {result['dataset']}, split {result['split']}, {result['num_images']} images"
             + (f" ({result['skipped_samples']} skipped: bad files)" if result.get("skipped_samples") else "")
             + f", inference: {result['inference']}", ""]
    head = [("mIoU", result["miou"]), ("pixel acc", result["pixel_acc"]), ("mean acc", result["mean_acc"])]
    if "iiou" in result:
        head += [("category mIoU", result["category_miou"]), ("iIoU", result["iiou"]),
                 ("category iIoU", result["category_iiou"])]
    head += [("mean F1 (Dice)", result["mean_f1"]), ("mean precision", result["mean_precision"]),
             ("mean recall", result["mean_recall"])]
    lines += [f"{name:<16}{pct(value):>8} %" for name, value in head]
    if result.get("miou_classes"):
        lines.append(f"(means over {len(result['miou_classes'])} classes: {', '.join(result['miou_classes'])})")
    lines.append("")
    cols = ["IoU", "acc", "F1", "prec", "recall"] + (["iIoU"] if "iiou" in result else [])
    lines.append(f"{'class':<16}" + "".join(f"{c:>8}" for c in cols))
    keys = ["iou", "acc", "f1", "precision", "recall", "iiou"][: len(cols)]
    for name, scores in result["per_class"].items():
        lines.append(f"{name[:16]:<16}" + "".join(f"{pct(scores[k]):>8}" for k in keys))
    if "per_category_iou" in result:
        lines += ["", f"{'category':<16}{'IoU':>8}{'iIoU':>8}"]
        for cat, iou in result["per_category_iou"].items():
            if cat == "void":
                continue
            lines.append(f"{cat:<16}{pct(iou):>8}{pct(result['per_category_iiou'].get(cat)):>8}")
    lines.append("\n(percent; '-': class neither labelled nor predicted, or no instances)")
    return "\n".join(lines)


def clean_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: clean_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_nan(v) for v in value]
    return value


def json_result(result: Dict[str, Any]) -> Dict[str, Any]:
    """What ``--json`` writes: ``miou``, ``pixel_acc``, ``mean_acc``, ``per_class_iou`` {name: iou}
    (fractions in [0, 1]; null where undefined), Cityscapes' ``category_miou``, ``iiou``,
    ``category_iiou``, and the rest of the result (per-class accuracy / precision / recall / F1,
    checkpoint mode's ``skipped_samples``...)."""
    out: Dict[str, Any] = {"miou": result["miou"], "pixel_acc": result["pixel_acc"], "mean_acc": result["mean_acc"],
                           "per_class_iou": {n: s["iou"] for n, s in result["per_class"].items()}}
    if "iiou" in result:
        out.update(category_miou=result["category_miou"], iiou=result["iiou"], category_iiou=result["category_iiou"],
                   per_class_iiou={n: s["iiou"] for n, s in result["per_class"].items()},
                   per_category_iou={k: v for k, v in result["per_category_iou"].items() if k != "void"},
                   per_category_iiou=result["per_category_iiou"])
    out.update(mean_precision=result["mean_precision"], mean_recall=result["mean_recall"], mean_f1=result["mean_f1"])
    for key in ("acc", "precision", "recall", "f1"):
        out[f"per_class_{key}"] = {n: s[key] for n, s in result["per_class"].items()}
    for key in ("dataset", "split", "num_images", "skipped_samples", "inference", "checkpoint", "miou_classes"):
        if key in result:
            out[key] = result[key]
    return clean_nan(out)



def metric_names(result: Dict[str, Any]) -> Dict[str, float]:
    """The evaluation run's metrics: ``miou``, ``pixel_acc``, ``mean_acc``, ``f1``, ``precision``,
    ``recall``, ``iou_<class>`` (+ Cityscapes ``category_miou``, ``iiou``, ``category_iiou``,
    ``iiou_<class>``; ``skipped_samples`` when bad images were left out); undefined values are left out."""
    out = {"miou": result["miou"], "pixel_acc": result["pixel_acc"], "mean_acc": result["mean_acc"],
           "f1": result["mean_f1"], "precision": result["mean_precision"], "recall": result["mean_recall"]}
    if result.get("skipped_samples"):
        out["skipped_samples"] = result["skipped_samples"]
    for key in ("category_miou", "iiou", "category_iiou"):
        if key in result:
            out[key] = result[key]
    for name, scores in result["per_class"].items():
        out[f"iou_{name.replace(' ', '_')}"] = scores["iou"]
        if "iiou" in scores:
            out[f"iiou_{name.replace(' ', '_')}"] = scores["iiou"]
    return {k: float(v) for k, v in out.items() if v is not None and not math.isnan(float(v))}
