"""tracking/ — MLflow: where the store is, the runs of a sweep, and one buffered writer into them.

Modules (each imports only those above it; MLflow itself only inside functions):

- ``store``: the store and its runs: :func:`home`, :func:`tracking_uri`, :func:`artifact_root`,
  :func:`client`, :func:`ensure_experiment`, :func:`log_params`, :func:`start_parent_run`,
  :func:`find_or_create_child`, :func:`child_runs`, :func:`set_terminated`,
  :func:`mark_unfinished_children`; the tags (``PARENT_TAG``, ``TRIAL_KEY_TAG``, ...) and the
  names of a trial folder's tracking files (``SPOOL_DIR``, ``UNSENT_NAME``, ..., ``for_rank``).
  All of them are re-exported here: ``from seglab.platform import tracking; tracking.client()``.
- ``journal``: the record format, journal and unsent files, delivery of a batch of records,
  ``is_transient``, ``pending_records``, ``replay(path, uri)`` and the command
  ``python -m seglab.platform.tracking.journal FILE [--uri URI]`` that delivers an unsent file.
- ``writer``: :class:`~seglab.platform.tracking.writer.RunWriter`, the one writer of every process
  that logs into a trial's run (rank 0 owns the run and ends it; other ranks and samplers do not):
  journaled to disk, delivered in order by a background thread, outage-proof.

System and GPU metrics are sampled in :mod:`seglab.platform.monitoring`; they reach MLflow
through a ``RunWriter`` passed to the sampler as its sink.
"""
from seglab.platform.tracking.store import (
    CREDENTIAL_VARS, EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, JOURNAL_NAME, PARENT_TAG, REJECTED_NAME, SPOOL_DIR,
    TRIAL_KEY_TAG, UNSENT_NAME, artifact_root, child_runs, client, ensure_experiment, find_or_create_child, for_rank,
    home, is_remote, log_params, mark_unfinished_children, set_terminated, start_parent_run, tracking_uri,
)

__all__ = [
    "CREDENTIAL_VARS", "EXPERIMENT_KIND", "EXPERIMENT_KIND_TAG", "JOURNAL_NAME", "PARENT_TAG", "REJECTED_NAME",
    "SPOOL_DIR", "TRIAL_KEY_TAG", "UNSENT_NAME", "artifact_root", "child_runs", "client", "ensure_experiment",
    "find_or_create_child", "for_rank", "home", "is_remote", "log_params", "mark_unfinished_children",
    "set_terminated", "start_parent_run", "tracking_uri",
]
