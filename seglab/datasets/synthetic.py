"""``synthetic``: a procedurally generated street scene, the embedded default data set.

Every sample is rendered on the fly from ``(seed, split, index)`` alone (a per-sample
``np.random.Generator`` seeded with ``np.random.SeedSequence([seed, split_id, index])``), so sample
``i`` is identical in any process or DataLoader worker and whatever order samples are drawn in, and
the ``train``, ``val`` and ``test`` splits are different images (split ids 0, 1, 2). ``val`` is the
selection split (checkpoint choice, search); ``test`` is the held-out split results are reported
on. Nothing is cached; a 128x256 sample takes a few milliseconds on one core.

Classes (labels 0..8, a subset of the Cityscapes train-id classes, in Cityscapes order, with
Cityscapes names and colours; :data:`CITYSCAPES_TRAIN_IDS` maps each label to its train id):

    =====  ============  ===================
    label  name          Cityscapes train id
    =====  ============  ===================
    0      road          0
    1      sidewalk      1
    2      building      2
    3      pole          5
    4      traffic sign  7
    5      vegetation    8
    6      sky           10
    7      person        11
    8      car           13
    =====  ============  ===================

The scene is a street canyon seen by a pinhole camera at 1.3-1.8 m above the road (all sizes are
in metres and projected, so everything shrinks towards the vanishing point): sky (clear, overcast
or dusk gradient) above a skyline of building facades of random heights and materials with window
grids, possibly a building closing the street; a road with lane markings / zebra crossings between
two sidewalks (kerbs, paving joints); and, drawn far to near, trees (trunk + blobby crown), hedges, poles
(1-3 px wide at 128x256, some street lamps) with traffic signs of several shapes, people (head,
torso, arms, legs) and cars (rear face, side face, cabin with windows, wheels, lights) in many
colours. Sky, road and building are in every image; sidewalk, car, person, pole, traffic sign and
vegetation are in nearly every image.

Appearance is made deliberately imperfect so that colour alone is not a reliable cue: per-image
colour jitter with overlapping ranges (road vs sidewalk, grey cars vs buildings vs road, white cars
vs sky), class-dependent texture, cast shadows, a global illumination / tint / gamma change, a
Gaussian blur of the rendered image (the label keeps the hard geometry, so boundary pixels are
mixed) and (approximately) Gaussian pixel noise. Interiors stay learnable: a tiny CNN reaches a good mIoU in minutes
on a CPU, with poles and traffic signs the hardest classes.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from seglab.datasets import register_dataset
from seglab.datasets.labels import IGNORE_INDEX
from seglab.datasets.street_scene import (CITYSCAPES_TRAIN_IDS, CLASS_NAMES, NUM_CLASSES, PALETTE,
                                          render_street_scene)
from seglab.datasets.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegTransform,
    build_eval_transform,
    split_key,
    build_train_transform,
)
from seglab.errors import ConfigError, check, is_int

__all__ = [
    "CITYSCAPES_TRAIN_IDS",
    "CLASS_NAMES",
    "PALETTE",
    "NUM_CLASSES",
    "SPLITS",
    "SyntheticStreetDataset",
    "render_street_scene",
]


SPLITS: Tuple[str, ...] = ("train", "val", "test")
#: The split's element of every sample's seed sequence ``[seed, split_id, index]``: three disjoint
#: streams, so a split never repeats another split's images for the same data set seed.
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_NUM_SAMPLES = {"train": 200, "val": 50, "test": 500}
DEFAULT_IMAGE_SIZE: Tuple[int, int] = (128, 256)
MIN_IMAGE_SIDE = 32


def _size_pair(value: Any, key: str, minimum: int = 1) -> Tuple[int, int]:
    ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value)
    check(ok and all(int(v) >= minimum for v in value),
          f"{key} must be two ints (height, width), each >= {minimum}, got {value!r}")
    return int(value[0]), int(value[1])


@register_dataset("synthetic")
class SyntheticStreetDataset(Dataset):
    """The procedurally generated street scenes (see the module docstring).

    ``ds[i]`` -> ``(image float32 (3, H, W) normalised, label int64 (H, W))``; :meth:`generate`
    gives the raw ``(uint8 RGB image, uint8 label)`` before any transform. With ``augment`` (train
    split only) the transform randomly scales by ``scale_range``, pads (label 255) and crops to
    ``crop_size`` (default: ``image_size``) and flips. The val and test splits are never augmented or
    cropped.
    """

    num_classes = NUM_CLASSES
    class_names: List[str] = list(CLASS_NAMES)
    palette: List[Tuple[int, int, int]] = list(PALETTE)
    ignore_index = IGNORE_INDEX
    cityscapes_train_ids: Tuple[int, ...] = CITYSCAPES_TRAIN_IDS
    flip_permutation: Optional[Tuple[int, ...]] = None  # no left/right classes: a plain flip

    def __init__(
        self,
        split: str = "train",
        num_samples: Optional[int] = None,
        image_size: Sequence[int] = DEFAULT_IMAGE_SIZE,
        seed: int = 0,
        crop_size: Optional[Sequence[int]] = None,
        augment: bool = True,
        scale_range: Sequence[float] = (0.5, 2.0),
        hflip: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        check(isinstance(split, str) and split in SPLITS,
              f"dataset.split must be one of {', '.join(SPLITS)}, got {split!r}")
        if num_samples is None:
            num_samples = DEFAULT_NUM_SAMPLES[split]
        check(is_int(num_samples) and num_samples > 0,
              f"dataset.num_samples must be a positive int, got {num_samples!r}")
        self.image_size = _size_pair(image_size, "dataset.image_size", MIN_IMAGE_SIDE)
        check(is_int(seed) and 0 <= seed < 2**63, f"dataset.seed must be a non-negative int, got {seed!r}")
        check(isinstance(augment, bool), f"dataset.augment must be true or false, got {augment!r}")
        if crop_size is not None:
            crop = _size_pair(crop_size, "dataset.crop_size", 1)
            check(crop[0] <= self.image_size[0] and crop[1] <= self.image_size[1],
                  f"dataset.crop_size must be null or (h, w) no larger than dataset.image_size "
                  f"{tuple(self.image_size)}, got {tuple(crop_size)!r}")
        else:
            crop = None
        self.split = split
        self.split_id = _SPLIT_IDS[split]
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.augment = bool(augment) and split == "train"
        self.crop_size = crop
        try:
            if self.augment:
                self.transform: SegTransform = build_train_transform(
                    crop_size=crop or self.image_size, scale_range=scale_range, hflip=hflip, mean=mean, std=std,
                    ignore_index=IGNORE_INDEX,
                    # Reproducible augmentation in the main process; reseeded per DataLoader worker.
                    seed=int(np.random.SeedSequence([self.seed, self.split_id, 2**32 - 1]).generate_state(1)[0]),
                )
            else:
                self.transform = build_eval_transform(mean=mean, std=std)
        except Exception as exc:  # re-key the transform's messages as dataset options
            if isinstance(exc, ConfigError):
                raise ConfigError(str(exc).replace("transform.", "dataset.", 1)) from None
            raise
        self._worker_seed: Optional[int] = None

    def __len__(self) -> int:
        return self.num_samples

    def rng(self, index: int) -> np.random.Generator:
        """The generator that sample ``index`` is drawn from (a function of seed, split, index only)."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.split_id, int(index)]))

    def _check_index(self, index: int) -> int:
        if not is_int(index):
            raise TypeError(f"dataset index must be an int, got {type(index).__name__}")
        index = int(index)
        if index < 0:
            index += self.num_samples
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.split} split of {self.num_samples} samples")
        return index

    def generate(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Raw sample ``index``: ``(uint8 (H, W, 3) RGB image, uint8 (H, W) label)``, untransformed."""
        index = self._check_index(index)
        return render_street_scene(self.rng(index), *self.image_size)

    def _reseed_for_worker(self) -> None:
        info = get_worker_info()
        if info is not None and self._worker_seed != info.seed:
            # Each worker (and each epoch's workers) gets its own augmentation stream.
            self._worker_seed = info.seed
            self.transform.set_random_seed(info.seed)

    def __getitem__(self, index) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` transformed; ``(index, seed)`` fixes the augmentation's random state
        (the training loop passes :func:`~seglab.datasets.transforms.augmentation_seed`)."""
        index, seed = split_key(index)
        image, label = self.generate(index)
        if self.augment:
            if seed is None:
                self._reseed_for_worker()
            else:
                self.transform.set_random_seed(seed)
        return self.transform(image, label)

    def __repr__(self) -> str:
        return (f"SyntheticStreetDataset(split={self.split!r}, num_samples={self.num_samples}, "
                f"image_size={self.image_size}, seed={self.seed}, crop_size={self.crop_size}, "
                f"augment={self.augment})")
