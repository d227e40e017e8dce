"""Fixtures of the monitoring room's tests."""
from __future__ import annotations

import pytest

from seglab.platform.monitoring.messages import forget_said
from tests.conftest import new_mlflow_store


@pytest.fixture(autouse=True)
def fresh_messages():
    """Every test starts as a fresh process would: nothing said once yet."""
    forget_said()
    yield
    forget_said()


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A local SQLite store as seglab's default (``$MLFLOW_TRACKING_URI``); its URI."""
    uri = new_mlflow_store(tmp_path, "m.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEGLAB_ARTIFACT_ROOT", (tmp_path / "art").as_uri())
    return uri
