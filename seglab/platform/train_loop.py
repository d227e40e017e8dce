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
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

from seglab.metrics import ConfusionMatrix
from seglab.platform import checkpoint as ckpt
from seglab.platform.build import build_datasets, build_loss, build_model, describe
from seglab.platform.config import RunConfig
from seglab.platform.quiet import quiet, quiet_train_worker


def poly_lr(base_lr: float, step: int, total_steps: int, power: float) -> float:
    """Poly schedule: ``base_lr * (1 - step / total_steps) ** power``."""
    return base_lr * (1.0 - min(step, total_steps) / max(total_steps, 1)) ** power


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the DDP workers in place (NCCL only reduces CUDA tensors: moved there and back)."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl" and not t.is_cuda:
            moved = t.cuda()
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            t.copy_(moved.cpu())
        else:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def resolve_loader_workers(setting: Any, dataset: Dataset, on_gpu: bool, cpus_per_worker: float) -> int:
    """``trainer.loader_workers``: an int as given; ``auto`` -> 0 for generated data sets (no files
    to decode) and on CPU-only workers (the trainer uses the CPUs), else ``clamp(cpus - 1, 2, 8)``."""
    if setting != "auto":
        return int(setting)
    if not on_gpu or not hasattr(dataset, "verify"):
        return 0
    return int(min(8, max(2, math.floor(cpus_per_worker) - 1)))


def stop_marker(storage_path: str, run_key: str) -> Path:
    """The file whose presence asks run ``run_key`` to stop before its next epoch (ASHA)."""
    return Path(storage_path) / run_key / "STOP_EARLY"


def _stop_requested(marker: Path) -> bool:
    """Rank 0 looks for the marker; every rank gets the same answer (they must stop together)."""
    flag = torch.tensor([1.0 if marker.exists() and _is_rank0() else 0.0], dtype=torch.float64)
    return bool(_all_reduce_sum(flag).item() > 0)


def _is_rank0() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


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

    def log_artifacts(self, folder: str, artifact_path: str) -> None:
        if self.active:
            self.mlflow.log_artifacts(folder, artifact_path=artifact_path)

    def set_tag(self, key: str, value: Any) -> None:
        if self.active:
            self.mlflow.set_tag(key, str(value))

    def finish(self) -> None:
        if self.active:
            self.mlflow.end_run(status="FINISHED")


class _WithIndex(Dataset):
    """``(image, label, index)`` for a subset of ``dataset`` (index into the full data set)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.dataset[self.indices[i]]
        return image, label, self.indices[i]


def _group_names(dataset: Dataset) -> Optional[List[str]]:
    """Per-sample groups (e.g. ACDC's conditions) of a data set that asks for per-group metrics
    (``report_groups = True``) and has more than one group, else None."""
    if not getattr(dataset, "report_groups", False):
        return None
    groups = list(getattr(dataset, "groups", None) or [])
    return groups if len(set(groups)) > 1 else None


def _evaluate(model, loader, num_classes, ignore_index, device, groups: Optional[List[str]] = None
              ) -> Tuple[Dict[str, Any], Dict[str, float]]:
    """Streaming confusion matrices of the final (and, for OVeNet, initial/seed) logits, one per
    sample group too; OVeNet's offset diagnostics summed over all validation pixels."""
    from seglab.platform.viz import offset_diagnostics

    matrices: Dict[str, ConfusionMatrix] = {}
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # offset px, confidence, changed, pixels
    model.eval()
    with torch.no_grad():
        for images, labels, indices in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            out = model(images)
            final = getattr(out, "final_logits", None)
            heads = {"": out.logits, "_initial": out.initial_logits, "_seed": out.seed_logits,
                     "_final": final if final is not None and final is not out.logits else None}
            for suffix, logits in heads.items():
                if logits is None:
                    continue
                cm = matrices.setdefault(suffix, ConfusionMatrix(num_classes, ignore_index, device=device))
                cm.update(logits, labels)
            if groups is not None:
                for g in sorted({groups[int(i)] for i in indices}):
                    rows = torch.tensor([groups[int(i)] == g for i in indices], device=device)
                    cm = matrices.setdefault(f"@{g}", ConfusionMatrix(num_classes, ignore_index, device=device))
                    cm.update(out.logits[rows], labels[rows])
            if out.offsets is not None and out.confidence is not None and out.initial_logits is not None:
                d = offset_diagnostics(out.offsets, out.confidence, out.initial_logits,
                                       final if final is not None else out.logits, tuple(images.shape[-2:]))
                n = float(out.offsets.shape[0] * out.offsets.shape[-2] * out.offsets.shape[-1])
                sums += torch.tensor([d["mean_offset_px"] * n, d["mean_confidence"] * n, d["frac_changed"] * n, n],
                                     dtype=torch.float64, device=device)
    scores = {}
    for suffix in sorted(matrices):
        matrices[suffix].all_reduce()
        scores[suffix] = matrices[suffix].compute()
    _all_reduce_sum(sums)
    diagnostics: Dict[str, float] = {}
    if sums[3] > 0:
        diagnostics = {"val_offset_px": (sums[0] / sums[3]).item(), "val_confidence": (sums[1] / sums[3]).item(),
                       "val_frac_changed": (sums[2] / sums[3]).item()}
    return scores, diagnostics


def _log_pictures(model, dataset, indices, epoch, tracker, palette, ignore_index, device) -> None:
    """Rank 0: OVeNet panels (input, GT, S_i, S_s, S_f, offsets, confidence, fix/break) of the fixed
    validation images -> MLflow artifacts ``viz/epoch_<NNN>/val_<index>.png``."""
    from seglab.platform.viz import ovenet_panel, save_png

    model.eval()
    with torch.no_grad(), tempfile.TemporaryDirectory() as folder:
        for index in indices:
            image, label = dataset[index]
            out = model(image.unsqueeze(0).to(device))
            if out.offsets is None:
                return  # not an offset model: nothing to draw
            final = getattr(out, "final_logits", None)
            panel = ovenet_panel(image, label, out.initial_logits[0].cpu(), out.seed_logits[0].cpu(),
                                 (final if final is not None else out.logits)[0].cpu(), out.offsets[0].cpu(),
                                 out.confidence[0].cpu(), palette, ignore_index=ignore_index,
                                 mean=getattr(dataset, "mean", None) or IMAGENET_MEAN,
                                 std=getattr(dataset, "std", None) or IMAGENET_STD,
                                 class_names=list(getattr(dataset, "class_names", []) or []) or None)
            save_png(os.path.join(folder, f"val_{index:05d}.png"), panel)
        tracker.log_artifacts(folder, f"viz/epoch_{epoch:03d}")


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
    loader_workers = resolve_loader_workers(t.loader_workers, train_ds, pin, t.cpus_per_worker)
    train_loader = DataLoader(train_ds, batch_size=t.batch_size, sampler=sampler, drop_last=True,
                              num_workers=loader_workers, pin_memory=pin, persistent_workers=loader_workers > 0)
    if len(train_loader) == 0:
        raise ValueError(f"trainer.batch_size={t.batch_size} x {world} workers exceeds the {len(train_ds)} training samples")
    # Validation shards without padding (DistributedSampler would repeat samples and bias the metric).
    val_loader = DataLoader(_WithIndex(val_ds, range(rank, len(val_ds), world)), batch_size=t.batch_size,
                            num_workers=loader_workers, pin_memory=pin)
    groups = _group_names(val_ds)

    model = build_model(run.model, num_classes, load_weights=True)
    criterion = build_loss(run.loss, ignore_index)
    # Frozen parts (OVeNet's model.freeze_body) have requires_grad=False and are left out.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)

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

    from seglab.platform.viz import select_samples

    viz_indices = select_samples(len(val_ds), t.viz_samples) if rank == 0 and tracker.active and t.viz_samples else []
    steps_per_epoch = len(train_loader)
    total_steps = t.epochs * steps_per_epoch
    best_path = trial_dir / "best.pt"
    epoch_times = []
    marker = stop_marker(os.path.dirname(str(trial_dir)), trial_dir.name)
    for epoch in range(start_epoch, t.epochs + 1):
        if epoch > start_epoch and _stop_requested(marker):
            tracker.set_tag("seglab.stopped_early", "true")
            if rank == 0:
                print(f"[{label}] stopped early after epoch {epoch - 1}: {marker.read_text().strip()}", flush=True)
            break
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

        scores, diagnostics = _evaluate(model, val_loader, num_classes, ignore_index, device, groups)
        main = scores[""]
        epoch_time = time.perf_counter() - t0
        epoch_times.append(epoch_time)
        metrics: Dict[str, float] = {
            "epoch": epoch, "lr": lr, **train_terms,
            "val_miou": main["miou"], "val_pixel_acc": main["pixel_acc"], "val_mean_acc": main["mean_acc"],
            "images_per_s": global_seen / train_time, "epoch_time_s": epoch_time,
        }
        for suffix in ("_initial", "_seed", "_final"):
            if suffix in scores:
                metrics[f"val_miou{suffix}"] = scores[suffix]["miou"]
        if "_initial" in scores:  # OVeNet: what the fusion S_f adds over the first head S_i
            fused = scores.get("_final", main)  # "_final" exists when logits is not S_f (inference_output)
            metrics["val_miou_gain_over_initial"] = fused["miou"] - scores["_initial"]["miou"]
        metrics.update(diagnostics)
        for suffix, group_scores in scores.items():
            if suffix.startswith("@"):
                metrics[f"val_miou_{suffix[1:].replace(' ', '_')}"] = group_scores["miou"]
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
                if viz_indices and (epoch % t.viz_every == 0 or epoch == t.epochs):
                    _log_pictures(ckpt.unwrap(model), val_ds, viz_indices, epoch, tracker, list(train_ds.palette),
                                  ignore_index, device)
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
