"""Data sets read from an official on-disk layout: a list of (image, label) files and a label map.

Every real loader (Cityscapes, ACDC, ADE20K, VOC, HELEN, Synthia, ...) is a small subclass of
:class:`SegmentationFolder`: it walks its root into a list of :class:`Sample` (failing with one
line that names the directory it expected), and gives a :class:`LabelMap` from the raw values
stored in its label files to contiguous train ids 0..K-1 (255 = ignore). This class does the
rest, the same way for all of them:

* decoding: images with OpenCV (RGB, uint8), labels with ``IMREAD_UNCHANGED`` (8- or 16-bit);
  :meth:`SegmentationFolder.decode_label` turns the decoded array into raw values (override it
  for multi-channel label files);
* checks on every load: the image decodes, the label decodes, has the image's size and only
  values the map knows; anything else raises :class:`BadSampleError`, one line naming the file;
* ``on_bad_sample``: ``"error"`` (default) raises; ``"skip"`` logs the file once, counts it in
  :attr:`SegmentationFolder.skipped` and returns the next good sample instead (``ds[i]``, for
  training) or ``None`` (:meth:`SegmentationFolder.evaluation_item`, for evaluation: the caller
  leaves the sample out and counts it, see :mod:`seglab.datasets.eval_items`);
* :meth:`SegmentationFolder.verify`: a full scan (every label decoded and mapped, every image's
  header read and its file checked for truncation/corruption with Pillow's ``verify``), run in
  threads with a progress callback. The platform calls it once before training, so bad data
  fails before a cluster is asked for anything; ``seglab data check`` prints its report;
* transforms: the train / eval pipelines of :mod:`seglab.datasets.transforms`.

Samples carry a ``group`` (ACDC's condition, Cityscapes' city, ...) so metrics can be reported
per group (:attr:`SegmentationFolder.groups`, :meth:`SegmentationFolder.group_indices`), and
optionally an ``instance`` file (Cityscapes' ``*_instanceIds.png``, for iIoU;
:meth:`SegmentationFolder.load_instance`).

Layout errors (:mod:`seglab.datasets.files`, with the file readers): :func:`require_dir` raises a
ConfigError naming the directory it expected; :func:`require_split_dir` raises its subclass
:class:`MissingSplitError` for the image directory
of one split, so that ``seglab data check`` can walk "every split present" and skip the absent
ones. With ``on_bad_sample="skip"`` an image without its label is skipped too (the loader collects
the messages with ``pair_by_suffix(..., skipped=[...])`` and passes them as ``unpaired``); they are
logged, counted in :attr:`SegmentationFolder.skipped` and listed by ``verify()``.
"""
from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from seglab.datasets.files import (BadSampleError, MissingSplitError, check_file_intact,  # noqa: F401 (the loaders'
                                   pair_by_suffix, read_image, read_label_file, require_dir,  # names, kept here)
                                   require_split_dir)
from seglab.datasets.labels import IGNORE_INDEX
from seglab.datasets.transforms import (IMAGENET_MEAN, IMAGENET_STD, SegTransform, build_eval_transform,
                                        build_train_transform, split_key)
from seglab.errors import ConfigError, check

log = logging.getLogger(__name__)

ON_BAD_SAMPLE = ("error", "skip")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Sample:
    """One (image, label) pair; ``label`` is ``None`` for splits without ground truth (test)."""

    image: str
    label: Optional[str]
    group: str = ""
    instance: Optional[str] = None  # instance-id file (Cityscapes *_instanceIds.png), for iIoU


# ----------------------------------------------------------------------------------- label maps
class LabelMap:
    """Raw label values (as stored in the files) -> train ids (0..K-1, or ``ignore_index``).

    ``mapping`` gives the train id of every raw value that may occur; raw values missing from it
    are *not allowed*: a label file containing one is a bad sample (a wrong file, a wrong data
    set, a corrupt label). ``describe`` is the human text of the allowed raw values used in that
    error (e.g. ``"Cityscapes labelIds 0..33"``).
    """

    def __init__(self, mapping: Mapping[int, int], describe: str, ignore_index: int = IGNORE_INDEX) -> None:
        check(len(mapping) > 0, "a label map needs at least one value")
        top = max(int(k) for k in mapping)
        check(min(int(k) for k in mapping) >= 0 and top < 2**16, "raw label values must lie in 0..65535")
        self.lut = np.full(top + 1, -1, dtype=np.int32)
        for raw, train_id in mapping.items():
            check(0 <= int(train_id) <= 255, f"train ids must lie in 0..255 (got {train_id} for raw {raw})")
            self.lut[int(raw)] = int(train_id)
        self.describe = describe
        self.ignore_index = ignore_index

    @classmethod
    def identity(cls, num_classes: int, describe: str, ignore_index: int = IGNORE_INDEX,
                 extra: Mapping[int, int] = ()) -> "LabelMap":
        """Raw values 0..num_classes-1 are the train ids; ``ignore_index`` stays ignore; ``extra`` adds more."""
        mapping = {i: i for i in range(num_classes)}
        mapping[ignore_index] = ignore_index
        mapping.update(dict(extra))
        return cls(mapping, describe, ignore_index)

    def bad_values(self, raw: np.ndarray) -> np.ndarray:
        """The sorted distinct values of ``raw`` that the map does not allow."""
        values = np.unique(raw)
        inside = values[(values >= 0) & (values < len(self.lut))]
        allowed = self.lut[inside.astype(np.int64)] >= 0
        return np.concatenate([values[(values < 0) | (values >= len(self.lut))], inside[~allowed]])

    def __call__(self, raw: np.ndarray, path: str = "") -> np.ndarray:
        """Map a raw ``(H, W)`` array to uint8 train ids; BadSampleError names ``path`` if a value is not allowed."""
        raw = np.asarray(raw)
        if raw.size and (int(raw.min()) < 0 or int(raw.max()) >= len(self.lut)
                         or (self.lut[raw.astype(np.int64, copy=False)] < 0).any()):
            bad = self.bad_values(raw)
            raise BadSampleError(f"{path}: label values {bad[:8].tolist()} are outside the label map "
                                 f"(allowed: {self.describe})")
        return self.lut[raw.astype(np.int64, copy=False)].astype(np.uint8)


# ----------------------------------------------------------------------------------- file helpers
# ----------------------------------------------------------------------------------- the base class
@dataclass
class VerifyReport:
    """What :meth:`SegmentationFolder.verify` found."""

    name: str
    split: str
    num_samples: int
    per_group: Dict[str, int]
    bad: List[str] = field(default_factory=list)  # one line per bad sample
    label_counts: Optional[np.ndarray] = None  # pixels per train id (index 255 = ignore)
    num_labelled: Optional[int] = None  # samples with a label file (test splits: 0)
    class_names: Optional[List[str]] = None  # the data set's classes (index = train id)
    ignore_index: int = IGNORE_INDEX

    @property
    def ok(self) -> bool:
        return not self.bad


class SegmentationFolder(Dataset):
    """Base of the on-disk data sets (see the module docstring).

    Subclasses set the class attributes ``num_classes``, ``class_names``, ``palette`` and
    optionally ``class_weights``, walk their root into ``samples`` and call ``super().__init__``.

    ``ds[i]`` -> ``(image float32 (3, H, W) normalised, label int64 (H, W))``; :meth:`load` gives the
    raw ``(uint8 RGB image, uint8 train-id label)`` before any transform.

    Transform options (the HRNet protocol): with ``augment`` (train split only), random scale by
    ``scale_range`` of ``base_size`` (the long side images are first resized to; ``None`` = keep
    the file's size), pad with ignore and random crop to ``crop_size`` (h, w), flip, normalise;
    otherwise normalise only (after resizing to ``base_size`` when ``eval_resize``).
    ``limit`` keeps the first ``limit`` samples (sorted order), for quick runs.

    ``unpaired``: one message per image the loader left out for want of a label (only with
    ``on_bad_sample="skip"``; see :func:`pair_by_suffix`); they are logged, start
    :attr:`skipped` and are listed by :meth:`verify`.
    """

    name = "folder"
    num_classes: int = 0
    class_names: List[str] = []
    palette: List[Tuple[int, int, int]] = []
    ignore_index = IGNORE_INDEX
    class_weights: Optional[List[float]] = None
    report_groups = False  # True: the platform reports validation metrics per group too (ACDC conditions)
    #: Mirror permutation of a data set with left/right classes (HELEN): p[c] = the class c becomes in
    #: the mirror image; its training flip and test-time flip inference read it. None: a plain flip.
    flip_permutation: Optional[Tuple[int, ...]] = None
    #: The disjoint splits of the official layout, in order: what ``seglab data check`` walks when no
    #: split is named (unions such as ``trainval`` are left out so no file is counted twice).
    check_splits: Tuple[str, ...] = ("train", "val", "test")

    def __init__(self, samples: Sequence[Sample], split: str, label_map: LabelMap, *, root: str,
                 crop_size: Optional[Sequence[int]] = None, augment: bool = True,
                 scale_range: Sequence[float] = (0.5, 2.0), hflip: bool = True,
                 base_size: Optional[int] = None, eval_resize: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_bad_sample: str = "error", limit: Optional[int] = None, seed: int = 0,
                 unpaired: Sequence[str] = ()) -> None:
        check(on_bad_sample in ON_BAD_SAMPLE,
              f"dataset.on_bad_sample must be one of {', '.join(ON_BAD_SAMPLE)} (got {on_bad_sample!r})")
        check(limit is None or (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1),
              f"dataset.limit must be null or an integer >= 1 (got {limit!r})")
        check(isinstance(augment, bool), f"dataset.augment must be true or false (got {augment!r})")
        samples = list(samples)
        if not samples:
            raise ConfigError(f"dataset '{self.name}': the {split} split under {root} is empty (no images found)")
        self.samples: List[Sample] = samples[:limit] if limit else samples
        self.split = split
        self.root = str(root)
        self.label_map = label_map
        self.on_bad_sample = on_bad_sample
        self.unpaired: List[str] = list(unpaired)
        self.skipped: List[str] = list(self.unpaired)
        for message in self.unpaired:
            log.warning("dataset.on_bad_sample=skip: skipping %s", message)
        self.augment = bool(augment) and split in ("train", "trainval", "train_extra", "trainaug", "aug")
        self.base_size = base_size
        self.eval_resize = bool(eval_resize)
        self.transform = self._build_transform(crop_size, scale_range, hflip, mean, std, seed)
        self._worker_seed: Optional[int] = None

    # -- transforms
    def _build_transform(self, crop_size, scale_range, hflip, mean, std, seed) -> SegTransform:
        try:
            if self.augment:
                check(crop_size is not None, "dataset.crop_size is required for augmented training splits")
                return build_train_transform(crop_size=tuple(crop_size), scale_range=scale_range, hflip=hflip,
                                             mean=mean, std=std, ignore_index=self.ignore_index,
                                             seed=int(seed), base_size=self.base_size,
                                             flip_permutation=self.flip_permutation)
            return build_eval_transform(mean=mean, std=std,
                                        base_size=self.base_size if self.eval_resize else None)
        except ConfigError as exc:  # re-key the transform's messages as dataset options
            raise ConfigError(str(exc).replace("transform.", "dataset.", 1)) from None

    # -- decoding
    def decode_label(self, data: np.ndarray, path: str) -> np.ndarray:
        """Decoded label file -> ``(H, W)`` raw values. Default: single-channel files only."""
        if data.ndim != 2:
            raise BadSampleError(f"{path}: expected a single-channel label image, got shape {data.shape}")
        return data

    def read_label(self, path: str) -> np.ndarray:
        """Label file -> ``(H, W)`` raw values: :func:`read_label_file` then :meth:`decode_label`.

        Override for formats OpenCV decodes differently from the stored values, e.g. paletted PNGs
        (VOC's SegmentationClass: OpenCV returns colours, Pillow returns the palette indices)."""
        return self.decode_label(read_label_file(path), path)

    def load_label(self, index: int) -> Optional[np.ndarray]:
        """Sample ``index``'s label alone, decoded, checked and mapped (``uint8 (H, W)`` train ids at the
        file's resolution, no image decoded), or None for an unlabelled sample."""
        s = self.samples[index]
        return None if s.label is None else self.label_map(self.read_label(s.label), s.label)

    def load(self, index: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Sample ``index`` decoded and checked: ``(uint8 (H, W, 3) RGB, uint8 (H, W) train ids or None)``."""
        s = self.samples[index]
        image = read_image(s.image)
        label = self.load_label(index)
        if label is not None and label.shape != image.shape[:2]:
            raise BadSampleError(f"{s.label}: label size {label.shape[1]}x{label.shape[0]} differs from its image "
                                 f"{s.image} ({image.shape[1]}x{image.shape[0]})")
        return image, label

    def _reseed_for_worker(self) -> None:
        info = get_worker_info()
        if info is not None and self._worker_seed != info.seed:
            self._worker_seed = info.seed
            self.transform.set_random_seed(info.seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` transformed; ``(index, seed)`` fixes the augmentation's random state
        (the training loop passes :func:`~seglab.datasets.transforms.augmentation_seed`). A bad sample
        skipped is replaced by the next good one (training; evaluation uses :meth:`evaluation_item`)."""
        index, seed = split_key(index)
        index = int(index)
        for attempt in range(len(self.samples)):
            i = (index + attempt) % len(self.samples)
            try:
                image, label = self.load(i)
                break
            except BadSampleError as exc:
                self._bad_sample(exc)
        else:
            raise BadSampleError(f"dataset '{self.name}': every sample of the {self.split} split is bad")
        return self._transformed(image, label, seed)

    def evaluation_item(self, index: int) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Sample ``index`` transformed, for evaluation: like ``ds[index]``, except that with
        ``on_bad_sample="skip"`` a bad sample gives ``None`` (logged once, listed in :attr:`skipped`)
        instead of the next good sample, so that no sample is scored twice; ``"error"`` raises."""
        try:
            image, label = self.load(int(index))
        except BadSampleError as exc:
            self._bad_sample(exc)
            return None
        return self._transformed(image, label, None)

    def _bad_sample(self, exc: BadSampleError) -> None:
        """``on_bad_sample="error"``: raise ``exc``; ``"skip"``: log it and list it in :attr:`skipped` (once)."""
        if self.on_bad_sample == "error":
            raise exc
        if str(exc) not in self.skipped:
            self.skipped.append(str(exc))
            log.warning("dataset.on_bad_sample=skip: skipping %s (%d skipped so far)", exc, len(self.skipped))

    def _transformed(self, image: np.ndarray, label: Optional[np.ndarray], seed: Optional[int]):
        """The transform's tensors of a loaded sample (augmentation seeded by ``seed``, or per worker)."""
        if self.augment:
            if seed is None:
                self._reseed_for_worker()
            else:
                self.transform.set_random_seed(seed)
        if label is None:  # test splits: an all-ignore label keeps the batch shape
            label = np.full(image.shape[:2], self.ignore_index, np.uint8)
        return self.transform(image, label)

    def load_instance(self, index: int) -> Optional[np.ndarray]:
        """Instance ids of sample ``index`` as stored (Cityscapes: ``labelId * 1000 + k`` for objects,
        the labelId elsewhere), ``(H, W)`` int32 at the file's resolution (no transform), or ``None``
        when the sample has no instance file."""
        s = self.samples[index]
        if s.instance is None:
            return None
        data = read_label_file(s.instance)
        if data.ndim != 2:
            raise BadSampleError(f"{s.instance}: expected a single-channel instance image, got shape {data.shape}")
        return data.astype(np.int32)

    # -- groups and the full scan
    @property
    def groups(self) -> List[str]:
        """The group (condition, city, ...) of every sample, in index order."""
        return [s.group for s in self.samples]

    def group_indices(self) -> Dict[str, List[int]]:
        """``{group: [sample indices]}`` (groups sorted), e.g. to report metrics per ACDC condition."""
        out: Dict[str, List[int]] = {}
        for i, group in enumerate(self.groups):
            out.setdefault(group, []).append(i)
        return dict(sorted(out.items()))

    def verify(self, progress: Optional[Progress] = None, workers: int = 2,
               count_labels: bool = False) -> VerifyReport:
        """Check every sample without training: labels decoded, sized and mapped; images checked intact.

        ``progress(done, total)`` is called as samples finish. Returns a :class:`VerifyReport`
        listing one line per bad sample (the run decides whether that is fatal: ``on_bad_sample``),
        images left out for want of a label (``unpaired``) first. ``count_labels`` fills
        ``label_counts`` with the pixels per train id.
        """
        counts = np.zeros(256, dtype=np.int64) if count_labels else None

        def one(s: Sample) -> Tuple[Optional[str], Optional[np.ndarray]]:
            try:
                size = check_file_intact(s.image)
                if s.label is None:
                    return None, None
                raw = self.read_label(s.label)
                if raw.shape != size:
                    raise BadSampleError(f"{s.label}: label size {raw.shape[1]}x{raw.shape[0]} differs from "
                                         f"its image {s.image} ({size[1]}x{size[0]})")
                mapped = self.label_map(raw, s.label)
                return None, (np.bincount(mapped.ravel(), minlength=256) if count_labels else None)
            except BadSampleError as exc:
                return str(exc), None

        bad: List[str] = list(self.unpaired)
        total = len(self.samples)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for done, (error, hist) in enumerate(pool.map(one, self.samples), start=1):
                if error:
                    bad.append(error)
                if hist is not None and counts is not None:
                    counts += hist
                if progress is not None:
                    progress(done, total)
        per_group = dict(sorted(Counter(self.groups).items()))
        labelled = sum(s.label is not None for s in self.samples)
        return VerifyReport(self.name, self.split, total, per_group, bad, counts, num_labelled=labelled,
                            class_names=list(self.class_names), ignore_index=self.ignore_index)

    @classmethod
    def splits_to_check(cls, options: Mapping[str, object]) -> Tuple[str, ...]:
        """The splits ``seglab data check`` walks for these ``options`` (default :attr:`check_splits`)."""
        return tuple(cls.check_splits)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, root={self.root!r}, samples={len(self)}, "
                f"augment={self.augment})")

