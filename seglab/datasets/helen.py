"""``helen``: HELEN face parsing (Smith et al., CVPR 2013), 11 classes.

Two layouts are accepted (``layout``: ``"auto"`` picks the first that matches):

``smith2013`` - the release most face-parsing work uses, ``SmithCVPR2013_dataset_resized``::

    <root>/SmithCVPR2013_dataset_resized/     (or root = that folder itself)
        images/<name>.jpg                      e.g. images/100032540_1.jpg
        labels/<name>/<name>_lbl00.png ... <name>_lbl10.png   one 8-bit soft mask per class
        exemplars.txt   train (2,000)          lines "index , name", e.g. "1 , 100032540_1"
        tuning.txt      val   (230)
        testing.txt     test  (100)

  A list line is split at its last comma (or, without a comma, at whitespace) and the last field,
  stripped, is the name; so ``"1 , name"``, ``"1,name"``, ``"1 name"`` and ``"name"`` all work and
  blank lines are skipped. The label of a pixel is the **argmax over the 11 masks**; ties go to
  the lowest label index (``numpy.argmax`` keeps the first maximum), so a pixel where every mask
  is 0 is background (0).

``split_folders`` - a preprocessed copy with one label map per image::

    <root>/{train,val,test}/images/<name>.jpg
    <root>/{train,val,test}/labels/<name>.png      8-bit single channel, values 0..10 (255 = ignore)

Label order (that of the ``_lblNN`` masks, as in the dataset's README):

    ====  ==============  ====  ===========
    0     background      6     nose
    1     skin (face)     7     upper lip
    2     left eyebrow    8     inner mouth
    3     right eyebrow   9     lower lip
    4     left eye        10    hair
    5     right eye
    ====  ==============  ====  ===========

Horizontal flips mirror the face, so they also swap the left / right labels (2 <-> 3, 4 <-> 5:
:data:`FLIP_SWAP`). The data set declares this once, as :attr:`HELEN.flip_permutation`; the train
augmentation's flip (``hflip``, a :class:`~seglab.datasets.transforms.MirrorFlip`) and test-time flip
inference (``seglab eval --flip``, :func:`seglab.metrics.inference.predict_probs`) both read it.

Colours (:data:`PALETTE`): this project's choice of 11 distinct colours (black background, skin
tone, browns for brows, blues for eyes, orange nose, reds for lips/mouth, violet hair); there is
no official HELEN palette.

Defaults: ``base_size`` 512 (long side), random scale 0.5-2.0, crop 473x473 (the CE2P / EHANet
face-parsing crop), flip with label swap; evaluation at the file's size.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from seglab.datasets import register_dataset
from seglab.datasets.folder import BadSampleError, LabelMap, Sample, SegmentationFolder, require_dir
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import ConfigError, check
from seglab.metrics.inference import mirror_permutation

__all__ = ["HELEN", "CLASS_NAMES", "PALETTE", "NUM_CLASSES", "SPLITS", "LIST_FILES", "LAYOUTS", "FLIP_SWAP",
           "DATASET_DIR", "read_name_list", "argmax_masks"]

SPLITS: Tuple[str, ...] = ("train", "val", "test")
LAYOUTS: Tuple[str, ...] = ("auto", "smith2013", "split_folders")
DATASET_DIR = "SmithCVPR2013_dataset_resized"
LIST_FILES = {"train": "exemplars.txt", "val": "tuning.txt", "test": "testing.txt"}

CLASS_NAMES: Tuple[str, ...] = (
    "background", "skin", "left eyebrow", "right eyebrow", "left eye", "right eye", "nose",
    "upper lip", "inner mouth", "lower lip", "hair",
)
NUM_CLASSES = len(CLASS_NAMES)
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (0, 0, 0),  # background
    (255, 204, 153),  # skin
    (139, 69, 19),  # left eyebrow
    (205, 133, 63),  # right eyebrow
    (0, 102, 255),  # left eye
    (0, 204, 255),  # right eye
    (255, 128, 0),  # nose
    (220, 20, 60),  # upper lip
    (128, 0, 64),  # inner mouth
    (255, 105, 180),  # lower lip
    (102, 51, 153),  # hair
)
FLIP_SWAP: Tuple[Tuple[int, int], ...] = ((2, 3), (4, 5))
"""Label pairs exchanged by a horizontal flip (left/right eyebrow, left/right eye)."""


def read_name_list(path: Path) -> List[str]:
    """Names in a HELEN split list (``"index , name"`` lines; see the module docstring)."""
    if not path.is_file():
        raise ConfigError(f"dataset: split list {path} not found (expected {', '.join(LIST_FILES.values())} "
                          f"in {DATASET_DIR}/)")
    names: List[str] = []
    for line in path.read_text().splitlines():
        field = line.rsplit(",", 1)[-1] if "," in line else (line.split() or [""])[-1]
        name = field.strip()
        if name:
            names.append(name)
    if not names:
        raise ConfigError(f"dataset: split list {path} is empty (expected lines 'index , name')")
    return names


def argmax_masks(folder: str) -> np.ndarray:
    """The label map of a ``labels/<name>/`` folder: argmax over its 11 ``<name>_lblNN.png`` masks."""
    name = Path(folder).name
    masks = []
    for k in range(NUM_CLASSES):
        path = str(Path(folder) / f"{name}_lbl{k:02d}.png")
        mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if mask is None:
            what = "is missing" if not Path(path).exists() else "does not decode (corrupt or truncated file?)"
            raise BadSampleError(f"{path}: label mask {what}")
        if masks and mask.shape != masks[0].shape:
            raise BadSampleError(f"{path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from "
                                 f"{name}_lbl00.png ({masks[0].shape[1]}x{masks[0].shape[0]})")
        masks.append(mask)
    return np.argmax(np.stack(masks), axis=0).astype(np.uint8)


def _detect_layout(root: Path) -> Tuple[str, Path]:
    """``(layout, base folder)`` for ``layout="auto"``."""
    if (root / DATASET_DIR).is_dir():
        return "smith2013", root / DATASET_DIR
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "smith2013", root
    if any((root / split / "images").is_dir() for split in SPLITS):
        return "split_folders", root
    raise ConfigError(f"dataset.root: expected {DATASET_DIR}/ (images/, labels/, exemplars.txt, ...) in {root}, "
                      f"root to be that folder, or train/images/ + train/labels/ folders (not found); "
                      f"check dataset.root")


@register_dataset("helen")
class HELEN(SegmentationFolder):
    """HELEN face parsing (see the module docstring for layouts, label order and flips).

    Options: ``root``, ``layout`` ("auto" | "smith2013" | "split_folders"), ``crop_size`` (h, w),
    ``augment``, ``scale_range``, ``hflip``, ``base_size``, ``eval_resize``, ``mean``, ``std``,
    ``on_bad_sample``, ``limit``, ``seed``.
    """

    name = "helen"
    SPLITS = SPLITS
    num_classes = NUM_CLASSES
    class_names: List[str] = list(CLASS_NAMES)
    palette: List[Tuple[int, int, int]] = list(PALETTE)
    flip_permutation: Tuple[int, ...] = mirror_permutation(FLIP_SWAP, NUM_CLASSES)  # (0, 1, 3, 2, 5, 4, 6, ...)

    def __init__(self, split: str = "train", root: str = "data/helen", layout: str = "auto",
                 crop_size: Optional[Sequence[int]] = (473, 473), augment: bool = True,
                 scale_range: Sequence[float] = (0.5, 2.0), hflip: bool = True,
                 base_size: Optional[int] = 512, eval_resize: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0) -> None:
        check(isinstance(split, str) and split in SPLITS,
              f"dataset.split must be one of {', '.join(SPLITS)} for helen (got {split!r})")
        check(layout in LAYOUTS, f"dataset.layout must be one of {', '.join(LAYOUTS)} (got {layout!r})")
        check(isinstance(root, (str, Path)), f"dataset.root must be a path (got {root!r})")
        check(isinstance(hflip, bool), f"dataset.hflip must be true or false (got {hflip!r})")
        root_path = Path(root)
        if layout == "auto":
            layout, base = _detect_layout(root_path)
        elif layout == "smith2013":
            base = root_path / DATASET_DIR if (root_path / DATASET_DIR).is_dir() else root_path
        else:
            base = root_path
        self.layout = layout
        samples = self._smith_samples(base, split) if layout == "smith2013" else self._folder_samples(base, split)
        label_map = LabelMap.identity(NUM_CLASSES, "HELEN labels 0..10 and 255 (ignore)")
        super().__init__(samples, split, label_map, root=str(root), crop_size=crop_size, augment=augment,
                         scale_range=scale_range, hflip=hflip, base_size=base_size, eval_resize=eval_resize,
                         mean=mean, std=std, on_bad_sample=on_bad_sample, limit=limit, seed=seed)

    @staticmethod
    def _smith_samples(base: Path, split: str) -> List[Sample]:
        images = require_dir(base / "images", f"the HELEN images ({DATASET_DIR}/images/)")
        labels = require_dir(base / "labels", f"the HELEN label masks ({DATASET_DIR}/labels/)")
        list_file = base / LIST_FILES[split]
        samples = []
        for name in read_name_list(list_file):
            image = images / f"{name}.jpg"
            if not image.is_file():
                raise ConfigError(f"dataset: {list_file} lists {name} but its image {image} is missing")
            folder = labels / name
            if not folder.is_dir():
                raise ConfigError(f"dataset: image {image} has no label; expected the mask folder {folder}/ "
                                  f"({name}_lbl00.png ... {name}_lbl10.png)")
            samples.append(Sample(str(image), str(folder)))
        return samples

    @staticmethod
    def _folder_samples(base: Path, split: str) -> List[Sample]:
        images = require_dir(base / split / "images", f"the HELEN {split} images ({split}/images/)")
        labels = require_dir(base / split / "labels", f"the HELEN {split} labels ({split}/labels/)")
        files = sorted(images.glob("*.jpg"))
        if not files:
            raise ConfigError(f"dataset 'helen': the {split} split is empty: no *.jpg images in {images}")
        samples = []
        for image in files:
            label = labels / f"{image.stem}.png"
            if not label.is_file():
                raise ConfigError(f"dataset: image {image} has no label; expected {label}")
            samples.append(Sample(str(image), str(label)))
        return samples

    def read_label(self, path: str) -> np.ndarray:
        """A mask folder (smith2013: argmax of the 11 masks) or a single label-map file."""
        if Path(path).is_dir():
            return argmax_masks(path)
        return super().read_label(path)
