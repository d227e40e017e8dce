"""The Ray Train adapter: ``train_loop_per_worker``, run by every worker of a ``TorchTrainer``.

It builds the run's :class:`~seglab.platform.train.trainer.Trainer` with Ray's DDP (``prepare_model``:
gloo on CPU, nccl on GPU), resumes it from Ray's latest checkpoint, adds the hooks of a trial (stop
marker, time budget, fail-once, restarts, pictures, GPU and system samplers, best checkpoint, tracking)
and :class:`RayReport`, which hands every epoch's metrics (all ranks) and checkpoint (rank 0) to
``ray.train.report``. ``config`` is plain data built by the trial (:mod:`seglab.platform.sweep.trial`).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict

from seglab.platform import checkpoint as ckpt
from seglab.platform.config import RunConfig
from seglab.platform.train.hooks import HookBase


class RayReport(HookBase):
    """Every epoch: rank 0 writes the trainer's state to a temporary folder, and every rank calls
    ``ray.train.report(metrics, checkpoint)`` (Ray keeps the latest checkpoints for a restart). A run
    restarted after its last checkpoint (nothing left to train) reports its final metrics again, so Tune
    sees the trial's result."""

    def after_epoch(self, epoch: int, metrics: Dict[str, float]) -> None:
        import ray.train

        t = self.trainer
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if t.rank == 0:
                t.last_state = t.state_dict()
                ckpt.save_atomic(t.last_state, os.path.join(folder, ckpt.CHECKPOINT_NAME))
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=checkpoint)

    def after_train(self) -> None:
        import ray.train

        t = self.trainer
        if t.start_epoch > t.run.trainer.epochs and t.last_metrics:
            ray.train.report(t.last_metrics)


def tag_nodes(writer: Any, world: int) -> None:
    """Tag ``seglab.num_nodes``: on how many Ray nodes this run's workers are (after each (re)start)."""
    import ray

    from seglab.platform import comm

    node = ray.get_runtime_context().get_node_id()
    writer.set_tag("seglab.num_nodes", len(set(comm.gather_objects(node))) if world > 1 else 1)


def train_loop_per_worker(config: Dict[str, Any]) -> None:
    """Entry point of every Ray Train worker; ``config`` is plain data (see :mod:`seglab.platform.sweep.trial`)."""
    import ray.train
    import ray.train.torch
    import torch

    from seglab.platform.cluster.ray_internals import quiet_train_worker
    from seglab.platform.quiet import quiet
    from seglab.platform.train.setup import make_writer, trial_hooks
    from seglab.platform.train.trainer import Trainer, resumed_trainer

    quiet()
    quiet_train_worker()
    run = RunConfig.from_dict(config["run"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(int(config.get("threads", 1)))
    torch.manual_seed(run.trainer.seed + rank)
    trial_dir = Path(config["trial_dir"])
    label = run.label or config.get("label") or run.model.name
    writer = make_writer(config, rank, trial_dir)
    trainer = Trainer.from_run(run, device=ray.train.torch.get_device(), method=config.get("method"),
                               resources=config.get("resources"), mlflow_run_id=config.get("mlflow_run_id"),
                               wrap=ray.train.torch.prepare_model, writer=writer if rank == 0 else None, label=label,
                               train_forward_gflops=config.get("train_forward_gflops"))
    restored = ray.train.get_checkpoint()
    state = None
    if restored is not None:
        with restored.as_directory() as folder:
            state = ckpt.load(os.path.join(folder, ckpt.CHECKPOINT_NAME))
    resumed_trainer(trainer, state, trial_dir)
    trainer.register(trial_hooks(trainer, trial_dir, writer, rank, config, last=[RayReport()]))
    tag_nodes(trainer.writer, world)
    trainer.fit()
    if rank != 0:
        writer.finish()
