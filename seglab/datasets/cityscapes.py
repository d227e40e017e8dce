"""``cityscapes``: the Cityscapes data set read from its official layout, unchanged.

Layout (as downloaded: ``leftImg8bit_trainvaltest.zip``, ``gtFine_trainvaltest.zip`` and, for
coarse annotations, ``leftImg8bit_trainextra.zip``, ``gtCoarse.zip``)::

    <root>/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png      (the labels)
    <root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png   (kept for iIoU)
    <root>/leftImg8bit/train_extra/<city>/...                                      (coarse only)
    <root>/gtCoarse/{train,train_extra,val}/<city>/<...>_gtCoarse_labelIds.png     (coarse only)

Other files next to them (``*_color.png``, ``*_polygons.json``, ``*_labelTrainIds.png`` written by
``createTrainIdLabelImgs``) are ignored. Labels are read from the ``labelIds`` files and mapped to
the 19 train ids exactly as ``cityscapesscripts.helpers.labels`` does (:data:`CITYSCAPES_LABELS`;
every label whose trainId is 255 or -1 becomes ignore). A labelIds file holds the ids 0..33 only
(``json2labelImg`` never draws the license plate, id -1); any other value is a bad sample.

Options (besides the transform options of :class:`~seglab.datasets.folder.SegmentationFolder`):

* ``split``: ``train``, ``val``, ``test`` or ``trainval`` (= train + val) with fine annotations;
  ``train``, ``train_extra``, ``val`` or ``trainval`` with coarse ones. The test split's gtFine
  files hold no labels (all zeros), so its samples have ``label=None`` (and an all-ignore target).
* ``annotations``: ``fine`` (default, ``gtFine``: 2975 train / 500 val / 1525 test images) or
  ``coarse`` (``gtCoarse``: 2975 train / 19998 train_extra / 500 val). To train on coarse
  train + train_extra, concatenate two data sets (``torch.utils.data.ConcatDataset``).
* ``cities``: keep only these cities (e.g. ``[aachen, bochum]``); default all.

Each sample's group is its city; ``instance`` is its ``*_instanceIds.png`` when present.
Defaults follow the HRNet protocol: base size 2048 (the long side), random scale 0.5-2.0, crop
512x1024, flip, ImageNet mean/std; evaluation at full resolution (1024x2048).
"""
from __future__ import annotations

from collections import namedtuple
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from seglab.datasets import register_dataset
from seglab.datasets.folder import (LabelMap, Sample, SegmentationFolder, pair_by_suffix, require_dir,
                                    require_split_dir)
from seglab.datasets.labels import CITYSCAPES_CLASS_NAMES, CITYSCAPES_CLASS_WEIGHTS, CITYSCAPES_PALETTE, IGNORE_INDEX
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import ConfigError, check

__all__ = ["CityscapesLabel", "CITYSCAPES_LABELS", "LABEL_ID_TO_TRAIN_ID", "cityscapes_label_map",
           "cityscapes_samples", "Cityscapes", "ANNOTATIONS"]

CityscapesLabel = namedtuple("CityscapesLabel", ["name", "id", "train_id", "category", "has_instances", "color"])

#: The label table of cityscapesScripts (``helpers/labels.py``): name, labelId, trainId (255 / -1:
#: not evaluated), category, whether it has instances, colour (RGB).
CITYSCAPES_LABELS: Tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, "void", False, (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, "void", False, (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, "void", False, (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, "void", False, (0, 0, 0)),
    CityscapesLabel("static", 4, 255, "void", False, (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, "void", False, (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, "void", False, (81, 0, 81)),
    CityscapesLabel("road", 7, 0, "flat", False, (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, "flat", False, (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, "flat", False, (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, "flat", False, (230, 150, 140)),
    CityscapesLabel("building", 11, 2, "construction", False, (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, "construction", False, (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, "construction", False, (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, "construction", False, (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, "construction", False, (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, "construction", False, (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, "object", False, (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, "object", False, (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, "object", False, (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, "object", False, (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, "nature", False, (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, "nature", False, (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, "sky", False, (70, 130, 180)),
    CityscapesLabel("person", 24, 11, "human", True, (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, "human", True, (255, 0, 0)),
    CityscapesLabel("car", 26, 13, "vehicle", True, (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, "vehicle", True, (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, "vehicle", True, (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, "vehicle", True, (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, "vehicle", True, (0, 0, 110)),
    CityscapesLabel("train", 31, 16, "vehicle", True, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, "vehicle", True, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, "vehicle", True, (119, 11, 32)),
    CityscapesLabel("license plate", -1, -1, "vehicle", False, (0, 0, 142)),
)

#: labelId (0..33) -> trainId (0..18, or 255 = ignore), as in the official ``createTrainIdLabelImgs``.
LABEL_ID_TO_TRAIN_ID: Dict[int, int] = {
    lab.id: (lab.train_id if 0 <= lab.train_id < 255 else IGNORE_INDEX) for lab in CITYSCAPES_LABELS if lab.id >= 0
}

ANNOTATIONS = ("fine", "coarse")
_SPLITS = {"fine": ("train", "val", "test", "trainval"), "coarse": ("train", "train_extra", "val", "trainval")}
_LABEL_DIR = {"fine": "gtFine", "coarse": "gtCoarse"}


def cityscapes_label_map(reduction: Optional[Dict[int, int]] = None, describe: str = "Cityscapes labelIds 0..33"
                         ) -> LabelMap:
    """The labelId -> trainId map; ``reduction`` (trainId -> new id, others -> ignore) composes a reduction."""
    mapping = dict(LABEL_ID_TO_TRAIN_ID)
    if reduction is not None:
        mapping = {raw: int(reduction.get(t, IGNORE_INDEX)) for raw, t in mapping.items()}
    return LabelMap(mapping, describe)


def _split_parts(split: str) -> Tuple[str, ...]:
    return ("train", "val") if split == "trainval" else (split,)


def cityscapes_samples(root: Path, split: str, annotations: str = "fine", cities: Optional[Sequence[str]] = None,
                       skipped: Optional[List[str]] = None) -> List[Sample]:
    """Walk ``root`` (official layout) into the samples of ``split``, sorted by city and file name.

    Raises ConfigError naming the directory it expected (a missing image directory of the split:
    :class:`~seglab.datasets.folder.MissingSplitError`) or the label an image lacks (with a list
    ``skipped``: appends the message and leaves the image out instead)."""
    label_dir_name = _LABEL_DIR[annotations]
    suffix = "_gtFine" if annotations == "fine" else "_gtCoarse"
    require_dir(root, "the Cityscapes root (with leftImg8bit/ and gtFine/)")
    require_dir(root / "leftImg8bit", "the Cityscapes image directory leftImg8bit/")
    samples: List[Sample] = []
    seen: List[str] = []
    for part in _split_parts(split):
        image_dir = require_split_dir(root / "leftImg8bit" / part, f"the {part} images leftImg8bit/{part}/<city>/")
        labelled = not (annotations == "fine" and part == "test")  # gtFine/test holds no labels
        if labelled:
            require_dir(root / label_dir_name, f"the Cityscapes label directory {label_dir_name}/")
            label_dir = require_dir(root / label_dir_name / part, f"the {part} labels {label_dir_name}/{part}/<city>/")
        city_dirs = sorted(d for d in image_dir.iterdir() if d.is_dir())
        seen += [d.name for d in city_dirs]
        if cities is not None:
            city_dirs = [d for d in city_dirs if d.name in set(cities)]
        for city_dir in city_dirs:
            images = sorted(city_dir.glob("*_leftImg8bit.png"))
            if not labelled:
                samples += [Sample(str(p), None, city_dir.name) for p in images]
                continue
            city_labels = label_dir / city_dir.name
            pairs = pair_by_suffix(images, "_leftImg8bit.png", lambda _p, d=city_labels: d,
                                   f"{suffix}_labelIds.png", skipped=skipped)
            for image, label in pairs:
                instance = label.with_name(label.name.replace("_labelIds.png", "_instanceIds.png"))
                samples.append(Sample(str(image), str(label), city_dir.name,
                                      str(instance) if instance.is_file() else None))
    unknown = sorted(set(cities or ()) - set(seen))
    if unknown:
        raise ConfigError(f"dataset.cities: no city {unknown[0]!r} in the {split} split under "
                          f"{root / 'leftImg8bit'}; cities there: {', '.join(sorted(set(seen)))}")
    return samples


@register_dataset("cityscapes")
class Cityscapes(SegmentationFolder):
    """Cityscapes, 19 classes (see the module docstring for the layout and the options).

    ``class_weights``: the HRNet repository's weights (``seglab.datasets.labels.CITYSCAPES_CLASS_WEIGHTS``).
    """

    name = "cityscapes"
    num_classes = 19
    class_names: List[str] = list(CITYSCAPES_CLASS_NAMES)
    palette: List[Tuple[int, int, int]] = list(CITYSCAPES_PALETTE)
    class_weights: Optional[List[float]] = list(CITYSCAPES_CLASS_WEIGHTS)
    check_splits: Tuple[str, ...] = ("train", "val", "test")
    #: trainId -> this data set's class id (``None``: the 19 classes themselves); subclasses merge classes.
    reduction: Optional[Dict[int, int]] = None
    label_description = "Cityscapes labelIds 0..33"

    def __init__(self, split: str = "train", root: str = "data/cityscapes", annotations: str = "fine",
                 cities: Optional[Sequence[str]] = None, crop_size: Optional[Sequence[int]] = (512, 1024),
                 augment: bool = True, scale_range: Sequence[float] = (0.5, 2.0), hflip: bool = True,
                 base_size: Optional[int] = 2048, eval_resize: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0) -> None:
        check(annotations in ANNOTATIONS,
              f"dataset.annotations must be one of {', '.join(ANNOTATIONS)} (got {annotations!r})")
        allowed = _SPLITS[annotations]
        check(split in allowed, f"dataset.split must be one of {', '.join(allowed)} for {annotations} "
                                f"annotations (got {split!r})")
        if isinstance(cities, str):  # "aachen" or "aachen,bochum" from a command line
            cities = [c.strip() for c in cities.split(",")]
        check(cities is None or (isinstance(cities, (list, tuple)) and all(isinstance(c, str) for c in cities)),
              f"dataset.cities must be null or a list of city names (got {cities!r})")
        self.annotations = annotations
        skipped: Optional[List[str]] = [] if on_bad_sample == "skip" else None
        samples = cityscapes_samples(Path(root), split, annotations, cities, skipped)
        super().__init__(samples, split, cityscapes_label_map(self.reduction, self.label_description), root=root,
                         crop_size=crop_size, augment=augment, scale_range=scale_range, hflip=hflip,
                         base_size=base_size, eval_resize=eval_resize, mean=mean, std=std,
                         on_bad_sample=on_bad_sample, limit=limit, seed=seed, unpaired=skipped or ())

    @classmethod
    def splits_to_check(cls, options: Mapping[str, Any]) -> Tuple[str, ...]:
        """train / val / test with fine annotations; train / train_extra / val with coarse ones."""
        return ("train", "train_extra", "val") if options.get("annotations") == "coarse" else cls.check_splits
