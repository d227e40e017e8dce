"""The training loop's behaviours as hooks (detectron2's ``HookBase`` shape), each testable without Ray.

A hook is called by :meth:`Trainer.fit <seglab.platform.train.trainer.Trainer.fit>` at
``before_train`` / ``before_epoch(epoch)`` / ``after_epoch(epoch, metrics)`` / ``after_train``, sees the
trainer as ``self.trainer`` and may ask it to stop (:meth:`Trainer.stop`). Every rank runs every hook;
a hook that decides for all ranks (stop or go on) makes them agree through :mod:`seglab.platform.comm`.

* :class:`StopMarker` -- ASHA's graceful stop: a file in the trial folder asks the run to stop before its next epoch;
* :class:`TimeBudget` -- stop at the last epoch boundary that fits ``trainer.time_limit_s`` of training time;
* :class:`FailOnce` -- testing: crash rank 0 once at the start of an epoch (exercises the resume);
* :class:`RestartCount` -- count restarts from a checkpoint (a file in the trial folder) and tag them;
* :class:`BestCheckpoint` -- rank 0 writes ``best.pt`` when the selection score improves;
* :class:`LatestCheckpoint` -- rank 0 writes the latest state every epoch (the in-process executor's
  resume point; on Ray, Ray Train keeps it);
* :class:`Pictures` -- rank 0 logs the method's pictures of fixed validation images and the evaluators' pictures;
* :class:`Samplers` -- background samplers (GPU via NVML, system metrics) started before and stopped after training;
* :class:`Progress` -- one line per epoch (and the result line);
* :class:`Tracking` -- rank 0's MLflow record of the run: metrics per epoch, the result, tags, the
  chosen checkpoint as an artifact, the failure marker and the run's end status.

Hooks that need Ray (the per-epoch ``ray.train.report``) live with the Ray adapter (:mod:`.worker`).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from seglab.platform import checkpoint as ckpt
from seglab.platform import comm

FAILURE_MARKER = "FAILED"
STOP_MARKER = "STOP_EARLY"


def failure_marker(trial_dir: Path) -> Path:
    """The file rank 0 writes when a run fails for a reason a restart cannot fix (non-finite loss):
    the trial driver marks the MLflow run FAILED with its text and does not retry."""
    return Path(trial_dir) / FAILURE_MARKER


def stop_marker(storage_path: str, run_key: str) -> Path:
    """The file whose presence asks run ``run_key`` to stop before its next epoch (ASHA)."""
    return Path(storage_path) / run_key / STOP_MARKER


class HookBase:
    """Override what you need; ``self.trainer`` is set when the hook is registered."""

    trainer: Any = None

    def before_train(self) -> None:
        pass

    def before_epoch(self, epoch: int) -> None:
        pass

    def after_epoch(self, epoch: int, metrics: Dict[str, float]) -> None:
        pass

    def after_train(self) -> None:
        pass


class StopMarker(HookBase):
    """Stop before an epoch (not the first of this process) when the run's stop marker exists; rank 0
    looks, every rank gets its answer. Tags ``seglab.stopped_early=true``."""

    def __init__(self, trial_dir: Path) -> None:
        self.marker = Path(trial_dir) / STOP_MARKER

    def before_epoch(self, epoch: int) -> None:
        t = self.trainer
        if epoch <= t.start_epoch or not comm.any_rank(comm.is_rank0() and self.marker.exists()):
            return
        t.writer.set_tag("seglab.stopped_early", "true")
        reason = self.marker.read_text().strip() if comm.is_rank0() else ""
        t.stop(f"stopped early after epoch {epoch - 1}: {reason}")


class TimeBudget(HookBase):
    """``trainer.time_limit_s``: before an epoch, stop when the training time spent plus a mean
    training epoch would pass the budget. Training time only: validation, pictures and checkpoints
    are not charged (a method with a costlier evaluation trains as many steps as the others)."""

    def before_epoch(self, epoch: int) -> None:
        t = self.trainer
        limit = t.run.trainer.time_limit_s
        if limit is None or epoch <= t.start_epoch or not t.train_epoch_times:
            return
        spent, mean = t.agreed_train_time()
        if spent + mean <= limit:
            return
        t.writer.set_tag("seglab.stopped_by_budget", f"{spent:.0f} s of training of trainer.time_limit_s={limit:g}")
        t.stop(f"time budget: stopping after epoch {epoch - 1} ({spent:.0f} s of training spent, another epoch "
               f"would pass trainer.time_limit_s={limit:g})")


class FailOnce(HookBase):
    """``trainer.fail_once_at_epoch``: rank 0 raises once at the start of that epoch (a file in the
    trial folder remembers it), so that Ray Train restarts the workers from the last checkpoint."""

    def __init__(self, trial_dir: Path) -> None:
        self.trial_dir = Path(trial_dir)

    def before_epoch(self, epoch: int) -> None:
        if self.trainer.run.trainer.fail_once_at_epoch != epoch or not comm.is_rank0():
            return
        injected = self.trial_dir / f".injected_failure_epoch{epoch}"
        if not injected.exists():
            injected.touch()
            raise RuntimeError(f"injected failure at the start of epoch {epoch} (trainer.fail_once_at_epoch)")


class RestartCount(HookBase):
    """After a restart from a checkpoint (worker group restarted, trial retried, sweep resumed): rank 0
    counts it in ``<trial>/RESTARTS`` (it survives every kind) and tags ``seglab.restarts`` and
    ``seglab.resumed_from_epoch``."""

    def __init__(self, trial_dir: Path) -> None:
        self.path = Path(trial_dir) / "RESTARTS"

    def before_train(self) -> None:
        t = self.trainer
        if not t.resumed or not comm.is_rank0():
            return
        try:
            count = int(self.path.read_text().strip() or 0) + 1
        except (OSError, ValueError):
            count = 1
        ckpt.write_text_atomic(str(self.path), f"{count}\n")
        t.writer.set_tag("seglab.resumed_from_epoch", t.start_epoch - 1)
        t.writer.set_tag("seglab.restarts", count)
        t.say(f"resumed from checkpoint after epoch {t.start_epoch - 1} (restart {count})")


class BestCheckpoint(HookBase):
    """Rank 0 writes the trainer's state to ``path`` (``<trial>/best.pt``) whenever the selection score
    improves: the weights the report split is scored with, and what a sweep's next phase starts from."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def after_epoch(self, epoch: int, metrics: Dict[str, float]) -> None:
        if self.trainer.improved and comm.is_rank0():
            ckpt.save_atomic(self.trainer.state_dict(), str(self.path))


class LatestCheckpoint(HookBase):
    """Rank 0 writes the trainer's state to ``path`` after every epoch (atomically): what a run
    restarted in this folder continues from (:func:`~seglab.platform.train.trainer.resumed_trainer`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def after_epoch(self, epoch: int, metrics: Dict[str, float]) -> None:
        if comm.is_rank0():
            self.trainer.last_state = self.trainer.state_dict()
            ckpt.save_atomic(self.trainer.last_state, str(self.path))


class Pictures(HookBase):
    """Rank 0, every ``trainer.viz_every`` epochs and at the last: the method's picture of each fixed
    validation image (``viz/epoch_<NNN>/val_<index>.png``) and the evaluators' pictures
    (``viz/epoch_<NNN>/<name>.png``) -> the run's artifacts."""

    def __init__(self, indices: List[int]) -> None:
        self.indices = list(indices)

    def after_epoch(self, epoch: int, metrics: Dict[str, float]) -> None:
        import torch

        from seglab.platform.viz.panels import save_png

        t = self.trainer
        every = t.run.trainer.viz_every
        if not self.indices or not comm.is_rank0() or not (epoch % every == 0 or epoch == t.run.trainer.epochs):
            return
        model = ckpt.unwrap(t.model)
        model.eval()
        with torch.no_grad(), tempfile.TemporaryDirectory() as folder:
            for index in self.indices:
                image, label = t.val_dataset[index]
                picture = t.method_set.draw(model, image, label, t.eval_context)
                if picture is not None:
                    save_png(os.path.join(folder, f"val_{index:05d}.png"), picture)
            for ev in t.last_evaluators:
                for name, picture in ev.pictures().items():
                    save_png(os.path.join(folder, f"{name}.png"), picture)
            if os.listdir(folder):
                t.writer.log_artifacts(folder, f"viz/epoch_{epoch:03d}")


class Samplers(HookBase):
    """Background samplers (objects with ``start()`` / ``stop()``: the GPU monitor, system metrics),
    started before training and stopped after it on every rank -- also after a non-finite loss, and
    before the tracking hook ends the run (their last values go to it)."""

    def __init__(self, samplers: List[Any]) -> None:
        self.samplers = list(samplers)

    def before_train(self) -> None:
        self.samplers = [s.start() or s for s in self.samplers]

    def after_train(self) -> None:
        for s in self.samplers:
            s.stop()

    def abandon(self) -> None:
        """Stop the samplers as the death of this process would (an attempt that crashed in a process
        that lives on): a sampler with resume state (``abandon()``: the system sampler's step file)
        keeps it for the next attempt."""
        for s in self.samplers:
            getattr(s, "abandon", s.stop)()


class Progress(HookBase):
    """Rank 0 prints one line per epoch (loss, selection score, images/s, ETA)."""

    def after_epoch(self, epoch: int, metrics: Dict[str, float]) -> None:
        t = self.trainer
        if not comm.is_rank0():
            return
        times = t.epoch_times
        eta = (t.run.trainer.epochs - epoch) * (sum(times) / len(times)) if times else 0.0
        name = t.selection_metric
        t.say(f"epoch {epoch}/{t.run.trainer.epochs} loss {metrics.get('train_loss', float('nan')):.3f} "
              f"{name} {metrics.get(name, float('nan')):.3f} (best {t.best_score:.3f}) "
              f"{metrics.get('images_per_s', 0.0):.1f} img/s ETA {_fmt_eta(eta)}")


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Tracking(HookBase):
    """Rank 0's record of the run in its MLflow child run (through ``trainer.writer``): metrics every
    epoch; at the end the report-split result, the selection/report split tags, the chosen (or last)
    checkpoint as an artifact (``trainer.log_checkpoints``), the failure marker and tag of a run that
    cannot go on, and the run's end status. Last in the hook list: it ends the writer."""

    def __init__(self, trial_dir: Optional[Path]) -> None:
        self.trial_dir = Path(trial_dir) if trial_dir else None

    def after_epoch(self, epoch: int, metrics: Dict[str, float]) -> None:
        self.trainer.writer.log_metrics(metrics, step=epoch)

    def after_train(self) -> None:
        t = self.trainer
        if not comm.is_rank0():
            return
        if t.final_scores:
            t.writer.log_metrics(t.final_scores, step=t.last_epoch)
            for key, value in t.split_tags().items():
                t.writer.set_tag(key, value)
        if t.failure is not None:
            if self.trial_dir is not None:
                # Not raised: Ray Train would restart the worker group from the last checkpoint, which
                # diverges again. The trial driver reads the marker, fails the trial and does not retry.
                ckpt.write_text_atomic(str(failure_marker(self.trial_dir)), t.failure + "\n")
            t.writer.set_tag("seglab.failure", t.failure)
            t.say(f"FAILED: {t.failure} (the trial stops; lower trainer.lr or check the data)")
        self._log_checkpoint()
        t.writer.finish(status="FAILED" if t.failure is not None else "FINISHED")

    def _log_checkpoint(self) -> None:
        t, which = self.trainer, self.trainer.run.trainer.log_checkpoints
        if self.trial_dir is None or which == "none":
            return
        best = self.trial_dir / "best.pt"
        if which == "best" and best.exists():
            t.writer.log_artifact(str(best), "checkpoints")
        elif which == "last" and t.last_epoch > 0:
            last = self.trial_dir / "last.pt"
            ckpt.save_atomic(t.last_state or t.state_dict(), str(last))
            t.writer.log_artifact(str(last), "checkpoints")
