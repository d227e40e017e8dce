"""Evaluation: what a run is scored with, and the one loop that scores it.

* :mod:`.evaluator` -- the evaluator protocol (``process`` / ``all_reduce`` / ``metrics`` /
  ``pictures``), the context it sees, and the generic parts methods build on (extra prediction maps,
  weighted means of per-batch diagnostics);
* :mod:`.segmentation` -- the confusion matrix of the deployed map, the trimap, F1 / precision /
  recall / E-measure;
* :mod:`.loop` -- sharding a split over the DDP ranks and :func:`~.loop.evaluate`, used by the
  per-epoch validation, the report split and ``seglab eval``.

Which evaluators a run gets is decided by its method (:func:`seglab.platform.methods.evaluators_for`).
"""
from seglab.platform.evaluation.evaluator import (EvalBatch, EvalContext, Evaluator, MeanEvaluator,
                                                  PredictionEvaluator)
from seglab.platform.evaluation.loop import IndexedSubset, evaluate, validation_shard
from seglab.platform.evaluation.segmentation import ScoresEvaluator, SegmentationEvaluator, TrimapEvaluator

__all__ = ["EvalBatch", "EvalContext", "Evaluator", "MeanEvaluator", "PredictionEvaluator", "IndexedSubset",
           "evaluate", "validation_shard", "ScoresEvaluator", "SegmentationEvaluator", "TrimapEvaluator"]
