"""Where a model to use comes from: ``seglab predict`` / ``seglab export``'s CHECKPOINT_OR_RUN.

:func:`resolve` accepts

* a seglab checkpoint file (``best.pt`` / ``checkpoint.pt`` / ``last.pt``: ``model``, ``run``, ``num_classes``);
* an official checkpoint file (any state dict of tensors): it needs ``--model NAME`` (and
  ``--num-classes``); the weights are loaded by :func:`seglab.models.pretrained.load_pretrained`,
  which knows the official layouts;
* an MLflow run id (32 hex digits): that run's ``checkpoints/best.pt`` (else ``checkpoints/last.pt``)
  artifact, from the store ``MLFLOW_TRACKING_URI`` (or ``$SEGLAB_HOME/mlflow.db``) names;
* a registered model ``models:/NAME/VERSION`` (or ``models:/NAME@ALIAS``): the seglab checkpoint the
  registry holds next to its pyfunc (:mod:`seglab.platform.serve.pyfunc`).

It returns a :class:`Loaded`: the model (eval mode), its classes, palette and preprocessing (the run's
``mean``/``std`` and evaluation resize), so every user of a model preprocesses as its training did.
"""
from __future__ import annotations

import inspect
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torch import nn

from seglab.datasets.labels import CITYSCAPES_PALETTE
from seglab.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglab.errors import ConfigError

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
CHECKPOINT_ARTIFACTS = ("checkpoints/best.pt", "checkpoints/last.pt")
MODEL_CHECKPOINT = "artifacts/best.pt"  # inside a registered seglab model's folder


@dataclass
class Loaded:
    """A model ready to predict, and what to know to feed it and to read its output."""

    model: nn.Module
    name: str  # the registered model's name (seglab.models)
    num_classes: int
    class_names: List[str]
    palette: List[Tuple[int, int, int]]
    mean: Tuple[float, float, float] = tuple(IMAGENET_MEAN)  # type: ignore[assignment]
    std: Tuple[float, float, float] = tuple(IMAGENET_STD)  # type: ignore[assignment]
    base_size: Optional[int] = None  # evaluation resize of the long side (None: the image's own size)
    state: Dict[str, Any] = field(default_factory=dict)  # the seglab checkpoint dict ({} for official ones)
    source: str = ""
    checkpoint_path: str = ""
    label_ids: Optional[List[int]] = None  # train id -> the data set's official label id (Cityscapes' labelIds)

    def describe_preprocessing(self) -> str:
        resize = f"long side resized to {self.base_size} px (bilinear), " if self.base_size else ""
        return (f"RGB, {resize}x/255, minus mean {list(self.mean)}, divided by std {list(self.std)}, "
                f"float32 NCHW (batch, 3, height, width)")


def dataset_facts(run: Dict[str, Any], num_classes: int) -> Dict[str, Any]:
    """Class names, palette, mean/std and evaluation resize of the data set a run trained on; generic
    names and the Cityscapes colours (then grey levels) when the data set says nothing for
    ``num_classes`` classes."""
    from seglab.datasets import DATASETS

    d = (run or {}).get("dataset") or {}
    names: Sequence[str] = []
    palette: Sequence[Sequence[int]] = []
    try:
        factory = DATASETS.get(str(d.get("name"))) if d.get("name") else None
    except ConfigError:
        factory = None
    defaults: Dict[str, Any] = {}
    if factory is not None:
        names, palette = getattr(factory, "class_names", []) or [], getattr(factory, "palette", []) or []
        defaults = {k: p.default for k, p in inspect.signature(factory).parameters.items()
                    if p.default is not inspect.Parameter.empty}
    options = {**defaults, **{k: v for k, v in d.items() if not isinstance(v, dict)}, **(d.get("val") or {})}
    if len(names) != num_classes or len(palette) != num_classes:
        names = [f"class {k}" for k in range(num_classes)]
        palette = default_palette(num_classes)
    base = options.get("base_size") if options.get("eval_resize") else None
    label_ids = None
    if d.get("name") == "cityscapes" and num_classes == 19:  # its result format is labelIds (cityscapesScripts)
        from seglab.datasets.cityscapes import LABEL_ID_TO_TRAIN_ID

        first = {t: lid for lid, t in sorted(LABEL_ID_TO_TRAIN_ID.items(), reverse=True) if 0 <= t < 19}
        label_ids = [first[t] for t in range(19)]
    return {"label_ids": label_ids, "class_names": [str(n) for n in names], "palette": [tuple(int(v) for v in c) for c in palette],
            "mean": tuple(float(v) for v in options.get("mean", IMAGENET_MEAN)),
            "std": tuple(float(v) for v in options.get("std", IMAGENET_STD)),
            "base_size": int(base) if base else None}


def default_palette(num_classes: int) -> List[Tuple[int, int, int]]:
    """The Cityscapes colours, then evenly spaced grey levels for classes beyond 19."""
    out = [tuple(c) for c in CITYSCAPES_PALETTE[:num_classes]]
    extra = num_classes - len(out)
    out += [(g, g, g) for g in (int(40 + 200 * k / max(1, extra - 1)) for k in range(extra))]
    return out  # type: ignore[return-value]


def from_state(state: Dict[str, Any], source: str, path: str) -> Loaded:
    """A seglab checkpoint dict -> :class:`Loaded` (one line for weights of another architecture)."""
    from seglab.platform.checkpoint import model_from_state

    name = str(((state.get("run") or {}).get("model") or {}).get("name"))
    try:
        model = model_from_state(state)
    except RuntimeError:  # load_state_dict: missing / unexpected keys, shape mismatch
        raise ConfigError(f"CHECKPOINT {source}: its weights do not fit model '{name}' ({mismatch(state)}); "
                          f"a checkpoint of another architecture?") from None
    facts = dataset_facts(state.get("run") or {}, int(state["num_classes"]))
    return Loaded(model, name, int(state["num_classes"]), state=state, source=source, checkpoint_path=path, **facts)


def mismatch(state: Dict[str, Any]) -> str:
    """How a checkpoint's tensors differ from those of the model its run config names, in a few words."""
    from seglab.models import build_model
    from seglab.platform.config import ModelConfig

    cfg = ModelConfig.from_dict(state["run"]["model"])
    own = build_model(cfg.name, num_classes=int(state["num_classes"]), **cfg.kwargs).state_dict()
    given = state["model"]
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    shapes = [k for k in own if k in given and tuple(own[k].shape) != tuple(given[k].shape)]
    parts = [f"{len(missing)} of its tensors missing, e.g. {missing[0]}" if missing else "",
             f"{len(unexpected)} unexpected" if unexpected else "",
             f"{len(shapes)} of another shape, e.g. {shapes[0]}" if shapes else ""]
    return ", ".join(p for p in parts if p) or "the weights do not load"


def from_official(path: str, model_name: Optional[str], num_classes: Optional[int], source: str) -> Loaded:
    """A state dict that is not a seglab checkpoint: build ``model_name`` and load it with the
    official-layout loader."""
    from seglab.models import build_model
    from seglab.models.pretrained import load_pretrained

    if not model_name:
        raise ConfigError(f"CHECKPOINT {source}: not a seglab checkpoint (no 'run' config); for an official "
                          f"checkpoint give the architecture with --model NAME (see `seglab models`)")
    classes = int(num_classes or 19)
    model = build_model(model_name, num_classes=classes)
    _, missing, _ = load_pretrained(model, path, key="CHECKPOINT")
    if missing:  # a backbone-only file, or a head of another number of classes: not a model to predict with
        raise ConfigError(f"CHECKPOINT {source}: lacks {len(missing)} tensors of model '{model_name}' (e.g. "
                          f"{missing[0]}); give a whole {model_name} checkpoint, and --num-classes its number of "
                          f"classes (default {classes})")
    facts = dataset_facts({"dataset": {"name": "cityscapes"}} if classes == 19 else {}, classes)
    return Loaded(model.eval(), model_name, classes, source=source, checkpoint_path=path, **facts)


def download(run_or_model: str) -> str:
    """The local path of a run's checkpoint artifact or of a registered model's checkpoint."""
    import mlflow

    from seglab.platform import tracking

    uri = tracking.tracking_uri()
    mlflow.set_tracking_uri(uri)
    dest = tempfile.mkdtemp(prefix="seglab-model-")
    if run_or_model.startswith("models:/"):
        try:
            folder = mlflow.artifacts.download_artifacts(artifact_uri=run_or_model, dst_path=dest)
        except Exception as error:  # MlflowException: no such model / version
            raise ConfigError(f"CHECKPOINT {run_or_model}: not in the model registry of {uri} "
                              f"({str(error).splitlines()[0][:160]})") from None
        path = os.path.join(folder, MODEL_CHECKPOINT)
        if not os.path.isfile(path):
            raise ConfigError(f"CHECKPOINT {run_or_model}: not a seglab model (no {MODEL_CHECKPOINT} in it)")
        return path
    c = tracking.client(uri)
    try:
        c.get_run(run_or_model)
    except Exception:
        raise ConfigError(f"CHECKPOINT {run_or_model}: no such file, and no MLflow run with that id in {uri}") from None
    listed = {a.path for a in c.list_artifacts(run_or_model, "checkpoints")}
    for artifact in CHECKPOINT_ARTIFACTS:
        if artifact in listed:
            return mlflow.artifacts.download_artifacts(run_id=run_or_model, artifact_path=artifact, dst_path=dest)
    raise ConfigError(f"CHECKPOINT {run_or_model}: the MLflow run has no {' or '.join(CHECKPOINT_ARTIFACTS)} "
                      f"artifact (trainer.log_checkpoints=none?)")


def resolve(source: str, model_name: Optional[str] = None, num_classes: Optional[int] = None) -> Loaded:
    """CHECKPOINT_OR_RUN (see the module docstring) -> :class:`Loaded`; one line (ConfigError) for
    anything that is none of them."""
    import torch

    if os.path.isfile(source):
        path = source
    elif source.startswith("models:/") or RUN_ID.match(source):
        path = download(source)
    else:
        raise ConfigError(f"CHECKPOINT {source}: no such file (give a checkpoint file, an MLflow run id or "
                          f"models:/NAME/VERSION)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(f"CHECKPOINT {source}: not a checkpoint torch can read ({type(error).__name__})") from None
    if isinstance(state, dict) and all(k in state for k in ("model", "run", "num_classes")):
        if model_name and model_name != (state["run"].get("model") or {}).get("name"):
            raise ConfigError(f"--model {model_name}: CHECKPOINT {source} is a seglab checkpoint of "
                              f"'{state['run']['model'].get('name')}'; leave --model out")
        return from_state(state, source, path)
    return from_official(path, model_name, num_classes, source)
