"""``ade20k``: the ADE20K SceneParsing benchmark (MIT Scene Parsing Challenge 2016, 150 classes).

Layout (the official ``ADEChallengeData2016.zip``)::

    <root>/ADEChallengeData2016/            (or root = ADEChallengeData2016 itself)
        images/training/ADE_train_00000001.jpg ...      (20,210 images)
        images/validation/ADE_val_00000001.jpg ...      (2,000 images)
        annotations/training/ADE_train_00000001.png ... (8-bit single channel, same stem)
        annotations/validation/ADE_val_00000001.png ...

``root`` may point at the folder that contains ``ADEChallengeData2016`` (checked first) or at
``ADEChallengeData2016`` itself (any folder holding ``images/`` and ``annotations/``).
Splits: ``train`` -> ``training``, ``val`` -> ``validation``; every ``*.jpg`` of the split folder is a
sample (sorted by name) and must have ``annotations/<split>/<stem>.png``.

Labels: the annotation files store 0..150, where 0 is "other / unlabelled" and 1..150 are the
150 SceneParsing classes. They are mapped to train ids by ``0 -> 255`` (ignore) and
``k -> k - 1`` (1..150 -> 0..149, the "reduce zero label" convention of HRNet, mmseg, ...);
any other value (151..255) makes the sample bad.

Class names and colours: the SceneParsing 150-class list (``objectInfo150``; the short names in
common use) and the standard ADE20K visualisation palette of the benchmark's toolkits (note that
it gives ``road`` (6) and ``skyscraper`` (48) the same grey, (140, 140, 140)).

Defaults follow the HRNet / OVeNet ADE20K protocol: ``base_size`` 520 (long side), random scale
0.5-2.0 of it, crop 520x520, flip; evaluation at the file's size (``eval_resize=False``).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from seglab.datasets import register_dataset
from seglab.datasets.folder import LabelMap, Sample, SegmentationFolder, pair_by_suffix, require_dir
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import ConfigError, check

__all__ = ["ADE20K", "ADE20K_CLASSES", "CLASS_NAMES", "PALETTE", "NUM_CLASSES", "SPLITS", "SPLIT_DIRS",
           "DATASET_DIR", "ade20k_label_map", "find_ade20k_root"]

SPLITS: Tuple[str, ...] = ("train", "val")
SPLIT_DIRS = {"train": "training", "val": "validation"}
DATASET_DIR = "ADEChallengeData2016"

ADE20K_CLASSES: Tuple[Tuple[str, Tuple[int, int, int]], ...] = (
    # (name, RGB colour), index = train id = raw annotation value - 1
    ("wall", (120, 120, 120)),  # 0
    ("building", (180, 120, 120)),  # 1
    ("sky", (6, 230, 230)),  # 2
    ("floor", (80, 50, 50)),  # 3
    ("tree", (4, 200, 3)),  # 4
    ("ceiling", (120, 120, 80)),  # 5
    ("road", (140, 140, 140)),  # 6
    ("bed", (204, 5, 255)),  # 7
    ("windowpane", (230, 230, 230)),  # 8
    ("grass", (4, 250, 7)),  # 9
    ("cabinet", (224, 5, 255)),  # 10
    ("sidewalk", (235, 255, 7)),  # 11
    ("person", (150, 5, 61)),  # 12
    ("earth", (120, 120, 70)),  # 13
    ("door", (8, 255, 51)),  # 14
    ("table", (255, 6, 82)),  # 15
    ("mountain", (143, 255, 140)),  # 16
    ("plant", (204, 255, 4)),  # 17
    ("curtain", (255, 51, 7)),  # 18
    ("chair", (204, 70, 3)),  # 19
    ("car", (0, 102, 200)),  # 20
    ("water", (61, 230, 250)),  # 21
    ("painting", (255, 6, 51)),  # 22
    ("sofa", (11, 102, 255)),  # 23
    ("shelf", (255, 7, 71)),  # 24
    ("house", (255, 9, 224)),  # 25
    ("sea", (9, 7, 230)),  # 26
    ("mirror", (220, 220, 220)),  # 27
    ("rug", (255, 9, 92)),  # 28
    ("field", (112, 9, 255)),  # 29
    ("armchair", (8, 255, 214)),  # 30
    ("seat", (7, 255, 224)),  # 31
    ("fence", (255, 184, 6)),  # 32
    ("desk", (10, 255, 71)),  # 33
    ("rock", (255, 41, 10)),  # 34
    ("wardrobe", (7, 255, 255)),  # 35
    ("lamp", (224, 255, 8)),  # 36
    ("bathtub", (102, 8, 255)),  # 37
    ("railing", (255, 61, 6)),  # 38
    ("cushion", (255, 194, 7)),  # 39
    ("base", (255, 122, 8)),  # 40
    ("box", (0, 255, 20)),  # 41
    ("column", (255, 8, 41)),  # 42
    ("signboard", (255, 5, 153)),  # 43
    ("chest of drawers", (6, 51, 255)),  # 44
    ("counter", (235, 12, 255)),  # 45
    ("sand", (160, 150, 20)),  # 46
    ("sink", (0, 163, 255)),  # 47
    ("skyscraper", (140, 140, 140)),  # 48
    ("fireplace", (250, 10, 15)),  # 49
    ("refrigerator", (20, 255, 0)),  # 50
    ("grandstand", (31, 255, 0)),  # 51
    ("path", (255, 31, 0)),  # 52
    ("stairs", (255, 224, 0)),  # 53
    ("runway", (153, 255, 0)),  # 54
    ("case", (0, 0, 255)),  # 55
    ("pool table", (255, 71, 0)),  # 56
    ("pillow", (0, 235, 255)),  # 57
    ("screen door", (0, 173, 255)),  # 58
    ("stairway", (31, 0, 255)),  # 59
    ("river", (11, 200, 200)),  # 60
    ("bridge", (255, 82, 0)),  # 61
    ("bookcase", (0, 255, 245)),  # 62
    ("blind", (0, 61, 255)),  # 63
    ("coffee table", (0, 255, 112)),  # 64
    ("toilet", (0, 255, 133)),  # 65
    ("flower", (255, 0, 0)),  # 66
    ("book", (255, 163, 0)),  # 67
    ("hill", (255, 102, 0)),  # 68
    ("bench", (194, 255, 0)),  # 69
    ("countertop", (0, 143, 255)),  # 70
    ("stove", (51, 255, 0)),  # 71
    ("palm", (0, 82, 255)),  # 72
    ("kitchen island", (0, 255, 41)),  # 73
    ("computer", (0, 255, 173)),  # 74
    ("swivel chair", (10, 0, 255)),  # 75
    ("boat", (173, 255, 0)),  # 76
    ("bar", (0, 255, 153)),  # 77
    ("arcade machine", (255, 92, 0)),  # 78
    ("hovel", (255, 0, 255)),  # 79
    ("bus", (255, 0, 245)),  # 80
    ("towel", (255, 0, 102)),  # 81
    ("light", (255, 173, 0)),  # 82
    ("truck", (255, 0, 20)),  # 83
    ("tower", (255, 184, 184)),  # 84
    ("chandelier", (0, 31, 255)),  # 85
    ("awning", (0, 255, 61)),  # 86
    ("streetlight", (0, 71, 255)),  # 87
    ("booth", (255, 0, 204)),  # 88
    ("television receiver", (0, 255, 194)),  # 89
    ("airplane", (0, 255, 82)),  # 90
    ("dirt track", (0, 10, 255)),  # 91
    ("apparel", (0, 112, 255)),  # 92
    ("pole", (51, 0, 255)),  # 93
    ("land", (0, 194, 255)),  # 94
    ("bannister", (0, 122, 255)),  # 95
    ("escalator", (0, 255, 163)),  # 96
    ("ottoman", (255, 153, 0)),  # 97
    ("bottle", (0, 255, 10)),  # 98
    ("buffet", (255, 112, 0)),  # 99
    ("poster", (143, 255, 0)),  # 100
    ("stage", (82, 0, 255)),  # 101
    ("van", (163, 255, 0)),  # 102
    ("ship", (255, 235, 0)),  # 103
    ("fountain", (8, 184, 170)),  # 104
    ("conveyer belt", (133, 0, 255)),  # 105
    ("canopy", (0, 255, 92)),  # 106
    ("washer", (184, 0, 255)),  # 107
    ("plaything", (255, 0, 31)),  # 108
    ("swimming pool", (0, 184, 255)),  # 109
    ("stool", (0, 214, 255)),  # 110
    ("barrel", (255, 0, 112)),  # 111
    ("basket", (92, 255, 0)),  # 112
    ("waterfall", (0, 224, 255)),  # 113
    ("tent", (112, 224, 255)),  # 114
    ("bag", (70, 184, 160)),  # 115
    ("minibike", (163, 0, 255)),  # 116
    ("cradle", (153, 0, 255)),  # 117
    ("oven", (71, 255, 0)),  # 118
    ("ball", (255, 0, 163)),  # 119
    ("food", (255, 204, 0)),  # 120
    ("step", (255, 0, 143)),  # 121
    ("tank", (0, 255, 235)),  # 122
    ("trade name", (133, 255, 0)),  # 123
    ("microwave", (255, 0, 235)),  # 124
    ("pot", (245, 0, 255)),  # 125
    ("animal", (255, 0, 122)),  # 126
    ("bicycle", (255, 245, 0)),  # 127
    ("lake", (10, 190, 212)),  # 128
    ("dishwasher", (214, 255, 0)),  # 129
    ("screen", (0, 204, 255)),  # 130
    ("blanket", (20, 0, 255)),  # 131
    ("sculpture", (255, 255, 0)),  # 132
    ("hood", (0, 153, 255)),  # 133
    ("sconce", (0, 41, 255)),  # 134
    ("vase", (0, 255, 204)),  # 135
    ("traffic light", (41, 0, 255)),  # 136
    ("tray", (41, 255, 0)),  # 137
    ("ashcan", (173, 0, 255)),  # 138
    ("fan", (0, 245, 255)),  # 139
    ("pier", (71, 0, 255)),  # 140
    ("crt screen", (122, 0, 255)),  # 141
    ("plate", (0, 255, 184)),  # 142
    ("monitor", (0, 92, 255)),  # 143
    ("bulletin board", (184, 255, 0)),  # 144
    ("shower", (0, 133, 255)),  # 145
    ("radiator", (255, 214, 0)),  # 146
    ("glass", (25, 194, 194)),  # 147
    ("clock", (102, 255, 0)),  # 148
    ("flag", (92, 0, 255)),  # 149
)
"""The 150 SceneParsing classes with their palette colours, index = train id."""

CLASS_NAMES: Tuple[str, ...] = tuple(name for name, _ in ADE20K_CLASSES)
PALETTE: Tuple[Tuple[int, int, int], ...] = tuple(colour for _, colour in ADE20K_CLASSES)
NUM_CLASSES = len(ADE20K_CLASSES)


def ade20k_label_map() -> LabelMap:
    """Raw annotation values -> train ids: 0 -> 255 (ignore), 1..150 -> 0..149."""
    mapping = {0: 255}
    mapping.update({raw: raw - 1 for raw in range(1, NUM_CLASSES + 1)})
    return LabelMap(mapping, "ADE20K annotation values 0..150 (0 = unlabelled)")


def find_ade20k_root(root: Path) -> Path:
    """The ``ADEChallengeData2016`` folder: ``root/ADEChallengeData2016`` or ``root`` itself."""
    nested = root / DATASET_DIR
    if nested.is_dir():
        return nested
    if (root / "images").is_dir() and (root / "annotations").is_dir():
        return root
    raise ConfigError(f"dataset.root: expected {DATASET_DIR}/ (with images/ and annotations/) in {root} "
                      f"or root to be that folder itself (not found); check dataset.root")


@register_dataset("ade20k")
class ADE20K(SegmentationFolder):
    """ADE20K SceneParsing, 150 classes (see the module docstring for layout and label mapping).

    Options: ``root``, ``crop_size`` (h, w), ``augment``, ``scale_range``, ``hflip``, ``base_size``,
    ``eval_resize``, ``mean``, ``std``, ``on_bad_sample`` ("error" | "skip"), ``limit``, ``seed``
    (the transform options are those of :class:`SegmentationFolder`).
    """

    name = "ade20k"
    SPLITS = SPLITS
    num_classes = NUM_CLASSES
    class_names: List[str] = list(CLASS_NAMES)
    palette: List[Tuple[int, int, int]] = list(PALETTE)

    def __init__(self, split: str = "train", root: str = "data/ade",
                 crop_size: Optional[Sequence[int]] = (520, 520), augment: bool = True,
                 scale_range: Sequence[float] = (0.5, 2.0), hflip: bool = True,
                 base_size: Optional[int] = 520, eval_resize: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0) -> None:
        check(isinstance(split, str) and split in SPLITS,
              f"dataset.split must be one of {', '.join(SPLITS)} for ade20k (got {split!r})")
        check(isinstance(root, (str, Path)), f"dataset.root must be a path (got {root!r})")
        base = find_ade20k_root(Path(root))
        sub = SPLIT_DIRS[split]
        image_dir = require_dir(base / "images" / sub, f"the ADE20K {split} images ({DATASET_DIR}/images/{sub}/)")
        label_dir = require_dir(base / "annotations" / sub,
                                f"the ADE20K {split} annotations ({DATASET_DIR}/annotations/{sub}/)")
        images = sorted(image_dir.glob("*.jpg"))
        if not images:
            raise ConfigError(f"dataset '{self.name}': the {split} split is empty: no *.jpg images in {image_dir}")
        pairs = pair_by_suffix(images, ".jpg", lambda _image: label_dir, ".png")
        samples = [Sample(str(image), str(label)) for image, label in pairs]
        super().__init__(samples, split, ade20k_label_map(), root=str(root), crop_size=crop_size,
                         augment=augment, scale_range=scale_range, hflip=hflip, base_size=base_size,
                         eval_resize=eval_resize, mean=mean, std=std, on_bad_sample=on_bad_sample,
                         limit=limit, seed=seed)
