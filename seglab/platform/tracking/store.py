"""MLflow tracking: one SQLite store, one parent run per sweep, one nested child run per trial.

Who logs what:
- the sweep driver creates the store, the experiment and the parent run (once: several processes
  creating a fresh SQLite store at once fail in its migrations);
- each trial's driver finds or creates its child run by a ``seglab.trial_key`` tag, so a restarted
  trial continues its run instead of opening a new one;
- rank 0 of the trial's workers logs per-epoch metrics and the best checkpoint to that run
  (through a :class:`~seglab.platform.tracking.writer.RunWriter`, which keeps its journal and,
  if the server stays down, an unsent file in the trial folder under the names below).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

PARENT_TAG = "mlflow.parentRunId"
#: A tracking server's credentials (basic auth or a token): forwarded to Ray's workers, which do
#: not inherit the driver's environment (they show in the Ray dashboard's job view: keep it private).
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
TRIAL_KEY_TAG = "seglab.trial_key"
#: MLflow 3's experiment kind: a model-training experiment, so that the UI shows its runs rather than
#: the GenAI "Traces" overview (MLflow 3.17 also keeps a per-browser choice, which the links of
#: seglab.platform.ui override with ``workflowType=machine_learning``).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

# A trial folder's tracking files (rank 0's names; rank r > 0 has its own, see :func:`for_rank`):
#: the writer's spool folder: its journal and the hard links of artifacts not yet delivered
SPOOL_DIR = "mlflow_spool"
#: the journal inside the spool folder (one JSON line per record, see seglab.platform.tracking.journal)
JOURNAL_NAME = "journal.jsonl"
#: what a writer could not deliver before its end (the journal's format)
UNSENT_NAME = "mlflow_unsent.jsonl"
#: records the tracking server refused (each with its error)
REJECTED_NAME = "mlflow_rejected.jsonl"


def for_rank(name: str, rank: int) -> str:
    """The name of a trial folder's tracking file for worker ``rank``: ``name`` itself for rank 0,
    else ``<stem>_rank<r><suffix>`` (``mlflow_spool_rank1``, ``mlflow_unsent_rank1.jsonl``), so
    the ranks of one trial never share a journal."""
    if not rank:
        return name
    stem, dot, suffix = name.partition(".")
    return f"{stem}_rank{int(rank)}{dot}{suffix}"


def home() -> Path:
    """Where stores and run folders live: ``$SEGLAB_HOME`` or the current directory."""
    return Path(os.environ.get("SEGLAB_HOME") or os.getcwd()).resolve()


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` or ``sqlite:///<home>/mlflow.db`` (absolute: Ray jobs run in a copy)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def is_remote(uri: Optional[str]) -> bool:
    """True for a tracking server (http/https), False for a local store (SQLite, file)."""
    return str(uri or "").lower().startswith(("http://", "https://"))


def artifact_root(uri: Optional[str] = None) -> Optional[str]:
    """Where new experiments keep their artifacts: ``$SEGLAB_ARTIFACT_ROOT`` when set; else, for a
    tracking server (``uri``, default ``$MLFLOW_TRACKING_URI``, is http/https), None: the server
    chooses (``mlflow-artifacts:/<id>`` when it proxies artifacts, so checkpoints and pictures go
    through it to its store instead of onto the disk of whichever node logs them); else
    ``file://<home>/mlartifacts`` beside the local store."""
    explicit = os.environ.get("SEGLAB_ARTIFACT_ROOT")
    if explicit:
        return explicit
    if is_remote(uri or tracking_uri()):
        return None
    return (home() / "mlartifacts").as_uri()


def client(uri: Optional[str] = None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri or tracking_uri())


def ensure_experiment(name: str, uri: Optional[str] = None) -> str:
    """Create (or find) the experiment; this also creates and migrates a fresh SQLite store.

    Its artifact location is :func:`artifact_root`: on a tracking server, the server's own default
    (``mlflow-artifacts:/...``) unless ``$SEGLAB_ARTIFACT_ROOT`` says otherwise. An existing
    experiment keeps the location it was created with (MLflow cannot move it): for one on a server
    with a local path, one line on stderr says so.

    It is a model-training experiment (tag ``mlflow.experimentKind=custom_model_development``, also
    added to an existing experiment that has no kind yet; a kind someone chose is kept)."""
    uri = uri or tracking_uri()
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    root = artifact_root(uri)
    kind = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    if exp is not None:
        location = str(exp.artifact_location or "")
        if root is None and (location.startswith("file:") or location.startswith("/")):
            print(f"seglab: experiment '{name}' on {uri} keeps its artifacts at {location} (a local path, set "
                  f"when it was created), not on the server; use a new sweep.experiment to have them proxied",
                  file=sys.stderr, flush=True)
        if not (exp.tags or {}).get(EXPERIMENT_KIND_TAG):
            from mlflow.exceptions import MlflowException

            try:
                c.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            except MlflowException as exc:  # e.g. a server that lets this user write runs, not experiments
                print(f"seglab: could not mark experiment '{name}' as a model-training experiment "
                      f"({EXPERIMENT_KIND_TAG}): {str(exc).splitlines()[0][:200]}", file=sys.stderr, flush=True)
        return exp.experiment_id
    if root is None:  # a tracking server: its default artifact root (mlflow-artifacts:/ when proxying)
        return c.create_experiment(name, tags=kind)
    return c.create_experiment(name, artifact_location=f"{root.rstrip('/')}/{name}", tags=kind)


def _param_value(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 6000 else s[:5997] + "..."


def log_params(run_id: str, params: Dict[str, Any], uri: Optional[str] = None) -> None:
    from mlflow.entities import Param

    items = [Param(k, _param_value(v)) for k, v in params.items()]
    c = client(uri)
    for i in range(0, len(items), 100):
        c.log_batch(run_id, params=items[i : i + 100])


def start_parent_run(experiment_id: str, name: str, params: Dict[str, Any], uri: Optional[str] = None,
                     tags: Optional[Dict[str, str]] = None) -> str:
    c = client(uri)
    run = c.create_run(experiment_id, run_name=name, tags={"seglab.kind": "sweep", **(tags or {})})
    log_params(run.info.run_id, params, uri)
    return run.info.run_id


def find_or_create_child(
    experiment_id: str,
    parent_run_id: str,
    trial_key: str,
    run_name: str,
    params: Dict[str, Any],
    tags: Dict[str, str],
    uri: Optional[str] = None,
) -> str:
    """The child run of ``parent_run_id`` tagged with ``trial_key``; created (with params) if new."""
    c = client(uri)
    found = c.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TRIAL_KEY_TAG}` = '{trial_key}'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = c.create_run(
        experiment_id,
        run_name=run_name,
        tags={PARENT_TAG: parent_run_id, TRIAL_KEY_TAG: trial_key, "seglab.kind": "trial", **tags},
    )
    log_params(run.info.run_id, params, uri)
    return run.info.run_id


def child_runs(parent_run_id: str, uri: Optional[str] = None) -> Iterable[Any]:
    c = client(uri)
    parent = c.get_run(parent_run_id)
    return c.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=1000
    )


def set_terminated(run_id: str, status: str, uri: Optional[str] = None) -> None:
    client(uri).set_terminated(run_id, status=status)


def mark_unfinished_children(parent_run_id: str, uri: Optional[str] = None, storage_path: Optional[str] = None
                             ) -> int:
    """Close child runs still RUNNING after the sweep (trials stopped early by ASHA are killed
    before they can close their run): status KILLED, tag ``seglab.stopped_early=true``.

    A run whose worker could not deliver all its records (the tracking server was down when it
    finished: ``<trial>/mlflow_unsent.jsonl`` under ``storage_path``) is not closed: it gets the tag
    ``seglab.tracking_unsent=<file>``, and replaying the file delivers the rest and ends it."""
    count = 0
    for run in child_runs(parent_run_id, uri):
        if run.info.status == "RUNNING":
            key = run.data.tags.get(TRIAL_KEY_TAG)
            unsent = Path(storage_path) / key / UNSENT_NAME if storage_path and key else None
            if unsent is not None and unsent.is_file():
                client(uri).set_tag(run.info.run_id, "seglab.tracking_unsent", str(unsent))
                continue
            client(uri).set_tag(run.info.run_id, "seglab.stopped_early", "true")
            set_terminated(run.info.run_id, "KILLED", uri)
            count += 1
    return count
