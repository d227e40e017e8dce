"""The tracking server's address and credentials reach Ray's processes, which do not inherit the
driver's environment (they inherit the environment of whoever started the Ray node).

Two hand-overs, checked on the dicts they build (no Ray is started):

- :func:`~seglab.platform.sweep.runner.connect_ray`: the sweep driver's ``ray.init`` gets them as its
  job's ``runtime_env`` (so every Tune trial actor has them), for a cluster it starts and for one it
  joins; not inside a submitted Ray job (the job's own runtime env is the one that counts there);
- :func:`~seglab.platform.sweep.trial.worker_env`: a trial's Ray Train workers get them (read from
  the trial actor's environment) through ``worker_runtime_env``.

The S3 credentials of the server's artifact store are never forwarded: with a proxying server
(``mlflow-artifacts:``) clients need none. That the variables then really are in a worker's
``os.environ`` is Ray's part, shown by the Ray integration tests.
"""
from __future__ import annotations

import pytest

from seglab.platform import tracking
from seglab.platform.quiet import ENV_DEFAULTS
from seglab.platform.sweep.runner import connect_ray
from seglab.platform.sweep.trial import worker_env

URI = "http://mlflow.seglab.svc.cluster.local:5000"
CREDENTIALS = {"MLFLOW_TRACKING_USERNAME": "trainer", "MLFLOW_TRACKING_PASSWORD": "p@ss:w0rd/%"}
S3 = {"AWS_ACCESS_KEY_ID": "AKIA-not-forwarded", "AWS_SECRET_ACCESS_KEY": "secret-not-forwarded",
      "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9000"}
SEGLAB = ("SEGLAB_HOME", "SEGLAB_ARTIFACT_ROOT")


@pytest.fixture
def env(monkeypatch):
    """A clean slate: none of the variables these functions forward, no Ray address, no Ray job."""
    for key in ("MLFLOW_TRACKING_URI", *tracking.CREDENTIAL_VARS, *SEGLAB, *S3, "RAY_ADDRESS",
                "RAY_JOB_CONFIG_JSON_ENV_VAR"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_credential_vars_are_mlflows_basic_auth_and_token_variables():
    assert set(tracking.CREDENTIAL_VARS) == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                             "MLFLOW_TRACKING_TOKEN"}


def test_train_workers_get_the_uri_credentials_and_seglab_folders_but_no_s3_keys(env, tmp_path):
    for key, value in {**CREDENTIALS, **S3, "MLFLOW_TRACKING_TOKEN": "tok-123", "SEGLAB_HOME": str(tmp_path),
                       "SEGLAB_ARTIFACT_ROOT": "mlflow-artifacts:", "MLFLOW_TRACKING_URI": "http://elsewhere:1"}.items():
        env.setenv(key, value)
    got = worker_env(URI)
    assert got == {**ENV_DEFAULTS, "MLFLOW_TRACKING_URI": URI, **CREDENTIALS, "MLFLOW_TRACKING_TOKEN": "tok-123",
                   "SEGLAB_HOME": str(tmp_path), "SEGLAB_ARTIFACT_ROOT": "mlflow-artifacts:"}
    assert all(isinstance(v, str) for v in got.values())  # Ray's runtime_env takes strings only


def test_train_workers_get_no_empty_credentials(env):
    env.setenv("MLFLOW_TRACKING_USERNAME", "")  # set but empty: as good as absent
    assert worker_env("sqlite:////data/mlflow.db") == {**ENV_DEFAULTS, "MLFLOW_TRACKING_URI": "sqlite:////data/mlflow.db"}


@pytest.fixture
def ray_init(env):
    """``ray.init`` replaced by a recorder; no cluster recorded by an earlier ``ray start``."""
    import ray

    from seglab.platform.cluster import ray_internals

    calls = []
    env.setattr(ray, "is_initialized", lambda: False)
    env.setattr(ray, "init", lambda **kw: calls.append(kw))
    env.setattr(ray_internals, "recorded_cluster_address", lambda: None)
    return calls


def test_a_cluster_the_driver_starts_gets_the_uri_and_credentials_as_its_runtime_env(ray_init, env):
    for key, value in {**CREDENTIALS, **S3, "MLFLOW_TRACKING_URI": URI, "SEGLAB_HOME": "/data"}.items():
        env.setenv(key, value)
    connect_ray()
    (kwargs,) = ray_init
    assert kwargs["address"] == "local" and kwargs["_node_ip_address"] == "127.0.0.1"  # a new loopback cluster
    assert kwargs["runtime_env"] == {"env_vars": {"MLFLOW_TRACKING_URI": URI, **CREDENTIALS}}


def test_a_cluster_the_driver_joins_gets_them_too(ray_init, env):
    env.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    env.setenv("MLFLOW_TRACKING_URI", URI)
    env.setenv("MLFLOW_TRACKING_TOKEN", "tok-123")
    connect_ray()
    (kwargs,) = ray_init
    assert kwargs["address"] == "10.0.0.5:6379"
    assert kwargs["runtime_env"] == {"env_vars": {"MLFLOW_TRACKING_URI": URI, "MLFLOW_TRACKING_TOKEN": "tok-123"}}


def test_nothing_to_forward_sets_no_runtime_env(ray_init):
    connect_ray()
    (kwargs,) = ray_init
    assert "runtime_env" not in kwargs


def test_a_submitted_job_keeps_its_own_runtime_env(ray_init, env):
    env.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # Ray sets it for a submitted job's driver
    env.setenv("MLFLOW_TRACKING_URI", URI)
    for key, value in CREDENTIALS.items():
        env.setenv(key, value)
    connect_ray()
    (kwargs,) = ray_init
    assert "runtime_env" not in kwargs


def test_a_connected_driver_is_left_alone(env):
    import ray

    env.setattr(ray, "is_initialized", lambda: True)
    env.setattr(ray, "init", lambda **kw: pytest.fail(f"ray.init called again with {kw}"))
    connect_ray()
