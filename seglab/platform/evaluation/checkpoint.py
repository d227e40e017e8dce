"""Scoring a checkpoint: rebuild the model a seglab checkpoint records (``best.pt`` / ``checkpoint.pt``:
``model``, ``run``, ``num_classes``, ``mlflow_run_id``), predict every image of a split
(:func:`seglab.metrics.inference.predict_probs`: multi-scale, flip with the data set's
``flip_permutation`` -- HELEN's left/right classes exchanged in the mirrored view --, sliding window)
and score it. A bad image left out by ``on_bad_sample=skip`` is counted, never replaced."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

from seglab.errors import ConfigError
from seglab.platform.checkpoint import model_from_state
from seglab.platform.evaluation.predictions import build_eval_dataset, check_labelled, is_official_cityscapes
from seglab.platform.evaluation.results import DatasetScores, ProgressBar


def load_checkpoint(path: str) -> Dict[str, Any]:
    """A seglab checkpoint file's dict; one line (ConfigError) for a missing file or another kind of file."""
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


def run_dataset(state: Dict[str, Any], name: Optional[str], split: Optional[str]) -> Tuple[str, str, Dict[str, Any]]:
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


def train_crop(state: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    d = (state.get("run") or {}).get("dataset") or {}
    crop = (d.get("train") or {}).get("crop_size") or d.get("crop_size")
    return (int(crop[0]), int(crop[1])) if crop else None


def inference_config(state: Dict[str, Any], scales: Optional[List[float]] = None, flip: bool = False,
                     slide: bool = False, crop: Optional[Tuple[int, int]] = None,
                     stride: Optional[Tuple[int, int]] = None):
    """The :class:`~seglab.metrics.InferenceConfig` of the ``--scales/--flip/--slide/--crop/--stride``
    flags that ``seglab eval`` and ``seglab predict`` share (``--slide`` without ``--crop``: the run's
    training crop); one line (ConfigError) for a bad combination."""
    from seglab.metrics import InferenceConfig

    if (crop or stride) and not slide:
        raise ConfigError("--crop / --stride set the sliding window: add --slide")
    if slide and crop is None:
        crop = train_crop(state)
        if crop is None:
            raise ConfigError("--slide needs --crop HxW (the run records no training crop)")
    try:
        return InferenceConfig(scales=tuple(scales or (1.0,)), flip=flip, crop=crop if slide else None,
                               stride=stride if slide else None)
    except ValueError as error:
        raise ConfigError(f"--stride: {error}" if "stride" in str(error) else f"--scales: {error}") from None


def pick_device(device: str):
    """``auto`` (cuda when there is one), ``cpu`` or ``cuda`` -> a torch device; one line for cuda without one."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device here; use --device cpu or auto")
    return torch.device(device)


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
    from seglab.metrics import predict_probs

    state = load_checkpoint(path)
    name, split, run_options = run_dataset(state, dataset, split)
    config = inference_config(state, scales, flip, slide, crop, stride)
    ds = build_eval_dataset(name, split, root, dict(options or {}), run_options)
    check_labelled(ds, name, split)
    if flip:  # the data set's mirror permutation (HELEN: left/right eyes and brows), as its training flip uses
        config = dataclasses.replace(config, flip_permutation=getattr(ds, "flip_permutation", None))
    if int(ds.num_classes) != int(state["num_classes"]):
        raise ConfigError(f"--dataset {name} has {ds.num_classes} classes but the checkpoint's model predicts "
                          f"{state['num_classes']}; evaluate it on a data set with its classes")
    dev = pick_device(device)
    model = model_from_state(state).to(dev)
    cityscapes = is_official_cityscapes(ds)
    scores = DatasetScores(ds, cityscapes)
    bar, skipped = ProgressBar(len(ds), progress), 0
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
