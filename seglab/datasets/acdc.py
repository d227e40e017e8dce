"""``acdc``: ACDC (Adverse Conditions Dataset with Correspondences) read from its official layout.

Layout (``rgb_anon_trainvaltest.zip`` and ``gt_trainval.zip`` unpacked into one root)::

    <root>/rgb_anon/<condition>/{train,val,test}/<sequence>/<name>_rgb_anon.png
    <root>/gt/<condition>/{train,val}/<sequence>/<name>_gt_labelTrainIds.png   (the default labels)
    <root>/gt/<condition>/{train,val}/<sequence>/<name>_gt_labelIds.png        (label_format=labelIds)

with ``<condition>`` one of fog, night, rain, snow. The reference images of the same places in
normal conditions (``rgb_anon/<condition>/<split>_ref/``) and the other gt files
(``*_gt_labelColor.png``, ``*_gt_invIds.png``) are ignored. ``labelTrainIds`` files hold the 19
Cityscapes train ids and 255; ``labelIds`` files hold Cityscapes labelIds and are mapped with the
Cityscapes table (:data:`seglab.datasets.cityscapes.LABEL_ID_TO_TRAIN_ID`); the two give the same
targets.

Options (besides the transform options of :class:`~seglab.datasets.folder.SegmentationFolder`):

* ``split``: ``train``, ``val`` or ``test`` (no ground truth: ``label=None``, all-ignore targets).
* ``conditions``: the conditions to read (default all four, e.g. ``[fog, night]``).
* ``label_format``: ``labelTrainIds`` (default) or ``labelIds``.

Each sample's group is its condition, so metrics can be reported per condition
(``ds.group_indices()``). Defaults: base size 1920 (the images are 1080x1920), random scale
0.5-2.0, crop 540x960, flip, ImageNet mean/std; evaluation at full resolution.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from seglab.datasets import register_dataset
from seglab.datasets.cityscapes import cityscapes_label_map
from seglab.datasets.folder import (LabelMap, MissingSplitError, Sample, SegmentationFolder, pair_by_suffix,
                                    require_dir)
from seglab.datasets.labels import CITYSCAPES_CLASS_NAMES, CITYSCAPES_PALETTE
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import ConfigError, check

__all__ = ["ACDC", "CONDITIONS", "LABEL_FORMATS", "acdc_samples"]

CONDITIONS: Tuple[str, ...] = ("fog", "night", "rain", "snow")
LABEL_FORMATS: Tuple[str, ...] = ("labelTrainIds", "labelIds")
SPLITS: Tuple[str, ...] = ("train", "val", "test")


def acdc_samples(root: Path, split: str, conditions: Sequence[str], label_format: str = "labelTrainIds",
                 skipped: Optional[List[str]] = None) -> List[Sample]:
    """Walk ``root`` into the samples of ``split`` for ``conditions`` (in that order; within a
    condition sorted by sequence and file name). Layout errors name the directory they expected."""
    require_dir(root, "the ACDC root (with rgb_anon/ and gt/)")
    require_dir(root / "rgb_anon", "the ACDC image directory rgb_anon/")
    missing = [c for c in conditions if not (root / "rgb_anon" / c / split).is_dir()]
    for c in conditions:
        require_dir(root / "rgb_anon" / c, f"the {c} images rgb_anon/{c}/")
    if missing:
        error = f"dataset.root: expected the {split} images rgb_anon/{missing[0]}/{split}/<sequence>/ at " \
                f"{root / 'rgb_anon' / missing[0] / split} (not found); check dataset.root and the layout"
        if len(missing) == len(conditions):
            raise MissingSplitError(error)
        raise ConfigError(error)
    labelled = split != "test"
    samples: List[Sample] = []
    for condition in conditions:
        image_dir = root / "rgb_anon" / condition / split
        if labelled:
            require_dir(root / "gt", "the ACDC label directory gt/")
            label_dir = require_dir(root / "gt" / condition / split, f"the {split} labels gt/{condition}/{split}/")
        for sequence in sorted(d for d in image_dir.iterdir() if d.is_dir()):
            images = sorted(sequence.glob("*_rgb_anon.png"))
            if not labelled:
                samples += [Sample(str(p), None, condition) for p in images]
                continue
            pairs = pair_by_suffix(images, "_rgb_anon.png", lambda _p, d=label_dir / sequence.name: d,
                                   f"_gt_{label_format}.png", skipped=skipped)
            samples += [Sample(str(image), str(label), condition) for image, label in pairs]
    return samples


@register_dataset("acdc")
class ACDC(SegmentationFolder):
    """ACDC, the 19 Cityscapes classes, one group per condition (see the module docstring)."""

    name = "acdc"
    num_classes = 19
    class_names: List[str] = list(CITYSCAPES_CLASS_NAMES)
    palette: List[Tuple[int, int, int]] = list(CITYSCAPES_PALETTE)
    class_weights = None  # none published for ACDC
    report_groups = True  # the platform logs val mIoU per condition (paper Table 4)
    check_splits: Tuple[str, ...] = SPLITS

    def __init__(self, split: str = "train", root: str = "data/acdc", conditions: Optional[Sequence[str]] = None,
                 label_format: str = "labelTrainIds", crop_size: Optional[Sequence[int]] = (540, 960),
                 augment: bool = True, scale_range: Sequence[float] = (0.5, 2.0), hflip: bool = True,
                 base_size: Optional[int] = 1920, eval_resize: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0) -> None:
        check(split in SPLITS, f"dataset.split must be one of {', '.join(SPLITS)} (got {split!r})")
        if isinstance(conditions, str):  # "fog" or "fog,night" from a command line
            conditions = [c.strip() for c in conditions.split(",")]
        conditions = list(CONDITIONS if conditions is None else conditions)
        check(len(conditions) > 0 and all(c in CONDITIONS for c in conditions)
              and len(set(conditions)) == len(conditions),
              f"dataset.conditions must be a non-empty list of distinct values from {', '.join(CONDITIONS)} "
              f"(got {conditions!r})")
        check(label_format in LABEL_FORMATS,
              f"dataset.label_format must be one of {', '.join(LABEL_FORMATS)} (got {label_format!r})")
        self.conditions = conditions
        self.label_format = label_format
        skipped: Optional[List[str]] = [] if on_bad_sample == "skip" else None
        samples = acdc_samples(Path(root), split, conditions, label_format, skipped)
        if label_format == "labelIds":
            label_map = cityscapes_label_map(describe="Cityscapes labelIds 0..33")
        else:
            label_map = LabelMap.identity(self.num_classes, "ACDC labelTrainIds 0..18 and 255")
        super().__init__(samples, split, label_map, root=root, crop_size=crop_size, augment=augment,
                         scale_range=scale_range, hflip=hflip, base_size=base_size, eval_resize=eval_resize,
                         mean=mean, std=std, on_bad_sample=on_bad_sample, limit=limit, seed=seed,
                         unpaired=skipped or ())
