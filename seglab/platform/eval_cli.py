"""``seglab eval``: score a checkpoint, or a folder of prediction PNGs, on a data set split.

    seglab eval CHECKPOINT [--dataset NAME] [--root R] [--split S] [--scales 0.75 1.0 1.25] [--flip]
                [--slide [--crop HxW] [--stride HxW]] [--json OUT]
    seglab eval --predictions DIR --dataset NAME [--root R] [--split val] [--json OUT]

Checkpoint mode rebuilds the model a seglab checkpoint records (``best.pt`` / ``checkpoint.pt``:
``model``, ``run``, ``num_classes``, ``mlflow_run_id``), predicts every image of the split
(:func:`seglab.metrics.inference.predict_probs`: multi-scale, flip with the data set's
``flip_permutation`` -- HELEN's left/right classes exchanged in the mirrored view --, sliding
window), prints the table and, when an MLflow store is configured (``MLFLOW_TRACKING_URI``, or an existing
``$SEGLAB_HOME/mlflow.db``), logs an evaluation run tagged ``seglab.kind=evaluation`` and
``seglab.evaluates=<the trial's run id>`` in the trial's experiment.

Predictions mode scores files in the data set's official result format with no model: for
``cityscapes``, ``*labelIds`` PNGs named ``<city>_<seq>_<frame>*.png`` after the ground-truth
images (searched recursively, as cityscapesScripts does); for every other on-disk data set, PNGs
of train ids ``0..C-1`` named ``<image stem>.png``.

Cityscapes is scored as cityscapesScripts does (:class:`seglab.metrics.CityscapesScores`: class
and category IoU, iIoU, category iIoU); every data set also gets pixel accuracy, mean accuracy,
per-class precision / recall / F1.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from seglab.errors import ConfigError
from seglab.platform.cli import hw_type

__all__ = ["add_parser", "cmd_eval", "evaluate_predictions", "evaluate_checkpoint", "format_result"]

PROGRESS_DESC = "eval"


# ----------------------------------------------------------------------------------- arguments
def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"--scales must be numbers > 0, e.g. --scales 0.75 1.0 1.25 (got {text!r})")
    return value


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``seglab eval`` on the ``sub`` sub-parsers of the seglab command."""
    p = sub.add_parser(
        "eval", help="score a checkpoint or a folder of prediction PNGs on a data set split",
        description="Score CHECKPOINT (a seglab checkpoint) or --predictions DIR (PNGs in the data set's official "
                    "result format) on a data set split; prints mIoU, pixel/mean accuracy, per-class IoU "
                    "(Cityscapes also category mIoU, iIoU, category iIoU). Exit status 2 on a usage error.")
    p.add_argument("checkpoint", nargs="?", help="a seglab checkpoint file (best.pt / checkpoint.pt)")
    p.add_argument("--predictions", metavar="DIR", help="score the PNGs in DIR instead of a model")
    p.add_argument("--dataset", metavar="NAME",
                   help="registered data set name (checkpoint mode: default the run's data set)")
    p.add_argument("--root", metavar="R", help="the data set's root directory (official layout)")
    p.add_argument("--split", metavar="S",
                   help="split to score (default: the run's report split -- test for the embedded data set -- "
                        "else val)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="a data set option, e.g. cities=[lindau] (repeatable)")
    p.add_argument("--scales", nargs="+", type=_scale, metavar="S", help="test scales (default 1.0)")
    p.add_argument("--flip", action="store_true", help="also predict the horizontally flipped image")
    p.add_argument("--slide", action="store_true", help="sliding-window inference with windows of --crop")
    p.add_argument("--crop", type=hw_type("--crop", "512x1024"), metavar="HxW",
                   help="sliding window size (default: the run's training crop)")
    p.add_argument("--stride", type=hw_type("--stride", "512x1024"), metavar="HxW",
                   help="window step (default 2/3 of --crop)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--json", metavar="OUT", help="also write the scores as JSON to OUT")
    p.add_argument("--experiment", default="seglab",
                   help="MLflow experiment of the evaluation run when the checkpoint's trial run is not in the "
                        "store (default seglab)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow evaluation run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_eval)
    return p


def cmd_eval(args: argparse.Namespace) -> int:
    from seglab.datasets.check import parse_options

    options = parse_options(args.option)
    for key in ("split", "root", "augment"):
        if key in options:
            raise ConfigError(f"--option {key}: give it as --{key}" if key != "augment"
                              else "--option augment: evaluation never augments")
    if args.json:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise ConfigError(f"--json {args.json}: folder {folder} does not exist")
    if args.predictions is not None:
        if args.checkpoint is not None:
            raise ConfigError("give either CHECKPOINT or --predictions DIR, not both")
        for flag, given in (("--scales", args.scales), ("--flip", args.flip), ("--slide", args.slide),
                            ("--crop", args.crop), ("--stride", args.stride)):
            if given:
                raise ConfigError(f"{flag} needs a model (CHECKPOINT); --predictions scores the files as they are")
        if not args.dataset:
            raise ConfigError("--predictions needs --dataset NAME (and --root R for on-disk data sets)")
        result = evaluate_predictions(args.predictions, args.dataset, root=args.root, split=args.split or "val",
                                      options=options, progress=not args.no_progress)
        title = f"predictions {args.predictions}"
    else:
        if args.checkpoint is None:
            raise ConfigError("give a CHECKPOINT file or --predictions DIR (see `seglab eval --help`)")
        if (args.crop or args.stride) and not args.slide:
            raise ConfigError("--crop / --stride set the sliding window: add --slide")
        result = evaluate_checkpoint(args.checkpoint, dataset=args.dataset, root=args.root, split=args.split,
                                     options=options, scales=args.scales, flip=args.flip, slide=args.slide,
                                     crop=args.crop, stride=args.stride, device=args.device,
                                     progress=not args.no_progress)
        title = f"checkpoint {args.checkpoint}"
    print(format_result(result, title))
    if args.json:
        Path(args.json).write_text(json.dumps(json_result(result), indent=2) + "\n")
        print(f"\nscores written to {args.json}")
    if args.predictions is None and not args.no_mlflow:
        run_id = log_evaluation_run(result, args.checkpoint, experiment=args.experiment)
        if run_id:
            print(f"\nMLflow evaluation run {run_id} ({result['tracking']})")
    return 0


# ----------------------------------------------------------------------------------- data sets
def _reword(error: Exception) -> str:
    """A data set's ConfigError in terms of this command's flags (dataset.root -> --root, ...)."""
    text = str(error)
    for key in ("root", "split"):
        text = text.replace(f"dataset.{key}", f"--{key}")
    return text


def _build_dataset(name: str, split: str, root: Optional[str], options: Dict[str, Any],
                   run_options: Optional[Dict[str, Any]] = None):
    """``name``'s ``split`` unaugmented: the run's options (those the data set takes), then ``root``
    and the user's ``options`` (checked by the data set: an unknown key is an error)."""
    from seglab.datasets import DATASETS, _accepted_keys, build_dataset

    try:
        accepted = _accepted_keys(DATASETS.get(name))
    except ConfigError as error:
        raise ConfigError(f"--dataset: {error}") from None
    kwargs = {k: v for k, v in (run_options or {}).items() if accepted is None or k in accepted}
    if accepted is None or "augment" in accepted:
        kwargs["augment"] = False
    if root is not None:
        if accepted is not None and "root" not in accepted:
            raise ConfigError(f"--root: data set '{name}' is generated and has no root; leave --root out")
        kwargs["root"] = root
    kwargs.update(options)
    try:
        return build_dataset(name, split=split, **kwargs)
    except ConfigError as error:
        raise ConfigError(_reword(error)) from None


def _is_official_cityscapes(ds) -> bool:
    """The 19-class Cityscapes itself (its files are scored with cityscapesScripts' maths)."""
    from seglab.datasets.cityscapes import Cityscapes

    return isinstance(ds, Cityscapes) and ds.reduction is None


def _check_labelled(ds, name: str, split: str) -> None:
    samples = getattr(ds, "samples", None)
    if samples is not None and any(s.label is None for s in samples):
        raise ConfigError(f"--split {split}: data set '{name}' has no labels for that split (nothing to score); "
                          f"use a labelled split, e.g. --split val")


class _Bar:
    """tqdm on stderr (or nothing)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=PROGRESS_DESC, unit="img", file=sys.stderr, dynamic_ncols=True)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Scores:
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


def _read_prediction(path: Path) -> np.ndarray:
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ConfigError(f"--predictions: {path} does not decode as an image (corrupt or not a PNG?)")
    if data.ndim != 2:
        raise ConfigError(f"--predictions: {path} has {data.shape[2]} channels; a prediction is a single-channel "
                          f"PNG of class ids")
    return data


def _check_size(path: Path, pred: np.ndarray, shape: Tuple[int, ...], truth: str) -> None:
    if pred.shape != tuple(shape):
        raise ConfigError(f"--predictions: {path} is {pred.shape[1]}x{pred.shape[0]} but its ground truth {truth} "
                          f"is {shape[1]}x{shape[0]} (WxH); predictions must have the ground truth's size")


def _cityscapes_prediction_index(folder: Path) -> Dict[str, List[Path]]:
    """``city_seq_frame`` -> the PNG files under ``folder`` whose names start with it."""
    index: Dict[str, List[Path]] = {}
    for path in sorted(folder.rglob("*.png")):
        parts = path.name.split("_")
        if len(parts) >= 3:
            index.setdefault("_".join(parts[:3]), []).append(path)
    return index


def evaluate_predictions(folder: str, dataset: str, root: Optional[str] = None, split: str = "val",
                         options: Optional[Dict[str, Any]] = None, progress: bool = True) -> Dict[str, Any]:
    """Score the prediction PNGs in ``folder`` (official result format; see the module docstring)
    against ``dataset``'s ``split``; returns the result dict of :func:`format_result`."""
    directory = Path(folder)
    if not directory.is_dir():
        raise ConfigError(f"--predictions: {folder} is not a directory")
    ds = _build_dataset(dataset, split, root, dict(options or {}))
    if getattr(ds, "samples", None) is None:
        raise ConfigError(f"--predictions needs a data set read from files; '{dataset}' is generated "
                          f"(score a model on it with `seglab eval CHECKPOINT`)")
    _check_labelled(ds, dataset, split)
    cityscapes = _is_official_cityscapes(ds)
    scores = _Scores(ds, cityscapes)
    bar = _Bar(len(ds.samples), progress)
    try:
        if cityscapes:
            index = _cityscapes_prediction_index(directory)
            for i, sample in enumerate(ds.samples):
                prefix = "_".join(Path(sample.label).name.split("_")[:3])
                found = index.get(prefix, [])
                if not found:
                    raise ConfigError(f"--predictions: no prediction for {sample.label} in {folder}; expected a "
                                      f"labelIds PNG named {prefix}*.png")
                if len(found) > 1:
                    raise ConfigError(f"--predictions: {len(found)} predictions for {sample.label} in {folder}: "
                                      f"{found[0]}, {found[1]}; keep one {prefix}*.png")
                gt = ds.read_label(sample.label)
                ds.label_map(gt, sample.label)  # checks the ground truth's values (BadSampleError)
                pred = _read_prediction(found[0])
                _check_size(found[0], pred, gt.shape, sample.label)
                bad = np.unique(pred[pred > 33])
                if bad.size:
                    raise ConfigError(f"--predictions: {found[0]} holds values {bad[:8].tolist()}; Cityscapes "
                                      f"predictions are labelIds 0..33 (not train ids)")
                scores.cityscapes.update(pred, gt, ds.load_instance(i))
                bar.update()
        else:
            import torch

            by_name: Dict[str, List[Path]] = {}
            for path in sorted(directory.rglob("*.png")):
                by_name.setdefault(path.name, []).append(path)
            c = int(ds.num_classes)
            for i, sample in enumerate(ds.samples):
                name = f"{Path(sample.image).stem}.png"
                found = by_name.get(name, [])
                if not found:
                    raise ConfigError(f"--predictions: no prediction for {sample.image} in {folder}; expected "
                                      f"a PNG of train ids 0..{c - 1} named {name}")
                if len(found) > 1:
                    raise ConfigError(f"--predictions: {len(found)} files named {name} in {folder}: {found[0]}, "
                                      f"{found[1]}; keep one")
                label = ds.load_label(i)
                pred = _read_prediction(found[0])
                _check_size(found[0], pred, label.shape, sample.label)
                bad = np.unique(pred[pred >= c])
                if bad.size:
                    raise ConfigError(f"--predictions: {found[0]} holds values {bad[:8].tolist()}; predictions of "
                                      f"'{dataset}' are train ids 0..{c - 1}")
                scores.matrix.update(torch.from_numpy(pred.astype(np.int64))[None],
                                     torch.from_numpy(label.astype(np.int64))[None])
                bar.update()
    except ValueError as error:  # BadSampleError: a ground-truth file
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"ground truth: {error}") from None
    finally:
        bar.close()
    result = scores.result()
    result.update(dataset=dataset, split=split, num_images=len(ds.samples), inference="files")
    return result


# ----------------------------------------------------------------------------------- checkpoints
def _load_checkpoint(path: str) -> Dict[str, Any]:
    from seglab.platform import checkpoint as ckpt

    if not os.path.isfile(path):
        raise ConfigError(f"CHECKPOINT {path}: no such file")
    try:
        state = ckpt.load(path)
    except Exception as error:  # pickle / zip errors of a file that is not a checkpoint
        raise ConfigError(f"CHECKPOINT {path}: not a seglab checkpoint ({type(error).__name__})") from None
    missing = [k for k in ("model", "run", "num_classes") if not isinstance(state, dict) or k not in state]
    if missing:
        raise ConfigError(f"CHECKPOINT {path}: not a seglab checkpoint (no {missing[0]!r}; expected the best.pt or "
                          f"checkpoint.pt a training run writes)")
    return state


def _model_from_state(state: Dict[str, Any]):
    from seglab.models import build_model
    from seglab.platform.config import ModelConfig

    cfg = ModelConfig.from_dict(state["run"]["model"])
    model = build_model(cfg.name, num_classes=int(state["num_classes"]), **cfg.kwargs)
    if cfg.freeze_bn:
        from seglab.models.frozen_bn import freeze_batchnorm

        model = freeze_batchnorm(model)
    model.load_state_dict(state["model"])
    return model.eval()


def _run_dataset(state: Dict[str, Any], name: Optional[str], split: Optional[str]) -> Tuple[str, str, Dict[str, Any]]:
    """(name, split, options) of the data set to score: the run's own options for its data set."""
    from seglab.platform.config import DatasetConfig

    d = (state.get("run") or {}).get("dataset") or {}
    if not d.get("name") or (name and name != d.get("name")):
        return name or str(d.get("name")), split or "val", {}
    cfg = DatasetConfig.from_dict(d)
    report_role = "test" if cfg.test is not None else "val"
    split = split or cfg.split_name(report_role)
    role = "test" if (split == "test" and cfg.test is not None) else "val"
    options = cfg.split_kwargs(role)
    for key in ("augment", "crop_size", "scale_range", "hflip", "root", "limit"):
        options.pop(key, None)  # evaluation: whole images, every one; --root / --option give the rest
    return cfg.name, split, options


def _train_crop(state: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    d = (state.get("run") or {}).get("dataset") or {}
    crop = (d.get("train") or {}).get("crop_size") or d.get("crop_size")
    return (int(crop[0]), int(crop[1])) if crop else None


def evaluate_checkpoint(path: str, dataset: Optional[str] = None, root: Optional[str] = None,
                        split: Optional[str] = None, options: Optional[Dict[str, Any]] = None,
                        scales: Optional[List[float]] = None, flip: bool = False, slide: bool = False,
                        crop: Optional[Tuple[int, int]] = None, stride: Optional[Tuple[int, int]] = None,
                        device: str = "auto", progress: bool = True) -> Dict[str, Any]:
    """Predict every image of the split with the checkpoint's model and score it; returns the
    result dict of :func:`format_result` (plus ``checkpoint`` and ``mlflow_run_id``). A bad image
    left out by ``on_bad_sample=skip`` is counted in ``skipped_samples``, not in ``num_images``."""
    import torch

    from seglab.datasets.eval_items import evaluation_item
    from seglab.metrics import InferenceConfig, predict_probs

    state = _load_checkpoint(path)
    name, split, run_options = _run_dataset(state, dataset, split)
    if slide and crop is None:
        crop = _train_crop(state)
        if crop is None:
            raise ConfigError("--slide needs --crop HxW (the run records no training crop)")
    try:
        config = InferenceConfig(scales=tuple(scales or (1.0,)), flip=flip, crop=crop if slide else None,
                                 stride=stride if slide else None)
    except ValueError as error:
        raise ConfigError(f"--stride: {error}" if "stride" in str(error) else f"--scales: {error}") from None
    ds = _build_dataset(name, split, root, dict(options or {}), run_options)
    _check_labelled(ds, name, split)
    if flip:  # the data set's mirror permutation (HELEN: left/right eyes and brows), as its training flip uses
        config = dataclasses.replace(config, flip_permutation=getattr(ds, "flip_permutation", None))
    if int(ds.num_classes) != int(state["num_classes"]):
        raise ConfigError(f"--dataset {name} has {ds.num_classes} classes but the checkpoint's model predicts "
                          f"{state['num_classes']}; evaluate it on a data set with its classes")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device here; use --device cpu or auto")
    dev = torch.device(device)
    model = _model_from_state(state).to(dev)
    cityscapes = _is_official_cityscapes(ds)
    scores = _Scores(ds, cityscapes)
    bar, skipped = _Bar(len(ds), progress), 0
    try:
        with torch.no_grad():
            for i in range(len(ds)):
                item = evaluation_item(ds, i)  # None: a bad sample left out by on_bad_sample=skip (not replaced)
                if item is None:
                    skipped += 1
                    bar.update()
                    continue
                image, label = item
                probs = predict_probs(model, image[None].to(dev), config)
                if cityscapes:
                    sample = ds.samples[i]
                    gt = ds.read_label(sample.label)
                    if tuple(probs.shape[-2:]) != gt.shape:  # an eval resize: score at the files' size
                        probs = torch.nn.functional.interpolate(probs, size=gt.shape, mode="bilinear",
                                                                align_corners=False)
                    scores.cityscapes.update_train_ids(probs.argmax(1)[0].cpu(), gt, ds.load_instance(i))
                else:
                    scores.matrix.update(probs.cpu(), label[None])
                bar.update()
    finally:
        bar.close()
    result = scores.result()
    result.update(dataset=name, split=split, num_images=len(ds) - skipped, skipped_samples=skipped,
                  inference=config.describe(),
                  checkpoint=str(path), mlflow_run_id=state.get("mlflow_run_id"), scales=list(config.scales),
                  flip=config.flip, crop=list(config.crop) if config.crop else None,
                  stride=list(config.stride) if config.stride else None, device=str(dev))
    return result


# ----------------------------------------------------------------------------------- output
def _pct(value: Optional[float]) -> str:
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
    lines += [f"{name:<16}{_pct(value):>8} %" for name, value in head]
    if result.get("miou_classes"):
        lines.append(f"(means over {len(result['miou_classes'])} classes: {', '.join(result['miou_classes'])})")
    lines.append("")
    cols = ["IoU", "acc", "F1", "prec", "recall"] + (["iIoU"] if "iiou" in result else [])
    lines.append(f"{'class':<16}" + "".join(f"{c:>8}" for c in cols))
    keys = ["iou", "acc", "f1", "precision", "recall", "iiou"][: len(cols)]
    for name, scores in result["per_class"].items():
        lines.append(f"{name[:16]:<16}" + "".join(f"{_pct(scores[k]):>8}" for k in keys))
    if "per_category_iou" in result:
        lines += ["", f"{'category':<16}{'IoU':>8}{'iIoU':>8}"]
        for cat, iou in result["per_category_iou"].items():
            if cat == "void":
                continue
            lines.append(f"{cat:<16}{_pct(iou):>8}{_pct(result['per_category_iiou'].get(cat)):>8}")
    lines.append("\n(percent; '-': class neither labelled nor predicted, or no instances)")
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
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
    return _clean(out)


# ----------------------------------------------------------------------------------- MLflow
def _store_configured() -> Optional[str]:
    """The tracking URI when a store is configured: ``MLFLOW_TRACKING_URI``, or an existing default SQLite store."""
    from seglab.platform import tracking

    if os.environ.get("MLFLOW_TRACKING_URI"):
        return tracking.tracking_uri()
    uri = tracking.tracking_uri()
    return uri if os.path.isfile(uri[len("sqlite:///"):]) else None


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


def log_evaluation_run(result: Dict[str, Any], checkpoint: str, experiment: str = "seglab") -> Optional[str]:
    """Log ``result`` as an MLflow run tagged ``seglab.kind=evaluation`` (and ``seglab.evaluates=<trial
    run id>``) in the trial's experiment; None when no store is configured. Sets ``result['tracking']``."""
    uri = _store_configured()
    if uri is None:
        return None
    import time

    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    from seglab.platform import tracking

    client = tracking.client(uri)
    trial = result.get("mlflow_run_id")
    experiment_id, trial_name = None, None
    if trial:
        try:
            run = client.get_run(trial)
            experiment_id, trial_name = run.info.experiment_id, run.info.run_name
        except MlflowException:
            print(f"seglab: the checkpoint's trial run {trial} is not in {uri}; logging the evaluation in "
                  f"experiment '{experiment}'", file=sys.stderr, flush=True)
    if experiment_id is None:
        experiment_id = tracking.ensure_experiment(experiment, uri)
    tags = {"seglab.kind": "evaluation", "seglab.dataset": str(result["dataset"]), "seglab.split": str(result["split"]),
            "seglab.inference": str(result["inference"])}
    if trial:
        tags["seglab.evaluates"] = str(trial)
    name = f"eval {trial_name or Path(checkpoint).stem} on {result['dataset']} {result['split']}"
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    params = {"checkpoint": str(Path(checkpoint).resolve()), "dataset": result["dataset"], "split": result["split"],
              "scales": " ".join(f"{s:g}" for s in result.get("scales") or [1.0]), "flip": result.get("flip", False),
              "slide": result.get("crop") is not None, "crop": result.get("crop"), "stride": result.get("stride"),
              "num_images": result["num_images"]}
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metric_names(result).items()],
                     params=[Param(k, str(v)) for k, v in params.items()])
    client.log_dict(run_id, json_result(result), "evaluation.json")
    client.set_terminated(run_id, "FINISHED")
    link = f"evaluates trial run {trial}" if trial and trial_name is not None else "no trial run linked"
    result["tracking"] = f"{uri}, experiment id {experiment_id}, {link}"
    return run_id
