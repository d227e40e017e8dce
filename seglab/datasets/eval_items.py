"""Evaluation items: a bad sample is left out and counted, never replaced by another sample.

With ``on_bad_sample="skip"`` an on-disk data set's ``ds[i]`` stands in the next good sample for a
bad one (an unreadable image or label): right for training, which wants batches of the usual size,
wrong for scoring, where that sample would be counted twice. Evaluation therefore reads samples
with :func:`evaluation_item` -- ``None`` for a bad sample (the data set logs it once and lists it
in its ``skipped``) -- and batches them with :func:`collate_evaluation`, which drops those items and
returns how many it dropped, for the evaluation loop to sum over its batches (and DDP ranks) and
report (``val_skipped_samples`` / ``test_skipped_samples`` in a run, ``skipped_samples`` in
``seglab eval``). With ``on_bad_sample="error"`` a bad sample raises, as in training.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import default_collate

__all__ = ["evaluation_item", "collate_evaluation"]


def evaluation_item(dataset: Any, index: int) -> Optional[Tuple[Tensor, Tensor]]:
    """Sample ``index`` of ``dataset`` for evaluation: ``(image (3, H, W), label (H, W))``, or
    ``None`` for a bad sample left out by ``on_bad_sample="skip"``. Uses the data set's own
    ``evaluation_item`` (:class:`~seglab.datasets.folder.SegmentationFolder`); a data set without one
    (generated data, which has no bad samples) gives ``dataset[index]``."""
    fetch = getattr(dataset, "evaluation_item", None)
    return fetch(index) if callable(fetch) else dataset[index]


def collate_evaluation(items: Sequence[Tuple[Any, ...]]) -> Tuple[Optional[Tensor], Optional[Tensor], Tensor, int]:
    """A batch of ``(image, label, index)`` items, where a bad sample's item is ``(None, None, index)``:
    ``(images (B, 3, H, W), labels (B, H, W), indices (B,), skipped)`` over the ``B`` good items,
    ``skipped`` the number of bad ones; ``images`` and ``labels`` are ``None`` when all are bad.
    When the good images differ in size (data sets evaluated at each image's true size), ``images``
    and ``labels`` are lists of single ``(3, H, W)`` / ``(H, W)`` tensors, which the evaluation loop
    runs in same-size groups (:func:`seglab.platform.evaluation.loop.size_groups`)."""
    good: List[Tuple[Any, ...]] = [item for item in items if item[0] is not None]
    skipped = len(items) - len(good)
    if not good:
        return None, None, torch.zeros(0, dtype=torch.int64), skipped
    if len({tuple(item[0].shape) for item in good}) > 1:  # images of different sizes (VOC, ADE20K, HELEN)
        indices = torch.as_tensor([int(item[2]) for item in good], dtype=torch.int64)
        return [item[0] for item in good], [item[1] for item in good], indices, skipped
    images, labels, indices = default_collate(good)
    return images, labels, indices, skipped
