"""The one evaluation loop: shard a split over the DDP ranks, run the model, feed the evaluators.

:func:`validation_shard` gives rank ``r`` the samples ``r, r + world, ...`` (no padding: a repeated
sample would bias the scores; a rank may get none). :func:`evaluate` runs the model over a loader of
``(images, labels, indices)`` batches, feeds every evaluator, all-reduces them in order and returns
their merged metrics; a batch of images of different sizes runs in same-size groups
(:func:`size_groups`), so every image is evaluated at its true size. Training (per-epoch validation and the report split) and ``seglab eval`` use it.

Bad samples (``dataset.on_bad_sample=skip``) are left out of evaluation, not replaced: the shards
read them with :func:`seglab.datasets.eval_items.evaluation_item`, the loaders batch with
:func:`~seglab.datasets.eval_items.collate_evaluation`, and :func:`evaluate` reports how many it
left out as ``val_skipped_samples`` (summed over the ranks; absent when none), which the report
split's scores carry as ``test_skipped_samples`` / ``final_test_skipped_samples``.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import nn

from seglab.datasets.eval_items import evaluation_item
from seglab.platform.checkpoint import unwrap
from seglab.platform.comm import all_reduce_sum, broadcast_buffers
from seglab.platform.evaluation.evaluator import EvalBatch, Evaluator

class IndexedSubset(torch.utils.data.Dataset):
    """``(image, label, index)`` for a subset of ``dataset`` (index into the full data set), read with
    :func:`~seglab.datasets.eval_items.evaluation_item`: a bad sample that ``on_bad_sample=skip``
    leaves out is ``(None, None, index)``, never another sample; batch with ``collate_evaluation``."""

    def __init__(self, dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        item = evaluation_item(self.dataset, self.indices[i])
        image, label = (None, None) if item is None else item
        return image, label, self.indices[i]


def validation_shard(dataset, rank: int, world: int) -> IndexedSubset:
    """Rank ``rank``'s share of an evaluation split: samples ``rank, rank + world, ...``, without
    the padding DistributedSampler adds (a repeated sample would bias the scores); a rank may get
    none when the split is smaller than the number of workers."""
    return IndexedSubset(dataset, range(rank, len(dataset), world))


def size_groups(images, labels, indices: List[int]):
    """``(images, labels, indices)`` batches of one size: the batch itself when ``images`` is a tensor,
    else (:func:`~seglab.datasets.eval_items.collate_evaluation`'s lists of images of different
    sizes) one stacked batch per image size, in order of first appearance -- never more images at
    once than the loader's batch, each image at its own size (no padding, so the scores equal
    per-image inference)."""
    if torch.is_tensor(images):
        return [(images, labels, indices)]
    groups: Dict[tuple, List[int]] = {}
    for k, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(k)
    return [(torch.stack([images[k] for k in ks]), torch.stack([labels[k] for k in ks]), [indices[k] for k in ks])
            for ks in groups.values()]


def evaluate(model: nn.Module, loader, evaluators: List[Evaluator], device: torch.device,
             forward=None) -> Dict[str, float]:
    """Run ``model`` over ``loader`` (batches ``(images, labels, indices)``, or
    :func:`~seglab.datasets.eval_items.collate_evaluation`'s ``(images, labels, indices, skipped)``),
    feed every evaluator, all-reduce them in order and return their merged metrics, plus
    ``val_skipped_samples`` (bad samples left out, summed over the DDP ranks) when it is above 0.
    ``forward(module, images)`` defaults to ``module(images)`` (no labels: evaluation never needs them).

    Under DDP every rank first takes rank 0's buffers (:func:`~seglab.platform.comm.broadcast_buffers`)
    and then runs the *unwrapped* module: a forward through the DDP wrapper broadcasts buffers itself,
    a collective that only the ranks with data would call (a rank with an empty shard would hang the
    others, or pair its next collective with theirs)."""
    module = unwrap(model)
    broadcast_buffers(module)
    module.eval()
    skipped = torch.zeros(1, dtype=torch.float64)
    with torch.no_grad():
        for images, labels, indices, *rest in loader:
            skipped += float(rest[0]) if rest else 0.0
            if images is None:  # every sample of the batch was bad
                continue
            for images, labels, idx in size_groups(images, labels, [int(i) for i in indices]):
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                out = forward(module, images) if forward else module(images)
                batch = EvalBatch(images, labels, idx, out, module)
                for ev in evaluators:
                    ev.process(batch)
    metrics: Dict[str, float] = {}
    for ev in evaluators:
        ev.all_reduce()
    if all_reduce_sum(skipped).item() > 0:  # every rank, after the evaluators (the same sequence everywhere)
        metrics["val_skipped_samples"] = skipped.item()
    for ev in evaluators:
        metrics.update(ev.metrics())
    return metrics
