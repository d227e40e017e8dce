"""OVeNet's pictures and offset diagnostics (numpy in, numpy out), drawn for its validation images.

* :func:`ovenet_panel` -- one figure per validation image, a 2 x 4 grid of tiles, each tile the
  input size ``H x W`` under a ``TITLE_HEIGHT``-pixel title strip::

      input        | ground truth | S_i initial | S_s seed
      S_f final    | offsets      | confidence  | fix/break

  Output shape ``(2 * (TITLE_HEIGHT + H) + (LEGEND_HEIGHT if class_names else 0), 4 * W, 3)``.
  Tile (r, c) occupies rows ``r*(TITLE_HEIGHT+H) + TITLE_HEIGHT + [0, H)`` and columns
  ``c*W + [0, W)``. Stride-4 maps are upsampled to ``H x W`` (argmax: nearest at pixel centres;
  offsets and confidence: bilinear, half-pixel centres, like ``align_corners=False``). Offsets
  are converted to input pixels (``dx = o_x*(W-1)/2``, ``dy = o_y*(H-1)/2``) and coloured with
  the image's own longest offset (written in the tile title) by
  :func:`~seglab.platform.viz.flowcolor.flow_to_color` (hue = direction, saturation = length); when
  ``min(H, W) >= 64`` a ``min(H, W)//4`` flow wheel is inset in the offsets tile's bottom-right
  corner, 2 px from the edges. Confidence F in viridis. With ``class_names`` a legend strip (swatch +
  name of every class present in the ground truth or a prediction) is added at the bottom. A missing
  map (``None``) gives a grey tile.
* :func:`fix_break_map` -- what fusion did per pixel compared with S_i: **green** (0, 255, 0)
  fixed (S_i wrong, S_f right), **red** (255, 0, 0) broke (S_i right, S_f wrong), **dark grey**
  (64, 64, 64) both wrong, **black** both right, **white** ignore pixels.
* :func:`offset_diagnostics` -- scalar summaries of the offsets, confidence and changed pixels.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from seglab.datasets.labels import IGNORE_INDEX, colorize
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.platform.viz.flowcolor import as_numpy, confidence_to_color, flow_to_color, flow_wheel
from seglab.platform.viz.panels import (BOTH_RIGHT_COLOR, BOTH_WRONG_COLOR, BROKEN_COLOR, FIXED_COLOR, IGNORED_COLOR,
                                        accuracy_text, bilinear_resize, compose_panel, denormalize, nearest_resize,
                                        squeeze_batch)


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
    img = squeeze_batch(image, 3, "image")
    H, W = img.shape[1:]
    tgt = squeeze_batch(target, 2, "target")
    if tgt.shape != (H, W):
        raise ValueError(f"target shape {tgt.shape} != image size {(H, W)}")
    logits = [squeeze_batch(x, 3, n) for x, n in ((initial_logits, "initial_logits"),
                                                    (seed_logits, "seed_logits"),
                                                    (final_logits, "final_logits"))]
    if logits[2] is None:
        raise ValueError("final_logits is required")
    off = squeeze_batch(offsets, 3, "offsets")
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

    preds = [None if lg is None else nearest_resize(lg.argmax(0), (H, W)) for lg in logits]
    tiles: List[tuple] = [(denormalize(img, mean, std), "input"),
                          (colorize(tgt, palette, ignore_index), "ground truth")]
    for pred, name in zip(preds, ("S_i initial", "S_s seed", "S_f final")):
        tiles.append((None, name) if pred is None else
                     (colorize(pred, palette, ignore_index),
                      f"{name} acc {accuracy_text(pred, tgt, ignore_index)}"))
    if off is None:
        tiles.append((None, "offsets"))
    else:
        px = bilinear_resize(off, (H, W)) * np.array([(W - 1) / 2.0, (H - 1) / 2.0]).reshape(2, 1, 1)
        longest = float(np.nanmax(np.hypot(px[0], px[1]))) if np.isfinite(px).any() else 0.0
        flow = flow_to_color(px)
        s = min(H, W) // 4
        if s >= 16:
            flow[H - 2 - s:H - 2, W - 2 - s:W - 2] = flow_wheel(s)
        tiles.append((flow, f"offsets max {longest:.1f}px"))
    if conf is None:
        tiles.append((None, "confidence"))
    else:
        tiles.append((confidence_to_color(bilinear_resize(conf[None], (H, W))[0]),
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
