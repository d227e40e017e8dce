"""Integration fixtures: a real local Ray cluster (one per module) and a real MLflow SQLite store."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "experiments" / "conf"

# Tiny everything: 2 DDP workers per trial, 2 epochs on 32x64 images.
TINY_DATA = [
    "trainer=tiny",
    "dataset.image_size=[32,64]",
    "dataset.train.num_samples=8",
    "dataset.train.crop_size=[32,64]",
    "dataset.val.num_samples=4",
    "dataset.test.num_samples=4",
]
TINY_OVERRIDES = ["model=ovenet_hrnet_w18_small_v1", *TINY_DATA]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose(overrides, config_name="config"):
    """The experiment config exactly as experiments/ovenet_sweep.py (config) or
    experiments/baselines.py (baselines) composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from experiments._entry import split_config  # noqa: F401 (import check)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    return split_config(cfg)


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEGLAB_HOME", str(tmp_path))
    monkeypatch.setenv("SEGLAB_ARTIFACT_ROOT", (tmp_path / "mlartifacts").as_uri())
    return uri


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    from seglab.platform.cluster.local import init_local

    # every socket of the cluster on 127.0.0.1 (test_cluster_security.py checks the same call)
    init_local(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True,
               runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1"}})
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
