"""Test-session setup: the environment every seglab process expects, set before anything imports.

One intra-op thread for torch, in this process and in every process a test starts (``OMP_NUM_THREADS``
is read when torch is imported): the tests' tensors are tiny, and on a small shared machine a second
thread per process made the suite several times slower (the trainer's tests: ~4x in wall and CPU time;
fp16 convolution backward, which has no fast CPU kernel: ~3x), with erratic timings. A Ray trial
sets its own count (``trainer.cpus_per_worker``); an ``OMP_NUM_THREADS`` already set is kept.
"""
import contextlib
import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


_EMPTY_STORE = []


def new_mlflow_store(folder, name: str = "mlflow.db") -> str:
    """The URI of a new SQLite MLflow store ``folder/name``: a copy of this process's empty store
    (MLflow's schema migrations take 1-2 s per new store), its Default experiment's artifacts in
    ``folder``."""
    import shutil
    import sqlite3
    import tempfile
    from pathlib import Path

    if not _EMPTY_STORE:
        from mlflow.tracking import MlflowClient

        import atexit

        folder_of_empty = tempfile.mkdtemp(prefix="mlflow-empty-")
        atexit.register(shutil.rmtree, folder_of_empty, True)
        empty = Path(folder_of_empty) / "mlflow.db"
        MlflowClient(f"sqlite:///{empty}").search_experiments()
        _EMPTY_STORE.append(empty)
    path = Path(folder) / name
    shutil.copyfile(_EMPTY_STORE[0], path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   (str(Path(folder) / "mlruns" / "0"),))
    return f"sqlite:///{path}"


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A new SQLite MLflow store in the test's folder (:func:`new_mlflow_store`), made this process's
    store (MLFLOW_TRACKING_URI), with SEGLAB_HOME and the artifact root there too; its URI."""
    uri = new_mlflow_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEGLAB_HOME", str(tmp_path))
    monkeypatch.setenv("SEGLAB_ARTIFACT_ROOT", (tmp_path / "mlartifacts").as_uri())
    return uri


_BROKEN_GROUPS = []


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """In a pytest-xdist worker with ``--dist loadgroup``: every test marked ``xdist_group`` must carry its
    group in its node id (what the scheduler reads), else the groups are silently split across workers
    (the Ray modules would run at once, each module fixture would start once per worker): then every
    test fails at once, saying why."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or not getattr(config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        _BROKEN_GROUPS.append(
            f"pytest-xdist's --dist loadgroup did not tag {len(lost)} grouped test(s) (e.g. {lost[0]}) with "
            f"this pytest {pytest.__version__}: use the pinned versions (constraints.txt; `make setup`)")


def pytest_runtest_setup(item):
    if _BROKEN_GROUPS:
        pytest.fail(_BROKEN_GROUPS[0], pytrace=False)
