"""A run's data as its trainer sees them: the training loader (seeded, sharded over the DDP ranks), the
selection split's loader, the report split (built when it is scored), and what evaluators need to
know about them (:class:`~seglab.platform.evaluation.EvalContext`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from seglab.datasets.eval_items import collate_evaluation
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import ConfigError
from seglab.platform.build import build_datasets, build_report_dataset
from seglab.platform.config import RunConfig
from seglab.platform.evaluation import EvalContext, validation_shard
from seglab.platform.train.sampler import SeededSampler, resolve_loader_workers


def group_names(dataset: Dataset) -> Optional[List[str]]:
    """Per-sample groups (e.g. ACDC's conditions) of a data set that asks for per-group metrics
    (``report_groups = True``) and has more than one group, else None."""
    if not getattr(dataset, "report_groups", False):
        return None
    groups = list(getattr(dataset, "groups", None) or [])
    return groups if len(set(groups)) > 1 else None


@dataclass
class RunData:
    """Loaders and facts of one run's data on one rank (see the module docstring)."""

    run: RunConfig
    rank: int
    world: int
    device: torch.device
    train_dataset: Dataset
    val_dataset: Dataset
    sampler: SeededSampler
    train_loader: DataLoader
    val_loader: DataLoader
    eval_context: EvalContext
    method_set: Any
    loader_workers: int = 0
    mlflow_run_id: Optional[str] = None
    _report: Dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.train_dataset.num_classes)

    @property
    def class_names(self) -> List[str]:
        return list(self.train_dataset.class_names)

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        """This rank's shard of an evaluation split (no padding, no replaced sample: none counted twice)."""
        return DataLoader(validation_shard(dataset, self.rank, self.world), batch_size=self.run.trainer.batch_size,
                          num_workers=self.loader_workers, pin_memory=self.device.type == "cuda",
                          collate_fn=collate_evaluation)  # a bad sample (on_bad_sample=skip) is left out, counted

    def report_dataset(self) -> Dataset:
        if "dataset" not in self._report:
            self._report["dataset"] = build_report_dataset(self.run.dataset)
        return self._report["dataset"]

    def report_loader(self) -> DataLoader:
        return self.eval_loader(self.report_dataset())

    def report_context(self) -> EvalContext:
        ds = self.report_dataset()
        return dataclasses.replace(self.eval_context, groups=group_names(ds), miou_classes=getattr(ds, "miou_classes", None))


def build_run_data(run: RunConfig, *, rank: int = 0, world: int = 1, device: Optional[torch.device] = None,
                   method: Optional[str] = None, resources: Optional[Dict[str, Any]] = None,
                   mlflow_run_id: Optional[str] = None) -> RunData:
    """The run's data sets and loaders on rank ``rank`` of ``world`` (see :class:`RunData`);
    ``method``: the sweep's method name (its evaluators and pictures apply to every trial)."""
    from seglab.platform import methods

    device = device or torch.device("cpu")
    t = run.trainer
    train_ds, val_ds = build_datasets(run.dataset)
    sampler = SeededSampler(DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=t.seed,
                                               drop_last=True), t.seed)
    pin = device.type == "cuda"
    workers = resolve_loader_workers(t.loader_workers, train_ds, pin, t.cpus_per_worker)
    train_loader = DataLoader(train_ds, batch_size=t.batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                              pin_memory=pin, persistent_workers=workers > 0)
    if len(train_loader) == 0:
        raise ConfigError(f"trainer.batch_size={t.batch_size} x {world} workers exceeds the {len(train_ds)} "
                          f"training samples")
    ctx = EvalContext(int(train_ds.num_classes), int(getattr(train_ds, "ignore_index", 255)), list(train_ds.class_names),
                      list(train_ds.palette), device, run=run, groups=group_names(val_ds),
                      miou_classes=getattr(val_ds, "miou_classes", None), resources=dict(resources or {}),
                      mean=getattr(val_ds, "mean", None) or IMAGENET_MEAN, std=getattr(val_ds, "std", None) or IMAGENET_STD)
    data = RunData(run, rank, world, device, train_ds, val_ds, sampler, train_loader, val_loader=None,  # type: ignore[arg-type]
                   eval_context=ctx, method_set=methods.for_trial(run, method), loader_workers=workers,
                   mlflow_run_id=mlflow_run_id)
    data.val_loader = data.eval_loader(val_ds)
    return data
