"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (DDP: gloo on CPU, nccl on GPU).

One call trains one run: SGD + poly LR, validation every epoch with a confusion matrix summed
across workers, ``ray.train.report`` of metrics (all ranks) and of a checkpoint (rank 0), resume
from the latest checkpoint, and MLflow logging from rank 0 into the trial's child run.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Subset

from seglab.metrics import ConfusionMatrix
from seglab.platform import checkpoint as ckpt
from seglab.platform.build import build_datasets, build_loss, build_model, describe
from seglab.platform.config import RunConfig
from seglab.platform.quiet import quiet, quiet_train_worker


def poly_lr(base_lr: float, step: int, total_steps: int, power: float) -> float:
    """Poly schedule: ``base_lr * (1 - step / total_steps) ** power``."""
    return base_lr * (1.0 - min(step, total_steps) / max(total_steps, 1)) ** power


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class _Tracker:
    """Rank 0's MLflow handle (a no-op on other ranks or when no run id is given)."""

    def __init__(self, enabled: bool, uri: Optional[str], run_id: Optional[str]) -> None:
        self.active = bool(enabled and uri and run_id)
        if self.active:
            import mlflow

            self.mlflow = mlflow
            mlflow.set_tracking_uri(uri)
            mlflow.set_system_metrics_sampling_interval(5)
            mlflow.start_run(run_id=run_id, log_system_metrics=True)

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        if self.active:
            self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str, folder: str) -> None:
        if self.active:
            self.mlflow.log_artifact(path, artifact_path=folder)

    def set_tag(self, key: str, value: Any) -> None:
        if self.active:
            self.mlflow.set_tag(key, str(value))

    def finish(self) -> None:
        if self.active:
            self.mlflow.end_run(status="FINISHED")


def _evaluate(model, loader, num_classes, ignore_index, device) -> Dict[str, Any]:
    """Streaming confusion matrices of the final (and, for OVeNet, initial/seed) logits."""
    matrices: Dict[str, ConfusionMatrix] = {}
    model.eval()
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            out = model(images)
            heads = {"": out.logits, "_initial": out.initial_logits, "_seed": out.seed_logits}
            for suffix, logits in heads.items():
                if logits is None:
                    continue
                cm = matrices.setdefault(suffix, ConfusionMatrix(num_classes, ignore_index, device=device))
                cm.update(logits, labels)
    scores = {}
    for suffix, cm in matrices.items():
        cm.all_reduce()
        scores[suffix] = cm.compute()
    return scores


def train_loop_per_worker(config: Dict[str, Any]) -> None:
    """Entry point of every Ray Train worker; ``config`` is plain data (see trainer.py)."""
    import ray.train
    import ray.train.torch

    quiet()
    quiet_train_worker()
    run = RunConfig.from_dict(config["run"])
    t = run.trainer
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.set_num_threads(int(config.get("threads", 1)))
    torch.manual_seed(t.seed + rank)
    trial_dir = Path(config["trial_dir"])
    label = describe(run)

    train_ds, val_ds = build_datasets(run.dataset)
    num_classes, ignore_index = int(train_ds.num_classes), int(getattr(train_ds, "ignore_index", 255))
    class_names = list(train_ds.class_names)
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=t.seed, drop_last=True)
    pin = device.type == "cuda"
    train_loader = DataLoader(train_ds, batch_size=t.batch_size, sampler=sampler, drop_last=True,
                              num_workers=t.loader_workers, pin_memory=pin, persistent_workers=t.loader_workers > 0)
    if len(train_loader) == 0:
        raise ValueError(f"trainer.batch_size={t.batch_size} x {world} workers exceeds the {len(train_ds)} training samples")
    # Validation shards without padding (DistributedSampler would repeat samples and bias the metric).
    val_loader = DataLoader(Subset(val_ds, range(rank, len(val_ds), world)), batch_size=t.batch_size,
                            num_workers=t.loader_workers, pin_memory=pin)

    model = build_model(run.model, num_classes, load_weights=True)
    criterion = build_loss(run.loss, ignore_index)
    optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)

    start_epoch, best_miou, elapsed_before = 1, -1.0, 0.0
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            state = ckpt.load(os.path.join(folder, ckpt.CHECKPOINT_NAME))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_miou = int(state["epoch"]) + 1, float(state["best_miou"])
        elapsed_before = float(state.get("elapsed_s", 0.0))
    model = ray.train.torch.prepare_model(model)

    tracker = _Tracker(rank == 0, config.get("tracking_uri"), config.get("mlflow_run_id"))
    if restored is not None:
        tracker.set_tag("seglab.resumed_from_epoch", start_epoch - 1)
        if rank == 0:
            print(f"[{label}] resumed from checkpoint after epoch {start_epoch - 1}", flush=True)

    steps_per_epoch = len(train_loader)
    total_steps = t.epochs * steps_per_epoch
    best_path = trial_dir / "best.pt"
    epoch_times = []
    for epoch in range(start_epoch, t.epochs + 1):
        if t.fail_once_at_epoch == epoch and rank == 0:
            marker = trial_dir / f".injected_failure_epoch{epoch}"
            if not marker.exists():
                marker.touch()
                raise RuntimeError(f"injected failure at the start of epoch {epoch} (trainer.fail_once_at_epoch)")
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        model.train()
        sums: Dict[str, float] = {}
        seen = 0
        lr = t.lr
        for i, (images, labels) in enumerate(train_loader):
            step = (epoch - 1) * steps_per_epoch + i
            lr = poly_lr(t.lr, step, total_steps, t.poly_power)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            result = criterion(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            result.total.backward()
            optimizer.step()
            n = images.shape[0]
            seen += n
            for name, value in result.terms.items():
                sums[name] = sums.get(name, 0.0) + float(value) * n
        names = sorted(sums)
        totals = _all_reduce_sum(torch.tensor([sums[k] for k in names] + [float(seen)], dtype=torch.float64))
        train_time = time.perf_counter() - t0
        global_seen = totals[-1].item()
        train_terms = {f"train_{k}": (totals[j] / global_seen).item() for j, k in enumerate(names)}

        scores = _evaluate(model, val_loader, num_classes, ignore_index, device)
        main = scores[""]
        epoch_time = time.perf_counter() - t0
        epoch_times.append(epoch_time)
        metrics: Dict[str, float] = {
            "epoch": epoch, "lr": lr, **train_terms,
            "val_miou": main["miou"], "val_pixel_acc": main["pixel_acc"], "val_mean_acc": main["mean_acc"],
            "images_per_s": global_seen / train_time, "epoch_time_s": epoch_time,
        }
        for suffix in ("_initial", "_seed"):
            if suffix in scores:
                metrics[f"val_miou{suffix}"] = scores[suffix]["miou"]
        for name, iou in zip(class_names, main["per_class_iou"]):
            if not math.isnan(iou):
                metrics[f"val_iou_{name.replace(' ', '_')}"] = iou
        improved = main["miou"] > best_miou
        best_miou = max(best_miou, main["miou"])
        metrics["best_val_miou"] = best_miou
        elapsed = elapsed_before + sum(epoch_times)
        metrics["elapsed_s"] = elapsed

        reported = None
        with tempfile.TemporaryDirectory() as folder:
            if rank == 0:
                state = {
                    "model": ckpt.unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                    "epoch": epoch, "best_miou": best_miou, "val_miou": main["miou"], "elapsed_s": elapsed,
                    "num_classes": num_classes, "class_names": class_names, "run": run.to_dict(),
                    "mlflow_run_id": config.get("mlflow_run_id"),
                }
                ckpt.save_atomic(state, os.path.join(folder, ckpt.CHECKPOINT_NAME))
                if improved:
                    ckpt.save_atomic(state, str(best_path))
                tracker.log_metrics(metrics, step=epoch)
                eta = (t.epochs - epoch) * (sum(epoch_times) / len(epoch_times))
                loss_text = f"{train_terms.get('train_loss', float('nan')):.3f}"
                print(f"[{label}] epoch {epoch}/{t.epochs} loss {loss_text} val mIoU {main['miou']:.3f} "
                      f"(best {best_miou:.3f}) {metrics['images_per_s']:.1f} img/s ETA {_fmt_eta(eta)}", flush=True)
                reported = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=reported)

    if rank == 0:
        if best_path.exists():
            tracker.log_artifact(str(best_path), "checkpoints")
        tracker.finish()
