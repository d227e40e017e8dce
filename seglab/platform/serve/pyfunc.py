"""The MLflow model of a seglab checkpoint: ``mlflow.pyfunc.load_model(uri).predict(images)`` -> label maps.

Input: a numpy batch of RGB images ``(B, H, W, 3)`` uint8 (one size per batch). Output: train-id label
maps ``(B, H, W)`` int64 at the images' size, predicted as ``seglab predict`` does (the model's own
preprocessing, one scale, no flip). The model folder holds the seglab checkpoint as
``artifacts/best.pt`` (what ``seglab predict models:/NAME/VERSION`` loads) and, in its ``MLmodel``
metadata, the model name, classes, palette, preprocessing and the run config.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Tuple

import mlflow.pyfunc
import numpy as np

from seglab.platform.serve.source import Loaded


class SegmentationModel(mlflow.pyfunc.PythonModel):
    """The pyfunc wrapper (its checkpoint is the ``checkpoint`` artifact)."""

    def load_context(self, context) -> None:
        from seglab.platform.serve.source import resolve

        self.loaded = resolve(context.artifacts["checkpoint"])

    def predict(self, context, model_input, params=None):  # noqa: ARG002 (MLflow's signature)
        import torch

        from seglab.metrics import InferenceConfig
        from seglab.platform.serve.predict import label_maps

        if isinstance(model_input, dict):  # a named tensor input: {"images": array}
            model_input = next(iter(model_input.values()))
        images = np.asarray(model_input)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected RGB images (B, H, W, 3) uint8, got shape {images.shape}")
        images = images.astype(np.uint8, copy=False)
        maps = label_maps(self.loaded, list(images), InferenceConfig(), torch.device("cpu"))
        return maps.astype(np.int64)


def signature_and_example(size: Tuple[int, int]):
    """The model's signature (uint8 ``(-1, -1, -1, 3)`` -> int64 ``(-1, -1, -1)``) and a one-image
    input example of ``size`` (a horizontal gradient: MLflow runs it through the model when logging)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
                               outputs=Schema([TensorSpec(np.dtype(np.int64), (-1, -1, -1))]))
    h, w = size
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    example = np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8)[None].copy()
    return signature, example


def model_metadata(loaded: Loaded, extra: Dict[str, Any]) -> Dict[str, Any]:
    """What the ``MLmodel`` file records besides the flavour: the model, its classes and preprocessing."""
    return {"seglab_model": loaded.name, "num_classes": loaded.num_classes, "class_names": loaded.class_names,
            "palette": [list(c) for c in loaded.palette],
            "preprocessing": {"mean": list(loaded.mean), "std": list(loaded.std), "resize_long_side": loaded.base_size,
                              "text": loaded.describe_preprocessing()},
            "run_config": json.dumps(loaded.state.get("run") or {}, default=str), **extra}
