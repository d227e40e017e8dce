"""The winner of a sweep in MLflow's model registry (``sweep.register_model``, on by default).

At the end of a sweep (:func:`register_sweep_model`, called by the sweep's ``finish``):

* the configuration: the selected one (``sel`` in the comparison), else the one method configuration of a
  single-configuration sweep, else the finished configuration with the best selection score (a planned
  comparison: a zoo or an ablation), the baseline included;
* the run: of that configuration's finished runs, the one with the best selection score; its checkpoint is
  its ``checkpoints/best.pt`` artifact (or ``last.pt``), else ``best.pt`` in its trial folder;
* logged into the sweep's parent run as an MLflow pyfunc model (:mod:`.pyfunc`: a signature, an input
  example, the classes, preprocessing and run config in its metadata) and registered under the sweep's
  name: one version per sweep, tagged with the sweep run, the trial run, the configuration, its claim
  (how far its gain may be read as a result) and its test mIoU. The sweep run gets the tag
  ``seglab.registered_model`` = ``models:/NAME/VERSION``.

A failure here is reported on one line and never fails the sweep (its comparison is already logged).
"""
from __future__ import annotations

import math
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from seglab.platform import tracking

SELECTION = "selection_score"
MODEL_TAG = "seglab.registered_model"


def model_name(sweep_name: str) -> str:
    """The registered model's name: the sweep's name, with characters MLflow refuses replaced by ``-``."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", sweep_name).strip("-") or "sweep"


def pick_row(rows: List[Dict[str, Any]], mode: str = "max") -> Optional[Dict[str, Any]]:
    """The configuration to register (see the module docstring), or None when no run finished."""
    done = [r for r in rows if not r.get("failed") and any(run.get("finished") for run in r.get("runs", []))]
    chosen = next((r for r in done if r.get("selected")), None) or \
        next((r for r in done if not r.get("baseline") and r.get("claim") == "single configuration"), None)
    if chosen is not None:
        return chosen
    sign = -1.0 if mode == "min" else 1.0
    scored = [r for r in done if r.get(SELECTION) is not None]
    return max(scored, key=lambda r: sign * r[SELECTION]) if scored else (done[0] if done else None)


def pick_run(row: Dict[str, Any], mode: str = "max") -> Dict[str, Any]:
    sign = -1.0 if mode == "min" else 1.0
    runs = [r for r in row.get("runs", []) if r.get("finished")] or list(row.get("runs", []))
    return max(runs, key=lambda r: sign * r[SELECTION] if r.get(SELECTION) is not None else -math.inf)


def checkpoint_of(run_id: str, uri: str, storage_path: Optional[str]) -> Optional[str]:
    """A local copy named ``best.pt`` of the run's checkpoint (its artifact, else its trial folder's file)."""
    from seglab.errors import ConfigError
    from seglab.platform.serve.source import download

    folder = Path(tempfile.mkdtemp(prefix="seglab-register-"))
    try:
        path = download(run_id)
    except ConfigError:
        key = tracking.client(uri).get_run(run_id).data.tags.get(tracking.TRIAL_KEY_TAG)
        local = Path(storage_path or "") / str(key) / "best.pt"
        if not (key and storage_path and local.is_file()):
            return None
        path = str(local)
    shutil.copy(path, folder / "best.pt")
    return str(folder / "best.pt")


def register_sweep_model(sweep: Any, rows: List[Dict[str, Any]], parent_run_id: str, uri: str,
                         storage_path: Optional[str] = None) -> Optional[str]:
    """Log and register the sweep's model (see the module docstring); ``models:/NAME/VERSION`` or None.
    Prints one line either way."""
    if not getattr(sweep, "register_model", True):
        return None
    try:
        row = pick_row(rows, sweep.mode)
        if row is None:
            print("model registry: no finished run to register", flush=True)
            return None
        run = pick_run(row, sweep.mode)
        path = checkpoint_of(run["run_id"], uri, storage_path)
        if path is None:
            print(f"model registry: run {run['run_id']} ({row.get('label')}) has no checkpoint to register "
                  f"(trainer.log_checkpoints=none and no best.pt in its trial folder)", flush=True)
            return None
        name, version = log_and_register(path, model_name(sweep.name), parent_run_id, uri, row, run)
    except Exception as error:  # the registry is a convenience: never fail a finished sweep over it
        print(f"model registry: not registered ({type(error).__name__}: {str(error).splitlines()[0][:200]})",
              flush=True)
        return None
    target = f"models:/{name}/{version}"
    print(f"model registry: {row.get('label')} (run {run['run_id']}, {row.get('claim') or 'baseline'}) registered "
          f"as {target}; use it: seglab predict {target} IMAGES --out DIR", flush=True)
    return target


def requirements() -> List[str]:
    """What the model needs to load, pinned to this environment (given, not inferred: MLflow's inference
    starts a Python process that loads the model, seconds of CPU per sweep). seglab itself is not on
    PyPI: install it from its repository next to these."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("torch", "numpy", "opencv-python-headless", "albumentations", "mlflow"):
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def log_and_register(path: str, name: str, parent_run_id: str, uri: str, row: Dict[str, Any],
                     run: Dict[str, Any]) -> Tuple[str, str]:
    """Log the pyfunc model into the sweep run, register it as a new version of ``name``, tag it."""
    import mlflow

    from seglab.platform.evaluation.checkpoint import train_crop
    from seglab.platform.serve.pyfunc import SegmentationModel, model_metadata, signature_and_example
    from seglab.platform.serve.source import resolve

    loaded = resolve(path)
    signature, example = signature_and_example(train_crop(loaded.state) or (64, 64))
    tags = {"seglab.sweep_run_id": parent_run_id, "seglab.trial_run_id": run["run_id"],
            "seglab.configuration": str(row.get("label")), "seglab.claim": str(row.get("claim") or "baseline"),
            "seglab.test_miou": "" if row.get("test_miou") is None else f"{row['test_miou']:.4f}"}
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=parent_run_id, nested=mlflow.active_run() is not None), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hints.*")  # the input is a plain uint8 array
        info = mlflow.pyfunc.log_model(name="model", python_model=SegmentationModel(), artifacts={"checkpoint": path},
                                       signature=signature, input_example=example, registered_model_name=name,
                                       pip_requirements=requirements(),
                                       metadata=model_metadata(loaded, {k.split(".", 1)[1]: v for k, v in tags.items()}),
                                       await_registration_for=60)
    version = str(info.registered_model_version)
    client = tracking.client(uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_tag(parent_run_id, MODEL_TAG, f"models:/{name}/{version}")
    return name, version
