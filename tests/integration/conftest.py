"""Integration fixtures: one real local Ray cluster for the whole test session, a real MLflow SQLite store.

Modules that need Ray (``ray_cluster``, or clusters of their own) carry ``pytestmark = RAY``: with
``pytest -n 2 --dist loadgroup`` (``make test``) they all run in one pytest-xdist worker, one after
another, while the other tests use the other core. After each module the session cluster must hold no
placement group and all its CPUs again (:func:`ray_leaves_nothing`)."""
from __future__ import annotations

import socket
import time
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
    # registering the winner costs ~3 s of CPU per sweep: tests/integration/test_sweep_integration.py checks it
    "sweep.register_model=false",
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


RAY = [pytest.mark.integration, pytest.mark.xdist_group("ray")]
CLUSTER_CPUS = 2


@pytest.fixture(scope="session")
def ray_cluster():
    """A local cluster of 2 CPUs bound to 127.0.0.1 (test_faults.py checks every socket), started
    by the first test that asks for it and shared by every module after it."""
    import ray

    from seglab.platform.cluster.local import init_local

    init_local(num_cpus=CLUSTER_CPUS, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True,
               runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def ray_leaves_nothing(request):
    """After a module that used the session cluster: no placement group left, every CPU free again
    (Ray releases a finished trial's resources asynchronously: up to 60 s)."""
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    from ray.util.placement_group import placement_group_table

    deadline = time.monotonic() + 60
    while True:
        held = [pg for pg in placement_group_table().values() if pg.get("state") != "REMOVED"]
        cpus = ray.available_resources().get("CPU", 0.0)
        if not held and cpus >= CLUSTER_CPUS - 1e-6:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{request.module.__name__} left {len(held)} placement group(s) and {CLUSTER_CPUS - cpus:g} "
                        f"CPU(s) held on the session's Ray cluster")
        time.sleep(0.25)


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
