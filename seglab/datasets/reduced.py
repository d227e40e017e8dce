"""``cityscapes11`` and ``synthia11``: the 11-class reduction of the PHGMM paper (after AdapNet++).

The 19 Cityscapes train ids are merged into 11 classes, in this order, plus by default a
``background`` class 11 for everything else (PHGMM's "11 classes + background": 12 labels,
K = C = 12):

    ==  =======================  ==================================================
    id  name                     Cityscapes train ids (names)
    ==  =======================  ==================================================
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
    11  background               3 wall, 6 traffic light, 9 terrain, 16 train, and
                                 every void label (train id 255)
    ==  =======================  ==================================================

Option ``background`` (a ``ConfigError`` naming ``dataset.background`` for anything else):

* ``"class"`` (default, the paper's protocol, P:264/P:272): 12 labels. Class 11 ``background``
  holds every pixel that is none of the 11 classes: the leftover Cityscapes classes (wall, traffic
  light, terrain, train) *and* the void labels. Decision: on Cityscapes that is every labelId whose
  train id is 255 (0 unlabeled, 1 ego vehicle, 2 rectification border, 3 out of roi, 4 static,
  5 dynamic, 6 ground, 9 parking, 10 rail track, 14 guard rail, 15 bridge, 16 tunnel, 18 polegroup,
  29 caravan, 30 trailer); on SYNTHIA it is 0 void, 13 parking-slot, 14 road-work and
  22 lanemarking (to background, not road: the paper does not say, and the rule "not one of the 11
  classes -> background" is kept uniform) plus 15 traffic light, 16 terrain, 20 train, 21 wall. So
  no labelled pixel is ignored; only the padding of the random-scale/crop augmentation (and the
  label-less Cityscapes test split) is ``ignore_index`` (255). ``miou_classes = [0, ..., 10]``:
  the reported mean IoU averages the 11 classes without background (the paper's mIoU).
* ``"ignore"``: the reduction before the background class: 11 labels, everything else is 255 (not
  trained on, not scored); ``miou_classes = None`` (all 11).

``num_classes``, ``class_names``, ``palette``, ``miou_classes`` and ``reduction`` (Cityscapes train
id -> label) are instance attributes set from the option; the class attributes hold the default
(``"class"``) values. ``miou_classes`` (``Optional[List[int]]``, None = all classes) is the data-set
attribute the platform reads (``getattr(ds, "miou_classes", None)``) to choose the classes the
reported mean IoU (``ConfusionMatrix.compute(classes=...)``) averages over.

Colours: the Cityscapes colour of each class's first member; background is dark grey
:data:`BACKGROUND_COLOR` = (40, 40, 40), which is neither in the Cityscapes palette (building is
(70, 70, 70)) nor the ignore colour (0, 0, 0) of ``labels.colorize``.

Resolution as in the paper: images (and their labels, nearest neighbour) at 384x768 for training
and validation, training crops of 384x768 after a random scale 0.5-2.0. ``cityscapes11`` resizes
the long side to ``base_size=768`` (1024x2048 -> 384x768) with ``eval_resize=True``;
``synthia11``, whose 760x1280 images are not 1:2, resizes them to exactly ``image_size=(384, 768)``
as they are loaded. The loaders, layouts and other options are those of ``cityscapes`` and
``synthia``. The embedded generated data set reduced to the same labels is ``synthetic11``
(:mod:`seglab.datasets.synthetic11`).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

from seglab.datasets import register_dataset
from seglab.datasets.cityscapes import Cityscapes
from seglab.datasets.labels import CITYSCAPES_NUM_CLASSES, CITYSCAPES_PALETTE, IGNORE_INDEX
from seglab.datasets.synthia import Synthia
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import check

__all__ = ["REDUCED11_NAMES", "REDUCED11_MEMBERS", "TRAIN_ID_TO_REDUCED11", "REDUCED11_PALETTE",
           "BACKGROUND_OPTIONS", "BACKGROUND_ID", "BACKGROUND_NAME", "BACKGROUND_COLOR", "REDUCED12_NAMES",
           "REDUCED12_PALETTE", "TRAIN_ID_TO_REDUCED12", "REDUCED11_MIOU_CLASSES", "Reduced11Scheme",
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
#: Cityscapes train id -> 11-class id (train ids not listed are ignored, or background).
TRAIN_ID_TO_REDUCED11: Dict[int, int] = {t: i for i, (_, members) in enumerate(REDUCED11_MEMBERS) for t in members}

#: Values of the ``background`` option: a 12th class (the paper), or ignore (11 classes).
BACKGROUND_OPTIONS: Tuple[str, ...] = ("class", "ignore")
BACKGROUND_ID = len(REDUCED11_NAMES)  # 11
BACKGROUND_NAME = "background"
#: Dark grey: not a Cityscapes colour (building is (70, 70, 70)) and not the ignore colour (0, 0, 0).
BACKGROUND_COLOR: Tuple[int, int, int] = (40, 40, 40)
REDUCED12_NAMES: List[str] = REDUCED11_NAMES + [BACKGROUND_NAME]
REDUCED12_PALETTE: List[Tuple[int, int, int]] = REDUCED11_PALETTE + [BACKGROUND_COLOR]
#: Cityscapes train id (0..18, or 255 = void) -> 12-label id: the 11 classes, everything else background.
TRAIN_ID_TO_REDUCED12: Dict[int, int] = {t: TRAIN_ID_TO_REDUCED11.get(t, BACKGROUND_ID)
                                         for t in (*range(CITYSCAPES_NUM_CLASSES), IGNORE_INDEX)}
#: The classes the paper's mean IoU averages: the 11, without background.
REDUCED11_MIOU_CLASSES: List[int] = list(range(len(REDUCED11_NAMES)))


class Reduced11Scheme:
    """Mixin: the label scheme of the ``background`` option (see the module docstring).

    :meth:`_set_background` validates the option and sets the instance attributes ``background``,
    ``num_classes``, ``class_names``, ``palette``, ``miou_classes`` and ``reduction``; the class
    attributes are those of the default, ``background="class"``.
    """

    num_classes = len(REDUCED12_NAMES)
    class_names: List[str] = list(REDUCED12_NAMES)
    palette: List[Tuple[int, int, int]] = list(REDUCED12_PALETTE)
    #: Classes the reported mean IoU averages (None: all); read by the platform with getattr.
    miou_classes: Optional[List[int]] = list(REDUCED11_MIOU_CLASSES)
    reduction: Optional[Dict[int, int]] = dict(TRAIN_ID_TO_REDUCED12)
    background = "class"

    def _set_background(self, background: str) -> None:
        check(isinstance(background, str) and background in BACKGROUND_OPTIONS,
              f"dataset.background must be one of {', '.join(BACKGROUND_OPTIONS)} (got {background!r})")
        self.background = background
        if background == "class":
            self.num_classes = len(REDUCED12_NAMES)
            self.class_names = list(REDUCED12_NAMES)
            self.palette = list(REDUCED12_PALETTE)
            self.miou_classes = list(REDUCED11_MIOU_CLASSES)
            self.reduction = dict(TRAIN_ID_TO_REDUCED12)
        else:
            self.num_classes = len(REDUCED11_NAMES)
            self.class_names = list(REDUCED11_NAMES)
            self.palette = list(REDUCED11_PALETTE)
            self.miou_classes = None
            self.reduction = dict(TRAIN_ID_TO_REDUCED11)


@register_dataset("cityscapes11")
class Cityscapes11(Reduced11Scheme, Cityscapes):
    """Cityscapes with the 11 PHGMM classes (+ background) at 384x768 (see the module docstring)."""

    name = "cityscapes11"
    class_weights = None
    label_description = "Cityscapes labelIds 0..33"

    def __init__(self, split: str = "train", root: str = "data/cityscapes", annotations: str = "fine",
                 cities: Optional[Sequence[str]] = None, crop_size: Optional[Sequence[int]] = (384, 768),
                 augment: bool = True, scale_range: Sequence[float] = (0.5, 2.0), hflip: bool = True,
                 base_size: Optional[int] = 768, eval_resize: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0,
                 background: str = "class") -> None:
        self._set_background(background)  # before the label map is built from self.reduction
        super().__init__(split, root=root, annotations=annotations, cities=cities, crop_size=crop_size,
                         augment=augment, scale_range=scale_range, hflip=hflip, base_size=base_size,
                         eval_resize=eval_resize, mean=mean, std=std, on_bad_sample=on_bad_sample, limit=limit,
                         seed=seed)


@register_dataset("synthia11")
class Synthia11(Reduced11Scheme, Synthia):
    """SYNTHIA-RAND-CITYSCAPES with the 11 PHGMM classes (+ background) at 384x768 (see the module docstring).

    Every one of the 11 classes occurs in SYNTHIA (its absent classes, terrain / truck / train,
    would be background or merged here)."""

    name = "synthia11"
    class_weights = None

    def __init__(self, split: str = "train", root: str = "data/synthia", val_fraction: float = 2 / 9,
                 files: Union[None, str, Sequence[str]] = None, image_size: Optional[Sequence[int]] = (384, 768),
                 crop_size: Optional[Sequence[int]] = (384, 768),
                 augment: bool = True, scale_range: Sequence[float] = (0.5, 2.0), hflip: bool = True,
                 base_size: Optional[int] = None, eval_resize: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0,
                 background: str = "class") -> None:
        self._set_background(background)  # before the label map is built from self.reduction
        super().__init__(split, root=root, val_fraction=val_fraction, files=files, image_size=image_size,
                         crop_size=crop_size,
                         augment=augment, scale_range=scale_range, hflip=hflip, base_size=base_size,
                         eval_resize=eval_resize, mean=mean, std=std, on_bad_sample=on_bad_sample, limit=limit,
                         seed=seed)
