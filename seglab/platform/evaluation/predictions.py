"""Scoring files instead of a model: a folder of prediction PNGs in the data set's official result format.

For ``cityscapes``, ``*labelIds`` PNGs named ``<city>_<seq>_<frame>*.png`` after the ground-truth
images (searched recursively, as cityscapesScripts does); for every other on-disk data set, PNGs of
train ids ``0..C-1`` named ``<image stem>.png``. Also the data-set helpers ``seglab eval`` shares.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from seglab.errors import ConfigError
from seglab.platform.evaluation.results import DatasetScores, ProgressBar


def reword(error: Exception) -> str:
    """A data set's ConfigError in terms of this command's flags (dataset.root -> --root, ...)."""
    text = str(error)
    for key in ("root", "split"):
        text = text.replace(f"dataset.{key}", f"--{key}")
    return text


def build_eval_dataset(name: str, split: str, root: Optional[str], options: Dict[str, Any],
                       run_options: Optional[Dict[str, Any]] = None):
    """``name``'s ``split`` unaugmented: the run's options (those the data set takes), then ``root``
    and the user's ``options`` (checked by the data set: an unknown key is an error)."""
    from seglab.datasets import DATASETS, accepted_keys, build_dataset

    try:
        accepted = accepted_keys(DATASETS.get(name))
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
        raise ConfigError(reword(error)) from None


def is_official_cityscapes(ds) -> bool:
    """The 19-class Cityscapes itself (its files are scored with cityscapesScripts' maths)."""
    from seglab.datasets.cityscapes import Cityscapes

    return isinstance(ds, Cityscapes) and ds.reduction is None


def check_labelled(ds, name: str, split: str) -> None:
    samples = getattr(ds, "samples", None)
    if samples is not None and any(s.label is None for s in samples):
        raise ConfigError(f"--split {split}: data set '{name}' has no labels for that split (nothing to score); "
                          f"use a labelled split, e.g. --split val")



def read_prediction(path: Path) -> np.ndarray:
    import cv2

    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ConfigError(f"--predictions: {path} does not decode as an image (corrupt or not a PNG?)")
    if data.ndim != 2:
        raise ConfigError(f"--predictions: {path} has {data.shape[2]} channels; a prediction is a single-channel "
                          f"PNG of class ids")
    return data


def check_size(path: Path, pred: np.ndarray, shape: Tuple[int, ...], truth: str) -> None:
    if pred.shape != tuple(shape):
        raise ConfigError(f"--predictions: {path} is {pred.shape[1]}x{pred.shape[0]} but its ground truth {truth} "
                          f"is {shape[1]}x{shape[0]} (WxH); predictions must have the ground truth's size")


def cityscapes_prediction_index(folder: Path) -> Dict[str, List[Path]]:
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
    ds = build_eval_dataset(dataset, split, root, dict(options or {}))
    if getattr(ds, "samples", None) is None:
        raise ConfigError(f"--predictions needs a data set read from files; '{dataset}' is generated "
                          f"(score a model on it with `seglab eval CHECKPOINT`)")
    check_labelled(ds, dataset, split)
    cityscapes = is_official_cityscapes(ds)
    scores = DatasetScores(ds, cityscapes)
    bar = ProgressBar(len(ds.samples), progress)
    try:
        if cityscapes:
            index = cityscapes_prediction_index(directory)
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
                pred = read_prediction(found[0])
                check_size(found[0], pred, gt.shape, sample.label)
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
                pred = read_prediction(found[0])
                check_size(found[0], pred, label.shape, sample.label)
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
