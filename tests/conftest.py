"""Test-session setup: the environment every seglab process expects, set before anything imports.

One intra-op thread for torch, in this process and in every process a test starts (``OMP_NUM_THREADS``
is read when torch is imported): the tests' tensors are tiny, and on a small shared machine a second
thread per process made the suite several times slower (the trainer's tests: ~4x in wall and CPU time;
fp16 convolution backward, which has no fast CPU kernel: ~3x), with erratic timings. A Ray trial
sets its own count (``trainer.cpus_per_worker``); an ``OMP_NUM_THREADS`` already set is kept.
"""
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A SQLite MLflow store in the test's folder, made this process's store (MLFLOW_TRACKING_URI),
    with SEGLAB_HOME and the artifact root there too; its URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEGLAB_HOME", str(tmp_path))
    monkeypatch.setenv("SEGLAB_ARTIFACT_ROOT", (tmp_path / "mlartifacts").as_uri())
    return uri
