"""``synthetic11``: the embedded generated street scenes (``synthetic``) in PHGMM's 11-class scheme.

The same samples as ``synthetic`` -- sample ``i`` of a split with the same options is the same image
with the same label geometry, augmentation included -- with only the label ids changed: each of the
9 generated classes goes through its Cityscapes train id to the 11-class reduction of
:mod:`seglab.datasets.reduced` (:data:`SYNTHETIC_TO_REDUCED11`), so the 11-class (PHGMM) sweeps run
with no download:

    =========  ============  ===================  ========================
    synthetic  name          Cityscapes train id  synthetic11 id (name)
    =========  ============  ===================  ========================
    0          road          0                    2 road
    1          sidewalk      1                    3 sidewalk
    2          building      2                    1 building
    3          pole          5                    6 pole
    4          traffic sign  7                    8 traffic sign
    5          vegetation    8                    5 vegetation
    6          sky           10                   0 sky
    7          person        11                   9 person
    8          car           13                   7 car/truck/bus
    =========  ============  ===================  ========================

Classes 4 (fence) and 10 (rider/bicycle/motorcycle) and the background class 11 never occur: the
generator draws none of them and labels every pixel with one of its 9 classes. Their IoU is
therefore NaN on this data set (absent from label and, unless predicted, prediction) and the mean
skips them; they exist so that models, losses and K = C are those of the real ``cityscapes11`` /
``synthia11`` runs.

Options: those of ``synthetic`` plus ``background`` as in ``cityscapes11``: ``"class"`` (default,
12 labels, ``miou_classes = [0, ..., 10]``: the reported mean leaves background out) or
``"ignore"`` (11 labels, ``miou_classes = None``). ``num_classes``, ``class_names``, ``palette``
and ``miou_classes`` (the classes the platform's reported mean IoU averages, read with
``getattr(ds, "miou_classes", None)``; None = all) are instance attributes set from the option.
Augmentation padding stays ``ignore_index`` (255).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from seglab.datasets import register_dataset
from seglab.datasets.labels import IGNORE_INDEX
from seglab.datasets.reduced import TRAIN_ID_TO_REDUCED11, Reduced11Scheme
from seglab.datasets.synthetic import CITYSCAPES_TRAIN_IDS, DEFAULT_IMAGE_SIZE, SyntheticStreetDataset
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["SYNTHETIC_TO_REDUCED11", "Synthetic11"]

#: ``synthetic`` label (0..8) -> 11-class id, through the label's Cityscapes train id.
SYNTHETIC_TO_REDUCED11: Tuple[int, ...] = tuple(TRAIN_ID_TO_REDUCED11[t] for t in CITYSCAPES_TRAIN_IDS)


@register_dataset("synthetic11")
class Synthetic11(Reduced11Scheme, SyntheticStreetDataset):
    """``synthetic`` relabelled to the 11 PHGMM classes (+ background) (see the module docstring)."""

    name = "synthetic11"
    #: Labels are not single Cityscapes classes here (car/truck/bus ...): see ``reduction``.
    cityscapes_train_ids = None

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
        background: str = "class",
    ) -> None:
        self._set_background(background)
        super().__init__(split, num_samples=num_samples, image_size=image_size, seed=seed, crop_size=crop_size,
                         augment=augment, scale_range=scale_range, hflip=hflip, mean=mean, std=std)
        self._lut = np.full(256, IGNORE_INDEX, np.uint8)
        self._lut[: len(SYNTHETIC_TO_REDUCED11)] = SYNTHETIC_TO_REDUCED11

    def generate(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """``synthetic``'s raw sample ``index`` with its labels mapped to the 11-class ids."""
        image, label = super().generate(index)
        return image, self._lut[label]

    def __repr__(self) -> str:
        return (f"Synthetic11(split={self.split!r}, num_samples={self.num_samples}, image_size={self.image_size}, "
                f"seed={self.seed}, crop_size={self.crop_size}, augment={self.augment}, "
                f"background={self.background!r})")
