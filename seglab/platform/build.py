"""Config -> core objects: the only place that turns a run's typed config into models, losses and data.

Nothing else: the checks a sweep runs before it starts (:mod:`seglab.platform.sweep.validate`) and
the training loop (:mod:`seglab.platform.train`) call these builders.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
from typing import Optional, Tuple

from torch import nn
from torch.utils.data import Dataset

from seglab.errors import ConfigError, check
from seglab.platform.config import DatasetConfig, LossConfig, ModelConfig


def _build_role(cfg: DatasetConfig, role: str, split: Optional[str] = None, **override) -> Dataset:
    from seglab.datasets import build_dataset

    try:
        return build_dataset(cfg.name, split=split or cfg.split_name(role), **{**cfg.split_kwargs(role), **override})
    except ConfigError as error:  # name a split's own key as the user wrote it: dataset.val.num_samples
        text = str(error)
        for key in cfg.role_options(role):
            text = re.sub(rf"(?<![\w.])dataset\.{re.escape(key)}\b", f"dataset.{role}.{key}", text)
        if text == str(error):
            raise
        raise ConfigError(text) from None


def held_out(name: str, fraction: float) -> bool:
    """Whether the sample named ``name`` (its path relative to the data set root) belongs to the
    selection part of a split: a deterministic hash of the name, so the same files are held out on
    every machine, in every run and whatever the listing order."""
    digest = hashlib.sha1(name.replace(os.sep, "/").encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _split_by_name(dataset: Dataset, fraction: float, keep_held_out: bool) -> Dataset:
    samples = getattr(dataset, "samples", None)
    check(samples is not None, f"dataset.selection_fraction needs a data set of files; "
                               f"'{type(dataset).__name__}' has none (give it a test split instead)")
    root = getattr(dataset, "root", "")
    dataset.samples = [s for s in samples if held_out(os.path.relpath(s.image, root), fraction) == keep_held_out]
    return dataset


def build_datasets(cfg: DatasetConfig) -> Tuple[Dataset, Dataset]:
    """``(train, selection)``: the training split and the split every per-epoch ``val_*`` metric,
    checkpoint choice and search scheduler use (see :class:`DatasetConfig`)."""
    if cfg.selection_fraction is not None:
        f = cfg.selection_fraction
        train = _split_by_name(_build_role(cfg, "train"), f, keep_held_out=False)
        # the held-out part of the training split, prepared as the val role prepares data (no augmentation)
        selection = _split_by_name(_build_role(cfg, "val", split=cfg.split_name("train"), augment=False), f,
                                   keep_held_out=True)
        if len(train) == 0 or len(selection) == 0:
            raise ConfigError(f"dataset.selection_fraction={f} leaves {len(train)} training and {len(selection)} "
                              f"selection samples of dataset '{cfg.name}'; both must be non-empty (a small root: "
                              f"dataset.selection_fraction=null selects on the report split)")
    else:
        train, selection = _build_role(cfg, "train"), _build_role(cfg, "val")
    if len(train) == 0 or len(selection) == 0:
        raise ConfigError(f"dataset '{cfg.name}' has an empty split (train {len(train)}, val {len(selection)} samples)")
    return train, selection


def build_report_dataset(cfg: DatasetConfig) -> Dataset:
    """The split a run's result is reported on, scored once at its end (see :class:`DatasetConfig`)."""
    ds = _build_role(cfg, "test") if cfg.test is not None else _build_role(cfg, "val")
    if len(ds) == 0:
        raise ConfigError(f"dataset '{cfg.name}': the report split {report_split_name(cfg)} is empty")
    return ds


def selection_split_name(cfg: DatasetConfig) -> str:
    if cfg.selection_fraction is not None:
        return f"{cfg.split_name('train')} (held-out {100 * cfg.selection_fraction:g}% by file name)"
    return cfg.split_name("val")


def report_split_name(cfg: DatasetConfig) -> str:
    return cfg.split_name("test") if cfg.test is not None else cfg.split_name("val")


def selection_is_report(cfg: DatasetConfig) -> bool:
    """True when nothing separates selection from report (a data set with neither a test role nor
    ``selection_fraction``): the report then says so."""
    return cfg.test is None and cfg.selection_fraction is None


def verify_datasets(cfg: DatasetConfig, workers: int = 2) -> None:
    """Scan both splits of an on-disk data set once (every label decoded and mapped, every image
    checked intact), with progress on stderr. Bad samples raise ConfigError (one line, the first
    bad file and the count) unless ``dataset.on_bad_sample=skip``, which only warns.
    """
    train, val = build_datasets(cfg)
    splits = [("train", train), ("val", val)]
    if not selection_is_report(cfg):
        splits.append((report_split_name(cfg), build_report_dataset(cfg)))
    for split, ds in splits:
        if not hasattr(ds, "verify"):
            continue  # generated data sets (synthetic) have nothing to scan
        report = ds.verify(progress=_progress_printer(f"dataset '{cfg.name}' {split}"), workers=workers)
        if report.bad:
            where = f"{len(report.bad)} of {report.num_samples} {split} samples of dataset '{cfg.name}' are bad"
            if getattr(ds, "on_bad_sample", "error") != "skip":
                raise ConfigError(f"{where}; first: {report.bad[0]} (set dataset.on_bad_sample=skip to skip them)")
            print(f"warning: {where} and will be skipped (dataset.on_bad_sample=skip):\n  " + "\n  ".join(report.bad),
                  file=sys.stderr, flush=True)


def _progress_printer(what: str):
    """``progress(done, total)`` printing ``what: done/total`` to stderr at most every ~10 %."""
    state = {"next": 0}
    show = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if (show or total >= 1000) and (done >= state["next"] or done == total):
            state["next"] = done + max(1, total // 10)
            end = "\n" if done == total else "\r"
            print(f"checking {what}: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return progress


def build_model(cfg: ModelConfig, num_classes: int, load_weights: bool = True) -> nn.Module:
    """The model of ``cfg``: ``model.pretrained`` weights (ImageNet) loaded where names match, the
    OVeNet offset branch initialised from them, then ``model.body_checkpoint`` (a trained
    baseline) loaded into the shared body and main head, and with ``model.freeze_bn`` every
    BatchNorm frozen. ``load_weights=False`` (meta-device validation) reads the files without
    loading them: ``model.body_checkpoint`` is checked against the model (names and shapes) here,
    ``model.pretrained`` by :func:`validate_run`."""
    from seglab.models import build_model as _build
    from seglab.models.layouts import to_seglab_names
    from seglab.models.pretrained import load_checkpoint, read_state_dict

    model = _build(cfg.name, num_classes=num_classes, **cfg.kwargs)
    if cfg.pretrained:
        if load_weights:
            match = load_checkpoint(model, cfg.pretrained)
            if hasattr(model, "init_offset_branch_from_main"):  # a second branch that starts from them too
                model.init_offset_branch_from_main(loaded=set(match.usable))  # (unless the file held it)
            print(match.describe("model.pretrained", cfg.pretrained), flush=True)
        else:
            read_state_dict(cfg.pretrained)  # readable; validate_run checks that it fits the model
    if cfg.body_checkpoint:
        check(hasattr(model, "load_body_state"),
              f"model.body_checkpoint loads a body into a model that has one (load_body_state); model.name={cfg.name} "
              f"has none: use model.pretrained")
    if cfg.body_checkpoint and cfg.body_checkpoint != "@baseline":  # "@baseline": resolved by the sweep
        # a training checkpoint ({"model": state dict, ...}) or a bare state dict; on the meta
        # device (validation) load_body_state only compares names and shapes
        state = read_state_dict(cfg.body_checkpoint, key="model.body_checkpoint")
        state, layout, _ = to_seglab_names(state, model.state_dict())  # official layouts: renamed
        try:
            loaded = model.load_body_state(state)
        except ConfigError as error:
            raise ConfigError(f"model.body_checkpoint: {cfg.body_checkpoint}: {error}") from None
        if load_weights:
            print(f"model.body_checkpoint: loaded {loaded} tensors of the body and main head from "
                  f"{cfg.body_checkpoint} (layout: {layout.title})", flush=True)
    if cfg.freeze_bn:
        from seglab.models.frozen_bn import freeze_batchnorm

        model = freeze_batchnorm(model)
    return model


def build_loss(cfg: LossConfig, ignore_index: int, num_classes: Optional[int] = None) -> nn.Module:
    """The loss of ``cfg``; ``ignore_index`` and (for losses that take it, e.g. SEMEDA's, to check
    its edge network) the data set's ``num_classes`` are filled in."""
    from seglab.losses import LOSSES, accepted_kwargs
    from seglab.losses import build_loss as _build

    kwargs = dict(cfg.kwargs)
    kwargs.setdefault("ignore_index", ignore_index)
    accepted = accepted_kwargs(LOSSES.get(cfg.name))
    if num_classes is not None and accepted is not None and "num_classes" in accepted:
        kwargs.setdefault("num_classes", num_classes)
    return _build(cfg.name, **kwargs)
