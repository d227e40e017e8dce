"""A trial's GPU summary from its run's ``gpu/rank<r>/...`` metrics (see
:mod:`seglab.platform.monitoring.gpu`): ``gpu_util_pct`` (mean over ranks) and ``gpu_hours``
(GPUs x ``elapsed_s``), for the comparison table and as run metrics logged by the trial's driver.

Only the standard library is imported at module level (``mlflow`` inside :func:`log_trial_summary`).
"""
from __future__ import annotations

import re
from typing import Dict, Mapping, Optional

from seglab.platform.monitoring.messages import say

_RANK_KEY = re.compile(r"^gpu/rank(\d+)/(\w+)$")


def trial_gpu_summary(metrics: Mapping[str, float]) -> Dict[str, Optional[float]]:
    """From a run's (latest) metrics: ``gpu_util_pct``, the mean over ranks of
    ``gpu/rank<r>/util_pct_mean``, and ``gpu_hours``, the sum over ranks of ``gpu/rank<r>/devices``
    x ``elapsed_s`` / 3600 (training time, restarts included); None where the run has none (CPU)."""
    util: Dict[int, float] = {}
    devices: Dict[int, float] = {}
    for key, value in metrics.items():
        match = _RANK_KEY.match(key)
        if not match or value is None:
            continue
        rank, name = int(match.group(1)), match.group(2)
        if name == "util_pct_mean":
            util[rank] = float(value)
        elif name == "devices":
            devices[rank] = float(value)
    elapsed = metrics.get("elapsed_s")
    return {"gpu_util_pct": sum(util.values()) / len(util) if util else None,
            "gpu_hours": sum(devices.values()) * float(elapsed) / 3600.0 if devices and elapsed is not None else None}


def report_fields(metrics: Mapping[str, float]) -> Dict[str, Optional[float]]:
    """:func:`trial_gpu_summary` rounded for the table (0.1 %, 0.001 GPU-hours)."""
    s = trial_gpu_summary(metrics)
    return {"gpu_util_pct": None if s["gpu_util_pct"] is None else round(s["gpu_util_pct"], 1),
            "gpu_hours": None if s["gpu_hours"] is None else round(s["gpu_hours"], 3)}


def log_trial_summary(run_id: str, uri: Optional[str] = None) -> Dict[str, float]:
    """For the trial's driver after ``fit()``: log :func:`trial_gpu_summary` of run ``run_id``
    as its ``gpu_util_pct`` and ``gpu_hours`` metrics (nothing for a CPU run); returns what it
    logged. Never raises (one line instead): the summary can always be recomputed from the run."""
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri) if uri else MlflowClient()
        summary = {k: v for k, v in trial_gpu_summary(client.get_run(run_id).data.metrics).items() if v is not None}
        for key, value in summary.items():
            client.log_metric(run_id, key, value)
        return summary
    except Exception as error:  # noqa: BLE001
        say(f"could not log the GPU summary of run {run_id} ({type(error).__name__}: {error})")
        return {}
