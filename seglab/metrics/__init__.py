"""Evaluation metrics (torch only: no ray / mlflow / hydra / omegaconf)."""
from seglab.metrics.confusion import ConfusionMatrix

__all__ = ["ConfusionMatrix"]
