"""One training run on Ray Train: the Tune trial function that builds a ``TorchTrainer`` and fits it.

The workers run :func:`seglab.platform.train.worker.train_loop_per_worker` (the Ray-free
:class:`~seglab.platform.train.trainer.Trainer` with its hooks); this module is the trial's driver: its
MLflow child run (found again by the run's key after a restart), the failure marker, the GPU summary.

Train V2 (the default in Ray 2.5x/2.6x): a Tune trial is a plain function that builds the trainer
and calls ``fit()``; ``TuneReportCallback`` forwards the workers' reports to Tune. The trainer's
run name is the run config's hash, so a restarted trial (or a restarted worker group) finds its
checkpoints in storage and resumes from the latest one.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from seglab.platform import methods, tracking
from seglab.platform.config import RunConfig, flatten
from seglab.platform.quiet import env_defaults, quiet
from seglab.platform.train.hooks import failure_marker


class TrialFailed(RuntimeError):
    """A trial failed for a reason a restart cannot fix (e.g. a non-finite loss); not retried."""


def worker_env(tracking_uri: str) -> Dict[str, str]:
    """Environment for Ray workers (they inherit the Ray node's env, not the driver's)."""
    env = env_defaults()
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    for key in ("SEGLAB_HOME", "SEGLAB_ARTIFACT_ROOT", *tracking.CREDENTIAL_VARS):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


@dataclass
class OpenTrial:
    """A trial about to train: its run, the sweep's context, its MLflow child run and folder."""

    run: RunConfig
    ctx: Dict[str, Any]
    run_id: str
    trial_dir: Path
    label: str
    train_forward_gflops: Dict[str, float]

    def train_config(self) -> Dict[str, Any]:
        """What the training side gets (plain data: it travels to Ray workers)."""
        t = self.run.trainer
        return {"run": self.run.to_dict(), "trial_dir": str(self.trial_dir), "tracking_uri": self.ctx["tracking_uri"],
                "mlflow_run_id": self.run_id, "threads": max(1, int(round(t.cpus_per_worker))),
                "method": self.ctx.get("method"), "resources": self.ctx.get("resources") or {}, "label": self.label,
                "train_forward_gflops": self.train_forward_gflops}


def open_trial(config: Dict[str, Any], workers: Optional[int] = None) -> OpenTrial:
    """The trial's MLflow child run (found again by the run's key after a restart, else created with
    its parameters, tags and size metrics) and its folder; a trial that diverged before fails at once.
    ``workers``: how many processes train it (default ``trainer.num_workers``), for its first line."""
    quiet()
    run = RunConfig.from_dict(config["trial"])
    ctx = config["ctx"]
    t = run.trainer
    key = run.key()
    label = run.label or methods.describe(run)
    summary = trial_summary(run, ctx)
    params = flatten(run.to_dict())
    if workers is not None:
        params["trainer.num_workers"] = workers  # what trains it (the in-process executor: 1)
    params.update({"model.params": summary.params, "model.gflops": round(summary.gflops, 3),
                   "model.flops_input": "x".join(map(str, summary.flops_input_size))})
    if summary.inference_params is not None and summary.inference_params != summary.params:
        params["model.params_inference"] = summary.inference_params  # training-only parts excluded
    run_id = tracking.find_or_create_child(
        ctx["experiment_id"], ctx["parent_run_id"], key, label, params,
        tags={"seglab.method": methods.tag(run), "seglab.model": run.model.name,
              "seglab.baseline": str(run.baseline).lower(), "seglab.label": label,
              "seglab.seed": str(t.seed), "seglab.group": run.group_key(), "seglab.phase": run.phase,
              "seglab.group_label": re.sub(r" seed=-?\d+$", "", label),
              **({"seglab.kind": "warm_start"} if run.phase == "warm_start" else {})},
        uri=ctx["tracking_uri"],
    )
    tracking.client(ctx["tracking_uri"]).log_batch(run_id, metrics=_static_metrics(summary))
    trial_dir = Path(ctx["storage_path"]) / key
    trial_dir.mkdir(parents=True, exist_ok=True)
    _raise_if_failed(trial_dir, run_id, label, ctx["tracking_uri"])  # a retried or resumed trial that diverged
    print(f"[{label}] starting: {workers or t.num_workers} worker(s) x {t.epochs} epochs, "
          f"{summary.params / 1e6:.2f}M params, {summary.gflops:.1f} GFLOPs", flush=True)
    return OpenTrial(run, ctx, run_id, trial_dir, label, summary.train_forward_gflops)


def close_trial(trial: OpenTrial, metrics: Dict[str, Any]) -> Dict[str, Any]:
    """After training: fail the trial if its workers left the failure marker, log the GPU summary and
    return the final result (the last epoch's metrics: Tune's schedulers and searchers expect their
    metric in every result a trial returns)."""
    from seglab.platform.monitoring.summary import log_trial_summary

    uri = trial.ctx["tracking_uri"]
    _raise_if_failed(trial.trial_dir, trial.run_id, trial.label, uri)
    log_trial_summary(trial.run_id, uri)  # gpu_util_pct, gpu_hours (nothing on CPU)
    best = (metrics or {}).get("best_val_miou", float("nan"))
    print(f"[{trial.label}] done: best val mIoU {best:.4f}", flush=True)
    return {**(metrics or {}), "best_val_miou": best, "mlflow_run_id": trial.run_id}


def run_trial(config: Dict[str, Any]) -> Dict[str, Any]:
    """Tune trial function: ``config = {"trial": <run dict>, "ctx": <sweep context>}``.

    ``ctx`` holds ``tracking_uri``, ``experiment_id``, ``parent_run_id``, ``storage_path``,
    ``use_gpu`` (resolved by the sweep driver from the cluster's resources) and, for sweeps,
    ``method`` (the sweep's method name), ``resources`` (what its stages produced) and ``summaries``
    (the driver's counts per architecture).
    """
    import ray.train
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, ScalingConfig

    from seglab.platform.cluster.ddp import loopback_torch_config
    from seglab.platform.cluster.ray_internals import trainer_class
    from seglab.platform.train.worker import train_loop_per_worker

    trial = open_trial(config)
    if trial.ctx.get("single_node"):  # no node can be preempted: no watcher actor per run
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    t, key = trial.run.trainer, trial.run.key()
    use_gpu = bool(trial.ctx.get("use_gpu", False))
    resources = {"CPU": t.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    trainer = trainer_class()(
        train_loop_per_worker,
        torch_config=loopback_torch_config(),  # DDP's rendezvous on 127.0.0.1 on a one-node cluster
        train_loop_config=trial.train_config(),
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=f"train-{key}",
            storage_path=str(trial.ctx["storage_path"]),
            failure_config=FailureConfig(max_failures=t.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=_tune_callbacks(),
            logging_config=LoggingConfig(log_level="WARNING"),
            worker_runtime_env={"env_vars": worker_env(trial.ctx["tracking_uri"])},
        ),
    )
    try:
        result = trainer.fit()
    except BaseException:
        tracking.set_terminated(trial.run_id, "FAILED", trial.ctx["tracking_uri"])
        raise
    return close_trial(trial, result.metrics or {})


def trial_summary(run: RunConfig, ctx: Dict[str, Any]):
    """The run's size and forward cost: what the sweep's driver counted for this architecture
    (``ctx["summaries"]``, no model built here), else counted now (an Optuna proposal of a new shape)."""
    from seglab.platform.sweep.validate import RunSummary, flops_key, validate_run

    known = (ctx.get("summaries") or {}).get(flops_key(run))
    if known is None:
        return validate_run(run)
    return RunSummary(int(known["num_classes"]), [], int(known["params"]), float(known["gflops"]),
                      tuple(known["flops_input_size"]), known.get("inference_params"),
                      float(known.get("train_gflops", float("nan"))), dict(known.get("train_forward_gflops") or {}))


def _raise_if_failed(trial_dir: Path, run_id: str, label: str, uri: str) -> None:
    """A run whose workers wrote the failure marker: MLflow status FAILED with tag
    ``seglab.failure``, then :class:`TrialFailed` (the sweep goes on with its other trials)."""
    marker = failure_marker(trial_dir)
    if not marker.is_file():
        return
    reason = marker.read_text().strip()
    c = tracking.client(uri)
    c.set_tag(run_id, "seglab.failure", reason)
    c.set_terminated(run_id, status="FAILED")
    raise TrialFailed(f"{label}: {reason}")


def _static_metrics(summary):
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    out = [Metric("params_m", summary.params / 1e6, now, 0), Metric("gflops", summary.gflops, now, 0)]
    if summary.inference_params is not None and summary.inference_params != summary.params:
        out.append(Metric("params_inference_m", summary.inference_params / 1e6, now, 0))
    return out


def _tune_callbacks() -> Optional[list]:
    """``TuneReportCallback`` inside a Tune trial; nothing when run standalone."""
    try:
        from ray.tune.integration.ray_train import TuneReportCallback

        return [TuneReportCallback()]
    except RuntimeError:  # not in a Tune session
        return []
