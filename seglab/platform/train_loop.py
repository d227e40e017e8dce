"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (DDP: gloo on CPU, nccl on GPU).

One call trains one run: SGD (or Adam/AdamW) + poly LR, validation every epoch by a list of evaluators summed
across workers (the confusion matrix, plus what the run's method and its sweep's method add, see
:mod:`seglab.platform.methods`), ``ray.train.report`` of metrics (all ranks) and of a checkpoint
(rank 0), resume from the latest checkpoint, and MLflow logging from rank 0 into the trial's child
run, with the method's pictures of fixed validation images.
"""
from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, augmentation_seed
from seglab.platform import checkpoint as ckpt
from seglab.platform import methods, speed
from seglab.platform.build import (build_datasets, build_loss, build_model, build_report_dataset,
                                   report_split_name, selection_split_name)
from seglab.platform.config import RunConfig
from seglab.platform.evaluation import (EvalContext, Evaluator, SegmentationEvaluator, all_reduce_sum, evaluate,
                                       validation_shard)
from seglab.platform.quiet import quiet, quiet_train_worker
from seglab.platform.gpu_monitor import start_gpu_monitor
from seglab.platform.trial_log import TrialLogger


def poly_lr(base_lr: float, step: int, total_steps: int, power: float, warmup_steps: int = 0) -> float:
    """Poly schedule ``base_lr * (1 - step / total_steps) ** power``, after an optional linear
    warm-up: ``base_lr * (step + 1) / warmup_steps`` for the first ``warmup_steps`` steps (then the
    poly value of the same step, so the two meet without a jump only approximately, as mmseg's
    ``warmup='linear'`` with ``warmup_ratio=0`` does)."""
    poly = base_lr * (1.0 - min(step, total_steps) / max(total_steps, 1)) ** power
    if step < warmup_steps:
        return poly * (step + 1) / warmup_steps
    return poly


def resolve_loader_workers(setting: Any, dataset: Dataset, on_gpu: bool, cpus_per_worker: float) -> int:
    """``trainer.loader_workers``: an int as given; ``auto`` -> 0 for generated data sets (no files
    to decode) and on CPU-only workers (the trainer uses the CPUs), else ``clamp(cpus - 1, 2, 8)``."""
    if setting != "auto":
        return int(setting)
    if not on_gpu or not hasattr(dataset, "verify"):
        return 0
    return int(min(8, max(2, math.floor(cpus_per_worker) - 1)))


def build_optimizer(model: torch.nn.Module, t) -> torch.optim.Optimizer:
    """``trainer.optimizer`` over the trainable parameters (frozen ones, ``requires_grad=False``,
    are left out): SGD with ``momentum``, or Adam / AdamW with ``weight_decay`` (L2 / decoupled)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


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


FAILURE_MARKER = "FAILED"


def failure_marker(trial_dir: Path) -> Path:
    """The file rank 0 writes when a run fails for a reason a restart cannot fix (non-finite loss):
    the trial driver marks the MLflow run FAILED with its text and does not retry."""
    return Path(trial_dir) / FAILURE_MARKER


def _all_finite(value: torch.Tensor) -> bool:
    """Whether ``value`` is finite on every rank (one tiny all-reduce: ranks must agree to stop together)."""
    bad = torch.tensor([0.0 if bool(torch.isfinite(value.detach()).all()) else 1.0], dtype=torch.float64)
    return bool(all_reduce_sum(bad).item() == 0)


def _count_restart(trial_dir: Path) -> int:
    """Rank 0: one more restart of this run from a checkpoint (worker group restarted, trial
    retried, sweep resumed); the count lives in the trial folder, so it survives every kind."""
    path = Path(trial_dir) / "RESTARTS"
    try:
        count = int(path.read_text().strip() or 0) + 1
    except (OSError, ValueError):
        count = 1
    ckpt.write_text_atomic(str(path), f"{count}\n")
    return count


def stop_marker(storage_path: str, run_key: str) -> Path:
    """The file whose presence asks run ``run_key`` to stop before its next epoch (ASHA)."""
    return Path(storage_path) / run_key / "STOP_EARLY"


def _stop_requested(marker: Path) -> bool:
    """Rank 0 looks for the marker; every rank gets the same answer (they must stop together)."""
    flag = torch.tensor([1.0 if marker.exists() and _is_rank0() else 0.0], dtype=torch.float64)
    return bool(all_reduce_sum(flag).item() > 0)


def _is_rank0() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _group_names(dataset: Dataset) -> Optional[List[str]]:
    """Per-sample groups (e.g. ACDC's conditions) of a data set that asks for per-group metrics
    (``report_groups = True``) and has more than one group, else None."""
    if not getattr(dataset, "report_groups", False):
        return None
    groups = list(getattr(dataset, "groups", None) or [])
    return groups if len(set(groups)) > 1 else None


def _log_pictures(model, dataset, indices, epoch, tracker, method_set: methods.MethodSet, ctx: EvalContext,
                  evaluators: List[Evaluator]) -> None:
    """Rank 0: the method's picture of each fixed validation image (``viz/epoch_<NNN>/val_<index>.png``)
    and the evaluators' pictures (``viz/epoch_<NNN>/<name>.png``) -> MLflow artifacts."""
    from seglab.platform.viz import save_png

    model.eval()
    with torch.no_grad(), tempfile.TemporaryDirectory() as folder:
        for index in indices:
            image, label = dataset[index]
            picture = method_set.draw(model, image, label, ctx)
            if picture is not None:
                save_png(os.path.join(folder, f"val_{index:05d}.png"), picture)
        for ev in evaluators:
            for name, picture in ev.pictures().items():
                save_png(os.path.join(folder, f"{name}.png"), picture)
        if os.listdir(folder):
            tracker.log_artifacts(folder, f"viz/epoch_{epoch:03d}")


def _log_checkpoint(which: str, best_path: Path, last_state: Optional[Dict[str, Any]], trial_dir: Path,
                    tracker: TrialLogger) -> None:
    """Rank 0, at the end: ``trainer.log_checkpoints`` -> the run's ``checkpoints/best.pt`` or
    ``checkpoints/last.pt`` artifact (through the tracking server's artifact proxy when it is a
    server; an upload that fails is retried and reported by the logger), or nothing."""
    if which == "best" and best_path.exists():
        tracker.log_artifact(str(best_path), "checkpoints")
    elif which == "last" and last_state is not None:
        last = trial_dir / "last.pt"
        ckpt.save_atomic(last_state, str(last))
        tracker.log_artifact(str(last), "checkpoints")


def _tag_nodes(tracker: TrialLogger, world: int) -> None:
    """Tag ``seglab.num_nodes``: on how many Ray nodes this run's workers are (after each (re)start)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    nodes = [node] * world
    if dist.is_available() and dist.is_initialized() and world > 1:
        dist.all_gather_object(nodes, node)
    tracker.set_tag("seglab.num_nodes", len(set(nodes)))


def _agreed_max(*values: float) -> List[float]:
    """The maximum of each value over the DDP ranks (the values themselves without DDP)."""
    x = torch.tensor(values, dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":
            x = x.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x.cpu().tolist()


def _renamed(metrics: Dict[str, float], prefix: str) -> Dict[str, float]:
    """``val_<name>`` -> ``<prefix><name>`` (the report split's scores, named after the per-epoch ones)."""
    return {prefix + k[len("val_"):]: v for k, v in metrics.items() if k.startswith("val_")}


def _cpu_copy(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in ckpt.unwrap(model).state_dict().items()}


def report_scores(model, report_loader, make_evaluators, device, selected: Optional[Dict[str, torch.Tensor]],
                  selected_epoch: int, last_epoch: int) -> Dict[str, float]:
    """Score the report split once, at the end of a run: ``final_test_*`` with the last epoch's
    weights and ``test_*`` with the weights of ``selected_epoch`` (chosen on the selection split;
    the same numbers when it is the last epoch). Every rank calls it (the evaluators all-reduce)."""
    final = evaluate(model, report_loader, make_evaluators(), device)
    out = _renamed(final, "final_test_")
    if selected is None or selected_epoch == last_epoch:
        out.update(_renamed(final, "test_"))
        selected_epoch = last_epoch
    else:
        ckpt.unwrap(model).load_state_dict(selected)
        out.update(_renamed(evaluate(model, report_loader, make_evaluators(), device), "test_"))
    out["selected_epoch"] = float(selected_epoch)
    return out


def epoch_done(start_epoch: int, epoch_times: List[float], last_metrics: Dict[str, float]) -> int:
    """The last epoch trained (in this process or before a restart); 0 when none."""
    if epoch_times:
        return start_epoch - 1 + len(epoch_times)
    return int(last_metrics.get("epoch", start_epoch - 1))


def training_gflops(run: RunConfig, num_classes: int, hw: Tuple[int, int], images: int) -> float:
    """Training compute spent: 3 x the training-forward GFLOPs of one ``hw`` image (targets given,
    train mode, so a model's training-only modules count; forward + backward, the usual
    1:2 estimate) x the images trained on, in the ``gflops`` metric's convention."""
    from seglab.models.complexity import count_flops

    with torch.device("meta"):
        model = build_model(run.model, num_classes, load_weights=False)
    return 3.0 * count_flops(model, input_size=hw, train=True) * images


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
    label = run.label or methods.describe(run)
    method_set = methods.for_trial(run, config.get("method"))

    train_ds, val_ds = build_datasets(run.dataset)
    num_classes, ignore_index = int(train_ds.num_classes), int(getattr(train_ds, "ignore_index", 255))
    class_names = list(train_ds.class_names)
    sampler = SeededSampler(DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=t.seed,
                                               drop_last=True), t.seed)
    pin = device.type == "cuda"
    loader_workers = resolve_loader_workers(t.loader_workers, train_ds, pin, t.cpus_per_worker)
    train_loader = DataLoader(train_ds, batch_size=t.batch_size, sampler=sampler, drop_last=True,
                              num_workers=loader_workers, pin_memory=pin, persistent_workers=loader_workers > 0)
    if len(train_loader) == 0:
        raise ValueError(f"trainer.batch_size={t.batch_size} x {world} workers exceeds the {len(train_ds)} training samples")
    # Validation shards without padding (DistributedSampler would repeat samples and bias the metric).
    val_loader = DataLoader(validation_shard(val_ds, rank, world), batch_size=t.batch_size,
                            num_workers=loader_workers, pin_memory=pin)
    model = build_model(run.model, num_classes, load_weights=True)
    criterion = build_loss(run.loss, ignore_index, num_classes).to(device)
    optimizer = build_optimizer(model, t)
    eval_ctx = EvalContext(num_classes, ignore_index, class_names, list(train_ds.palette), device, run=run,
                           criterion=criterion, groups=_group_names(val_ds),
                           miou_classes=getattr(val_ds, "miou_classes", None), resources=config.get("resources") or {},
                           mean=getattr(val_ds, "mean", None) or IMAGENET_MEAN, std=getattr(val_ds, "std", None) or IMAGENET_STD)

    start_epoch, best_miou, elapsed_before, last_metrics, last_state = 1, -1.0, 0.0, {}, None
    best_epoch, selected_weights = 0, None  # the selection split's best epoch and (a CPU copy of) its weights
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            state = ckpt.load(os.path.join(folder, ckpt.CHECKPOINT_NAME))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_miou = int(state["epoch"]) + 1, float(state["best_miou"])
        best_epoch = int(state.get("best_epoch", state["epoch"]))
        elapsed_before = float(state.get("elapsed_s", 0.0))
        last_metrics = dict(state.get("metrics") or {})
        last_state = state
        best_file = trial_dir / "best.pt"  # the trial folder is on storage every node sees
        if best_file.is_file():
            selected_weights = ckpt.load(str(best_file))["model"]
    model = speed.prepare_model(model, device, channels_last=t.channels_last, sync_bn=t.sync_bn, distributed=world > 1,
                                say=(lambda m: print(f"[{label}] {m}", flush=True)) if rank == 0 else (lambda m: None))
    model = ray.train.torch.prepare_model(model)
    model = speed.compile_model(model, t.compile, say=lambda m: print(f"[{label}] {m}", flush=True))
    forward_context, scaler = speed.autocast(t.precision, device), speed.grad_scaler(t.precision, device)

    tracker = TrialLogger(rank == 0, config.get("tracking_uri"), config.get("mlflow_run_id"), trial_dir=str(trial_dir))
    _tag_nodes(tracker, world)
    gpu = start_gpu_monitor(rank, device, tracker, config, step_offset_s=elapsed_before)  # this worker's GPU(s)
    if restored is not None and rank == 0:
        restarts = _count_restart(trial_dir)
        tracker.set_tag("seglab.resumed_from_epoch", start_epoch - 1)
        tracker.set_tag("seglab.restarts", restarts)
        print(f"[{label}] resumed from checkpoint after epoch {start_epoch - 1} (restart {restarts})", flush=True)

    from seglab.platform.viz import select_samples

    viz_indices = select_samples(len(val_ds), t.viz_samples) if rank == 0 and tracker.active and t.viz_samples else []
    steps_per_epoch = len(train_loader)
    total_steps = t.epochs * steps_per_epoch
    best_path = trial_dir / "best.pt"
    epoch_times = []
    marker = stop_marker(os.path.dirname(str(trial_dir)), trial_dir.name)
    failure: Optional[str] = None
    train_hw: Optional[Tuple[int, int]] = None
    for epoch in range(start_epoch, t.epochs + 1):
        if epoch > start_epoch and _stop_requested(marker):
            tracker.set_tag("seglab.stopped_early", "true")
            if rank == 0:
                print(f"[{label}] stopped early after epoch {epoch - 1}: {marker.read_text().strip()}", flush=True)
            break
        spent, mean_epoch = elapsed_before + sum(epoch_times), sum(epoch_times) / max(len(epoch_times), 1)
        if t.time_limit_s is not None:
            spent, mean_epoch = _agreed_max(spent, mean_epoch)  # every rank takes the same decisions
        if t.time_limit_s is not None and epoch_times and epoch > start_epoch and spent + mean_epoch > t.time_limit_s:
            tracker.set_tag("seglab.stopped_by_budget", f"{spent:.0f} s of trainer.time_limit_s={t.time_limit_s:g}")
            if rank == 0:
                print(f"[{label}] time budget: stopping after epoch {epoch - 1} ({spent:.0f} s spent, another epoch "
                      f"would pass trainer.time_limit_s={t.time_limit_s:g})", flush=True)
            break
        if t.fail_once_at_epoch == epoch and rank == 0:
            injected = trial_dir / f".injected_failure_epoch{epoch}"
            if not injected.exists():
                injected.touch()
                raise RuntimeError(f"injected failure at the start of epoch {epoch} (trainer.fail_once_at_epoch)")
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        seed_epoch(t.seed, rank, epoch)
        model.train()
        sums: Dict[str, float] = {}
        seen = 0
        lr = t.lr
        for i, (images, labels) in enumerate(train_loader):
            step = (epoch - 1) * steps_per_epoch + i
            if t.time_limit_s is not None:  # the schedule runs over the time budget instead of the epochs
                done = (spent + mean_epoch * i / steps_per_epoch) / t.time_limit_s  # the same on every rank
                step = max(step, int(done * total_steps))
            lr = poly_lr(t.lr, step, total_steps, t.poly_power, t.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            train_hw = tuple(images.shape[-2:])
            images = speed.to_input(images, t.channels_last)
            # the labels also go to the model: a model may train a label-conditioned part on them
            with forward_context():
                result = criterion(model(images, labels), labels)
            if not _all_finite(result.total):
                failure = f"non-finite loss at epoch {epoch} step {i + 1}"
                break
            optimizer.zero_grad(set_to_none=True)
            speed.backward_step(result.total, optimizer, scaler)
            n = images.shape[0]
            seen += n
            for name, value in result.terms.items():
                sums[name] = sums.get(name, 0.0) + float(value) * n
        if failure is not None:
            break
        names = sorted(sums)
        totals = all_reduce_sum(torch.tensor([sums[k] for k in names] + [float(seen)], dtype=torch.float64))
        train_time = time.perf_counter() - t0
        global_seen = totals[-1].item()
        train_terms = {f"train_{k}": (totals[j] / global_seen).item() for j, k in enumerate(names)}

        evaluators = [SegmentationEvaluator(eval_ctx), *method_set.evaluators(eval_ctx)]
        val_metrics = evaluate(model, val_loader, evaluators, device)
        epoch_time = time.perf_counter() - t0
        epoch_times.append(epoch_time)
        metrics: Dict[str, float] = {"epoch": epoch, "lr": lr, **train_terms, **val_metrics,
                                     "images_per_s": global_seen / train_time, "epoch_time_s": epoch_time}
        miou = val_metrics["val_miou"]
        improved = miou > best_miou
        best_miou = max(best_miou, miou)
        if improved:  # every rank: all of them score the report split with these weights at the end
            best_epoch, selected_weights = epoch, _cpu_copy(model)
        metrics["best_val_miou"] = best_miou
        elapsed = elapsed_before + sum(epoch_times)
        metrics["elapsed_s"] = elapsed

        reported = None
        with tempfile.TemporaryDirectory() as folder:
            if rank == 0:
                state = {
                    "model": ckpt.unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                    "epoch": epoch, "best_miou": best_miou, "best_epoch": best_epoch, "val_miou": miou,
                    "elapsed_s": elapsed,
                    "num_classes": num_classes, "class_names": class_names, "run": run.to_dict(),
                    "mlflow_run_id": config.get("mlflow_run_id"),
                    "metrics": {k: float(v) for k, v in metrics.items()},
                }
                ckpt.save_atomic(state, os.path.join(folder, ckpt.CHECKPOINT_NAME))
                last_state = state
                if improved:
                    ckpt.save_atomic(state, str(best_path))
                tracker.log_metrics(metrics, step=epoch)
                if viz_indices and (epoch % t.viz_every == 0 or epoch == t.epochs):
                    _log_pictures(ckpt.unwrap(model), val_ds, viz_indices, epoch, tracker, method_set, eval_ctx,
                                  evaluators)
                eta = (t.epochs - epoch) * (sum(epoch_times) / len(epoch_times))
                loss_text = f"{train_terms.get('train_loss', float('nan')):.3f}"
                print(f"[{label}] epoch {epoch}/{t.epochs} loss {loss_text} val mIoU {miou:.3f} "
                      f"(best {best_miou:.3f}) {metrics['images_per_s']:.1f} img/s ETA {_fmt_eta(eta)}", flush=True)
                reported = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=reported)

    if start_epoch > t.epochs and last_metrics:
        # Restarted after its last checkpoint (e.g. a sweep resumed after its driver died between
        # the trial's end and Tune's record of it): nothing to train, report the final metrics again.
        ray.train.report(last_metrics)
    last_epoch = epoch_done(start_epoch, epoch_times, last_metrics)
    if failure is None and last_epoch > 0 and run.phase != "warm_start":  # a warm start is no result
        # The result: the report split, scored once, with the selection split's choice of weights.
        report_ds = build_report_dataset(run.dataset)
        report_loader = DataLoader(validation_shard(report_ds, rank, world), batch_size=t.batch_size,
                                   num_workers=loader_workers, pin_memory=pin)
        report_ctx = dataclasses.replace(eval_ctx, groups=_group_names(report_ds),
                                         miou_classes=getattr(report_ds, "miou_classes", None))
        t_report = time.perf_counter()
        scores = report_scores(model, report_loader,
                               lambda: [SegmentationEvaluator(report_ctx), *method_set.evaluators(report_ctx)],
                               device, selected_weights, best_epoch or last_epoch, last_epoch)
        if rank == 0:
            images_trained = last_epoch * steps_per_epoch * t.batch_size * world
            hw = train_hw if train_hw is not None else tuple(getattr(train_ds, "image_size", (0, 0)))
            if min(hw) > 0:
                scores["train_gflops_spent"] = training_gflops(run, num_classes, hw, images_trained)
            scores["report_eval_s"] = time.perf_counter() - t_report
            tracker.log_metrics(scores, step=last_epoch)
            tracker.set_tag("seglab.selection_split", selection_split_name(run.dataset))
            tracker.set_tag("seglab.report_split", report_split_name(run.dataset))
            print(f"[{label}] {report_split_name(run.dataset)} mIoU {scores.get('test_miou', float('nan')):.3f} "
                  f"with the weights of epoch {int(scores['selected_epoch'])} (chosen on "
                  f"{selection_split_name(run.dataset)}); last epoch's weights: "
                  f"{scores.get('final_test_miou', float('nan')):.3f}", flush=True)
    gpu.stop()  # every rank, also after a non-finite loss; before rank 0's tracker.finish() (its summary goes there)
    if rank == 0:
        if failure is not None:
            # Not raised: Ray Train would restart the worker group from the last checkpoint, which
            # diverges again. The trial driver reads the marker, fails the trial and does not retry.
            ckpt.write_text_atomic(str(failure_marker(trial_dir)), failure + "\n")
            tracker.set_tag("seglab.failure", failure)
            print(f"[{label}] FAILED: {failure} (the trial stops; lower trainer.lr or check the data)", flush=True)
        _log_checkpoint(t.log_checkpoints, best_path, last_state, trial_dir, tracker)
        tracker.finish(status="FAILED" if failure is not None else "FINISHED")
