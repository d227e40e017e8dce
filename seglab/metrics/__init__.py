"""Evaluation metrics (torch / numpy / scikit-learn only: no ray / mlflow / hydra / omegaconf)."""
from seglab.metrics.boundary import Trimap, band, semantic_edges
from seglab.metrics.cityscapes import CityscapesScores
from seglab.metrics.clustering import clustering_indices
from seglab.metrics.confusion import ConfusionMatrix
from seglab.metrics.inference import InferenceConfig, predict_probs, slide_logits
from seglab.metrics.scores import EMeasure, helen_part_f1, precision_recall_f1

__all__ = ["ConfusionMatrix", "semantic_edges", "band", "Trimap", "precision_recall_f1", "EMeasure",
           "helen_part_f1", "clustering_indices", "CityscapesScores", "InferenceConfig", "predict_probs",
           "slide_logits"]
