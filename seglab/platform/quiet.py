"""Silence the known noisy warnings of the stack so a run's output is readable.

Only messages known to be harmless are filtered; anything else still shows. In a Ray Train worker,
``seglab.platform.cluster.ray_internals.quiet_train_worker()`` also drops Ray Train's per-report line
(it needs a Ray-private module, so it lives with the other Ray-private uses).
"""
from __future__ import annotations

import logging
import os
import warnings

ENV_DEFAULTS = {
    "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations checks online for updates on import
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",  # must match between ray start, ray.init and ray job submit
    "RAY_DEDUP_LOGS": "1",
    "RAY_TRAIN_V2_ENABLED": "1",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",  # else every worker print is logged twice
    # Ray Train's controller polls its workers this often (default 2 s): a finished run is noticed
    # sooner, which is most of a short trial's tail; the poll is one small call per worker.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/JSON/TensorBoard loggers next to MLflow
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GIT_PYTHON_REFRESH": "quiet",  # mlflow probes git
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning,ignore::UserWarning",
}


def env_defaults() -> dict:
    """The environment every seglab process (driver, trial, worker) should see."""
    return dict(ENV_DEFAULTS)


def quiet() -> None:
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    for pattern in (
        ".*TypedStorage is deprecated.*",
        ".*Tensorflow.*",
        ".*pkg_resources.*",
        ".*is deprecated.*",
        ".*Setting `num_to_keep`.*",
        ".*The given NumPy array is not writable.*",
        ".*Failed to import GPU monitoring.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.system_metrics", "mlflow.tracking.fluent",
                 "ray.tune", "ray.data", "filelock"):
        logging.getLogger(name).setLevel(logging.ERROR)

