"""Rank 0's MLflow handle inside a Train worker: metrics, tags and artifacts of the trial's run."""
from __future__ import annotations

from typing import Any, Dict, Optional


class TrialLogger:
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
