"""``voc2012``: PASCAL VOC 2012 segmentation, 21 classes, optionally with the SBD-augmented labels.

Layout (the official ``VOCtrainval_11-May-2012.tar`` plus, optionally, the augmented labels)::

    <root>/VOCdevkit/VOC2012/        (root may also be VOCdevkit/ or VOCdevkit/VOC2012/ itself)
        JPEGImages/<stem>.jpg
        SegmentationClass/<stem>.png          paletted PNGs (mode "P"): the pixel values are the
                                              palette indices 0..20 and 255 (boundary / "void")
        SegmentationClassAug/<stem>.png       optional: 8-bit grayscale class indices (the SBD
                                              labels, 10,582 train images in the usual release)
        ImageSets/Segmentation/train.txt, val.txt          one stem per line
        ImageSets/Segmentation/trainaug.txt | train_aug.txt | aug.txt   optional (see below)

List files hold one stem per line (``2007_000032``); the two-path lines of DeepLab's list files
(``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``) are accepted too (the stem
of the first path is used). Blank lines are skipped; a stem listed twice is used once.

Splits (``augmented`` decides the training set; ``val`` is always the same):

* ``val``: ``val.txt`` (1,449) with labels from ``SegmentationClass``.
* ``train`` with the augmented set: the first of these list files that exists, with
    - ``trainaug.txt`` or ``train_aug.txt`` (the full list, e.g. DeepLab's 10,582): every label
      from ``SegmentationClassAug``;
    - ``aug.txt`` (mmsegmentation's ``voc_aug.py``: SBD images not in train.txt/val.txt):
      ``train.txt`` with labels from ``SegmentationClass`` followed by ``aug.txt`` with labels
      from ``SegmentationClassAug``.
* ``train`` without it: ``train.txt`` (1,464) with labels from ``SegmentationClass``.

``augmented``: ``"auto"`` (default) uses the augmented set when ``SegmentationClassAug/`` and one
of the list files above exist, else the plain one; ``true`` requires them (ConfigError naming the
missing folder / list otherwise); ``false`` always uses ``train.txt``. The choice is recorded in
:attr:`VOC2012.augmented` and :attr:`VOC2012.split_lists` (the list files read).

Labels are read with Pillow (:func:`read_index_png`), not OpenCV: OpenCV converts a paletted PNG
to its colours, Pillow returns the stored palette indices. Paletted ("P") and grayscale ("L")
files are both accepted, so either label folder works. Train ids are the stored values: 0..20,
and 255 (the boundary band) is ignore; anything else makes the sample bad.

Classes: background + the 20 VOC object classes; colours: the standard VOC colour map
(:func:`voc_colormap`, a bit-interleaving of the label index).
Defaults: crop 512x512, no base resize (``base_size=None``); the SEMEDA protocol's 321x321 crop is
set in the config.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from seglab.datasets import register_dataset
from seglab.datasets.folder import BadSampleError, LabelMap, Sample, SegmentationFolder, require_dir
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import ConfigError, check

__all__ = ["VOC2012", "CLASS_NAMES", "PALETTE", "NUM_CLASSES", "SPLITS", "AUG_LISTS", "voc_colormap",
           "find_voc_root", "read_split_list", "read_index_png"]

SPLITS: Tuple[str, ...] = ("train", "val")
CLASS_NAMES: Tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
NUM_CLASSES = len(CLASS_NAMES)
AUG_LISTS: Tuple[str, ...] = ("trainaug.txt", "train_aug.txt", "aug.txt")
"""Augmented-set list files, in the order they are looked for (see the module docstring)."""
LISTS_DIR = "ImageSets/Segmentation"


def voc_colormap(n: int = 256) -> List[Tuple[int, int, int]]:
    """The VOC colour map: bit ``3j + c`` of the index becomes bit ``7 - j`` of channel ``c`` (R, G, B).

    E.g. 1 -> (128, 0, 0), 15 -> (192, 128, 128), 255 -> (224, 224, 192) (the boundary colour).
    """
    colours = []
    for index in range(n):
        rgb = [0, 0, 0]
        code = index
        for j in range(8):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << (7 - j)
            code >>= 3
        colours.append((rgb[0], rgb[1], rgb[2]))
    return colours


PALETTE: Tuple[Tuple[int, int, int], ...] = tuple(voc_colormap(NUM_CLASSES))


def find_voc_root(root: Path) -> Path:
    """The ``VOC2012`` folder: ``root/VOCdevkit/VOC2012``, ``root/VOC2012`` or ``root`` itself."""
    for candidate in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise ConfigError(f"dataset.root: expected VOCdevkit/VOC2012/ (with JPEGImages/) in {root}, or root to be "
                      f"VOCdevkit/ or VOCdevkit/VOC2012/ itself (not found); check dataset.root")


def read_split_list(path: Path) -> List[str]:
    """Stems listed in a VOC list file (one stem, or DeepLab's ``image label`` paths, per line).

    Raises ConfigError if the file is missing or lists nothing.
    """
    if not path.is_file():
        raise ConfigError(f"dataset: split list {path} not found (expected in VOC2012/{LISTS_DIR}/)")
    stems: List[str] = []
    seen = set()
    for line in path.read_text().splitlines():
        fields = line.split()
        if not fields:
            continue
        stem = Path(fields[0]).stem
        if stem not in seen:
            seen.add(stem)
            stems.append(stem)
    if not stems:
        raise ConfigError(f"dataset: split list {path} is empty (expected one image stem per line)")
    return stems


def read_index_png(path: str) -> np.ndarray:
    """The stored indices of a paletted ("P") or grayscale ("L") PNG, as a uint8 ``(H, W)`` array.

    BadSampleError (one line naming ``path``) if the file is missing, does not decode, or holds
    colours (RGB) rather than indices.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode not in ("P", "L"):
                raise BadSampleError(f"{path}: expected a paletted (mode P) or 8-bit grayscale (mode L) label "
                                     f"PNG of class indices, got mode {mode}")
            return np.array(im, dtype=np.uint8)
    except FileNotFoundError:
        raise BadSampleError(f"{path}: label file is missing") from None
    except BadSampleError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise BadSampleError(f"{path}: label does not decode ({type(exc).__name__}; corrupt or truncated file?)"
                             ) from None


@register_dataset("voc2012")
class VOC2012(SegmentationFolder):
    """PASCAL VOC 2012 segmentation (see the module docstring for layout, splits and ``augmented``).

    Options: ``root``, ``augmented`` ("auto" | true | false), ``crop_size`` (h, w), ``augment``,
    ``scale_range``, ``hflip``, ``base_size``, ``eval_resize``, ``mean``, ``std``, ``on_bad_sample``,
    ``limit``, ``seed``.
    """

    name = "voc2012"
    SPLITS = SPLITS
    num_classes = NUM_CLASSES
    class_names: List[str] = list(CLASS_NAMES)
    palette: List[Tuple[int, int, int]] = list(PALETTE)

    def __init__(self, split: str = "train", root: str = "data", augmented: Union[str, bool] = "auto",
                 crop_size: Optional[Sequence[int]] = (512, 512), augment: bool = True,
                 scale_range: Sequence[float] = (0.5, 2.0), hflip: bool = True,
                 base_size: Optional[int] = None, eval_resize: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0) -> None:
        check(isinstance(split, str) and split in SPLITS,
              f"dataset.split must be one of {', '.join(SPLITS)} for voc2012 (got {split!r})")
        check(augmented == "auto" or isinstance(augmented, bool),
              f"dataset.augmented must be auto, true or false (got {augmented!r})")
        check(isinstance(root, (str, Path)), f"dataset.root must be a path (got {root!r})")
        voc = find_voc_root(Path(root))
        lists = require_dir(voc / LISTS_DIR, f"the VOC split lists (VOC2012/{LISTS_DIR}/)")
        images = voc / "JPEGImages"
        plain, aug = voc / "SegmentationClass", voc / "SegmentationClassAug"

        self.augmented = False
        if split == "val":
            parts = [(lists / "val.txt", plain)]
        else:
            aug_list = next((lists / name for name in AUG_LISTS if (lists / name).is_file()), None)
            if augmented is True:
                if not aug.is_dir():
                    raise ConfigError(f"dataset.augmented=true: expected the augmented labels at {aug} (not found); "
                                      f"set dataset.augmented to auto or false")
                if aug_list is None:
                    raise ConfigError(f"dataset.augmented=true: expected one of {', '.join(AUG_LISTS)} in {lists} "
                                      f"(not found)")
            self.augmented = augmented is not False and aug.is_dir() and aug_list is not None
            if not self.augmented:
                parts = [(lists / "train.txt", plain)]
            elif aug_list is not None and aug_list.name == "aug.txt":
                parts = [(lists / "train.txt", plain), (aug_list, aug)]
            else:
                parts = [(aug_list, aug)]
        self.split_lists = [str(list_file) for list_file, _ in parts]

        samples: List[Sample] = []
        seen: Dict[str, str] = {}
        for list_file, label_dir in parts:
            require_dir(label_dir, f"the VOC labels (VOC2012/{label_dir.name}/)")
            for stem in read_split_list(list_file):
                if stem in seen:  # aug.txt should not repeat train.txt; keep the first label source
                    continue
                image = images / f"{stem}.jpg"
                if not image.is_file():
                    raise ConfigError(f"dataset: {list_file} lists {stem} but its image {image} is missing")
                label = label_dir / f"{stem}.png"
                if not label.is_file():
                    raise ConfigError(f"dataset: image {image} has no label; expected {label} "
                                      f"(listed in {list_file})")
                seen[stem] = str(label)
                samples.append(Sample(str(image), str(label)))
        label_map = LabelMap.identity(NUM_CLASSES, "VOC class indices 0..20 and 255 (boundary)")
        super().__init__(samples, split, label_map, root=str(root), crop_size=crop_size, augment=augment,
                         scale_range=scale_range, hflip=hflip, base_size=base_size, eval_resize=eval_resize,
                         mean=mean, std=std, on_bad_sample=on_bad_sample, limit=limit, seed=seed)

    def read_label(self, path: str) -> np.ndarray:
        """Palette indices via Pillow (OpenCV would decode a paletted PNG to colours)."""
        return read_index_png(path)
