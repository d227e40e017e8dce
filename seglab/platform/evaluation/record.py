"""The MLflow record of an evaluation: a run tagged ``seglab.kind=evaluation`` (and
``seglab.evaluates=<the trial's run id>``) in the evaluated trial's experiment."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from seglab.platform.evaluation.results import json_result, metric_names


def store_configured() -> Optional[str]:
    """The tracking URI when a store is configured: ``MLFLOW_TRACKING_URI``, or an existing default SQLite store."""
    from seglab.platform import tracking

    if os.environ.get("MLFLOW_TRACKING_URI"):
        return tracking.tracking_uri()
    uri = tracking.tracking_uri()
    return uri if os.path.isfile(uri[len("sqlite:///"):]) else None



def log_evaluation_run(result: Dict[str, Any], checkpoint: str, experiment: str = "seglab") -> Optional[str]:
    """Log ``result`` as an MLflow run tagged ``seglab.kind=evaluation`` (and ``seglab.evaluates=<trial
    run id>``) in the trial's experiment; None when no store is configured. Sets ``result['tracking']``."""
    uri = store_configured()
    if uri is None:
        return None
    import time

    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    from seglab.platform import tracking

    client = tracking.client(uri)
    trial = result.get("mlflow_run_id")
    experiment_id, trial_name = None, None
    if trial:
        try:
            run = client.get_run(trial)
            experiment_id, trial_name = run.info.experiment_id, run.info.run_name
        except MlflowException:
            print(f"seglab: the checkpoint's trial run {trial} is not in {uri}; logging the evaluation in "
                  f"experiment '{experiment}'", file=sys.stderr, flush=True)
    if experiment_id is None:
        experiment_id = tracking.ensure_experiment(experiment, uri)
    tags = {"seglab.kind": "evaluation", "seglab.dataset": str(result["dataset"]), "seglab.split": str(result["split"]),
            "seglab.inference": str(result["inference"])}
    if trial:
        tags["seglab.evaluates"] = str(trial)
    name = f"eval {trial_name or Path(checkpoint).stem} on {result['dataset']} {result['split']}"
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    params = {"checkpoint": str(Path(checkpoint).resolve()), "dataset": result["dataset"], "split": result["split"],
              "scales": " ".join(f"{s:g}" for s in result.get("scales") or [1.0]), "flip": result.get("flip", False),
              "slide": result.get("crop") is not None, "crop": result.get("crop"), "stride": result.get("stride"),
              "num_images": result["num_images"]}
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metric_names(result).items()],
                     params=[Param(k, str(v)) for k, v in params.items()])
    client.log_dict(run_id, json_result(result), "evaluation.json")
    client.set_terminated(run_id, "FINISHED")
    link = f"evaluates trial run {trial}" if trial and trial_name is not None else "no trial run linked"
    result["tracking"] = f"{uri}, experiment id {experiment_id}, {link}"
    return run_id
