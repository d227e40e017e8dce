"""``synthia``: SYNTHIA-RAND-CITYSCAPES read from its official layout, with the 19 Cityscapes classes.

Layout (``SYNTHIA_RAND_CITYSCAPES.rar`` unpacked; 760x1280 images, 9000 by its description, 9400 files
in the download as most papers count them)::

    <root>/RGB/<name>.png          the images (0000000.png, 0000001.png, ...)
    <root>/GT/LABELS/<name>.png    16-bit, 3-channel PNGs: the class id is in the first channel
                                   (R; index 2 of OpenCV's BGR), the instance id in the second
    (<root>/GT/COLOR/, <root>/Depth/ are ignored)

Class ids (the data set's README) and the Cityscapes train id each is mapped to, the mapping used
for SYNTHIA -> Cityscapes adaptation (255 = ignore):

    ==  ============  =====   ==  ============  =====   ==  ============  =====
    0   void          255     8   car           13      16  terrain       9
    1   sky           10      9   traffic sign  7       17  rider         12
    2   building      2       10  pedestrian    11      18  truck         14
    3   road          0       11  bicycle       18      19  bus           15
    4   sidewalk      1       12  motorcycle    17      20  train         16
    5   fence         4       13  parking-slot  255     21  wall          3
    6   vegetation    8       14  road-work     255     22  lanemarking   255
    7   pole          5       15  traffic light 6
    ==  ============  =====   ==  ============  =====   ==  ============  =====

No counterpart: SYNTHIA's parking-slot, road-work and lanemarking have no Cityscapes evaluation
class (ignored). The other way round, terrain, truck and train exist in the README but have no
pixels in SYNTHIA-RAND-CITYSCAPES (:data:`ABSENT_TRAIN_IDS`): this is why SYNTHIA -> Cityscapes
results are reported over 16 classes (or 13); their IoU is undefined on SYNTHIA's own val split.

Split: SYNTHIA has no official one. ``split="val"`` is the last ``n * val_fraction`` (rounded half up) of the
``n`` files in sorted name order, ``"train"`` the ones before (default ``val_fraction=2/9``: of 9000
images 7000 / 2000 as in the PHGMM paper; of 9400, 7311 / 2089; each split keeps at least one file
when there are two or more), ``"all"`` every file. ``files`` overrides this: a list of file names
under ``RGB/`` (or the path of a text file with one name per line) for the split being built.

``image_size=(h, w)`` resizes every image (bilinear) and label (nearest) to exactly ``(h, w)`` as it
is loaded, before the transforms: SYNTHIA's 760x1280 is not 1:2, and the PHGMM paper resizes it to
384x768 (``synthia11`` does so by default).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from seglab.datasets import register_dataset
from seglab.datasets.folder import (BadSampleError, LabelMap, Sample, SegmentationFolder, pair_by_suffix,
                                    require_dir, require_split_dir)
from seglab.datasets.labels import CITYSCAPES_CLASS_NAMES, CITYSCAPES_PALETTE, IGNORE_INDEX
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import ConfigError, check

__all__ = ["Synthia", "SYNTHIA_CLASSES", "SYNTHIA_TO_TRAIN_ID", "ABSENT_TRAIN_IDS", "synthia_label_map",
           "synthia_samples", "SPLITS"]

#: SYNTHIA class id -> (name, Cityscapes train id or 255).
SYNTHIA_CLASSES: Dict[int, Tuple[str, int]] = {
    0: ("void", IGNORE_INDEX),
    1: ("sky", 10),
    2: ("building", 2),
    3: ("road", 0),
    4: ("sidewalk", 1),
    5: ("fence", 4),
    6: ("vegetation", 8),
    7: ("pole", 5),
    8: ("car", 13),
    9: ("traffic sign", 7),
    10: ("pedestrian", 11),
    11: ("bicycle", 18),
    12: ("motorcycle", 17),
    13: ("parking-slot", IGNORE_INDEX),
    14: ("road-work", IGNORE_INDEX),
    15: ("traffic light", 6),
    16: ("terrain", 9),
    17: ("rider", 12),
    18: ("truck", 14),
    19: ("bus", 15),
    20: ("train", 16),
    21: ("wall", 3),
    22: ("lanemarking", IGNORE_INDEX),
}
SYNTHIA_TO_TRAIN_ID: Dict[int, int] = {k: v[1] for k, v in SYNTHIA_CLASSES.items()}
#: Cityscapes train ids with no pixels in SYNTHIA-RAND-CITYSCAPES: terrain, truck, train.
ABSENT_TRAIN_IDS: Tuple[int, ...] = (9, 14, 16)
SPLITS: Tuple[str, ...] = ("train", "val", "all")


def synthia_label_map(reduction: Optional[Dict[int, int]] = None) -> LabelMap:
    """SYNTHIA class id (0..22) -> Cityscapes train id; ``reduction`` (train id -> new id) composes a reduction."""
    mapping = dict(SYNTHIA_TO_TRAIN_ID)
    if reduction is not None:
        mapping = {raw: int(reduction.get(t, IGNORE_INDEX)) for raw, t in mapping.items()}
    return LabelMap(mapping, "SYNTHIA class ids 0..22 in the first (red) channel")


def _read_file_list(files: Union[str, Sequence[str]]) -> List[str]:
    if isinstance(files, str):
        path = Path(files)
        check(path.is_file(), f"dataset.files: expected a list of file names or a text file, {path} not found")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    check(isinstance(files, (list, tuple)) and all(isinstance(f, str) for f in files),
          f"dataset.files must be null, a list of file names under RGB/ or a text file (got {files!r})")
    return list(files)


def synthia_samples(root: Path, split: str, val_fraction: float = 2 / 9,
                    files: Union[None, str, Sequence[str]] = None, skipped: Optional[List[str]] = None
                    ) -> List[Sample]:
    """The samples of ``split`` (see the module docstring); layout errors name the directory expected."""
    require_dir(root, "the SYNTHIA-RAND-CITYSCAPES root (with RGB/ and GT/LABELS/)")
    image_dir = require_split_dir(root / "RGB", "the SYNTHIA images RGB/")
    label_dir = require_dir(root / "GT" / "LABELS", "the SYNTHIA labels GT/LABELS/")
    if files is not None:
        names = _read_file_list(files)
        missing = [n for n in names if not (image_dir / n).is_file()]
        if missing:
            raise ConfigError(f"dataset.files: {image_dir / missing[0]} not found "
                              f"({len(missing)} of {len(names)} listed files are missing)")
        images = [image_dir / n for n in names]
    else:
        images = sorted(image_dir.glob("*.png"))
        num_val = int(len(images) * val_fraction + 0.5)  # rounded half up
        if val_fraction > 0 and len(images) > 1:  # tiny roots (fixtures) keep a non-empty val split
            num_val = min(max(num_val, 1), len(images) - 1)
        if split == "train":
            images = images[: len(images) - num_val]
        elif split == "val":
            images = images[len(images) - num_val:]
    pairs = pair_by_suffix(images, ".png", lambda _p: label_dir, ".png", skipped=skipped)
    return [Sample(str(image), str(label)) for image, label in pairs]


@register_dataset("synthia")
class Synthia(SegmentationFolder):
    """SYNTHIA-RAND-CITYSCAPES mapped to the 19 Cityscapes classes (see the module docstring).

    Defaults: base size 1280 (the images are 760x1280), random scale 0.5-2.0, crop 512x1024, flip,
    ImageNet mean/std; evaluation at full resolution.
    """

    name = "synthia"
    num_classes = 19
    class_names: List[str] = list(CITYSCAPES_CLASS_NAMES)
    palette: List[Tuple[int, int, int]] = list(CITYSCAPES_PALETTE)
    class_weights = None
    check_splits: Tuple[str, ...] = ("train", "val")
    #: train id -> this data set's class id (``None``: the 19 classes); the 11-class variant reduces.
    reduction: Optional[Dict[int, int]] = None

    def __init__(self, split: str = "train", root: str = "data/synthia", val_fraction: float = 2 / 9,
                 files: Union[None, str, Sequence[str]] = None, image_size: Optional[Sequence[int]] = None,
                 crop_size: Optional[Sequence[int]] = (512, 1024),
                 augment: bool = True, scale_range: Sequence[float] = (0.5, 2.0), hflip: bool = True,
                 base_size: Optional[int] = 1280, eval_resize: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0) -> None:
        check(split in SPLITS, f"dataset.split must be one of {', '.join(SPLITS)} (got {split!r})")
        check(isinstance(val_fraction, (int, float)) and not isinstance(val_fraction, bool)
              and 0 <= val_fraction < 1, f"dataset.val_fraction must be a number in [0, 1) (got {val_fraction!r})")
        check(image_size is None or (isinstance(image_size, (list, tuple)) and len(image_size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)),
              f"dataset.image_size must be null or two positive ints (h, w) (got {image_size!r})")
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        skipped: Optional[List[str]] = [] if on_bad_sample == "skip" else None
        samples = synthia_samples(Path(root), split, float(val_fraction), files, skipped)
        super().__init__(samples, split, synthia_label_map(self.reduction), root=root, crop_size=crop_size,
                         augment=augment, scale_range=scale_range, hflip=hflip, base_size=base_size,
                         eval_resize=eval_resize, mean=mean, std=std, on_bad_sample=on_bad_sample, limit=limit,
                         seed=seed, unpaired=skipped or ())

    def load(self, index: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The checked sample, resized to ``image_size`` when set (image bilinear, label nearest)."""
        image, label = super().load(index)
        if self.image_size is not None and image.shape[:2] != self.image_size:
            h, w = self.image_size
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
            if label is not None:
                label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        return image, label

    def decode_label(self, data: np.ndarray, path: str) -> np.ndarray:
        """The class ids: the first (red) channel of the 3-channel label, index 2 in OpenCV's BGR order."""
        if data.ndim != 3 or data.shape[2] < 3:
            raise BadSampleError(f"{path}: expected a 3-channel SYNTHIA label (class id in the red channel), "
                                 f"got shape {data.shape}")
        return data[:, :, 2]
