"""What a trial's trainer gets, whichever executor runs it (Ray Train workers or the in-process one):
its tracking writer (rank 0 owns the MLflow run; other ranks write only their GPU samples) and its hooks."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

from seglab.platform.train import hooks as H
from seglab.platform.train.hooks import HookBase


def make_writer(config: Dict[str, Any], rank: int, trial_dir: Path):
    """Rank 0: the run's owning writer (metrics, artifacts, status); other ranks: a non-owning writer of
    the same run for their GPU samples (inactive without a tracking URI or run id)."""
    from seglab.platform.tracking.writer import RunWriter

    if rank == 0:
        return RunWriter(config.get("tracking_uri"), config.get("mlflow_run_id"), str(trial_dir))
    return RunWriter(config.get("tracking_uri"), config.get("mlflow_run_id"), str(trial_dir), rank=rank,
                     owns_run=False, flush_timeout_s=60.0)


def trial_hooks(trainer, trial_dir: Path, writer: Any, rank: int, config: Dict[str, Any],
                last: Sequence[HookBase] = ()) -> List[HookBase]:
    """A trial's hooks, in order: stop/budget/failure checks, restart count, samplers, best checkpoint,
    pictures, the executor's own (``last``: Ray's report, or the in-process latest checkpoint), progress,
    and tracking last (it ends the run's record)."""
    from seglab.platform.monitoring.gpu import GpuMonitor
    from seglab.platform.monitoring.system import STATE_NAME, SystemSampler
    from seglab.platform.viz.panels import select_samples

    t = trainer.run.trainer
    interval = float(config.get("gpu_metrics_interval_s") or 5.0)
    samplers: List[Any] = [GpuMonitor(rank, writer, interval, devices=[trainer.device],
                                      step_offset_s=trainer.elapsed_before)]
    if rank == 0 and writer.active:
        samplers.append(SystemSampler(writer, interval_s=5.0, state_file=str(trial_dir / STATE_NAME)))
    viz = select_samples(len(trainer.val_dataset), t.viz_samples) if rank == 0 and writer.active and t.viz_samples else []
    return [H.StopMarker(trial_dir), H.TimeBudget(), H.FailOnce(trial_dir), H.RestartCount(trial_dir),
            H.Samplers(samplers), H.BestCheckpoint(trial_dir / "best.pt"), H.Pictures(viz), *last, H.Progress(),
            H.Tracking(trial_dir)]
