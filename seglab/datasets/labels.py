"""Cityscapes train-id classes, their official colours, and a colouring helper.

The 19 evaluation classes of Cityscapes are numbered by their *train id* (0..18); every other
Cityscapes label is mapped to :data:`IGNORE_INDEX`. Data sets that use a subset of these classes
keep their own contiguous labels 0..K-1 and record which Cityscapes train id each one stands for
(see ``seglab.datasets.synthetic.CITYSCAPES_TRAIN_IDS``), reusing the names and colours below.
"""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import numpy as np

IGNORE_INDEX = 255
"""Label value of pixels that carry no class (excluded from the loss and from the metrics)."""

RGB = Tuple[int, int, int]

CITYSCAPES_CLASS_NAMES: Tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
"""The 19 Cityscapes evaluation classes, index = train id."""

CITYSCAPES_PALETTE: Tuple[RGB, ...] = (
    (128, 64, 128),  # road
    (244, 35, 232),  # sidewalk
    (70, 70, 70),  # building
    (102, 102, 156),  # wall
    (190, 153, 153),  # fence
    (153, 153, 153),  # pole
    (250, 170, 30),  # traffic light
    (220, 220, 0),  # traffic sign
    (107, 142, 35),  # vegetation
    (152, 251, 152),  # terrain
    (70, 130, 180),  # sky
    (220, 20, 60),  # person
    (255, 0, 0),  # rider
    (0, 0, 142),  # car
    (0, 0, 70),  # truck
    (0, 60, 100),  # bus
    (0, 80, 100),  # train
    (0, 0, 230),  # motorcycle
    (119, 11, 32),  # bicycle
)
"""Official Cityscapes colours (RGB) of the 19 train-id classes, index = train id."""

CITYSCAPES_NUM_CLASSES = len(CITYSCAPES_CLASS_NAMES)

IGNORE_COLOR: RGB = (0, 0, 0)
"""Colour that :func:`colorize` gives to :data:`IGNORE_INDEX` pixels."""


def cityscapes_subset(train_ids: Sequence[int]) -> Tuple[List[str], List[RGB]]:
    """Names and colours of a subset of Cityscapes classes, in the order of ``train_ids``."""
    for t in train_ids:
        if not 0 <= int(t) < CITYSCAPES_NUM_CLASSES:
            raise ValueError(f"Cityscapes train ids are 0..{CITYSCAPES_NUM_CLASSES - 1}, got {t}")
    names = [CITYSCAPES_CLASS_NAMES[int(t)] for t in train_ids]
    palette = [CITYSCAPES_PALETTE[int(t)] for t in train_ids]
    return names, palette


def colorize(label_map: Any, palette: Sequence[Sequence[int]] = CITYSCAPES_PALETTE,
             ignore_index: int = IGNORE_INDEX, ignore_color: Sequence[int] = IGNORE_COLOR) -> np.ndarray:
    """Colour a label map: ``(H, W)`` integer labels -> ``(H, W, 3)`` uint8 RGB image.

    ``label_map`` may be a numpy array or a torch tensor (anything ``np.asarray`` accepts). Label
    ``k`` gets ``palette[k]``; ``ignore_index`` pixels get ``ignore_color`` (black). Any other value
    raises ``ValueError`` rather than being silently coloured.
    """
    if hasattr(label_map, "detach"):  # torch tensor, without importing torch here
        label_map = label_map.detach().cpu().numpy()
    labels = np.asarray(label_map)
    if labels.ndim != 2:
        raise ValueError(f"colorize expects an (H, W) label map, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"colorize expects integer labels, got dtype {labels.dtype}")
    lut_colors = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    if lut_colors.size and (lut_colors.min() < 0 or lut_colors.max() > 255):
        raise ValueError("palette colours must be RGB triples in 0..255")
    n = len(lut_colors)
    if labels.size:
        bad = (labels < 0) | ((labels >= n) & (labels != ignore_index))
        if bad.any():
            raise ValueError(
                f"label map has values outside 0..{n - 1} and {ignore_index} (ignore): "
                f"{np.unique(labels[bad])[:10].tolist()}"
            )
    size = max(n, int(ignore_index) + 1, 1)
    lut = np.zeros((size, 3), dtype=np.uint8)
    lut[:n] = lut_colors
    if 0 <= ignore_index:
        lut[ignore_index] = np.asarray(ignore_color, dtype=np.uint8)
    return lut[labels.astype(np.intp, copy=False)]


#: The HRNet-semantic-segmentation repository's Cityscapes class weights (``lib/datasets/cityscapes.py``),
#: in train-id order (road, sidewalk, ..., bicycle).
CITYSCAPES_CLASS_WEIGHTS: Tuple[float, ...] = (
    0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
    0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507,
)
