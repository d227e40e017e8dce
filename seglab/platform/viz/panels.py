"""Pictures and scalar diagnostics that show what OVeNet's offsets do (numpy in, numpy out).

Every function accepts numpy arrays or torch tensors (converted with ``.detach().cpu().numpy()``);
nothing here logs anything: the training loop writes the PNGs with :func:`save_png` and logs them.

Pictures (all ``uint8`` RGB):

* :func:`denormalize` -- the input image, undoing the ImageNet mean/std normalisation.
* label maps (ground truth, argmax of S_i / S_s / S_f) -- the data set's palette via
  :func:`seglab.datasets.labels.colorize`; ignore pixels black.
* :func:`~seglab.platform.viz.flowcolor.flow_to_color` -- offset field in flow colours: hue =
  direction (right red, up-left green, down-left blue; angle ``atan2(-dy, dx)``), saturation =
  length / longest length (white = no offset), black = non-finite; legend :func:`flow_wheel`.
* :func:`~seglab.platform.viz.flowcolor.confidence_to_color` -- fusion confidence F in viridis
  (0 dark purple (68, 1, 84), 1 yellow (253, 231, 37)).
* :func:`fix_break_map` -- what fusion did per pixel compared with S_i: **green** (0, 255, 0)
  fixed (S_i wrong, S_f right), **red** (255, 0, 0) broke (S_i right, S_f wrong), **dark grey**
  (64, 64, 64) both wrong, **black** both right, **white** ignore pixels.
* :func:`ovenet_panel` -- one figure per validation image, a 2 x 4 grid of tiles, each tile the
  input size ``H x W`` under a ``TITLE_HEIGHT``-pixel title strip::

      input        | ground truth | S_i initial | S_s seed
      S_f final    | offsets      | confidence  | fix/break

  Output shape ``(2 * (TITLE_HEIGHT + H) + (LEGEND_HEIGHT if class_names else 0), 4 * W, 3)``.
  Tile (r, c) occupies rows ``r*(TITLE_HEIGHT+H) + TITLE_HEIGHT + [0, H)`` and columns
  ``c*W + [0, W)``. Stride-4 maps are upsampled to ``H x W`` (argmax: nearest at pixel centres;
  offsets and confidence: bilinear, half-pixel centres, like ``align_corners=False``). Offsets
  are converted to input pixels (``dx = o_x*(W-1)/2``, ``dy = o_y*(H-1)/2``) and coloured with
  the image's own longest offset (written in the tile title). When ``min(H, W) >= 64`` a
  ``min(H, W)//4`` flow wheel is inset in the offsets tile's bottom-right corner, 2 px from the
  edges. With ``class_names`` a legend strip (swatch + name of every class present in the
  ground truth or a prediction) is added at the bottom. A missing map (``None``) gives a grey tile.

Scalars: :func:`offset_diagnostics`. Which images: :func:`select_samples`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np

from seglab.datasets.labels import IGNORE_INDEX, colorize
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.platform.checkpoint import atomic_file
from seglab.platform.viz.flowcolor import as_numpy, confidence_to_color, flow_to_color, flow_wheel

__all__ = [
    "FIXED_COLOR", "BROKEN_COLOR", "BOTH_WRONG_COLOR", "BOTH_RIGHT_COLOR", "IGNORED_COLOR",
    "TITLE_HEIGHT", "LEGEND_HEIGHT", "MISSING_COLOR", "denormalize", "fix_break_map",
    "flow_to_color", "flow_wheel", "confidence_to_color", "ovenet_panel", "panel_tile",
    "save_png", "offset_diagnostics", "select_samples", "compose_panel", "prediction_panel",
]

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


def fix_break_map(initial_pred: Any, final_pred: Any, target: Any,
                  ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``(H, W)`` labels of S_i, S_f and the ground truth -> ``(H, W, 3)`` uint8 (colours above)."""
    pi, pf, t = as_numpy(initial_pred), as_numpy(final_pred), as_numpy(target)
    if pi.ndim != 2 or pi.shape != pf.shape or pi.shape != t.shape:
        raise ValueError(f"fix_break_map expects three (H, W) maps of one shape, got "
                         f"{pi.shape}, {pf.shape}, {t.shape}")
    ok_i, ok_f = pi == t, pf == t
    out = np.empty(t.shape + (3,), dtype=np.uint8)
    out[ok_i & ok_f] = BOTH_RIGHT_COLOR
    out[~ok_i & ok_f] = FIXED_COLOR
    out[ok_i & ~ok_f] = BROKEN_COLOR
    out[~ok_i & ~ok_f] = BOTH_WRONG_COLOR
    out[t == ignore_index] = IGNORED_COLOR
    return out


def _squeeze_batch(x: Any, ndim: int, name: str) -> Optional[np.ndarray]:
    if x is None:
        return None
    a = as_numpy(x)
    if a.ndim == ndim + 1 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dims (or a batch of one), got shape {a.shape}")
    return a


def _nearest(labels: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize sampling at pixel centres (dst i <- src floor((i + .5) * h / H))."""
    (h, w), (H, W) = labels.shape, size
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.intp), w - 1)
    return labels[rows[:, None], cols[None, :]]


def _bilinear(maps: np.ndarray, size: Sequence[int]) -> np.ndarray:
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


def _accuracy(pred: np.ndarray, target: np.ndarray, ignore_index: int) -> str:
    valid = target != ignore_index
    return f"{(pred[valid] == target[valid]).mean():.2f}" if valid.any() else "n/a"


def ovenet_panel(image: Any, target: Any, initial_logits: Any, seed_logits: Any, final_logits: Any,
                 offsets: Any, confidence: Any, palette: Sequence[Sequence[int]],
                 ignore_index: int = IGNORE_INDEX, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """The 2 x 4 figure of one image (layout and size in the module docstring).

    Shapes (a leading batch dimension of 1 is dropped): ``image (3, H, W)`` normalised,
    ``target (H, W)``, logits ``(C, h, w)``, ``offsets (2, h, w)`` normalised coordinates,
    ``confidence (1, h, w)`` or ``(h, w)``. ``final_logits`` is required; the others may be None.
    """
    img = _squeeze_batch(image, 3, "image")
    H, W = img.shape[1:]
    tgt = _squeeze_batch(target, 2, "target")
    if tgt.shape != (H, W):
        raise ValueError(f"target shape {tgt.shape} != image size {(H, W)}")
    logits = [_squeeze_batch(x, 3, n) for x, n in ((initial_logits, "initial_logits"),
                                                    (seed_logits, "seed_logits"),
                                                    (final_logits, "final_logits"))]
    if logits[2] is None:
        raise ValueError("final_logits is required")
    off = _squeeze_batch(offsets, 3, "offsets")
    conf = None if confidence is None else as_numpy(confidence)
    while conf is not None and conf.ndim > 2 and conf.shape[0] == 1:  # (1, 1, h, w) / (1, h, w)
        conf = conf[0]
    if conf is not None and conf.ndim != 2:
        raise ValueError(f"confidence: expected (1, h, w) or (h, w), got shape {as_numpy(confidence).shape}")
    map_size = logits[2].shape[1:]
    for arr, n in ((off, "offsets"), (conf, "confidence"), (logits[0], "initial_logits"),
                   (logits[1], "seed_logits")):
        if arr is not None and arr.shape[-2:] != map_size:
            raise ValueError(f"{n} spatial size {arr.shape[-2:]} != final_logits' {map_size}")
    if off is not None and off.shape[0] != 2:
        raise ValueError(f"offsets must have 2 channels (x, y), got {off.shape[0]}")

    preds = [None if lg is None else _nearest(lg.argmax(0), (H, W)) for lg in logits]
    tiles: List[tuple] = [(denormalize(img, mean, std), "input"),
                          (colorize(tgt, palette, ignore_index), "ground truth")]
    for pred, name in zip(preds, ("S_i initial", "S_s seed", "S_f final")):
        tiles.append((None, name) if pred is None else
                     (colorize(pred, palette, ignore_index),
                      f"{name} acc {_accuracy(pred, tgt, ignore_index)}"))
    if off is None:
        tiles.append((None, "offsets"))
    else:
        px = _bilinear(off, (H, W)) * np.array([(W - 1) / 2.0, (H - 1) / 2.0]).reshape(2, 1, 1)
        longest = float(np.nanmax(np.hypot(px[0], px[1]))) if np.isfinite(px).any() else 0.0
        flow = flow_to_color(px)
        s = min(H, W) // 4
        if s >= 16:
            flow[H - 2 - s:H - 2, W - 2 - s:W - 2] = flow_wheel(s)
        tiles.append((flow, f"offsets max {longest:.1f}px"))
    if conf is None:
        tiles.append((None, "confidence"))
    else:
        tiles.append((confidence_to_color(_bilinear(conf[None], (H, W))[0]),
                      f"confidence mean {conf.mean():.2f}"))
    if preds[0] is None:
        tiles.append((None, "fix/break"))
    else:
        valid = max(int((tgt != ignore_index).sum()), 1)
        fixed = ((preds[0] != tgt) & (preds[2] == tgt) & (tgt != ignore_index)).sum() / valid
        broke = ((preds[0] == tgt) & (preds[2] != tgt) & (tgt != ignore_index)).sum() / valid
        tiles.append((fix_break_map(preds[0], preds[2], tgt, ignore_index),
                      f"fixed {100 * fixed:.1f}% broke {100 * broke:.1f}%"))

    present = set(np.unique(tgt).tolist()) | {c for p in preds if p is not None for c in np.unique(p).tolist()}
    return compose_panel(tiles, (H, W), 4, palette, class_names, present, ignore_index)


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
    img = _squeeze_batch(image, 3, "image")
    H, W = img.shape[1:]
    tgt = _squeeze_batch(target, 2, "target")
    pred = _nearest(_squeeze_batch(logits, 3, "logits").argmax(0), (H, W))
    errors = np.zeros((H, W, 3), dtype=np.uint8)
    errors[pred != tgt] = BROKEN_COLOR
    errors[tgt == ignore_index] = IGNORED_COLOR
    tiles = [(denormalize(img, mean, std), "input"), (colorize(tgt, palette, ignore_index), "ground truth"),
             (colorize(pred, palette, ignore_index), f"prediction acc {_accuracy(pred, tgt, ignore_index)}"),
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


def offset_diagnostics(offsets: Any, confidence: Any, initial_logits: Any, final_logits: Any,
                       image_size: Sequence[int]) -> Dict[str, float]:
    """Scalar summaries, averaged over every pixel of every image of the (stride-4) maps.

    ``mean_offset_px`` / ``max_offset_px``: offset length in input pixels,
    ``sqrt((o_x (W-1)/2)^2 + (o_y (H-1)/2)^2)`` with ``(H, W) = image_size``;
    ``mean_confidence``: mean of F; ``frac_changed``: fraction of pixels where
    ``argmax S_f != argmax S_i``. Inputs ``(B, ...)`` or unbatched; a None input omits its keys.
    """
    H, W = (int(v) for v in image_size)
    out: Dict[str, float] = {}
    if offsets is not None:
        o = as_numpy(offsets).astype(np.float64)
        if o.ndim == 3:
            o = o[None]
        if o.ndim != 4 or o.shape[1] != 2:
            raise ValueError(f"offsets must be (B, 2, h, w), got {o.shape}")
        length = np.hypot(o[:, 0] * (W - 1) / 2.0, o[:, 1] * (H - 1) / 2.0)
        out["mean_offset_px"] = float(length.mean())
        out["max_offset_px"] = float(length.max())
    if confidence is not None:
        out["mean_confidence"] = float(as_numpy(confidence).astype(np.float64).mean())
    if initial_logits is not None and final_logits is not None:
        li, lf = as_numpy(initial_logits), as_numpy(final_logits)
        if li.shape != lf.shape or li.ndim not in (3, 4):
            raise ValueError(f"logits must be two (B, C, h, w) arrays of one shape, "
                             f"got {li.shape}, {lf.shape}")
        axis = li.ndim - 3
        out["frac_changed"] = float((li.argmax(axis) != lf.argmax(axis)).mean())
    return out


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
