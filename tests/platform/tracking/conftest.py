"""Fixtures of the tracking room's tests: a real ``mlflow server`` and a local SQLite store."""
from __future__ import annotations

import pytest

from tests.platform.tracking.mlflow_server import MlflowServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def up(server):
    """The module's server, started again if a test left it stopped."""
    if server.proc is None:
        server.start()
    return server


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A local SQLite store of the test module (each test makes its own runs): (uri, MlflowClient,
    experiment id)."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("sqlite-store")
    uri = f"sqlite:///{root / 'm.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("local", artifact_location=(root / "art").as_uri())
    return uri, client, exp
