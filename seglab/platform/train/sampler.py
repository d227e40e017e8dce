"""What the training loader draws, and in which random state: samples and their augmentation seeds
that do not depend on the rank, the number of ranks or loader workers, or on a resume."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from seglab.datasets.transforms import augmentation_seed


class SeededSampler(Sampler):
    """Yields ``(index, augmentation seed)`` for the indices of ``sampler`` (a DistributedSampler):
    sample i's augmentation in epoch e is seeded by ``augmentation_seed(seed, e, i)``, so it does not
    depend on the rank, the number of ranks or loader workers, or on whether the run was resumed."""

    def __init__(self, sampler: DistributedSampler, seed: int) -> None:
        self.sampler, self.seed, self.epoch = sampler, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        for index in self.sampler:
            yield int(index), augmentation_seed(self.seed, self.epoch, int(index))

    def __len__(self) -> int:
        return len(self.sampler)


def seed_epoch(seed: int, rank: int, epoch: int) -> None:
    """Reseed torch's (and Python's / NumPy's global) random state from (seed, rank, epoch): whatever
    draws from them in the training step (dropout, sampling in a loss) repeats after a resume."""
    import random

    import numpy as np

    state = np.random.SeedSequence([int(seed), int(rank), int(epoch), 0x5E6]).generate_state(2)
    torch.manual_seed(int(state[0]))
    random.seed(int(state[1]))
    np.random.seed(int(state[1]))


def resolve_loader_workers(setting: Any, dataset: Dataset, on_gpu: bool, cpus_per_worker: float) -> int:
    """``trainer.loader_workers``: an int as given; ``auto`` -> 0 for generated data sets (no files
    to decode) and on CPU-only workers (the trainer uses the CPUs), else ``clamp(cpus - 1, 2, 8)``."""
    if setting != "auto":
        return int(setting)
    if not on_gpu or not hasattr(dataset, "verify"):
        return 0
    return int(min(8, max(2, math.floor(cpus_per_worker) - 1)))
