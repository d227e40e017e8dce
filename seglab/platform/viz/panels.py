"""Per-image pictures (numpy in, ``(H, W, 3)`` uint8 RGB out) and the pieces they are made of.

Every function accepts numpy arrays or torch tensors (converted with ``.detach().cpu().numpy()``);
nothing here logs anything: the training loop's pictures hook writes the PNGs with :func:`save_png`.

* :func:`denormalize` -- the input image, undoing the ImageNet mean/std normalisation;
* :func:`prediction_panel` -- the 1 x 4 picture every segmentation model gets: input | ground truth |
  prediction | errors (wrong pixels red, right black, ignore white);
* :func:`compose_panel` -- tiles ``(picture or None, title)`` -> a grid, each tile under a
  ``TITLE_HEIGHT``-pixel title strip, with an optional legend strip of the classes present; a missing
  picture is a grey tile (a method's own panels, e.g. OVeNet's and SEMEDA's, are composed with it);
* :func:`panel_tile` -- where tile (r, c)'s picture sits in a panel;
* resizing helpers (:func:`nearest_resize` at pixel centres, :func:`bilinear_resize` with half-pixel
  centres), :func:`squeeze_batch`, :func:`accuracy_text`;
* :func:`save_png` (atomic) and :func:`select_samples` (which validation images to draw).

Colours shared by the panels: :data:`FIXED_COLOR` green, :data:`BROKEN_COLOR` red,
:data:`BOTH_WRONG_COLOR` dark grey, :data:`BOTH_RIGHT_COLOR` black, :data:`IGNORED_COLOR` white.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence

import cv2
import numpy as np

from seglab.datasets.labels import IGNORE_INDEX, colorize
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.platform.checkpoint import atomic_file
from seglab.platform.viz.flowcolor import as_numpy

FIXED_COLOR = (0, 255, 0)
BROKEN_COLOR = (255, 0, 0)
BOTH_WRONG_COLOR = (64, 64, 64)
BOTH_RIGHT_COLOR = (0, 0, 0)
IGNORED_COLOR = (255, 255, 255)
MISSING_COLOR = (128, 128, 128)
TITLE_HEIGHT = 18
LEGEND_HEIGHT = 18
_STRIP_BG = (32, 32, 32)
_TEXT = (255, 255, 255)


def denormalize(image: Any, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Normalised ``(3, H, W)`` float image (mean/std in 0..1 units) -> ``(H, W, 3)`` uint8 RGB."""
    img = as_numpy(image).astype(np.float64)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"denormalize expects a (3, H, W) image, got shape {img.shape}")
    m = np.asarray(mean, dtype=np.float64).reshape(3, 1, 1)
    s = np.asarray(std, dtype=np.float64).reshape(3, 1, 1)
    unit = np.nan_to_num(img * s + m, nan=0.0)
    return np.floor(np.clip(unit, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0).copy()


def squeeze_batch(x: Any, ndim: int, name: str) -> Optional[np.ndarray]:
    if x is None:
        return None
    a = as_numpy(x)
    if a.ndim == ndim + 1 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dims (or a batch of one), got shape {a.shape}")
    return a


def nearest_resize(labels: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize sampling at pixel centres (dst i <- src floor((i + .5) * h / H))."""
    (h, w), (H, W) = labels.shape, size
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.intp), w - 1)
    return labels[rows[:, None], cols[None, :]]


def bilinear_resize(maps: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``(K, h, w)`` floats -> ``(K, H, W)``, bilinear with half-pixel centres."""
    H, W = size
    resized = [cv2.resize(m.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR) for m in maps]
    return np.stack(resized).astype(np.float64)


def _text(canvas: np.ndarray, text: str, x0: int, y0: int, width: int, height: int) -> None:
    scale = 0.4
    while scale > 0.25 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 4:
        scale -= 0.05
    (_, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    region = np.ascontiguousarray(canvas[y0:y0 + height, x0:x0 + width])
    cv2.putText(region, text, (2, (height + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, _TEXT, 1,
                cv2.LINE_AA)
    canvas[y0:y0 + height, x0:x0 + width] = region


def panel_tile(row: int, col: int, image_size: Sequence[int]) -> tuple:
    """``(row slice, column slice)`` of tile ``(row, col)``'s picture (title excluded) in a panel."""
    H, W = image_size
    top = row * (TITLE_HEIGHT + H) + TITLE_HEIGHT
    return slice(top, top + H), slice(col * W, (col + 1) * W)


def accuracy_text(pred: np.ndarray, target: np.ndarray, ignore_index: int) -> str:
    valid = target != ignore_index
    return f"{(pred[valid] == target[valid]).mean():.2f}" if valid.any() else "n/a"


def compose_panel(tiles: Sequence[tuple], image_size: Sequence[int], cols: int,
                  palette: Sequence[Sequence[int]] = (), class_names: Optional[Sequence[str]] = None,
                  present: Optional[set] = None, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Tiles ``(picture (H, W, 3) uint8 or None, title)`` -> a grid of ``cols`` columns, each tile
    under a ``TITLE_HEIGHT`` title strip (None: a grey tile titled ``<title>: n/a``), plus, with
    ``class_names``, a legend strip of the classes in ``present``."""
    H, W = image_size
    rows = (len(tiles) + cols - 1) // cols
    legend = LEGEND_HEIGHT if class_names else 0
    canvas = np.empty((rows * (TITLE_HEIGHT + H) + legend, cols * W, 3), dtype=np.uint8)
    canvas[:] = _STRIP_BG
    for k, (pic, title) in enumerate(tiles):
        r, c = panel_tile(k // cols, k % cols, (H, W))
        canvas[r, c] = MISSING_COLOR if pic is None else pic
        _text(canvas, title if pic is not None else f"{title}: n/a", c.start, r.start - TITLE_HEIGHT, W, TITLE_HEIGHT)
    if class_names:
        x, y0 = 2, rows * (TITLE_HEIGHT + H)
        for cls in sorted(v for v in (present or set()) if v != ignore_index and 0 <= v < len(palette)):
            name = class_names[cls] if cls < len(class_names) else str(cls)
            text_w = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)[0][0]
            if x + 12 + 3 + text_w > cols * W:
                break
            canvas[y0 + 3:y0 + 15, x:x + 12] = palette[cls]
            cv2.putText(canvas, name, (x + 15, y0 + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.35, _TEXT, 1, cv2.LINE_AA)
            x += 12 + 3 + text_w + 10
    return canvas


def prediction_panel(image: Any, target: Any, logits: Any, palette: Sequence[Sequence[int]],
                     ignore_index: int = IGNORE_INDEX, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD, class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """The 1 x 4 picture any segmentation model gets: input | ground truth | prediction (argmax of
    ``logits (C, h, w)``, nearest-resized to the image) | errors (wrong pixels red, right black,
    ignore white)."""
    img = squeeze_batch(image, 3, "image")
    H, W = img.shape[1:]
    tgt = squeeze_batch(target, 2, "target")
    pred = nearest_resize(squeeze_batch(logits, 3, "logits").argmax(0), (H, W))
    errors = np.zeros((H, W, 3), dtype=np.uint8)
    errors[pred != tgt] = BROKEN_COLOR
    errors[tgt == ignore_index] = IGNORED_COLOR
    tiles = [(denormalize(img, mean, std), "input"), (colorize(tgt, palette, ignore_index), "ground truth"),
             (colorize(pred, palette, ignore_index), f"prediction acc {accuracy_text(pred, tgt, ignore_index)}"),
             (errors, "errors (red)")]
    present = set(np.unique(tgt).tolist()) | set(np.unique(pred).tolist())
    return compose_panel(tiles, (H, W), 4, palette, class_names, present, ignore_index)


def save_png(path: Any, rgb: Any) -> Path:
    """Write an ``(H, W, 3)`` uint8 RGB image as PNG atomically (temp file + ``os.replace``)."""
    arr = as_numpy(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"save_png expects an (H, W, 3) uint8 image, got {arr.shape} {arr.dtype}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr[:, :, ::-1]))
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    path = Path(path)
    with atomic_file(str(path)) as f:
        f.write(buf.tobytes())
    return path


def select_samples(num_val: int, k: int = 4) -> List[int]:
    """``min(k, num_val)`` evenly spaced validation indices, first and last included:
    ``i * (num_val - 1) // (k - 1)`` for ``i = 0..k-1`` (``[0]`` when k is 1)."""
    num_val, k = int(num_val), int(k)
    if num_val < 0 or k < 0:
        raise ValueError(f"num_val and k must be >= 0, got {num_val}, {k}")
    k = min(k, num_val)
    if k <= 1:
        return list(range(k))
    return [i * (num_val - 1) // (k - 1) for i in range(k)]
