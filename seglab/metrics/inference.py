"""Test-time inference modes: multi-scale, horizontal flip and sliding window (HRNet's and mmseg's
test pipelines).

:func:`predict_probs` returns class probabilities at the input size:

* for every scale ``s`` of ``scales`` the (normalised) image is resized bilinearly
  (``align_corners=False``) to ``int(H * s + 0.5) x int(W * s + 0.5)`` (HRNet's rounding);
* the logits there come from one forward pass, or with ``crop`` from :func:`slide_logits`;
* they are resized bilinearly back to ``H x W`` and turned into softmax probabilities; with
  ``flip`` the same is done for the horizontally flipped image and its probabilities flipped back
  (:func:`mirror_back`), their channels reordered by the data set's ``flip_permutation`` when it
  has one: in a mirror image HELEN's left eye is the right eye, so the flipped view's "right eye"
  channel is the vote for "left eye" in the original (without the exchange the two views would
  cancel each other's left/right votes);
* the result is the mean of those ``len(scales) * (2 if flip else 1)`` probability maps.

With ``scales=(1.0,)``, no flip and no crop, the argmax equals that of the plain forward's logits
resized to the input size (what :class:`~seglab.metrics.ConfusionMatrix` scores).

:func:`slide_logits` is mmseg's ``slide`` mode: windows of ``crop`` every ``stride`` pixels (the
last window of a row / column is shifted back to end at the border, so windows overlap by at least
``crop - stride``), each window's logits resized to the window and summed into place, then divided
by the number of windows that covered each pixel (a count map). An input smaller than the crop in a
dimension gets one window of its own size there.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["InferenceConfig", "predict_probs", "slide_logits", "logits_at", "default_stride", "mirror_back",
           "mirror_permutation", "check_flip_permutation"]


def mirror_permutation(pairs: Sequence[Sequence[int]], num_classes: int) -> Tuple[int, ...]:
    """The flip permutation of ``num_classes`` classes in which each ``(a, b)`` of ``pairs`` (a left
    class and its right twin) exchange places and every other class stays: ``p[c]`` is the class
    that ``c`` becomes in the mirror image (e.g. HELEN's ``((2, 3), (4, 5))`` over 11 classes)."""
    permutation = list(range(int(num_classes)))
    for a, b in pairs:
        permutation[int(a)], permutation[int(b)] = int(b), int(a)
    return check_flip_permutation(tuple(permutation))


def check_flip_permutation(permutation: Sequence[int]) -> Tuple[int, ...]:
    """``permutation`` as a tuple of ints (the same object when it already is one), after checking
    that it is a flip permutation: a reordering of ``0..C-1`` that is its own inverse (mirroring
    twice gives every class back). ValueError naming ``flip_permutation`` otherwise."""
    try:
        values = tuple(operator.index(v) for v in permutation)
    except TypeError:
        values = ()
    if not values or sorted(values) != list(range(len(values))):
        raise ValueError(f"flip_permutation must list each class 0..C-1 once, p[c] = the class c becomes in the "
                         f"mirror image (got {list(permutation)!r})")
    if any(values[values[c]] != c for c in range(len(values))):
        raise ValueError(f"flip_permutation must be its own inverse (mirroring twice restores every class; "
                         f"got {list(values)})")
    return permutation if isinstance(permutation, tuple) and permutation == values else values


def mirror_back(probs: Tensor, permutation: Optional[Sequence[int]] = None) -> Tensor:
    """Probabilities ``(B, C, H, W)`` predicted on a horizontally flipped image, in the original's
    frame: flipped back, then channel ``c`` taken from the mirror's channel ``permutation[c]``
    (None: no exchange). ValueError when the permutation does not have ``C`` classes."""
    probs = probs.flip(-1)
    if permutation is None:
        return probs
    if len(permutation) != probs.shape[1]:
        raise ValueError(f"flip_permutation has {len(permutation)} classes but the model predicts {probs.shape[1]}")
    return probs[:, list(permutation)]


def default_stride(crop: Tuple[int, int]) -> Tuple[int, int]:
    """Two thirds of the window, rounded down (mmseg's Cityscapes configs: crop 512x1024, stride 341x682)."""
    return max(1, crop[0] * 2 // 3), max(1, crop[1] * 2 // 3)


@dataclass(frozen=True)
class InferenceConfig:
    """How to predict: ``scales`` (each > 0), ``flip`` (add the horizontally flipped image),
    ``crop`` ``(h, w)`` (sliding window; None = the whole image at once), ``stride`` ``(h, w)``
    (default :func:`default_stride` of the crop; each in ``1..crop``) and ``flip_permutation``, the
    data set's ``flip_permutation`` (p[c] = the class c becomes in the mirror image; None for data
    sets without left/right classes), applied to the flipped view's channels (used with ``flip``)."""

    scales: Tuple[float, ...] = (1.0,)
    flip: bool = False
    crop: Optional[Tuple[int, int]] = None
    stride: Optional[Tuple[int, int]] = None
    flip_permutation: Optional[Tuple[int, ...]] = None

    def __post_init__(self) -> None:
        scales = tuple(float(s) for s in self.scales)
        if not scales or any(not math.isfinite(s) or s <= 0 for s in scales):
            raise ValueError(f"scales must be one or more numbers > 0 (got {list(self.scales)})")
        object.__setattr__(self, "scales", scales)
        if self.crop is not None:
            crop = tuple(int(v) for v in self.crop)
            if len(crop) != 2 or min(crop) < 1:
                raise ValueError(f"crop must be (h, w) with positive integers (got {self.crop})")
            object.__setattr__(self, "crop", crop)
            stride = default_stride(crop) if self.stride is None else tuple(int(v) for v in self.stride)
            if len(stride) != 2 or not (1 <= stride[0] <= crop[0] and 1 <= stride[1] <= crop[1]):
                raise ValueError(f"stride must be (h, w) with 1 <= stride <= crop {crop} (got {self.stride})")
            object.__setattr__(self, "stride", stride)
        elif self.stride is not None:
            raise ValueError("stride needs a crop (the sliding window)")
        if self.flip_permutation is not None:
            object.__setattr__(self, "flip_permutation", check_flip_permutation(self.flip_permutation))

    def describe(self) -> str:
        """e.g. ``scales 0.75/1.0/1.25 + flip, slide 512x1024 stride 341x682``; a flip that exchanges
        classes reads ``+ flip (left/right classes exchanged)``."""
        text = "scales " + "/".join(f"{s:g}" for s in self.scales) + (" + flip" if self.flip else "")
        p = self.flip_permutation
        if self.flip and p is not None and any(c != k for k, c in enumerate(p)):
            text += " (left/right classes exchanged)"
        if self.crop is not None:
            text += f", slide {self.crop[0]}x{self.crop[1]} stride {self.stride[0]}x{self.stride[1]}"
        return text


def logits_at(model: nn.Module, images: Tensor, size: Optional[Tuple[int, int]] = None) -> Tensor:
    """``model(images)``'s logits (a ``SegOutput``'s ``logits`` or a plain tensor), resized bilinearly
    (``align_corners=False``) to ``size`` (default: the input's ``H x W``); ``(B, C, H, W)`` float."""
    out: Any = model(images)
    logits = out.logits if hasattr(out, "logits") else out
    size = tuple(size or images.shape[-2:])
    if tuple(logits.shape[-2:]) != size:
        logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
    return logits.float()


@torch.no_grad()
def slide_logits(model: nn.Module, images: Tensor, crop: Sequence[int], stride: Optional[Sequence[int]] = None
                 ) -> Tensor:
    """Sliding-window logits of ``images`` ``(B, 3, H, W)`` at the input size (see the module docstring).

    Args:
        crop: window ``(h, w)``.
        stride: step ``(h, w)`` between windows (default :func:`default_stride`).
    """
    crop_h, crop_w = int(crop[0]), int(crop[1])
    stride_h, stride_w = (int(v) for v in (stride or default_stride((crop_h, crop_w))))
    batch, _, height, width = images.shape
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    total: Optional[Tensor] = None
    count = images.new_zeros((1, 1, height, width), dtype=torch.float32)
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride_h + crop_h, height), min(c * stride_w + crop_w, width)
            y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
            window = logits_at(model, images[:, :, y1:y2, x1:x2])
            if total is None:
                total = images.new_zeros((batch, window.shape[1], height, width), dtype=torch.float32)
            total[:, :, y1:y2, x1:x2] += window
            count[:, :, y1:y2, x1:x2] += 1
    return total / count


@torch.no_grad()
def predict_probs(model: nn.Module, images: Tensor, config: InferenceConfig = InferenceConfig()) -> Tensor:
    """Class probabilities ``(B, C, H, W)`` of ``images`` ``(B, 3, H, W)`` at the input size: the
    mean softmax over ``config.scales`` x (image, flipped image), the flipped image's brought back
    by :func:`mirror_back` with ``config.flip_permutation`` (see the module docstring).
    The model should be in eval mode."""
    height, width = images.shape[-2:]
    total: Optional[Tensor] = None
    views = 0
    for scale in config.scales:
        size = (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))
        scaled = images if size == (height, width) else F.interpolate(images, size=size, mode="bilinear",
                                                                      align_corners=False)
        for flipped in ((False, True) if config.flip else (False,)):
            view = scaled.flip(-1) if flipped else scaled
            logits = (slide_logits(model, view, config.crop, config.stride) if config.crop is not None
                      else logits_at(model, view))
            if tuple(logits.shape[-2:]) != (height, width):
                logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            probs = logits.softmax(dim=1)
            if flipped:
                probs = mirror_back(probs, config.flip_permutation)
            total = probs if total is None else total + probs
            views += 1
    return total / views
