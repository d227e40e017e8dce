"""``cityscapes11`` and ``synthia11``: the 11-class reduction of the PHGMM paper (after AdapNet++).

The 19 Cityscapes train ids are merged into 11 classes, in this order (everything else -- wall,
traffic light, terrain, train and the void labels -- is ignored, the paper's "background"):

    ==  =======================  ====================================
    id  name                     Cityscapes train ids (names)
    ==  =======================  ====================================
    0   sky                      10
    1   building                 2
    2   road                     0
    3   sidewalk                 1
    4   fence                    4
    5   vegetation               8
    6   pole                     5
    7   car/truck/bus            13 car, 14 truck, 15 bus
    8   traffic sign             7
    9   person                   11
    10  rider/bicycle/motorcycle 12 rider, 18 bicycle, 17 motorcycle
    ==  =======================  ====================================

Colours: the Cityscapes colour of each class's first member. Resolution as in the paper: images
(and their labels, nearest neighbour) at 384x768 for training and validation, training crops of
384x768 after a random scale 0.5-2.0. ``cityscapes11`` resizes the long side to ``base_size=768``
(1024x2048 -> 384x768) with ``eval_resize=True``; ``synthia11``, whose 760x1280 images are not 1:2,
resizes them to exactly ``image_size=(384, 768)`` as they are loaded. The loaders, layouts and other
options are those of ``cityscapes`` and ``synthia``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

from seglab.datasets import register_dataset
from seglab.datasets.cityscapes import Cityscapes
from seglab.datasets.labels import CITYSCAPES_PALETTE
from seglab.datasets.synthia import Synthia
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["REDUCED11_NAMES", "REDUCED11_MEMBERS", "TRAIN_ID_TO_REDUCED11", "REDUCED11_PALETTE",
           "Cityscapes11", "Synthia11"]

#: The 11 classes, in order, with the Cityscapes train ids each one merges.
REDUCED11_MEMBERS: Tuple[Tuple[str, Tuple[int, ...]], ...] = (
    ("sky", (10,)),
    ("building", (2,)),
    ("road", (0,)),
    ("sidewalk", (1,)),
    ("fence", (4,)),
    ("vegetation", (8,)),
    ("pole", (5,)),
    ("car/truck/bus", (13, 14, 15)),
    ("traffic sign", (7,)),
    ("person", (11,)),
    ("rider/bicycle/motorcycle", (12, 18, 17)),
)
REDUCED11_NAMES: List[str] = [name for name, _ in REDUCED11_MEMBERS]
REDUCED11_PALETTE: List[Tuple[int, int, int]] = [CITYSCAPES_PALETTE[members[0]] for _, members in REDUCED11_MEMBERS]
#: Cityscapes train id -> 11-class id (train ids not listed are ignored).
TRAIN_ID_TO_REDUCED11: Dict[int, int] = {t: i for i, (_, members) in enumerate(REDUCED11_MEMBERS) for t in members}


@register_dataset("cityscapes11")
class Cityscapes11(Cityscapes):
    """Cityscapes with the 11 PHGMM classes at 384x768 (see the module docstring)."""

    name = "cityscapes11"
    num_classes = 11
    class_names = list(REDUCED11_NAMES)
    palette = list(REDUCED11_PALETTE)
    class_weights = None
    reduction = TRAIN_ID_TO_REDUCED11
    label_description = "Cityscapes labelIds 0..33"

    def __init__(self, split: str = "train", root: str = "data/cityscapes", annotations: str = "fine",
                 cities: Optional[Sequence[str]] = None, crop_size: Optional[Sequence[int]] = (384, 768),
                 augment: bool = True, scale_range: Sequence[float] = (0.5, 2.0), hflip: bool = True,
                 base_size: Optional[int] = 768, eval_resize: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0) -> None:
        super().__init__(split, root=root, annotations=annotations, cities=cities, crop_size=crop_size,
                         augment=augment, scale_range=scale_range, hflip=hflip, base_size=base_size,
                         eval_resize=eval_resize, mean=mean, std=std, on_bad_sample=on_bad_sample, limit=limit,
                         seed=seed)


@register_dataset("synthia11")
class Synthia11(Synthia):
    """SYNTHIA-RAND-CITYSCAPES with the 11 PHGMM classes at 384x768 (see the module docstring).

    Every one of the 11 classes occurs in SYNTHIA (its absent classes, terrain / truck / train,
    are ignored or merged here)."""

    name = "synthia11"
    num_classes = 11
    class_names = list(REDUCED11_NAMES)
    palette = list(REDUCED11_PALETTE)
    class_weights = None
    reduction = TRAIN_ID_TO_REDUCED11

    def __init__(self, split: str = "train", root: str = "data/synthia", val_fraction: float = 2 / 9,
                 files: Union[None, str, Sequence[str]] = None, image_size: Optional[Sequence[int]] = (384, 768),
                 crop_size: Optional[Sequence[int]] = (384, 768),
                 augment: bool = True, scale_range: Sequence[float] = (0.5, 2.0), hflip: bool = True,
                 base_size: Optional[int] = None, eval_resize: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0) -> None:
        super().__init__(split, root=root, val_fraction=val_fraction, files=files, image_size=image_size,
                         crop_size=crop_size,
                         augment=augment, scale_range=scale_range, hflip=hflip, base_size=base_size,
                         eval_resize=eval_resize, mean=mean, std=std, on_bad_sample=on_bad_sample, limit=limit,
                         seed=seed)
