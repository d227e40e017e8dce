"""Albumentations (2.x) pipelines that turn ``(uint8 HxWx3 image, HxW label)`` into the tensors of
the dataset contract: a normalised float32 ``(3, H, W)`` image and an int64 ``(H, W)`` label.

Train: random scale (image bilinear, label nearest) -> pad to the crop size if needed (image padded
with the mean colour, i.e. ~0 after normalisation; label padded with ``ignore_index``) -> random crop
-> horizontal flip -> normalise -> tensors. Eval: normalise -> tensors.

The flip of a data set with left/right classes (HELEN's eyes and brows) is a :class:`MirrorFlip`
built from the data set's ``flip_permutation``, the same declaration test-time flip inference
reads (:func:`seglab.metrics.inference.mirror_back`): the label of a mirrored pixel of class ``c``
becomes ``flip_permutation[c]``.

The label is resized with ``cv2.INTER_NEAREST_EXACT``: it is nearest-neighbour like
``INTER_NEAREST`` but samples at pixel centres, the same grid as the bilinear image resize, whereas
OpenCV's ``INTER_NEAREST`` is shifted by up to half a source pixel (a visible misalignment at 2x).

Randomness: albumentations keeps its own random state per pipeline (global seeds do not affect it).
:meth:`SegTransform.set_random_seed` reseeds it; the data sets call it once in every DataLoader
worker (from ``torch.utils.data.get_worker_info().seed``) so that workers do not repeat each other.
"""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from typing import Any, Optional, Sequence, Tuple  # noqa: E402

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from seglab.datasets.labels import IGNORE_INDEX  # noqa: E402
from seglab.errors import check  # noqa: E402
from seglab.metrics.inference import check_flip_permutation  # noqa: E402

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SegTransform",
    "MirrorFlip",
    "build_train_transform",
    "build_eval_transform",
    "to_tensors",
]


def _is_pair_of_positive_ints(value: Any) -> bool:
    return (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value)
    )


def _check_mean_std(mean: Any, std: Any) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    def triple(value: Any) -> Optional[Tuple[float, ...]]:
        try:
            out = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            return None
        return out if len(out) == 3 else None

    m, s = triple(mean), triple(std)
    check(m is not None, f"transform.mean must be 3 numbers (per RGB channel, in 0..1 units), got {mean!r}")
    check(s is not None and all(v > 0 for v in s),
          f"transform.std must be 3 positive numbers (per RGB channel, in 0..1 units), got {std!r}")
    return m, s  # type: ignore[return-value]


def to_tensors(image: np.ndarray, label: Optional[np.ndarray]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``HxWx3`` float image -> float32 ``(3, H, W)`` tensor; ``HxW`` label -> int64 ``(H, W)`` tensor."""
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1).contiguous()
    if label is None:
        return img, None
    lbl = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64, copy=False))
    return img, lbl


def augmentation_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index``'s augmentation in ``epoch`` of a run seeded ``seed``.

    A function of these three numbers alone, so the augmentation stream is the same whatever the
    number of DDP ranks or loader workers, and a run resumed at an epoch boundary sees exactly the
    augmentation an uninterrupted run sees (the training loop keys its samples with it).
    """
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0])


def split_key(key: Any) -> Tuple[int, Optional[int]]:
    """A data set key: a plain index, or ``(index, augmentation seed)`` -> ``(index, seed or None)``."""
    if isinstance(key, (tuple, list)):
        index, seed = key
        return int(index), (None if seed is None else int(seed))
    return key, None


class SegTransform:
    """An albumentations pipeline for (image, label) pairs, returning the contract's tensors.

    ``transform(image, label)`` takes an ``HxWx3`` uint8 RGB image and an ``HxW`` integer label
    (values 0..254 and ``ignore_index``) and returns ``(image float32 (3,H,W), label int64 (H,W))``.
    ``label`` may be ``None`` (inference); the second element is then ``None``.
    The underlying :class:`albumentations.Compose` is available as ``.compose``.
    """

    def __init__(self, compose: A.Compose, ignore_index: int = IGNORE_INDEX) -> None:
        self.compose = compose
        self.ignore_index = ignore_index

    def set_random_seed(self, seed: Optional[int]) -> None:
        """Reseed the pipeline's own random state (``None``: fresh entropy)."""
        self.compose.set_random_seed(None if seed is None else int(seed) % (2**32))

    def __call__(self, image: np.ndarray, label: Optional[np.ndarray] = None
                 ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
        if label is None:
            out = self.compose(image=image)
            return to_tensors(out["image"], None)
        label = np.asarray(label)
        if label.shape != image.shape[:2]:
            raise ValueError(f"label shape {label.shape} does not match image shape {image.shape[:2]}")
        if label.dtype != np.uint8:
            # OpenCV resizes/pads uint8 masks; labels here fit (0..254 plus the ignore value 255).
            if label.size and (label.min() < 0 or label.max() > 255):
                raise ValueError("label values must lie in 0..255")
            label = label.astype(np.uint8)
        out = self.compose(image=image, mask=label)
        return to_tensors(out["image"], out["mask"])

    def __repr__(self) -> str:
        return f"SegTransform({self.compose!r})"


class MirrorFlip(A.HorizontalFlip):
    """Horizontal flip whose label also goes through a data set's ``permutation``: a pixel of class
    ``c`` becomes ``permutation[c]`` (values past it, such as the ignore label, stay). It draws its
    randomness as ``HorizontalFlip(p)`` does, so swapping one for the other keeps the augmentation
    stream. ``permutation`` is kept as given (the data set's own object)."""

    def __init__(self, permutation: Sequence[int], p: float = 0.5) -> None:
        super().__init__(p=p)
        self.permutation = permutation
        self._lut = np.arange(256, dtype=np.uint8)
        values = check_flip_permutation(permutation)
        self._lut[: len(values)] = values

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        return self._lut[super().apply_to_mask(mask, **params)]

    def get_transform_init_args_names(self) -> Tuple[str, ...]:
        return ("permutation",)


def build_train_transform(
    crop_size: Sequence[int] = (512, 1024),
    scale_range: Sequence[float] = (0.5, 2.0),
    hflip: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    ignore_index: int = IGNORE_INDEX,
    seed: Optional[int] = None,
    base_size: Optional[int] = None,
    flip_permutation: Optional[Sequence[int]] = None,
) -> SegTransform:
    """Training pipeline: random scale, pad, random crop to ``crop_size`` = (h, w), flip, normalise.

    ``flip_permutation``: the data set's mirror permutation of its classes (None: a plain flip);
    with it the flip is a :class:`MirrorFlip` that also exchanges the left/right labels.

    ``base_size``: resize the long side to this many pixels first (the HRNet protocol: "random
    scale 0.5-2.0 of the base size", e.g. 2048 on Cityscapes, 520 on ADE20K); ``None`` keeps the
    file's size as the base.

    ``scale_range`` = (low, high) is the range the resize factor is drawn from uniformly (1.0 = no
    resize; ``(1.0, 1.0)`` disables scaling). ``mean``/``std`` are per RGB channel in 0..1 units
    (the image is divided by 255 first). ``seed`` seeds the pipeline's random state.
    """
    check(_is_pair_of_positive_ints(crop_size),
          f"transform.crop_size must be two positive ints (h, w), got {crop_size!r}")
    ok_range = (
        isinstance(scale_range, (tuple, list))
        and len(scale_range) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale_range)
        and 0 < scale_range[0] <= scale_range[1]
    )
    check(ok_range, f"transform.scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}")
    check(isinstance(hflip, bool), f"transform.hflip must be true or false, got {hflip!r}")
    check(isinstance(ignore_index, int) and 0 <= ignore_index <= 255,
          f"transform.ignore_index must be an int in 0..255, got {ignore_index!r}")
    m, s = _check_mean_std(mean, std)
    h, w = int(crop_size[0]), int(crop_size[1])
    low, high = float(scale_range[0]), float(scale_range[1])

    steps: list = _base_resize(base_size)
    if (low, high) != (1.0, 1.0):
        steps.append(
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0),  # albumentations samples 1 + U(low, high)
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST_EXACT,
                p=1.0,
            )
        )
    steps += [
        A.PadIfNeeded(
            min_height=h,
            min_width=w,
            position="random",
            border_mode=cv2.BORDER_CONSTANT,
            fill=tuple(v * 255.0 for v in m),  # the mean colour -> ~0 after Normalize (uint8 rounding)
            fill_mask=ignore_index,
            p=1.0,
        ),
        A.RandomCrop(height=h, width=w, p=1.0),
    ]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5) if flip_permutation is None else MirrorFlip(flip_permutation, p=0.5))
    steps.append(A.Normalize(mean=m, std=s, max_pixel_value=255.0, p=1.0))
    return SegTransform(A.Compose(steps, seed=seed), ignore_index=ignore_index)


def _base_resize(base_size: Optional[int]) -> list:
    """``[LongestMaxSize(base_size)]`` (image bilinear, label nearest-exact), or ``[]`` for ``None``."""
    if base_size is None:
        return []
    check(isinstance(base_size, int) and not isinstance(base_size, bool) and base_size > 0,
          f"transform.base_size must be null or a positive int (long side in pixels), got {base_size!r}")
    return [A.LongestMaxSize(max_size=int(base_size), interpolation=cv2.INTER_LINEAR,
                             mask_interpolation=cv2.INTER_NEAREST_EXACT, p=1.0)]


def build_eval_transform(
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    base_size: Optional[int] = None,
) -> SegTransform:
    """Evaluation pipeline: (resize the long side to ``base_size`` when given,) normalise
    (``mean``/``std`` per RGB channel in 0..1 units) -> tensors. ``None`` keeps full resolution."""
    m, s = _check_mean_std(mean, std)
    steps = _base_resize(base_size) + [A.Normalize(mean=m, std=s, max_pixel_value=255.0, p=1.0)]
    return SegTransform(A.Compose(steps))
