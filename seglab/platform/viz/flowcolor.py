"""Colour codings for OVeNet's dense fields: offset vectors (flow colours) and confidence (viridis).

Flow colour coding (the "optical flow" coding of the thesis, HSV form):

* A field is ``(2, H, W)`` in **pixels**: channel 0 = dx (to the right), channel 1 = dy (**down**),
  i.e. image coordinates, the channel order of ``SegOutput.offsets``.
* Hue = direction, ``angle = atan2(-dy, dx)`` in degrees mod 360: counter-clockwise *as seen on
  screen* from +x. Right -> 0 deg (red), up -> 90 deg (yellow-green), up-left -> 120 deg (green),
  left -> 180 deg (cyan), down-left -> 240 deg (blue), down -> 270 deg (violet).
* Saturation = length / ``max_length``, clipped to 1; value = 1. So a zero vector is white and
  a vector of length ``max_length`` (or longer) is the pure hue. ``max_length`` defaults to the
  largest finite length in the field; an all-zero field is all white.
* Non-finite vectors (NaN/inf) are drawn black, a colour no vector gets (value is always 1).
* HSV -> RGB is written out here (value 1): channel ``n`` in (R, G, B) = (5, 3, 1),
  ``k = (n + hue/60) mod 6``, ``c = 1 - s * clip(min(k, 4 - k), 0, 1)``; 8-bit values are
  ``floor(255 * c + 0.5)`` (round half up). It matches ``colorsys.hsv_to_rgb``.

:func:`flow_wheel` draws the legend: pixel ``(x, y)`` of a ``size x size`` square shows the
vector from the centre ``((size-1)/2, (size-1)/2)`` to that pixel, with ``max_length`` = the
disc radius ``(size-1)/2``; pixels outside the disc are black.

Confidence coding: matplotlib's ``viridis`` (dark purple at 0 -> yellow at 1) with matplotlib's
own 256-entry quantisation (``index = floor(conf * 256)``, clipped to 0..255), each entry rounded
to 8 bits (``round(255 * value)``): 0 -> (68, 1, 84), 1 -> (253, 231, 37). NaN counts as 0.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional

import numpy as np

__all__ = ["as_numpy", "flow_to_color", "flow_wheel", "confidence_to_color", "INVALID_FLOW_COLOR"]

INVALID_FLOW_COLOR = (0, 0, 0)
"""Colour of non-finite vectors and of the area outside the :func:`flow_wheel` disc."""


def as_numpy(x: Any) -> np.ndarray:
    """numpy array from a numpy array, a torch tensor (any device/float dtype) or a nested list."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()  # bfloat16/half have no numpy equivalent (bfloat16) or lose precision
        x = x.numpy()
    return np.asarray(x)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 with round-half-up."""
    return np.floor(np.clip(unit, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _hsv_v1_to_rgb(hue_deg: np.ndarray, sat: np.ndarray) -> np.ndarray:
    """HSV with value 1 -> RGB in [0, 1], shape ``hue.shape + (3,)``."""
    channels = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = np.mod(n + hue_deg / 60.0, 6.0)
        channels.append(1.0 - sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))
    return np.stack(channels, axis=-1)


def flow_to_color(offsets_px: Any, max_length: Optional[float] = None) -> np.ndarray:
    """``(2, H, W)`` vectors in pixels (dx right, dy down) -> ``(H, W, 3)`` uint8 RGB.

    See the module docstring for the coding. ``max_length`` (>= 0) fixes the length that is
    drawn fully saturated (longer vectors are clipped to it); ``None`` uses the field's largest
    finite length. ``max_length == 0`` draws every finite vector white.
    """
    flow = as_numpy(offsets_px).astype(np.float64)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow_to_color expects a (2, H, W) field (dx, dy), got shape {flow.shape}")
    dx, dy = flow[0], flow[1]
    valid = np.isfinite(dx) & np.isfinite(dy)
    dx, dy = np.where(valid, dx, 0.0), np.where(valid, dy, 0.0)
    length = np.hypot(dx, dy)
    if max_length is None:
        max_length = float(length.max()) if length.size else 0.0
    elif not (np.isfinite(max_length) and max_length >= 0):
        raise ValueError(f"max_length must be a finite number >= 0, got {max_length!r}")
    sat = np.minimum(length / max_length, 1.0) if max_length > 0 else np.zeros_like(length)
    hue = np.mod(np.degrees(np.arctan2(-dy, dx)), 360.0)
    rgb = _to_uint8(_hsv_v1_to_rgb(hue, sat))
    rgb[~valid] = INVALID_FLOW_COLOR
    return rgb


def flow_wheel(size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8 legend disc of :func:`flow_to_color` (outside the disc: black)."""
    size = int(size)
    if size < 1:
        raise ValueError(f"flow_wheel size must be >= 1, got {size}")
    c = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    dx, dy = xs - c, ys - c
    rgb = flow_to_color(np.stack([dx, dy]), max_length=c)
    rgb[np.hypot(dx, dy) > c + 1e-9] = INVALID_FLOW_COLOR
    return rgb


@lru_cache(maxsize=1)
def _viridis_lut() -> np.ndarray:
    from matplotlib import colormaps  # lazy: matplotlib is only needed for this colour map

    cmap = colormaps["viridis"]
    table = np.asarray(cmap(np.arange(cmap.N))[:, :3], dtype=np.float64)
    lut = np.round(table * 255.0).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def confidence_to_color(conf: Any) -> np.ndarray:
    """Confidence in [0, 1] (``(H, W)`` or ``(1, H, W)``) -> ``(H, W, 3)`` uint8 viridis colours."""
    values = as_numpy(conf).astype(np.float64)
    if values.ndim == 3 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 2:
        raise ValueError(f"confidence_to_color expects an (H, W) or (1, H, W) map, got {values.shape}")
    lut = _viridis_lut()
    n = len(lut)
    idx = np.clip(np.floor(np.nan_to_num(values, nan=0.0) * n), 0, n - 1).astype(np.intp)
    return lut[idx]
