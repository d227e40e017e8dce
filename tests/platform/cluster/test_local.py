"""Which Ray a driver gets, and how (no cluster is started: ``ray.init`` is replaced by a recorder)."""
import os

import pytest
import ray

from seglab.platform.cluster import local, ray_internals
from seglab.platform.cluster.local import LOOPBACK, SINGLE_NODE_ENV, head_args, init_local, init_ray, loopback_env


@pytest.fixture
def ray_init(monkeypatch):
    """``ray.init`` recording its arguments, the single-node variable and the node IP Ray would use."""
    calls = []

    def record(**kwargs):
        calls.append({"kwargs": kwargs, "env": os.environ.get(SINGLE_NODE_ENV),
                      "node_ip": ray.util.get_node_ip_address()})
        return "context"

    monkeypatch.setattr(ray, "init", record)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv(SINGLE_NODE_ENV, raising=False)
    monkeypatch.setattr(ray_internals, "recorded_cluster_address", lambda: None)
    return calls


DRIVER_DEFAULTS = {"log_to_driver": True, "configure_logging": True, "logging_level": "warning"}


def test_loopback_env():
    assert loopback_env({"A": "1"}) == {"A": "1", SINGLE_NODE_ENV: "0"}
    env = loopback_env()
    assert env == {**os.environ, SINGLE_NODE_ENV: "0"} and env is not os.environ
    assert loopback_env({"A": "1", SINGLE_NODE_ENV: "1"})[SINGLE_NODE_ENV] == "0"


def test_init_local_starts_a_new_cluster_on_loopback(ray_init, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")  # never joined: init_local always starts its own
    assert init_local(num_cpus=2) == "context"
    (call,) = ray_init
    assert call["kwargs"] == {"address": "local", "_node_ip_address": LOOPBACK, "dashboard_host": LOOPBACK,
                              "num_cpus": 2}
    assert call["env"] == "0" and call["node_ip"] == LOOPBACK  # Ray's single-node mode while it starts
    assert SINGLE_NODE_ENV not in os.environ  # and nothing left behind


def test_init_ray_without_an_address_starts_a_local_cluster_with_the_dashboard(ray_init):
    init_ray(num_cpus=2, logging_level="info")
    (call,) = ray_init
    assert call["kwargs"] == {**DRIVER_DEFAULTS, "logging_level": "info", "num_cpus": 2, "include_dashboard": True,
                              "address": "local", "_node_ip_address": LOOPBACK, "dashboard_host": LOOPBACK}


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "localhost:6379", "[::1]:6379"])
def test_init_ray_joins_a_loopback_cluster_in_single_node_mode(ray_init, monkeypatch, address):
    monkeypatch.setenv("RAY_ADDRESS", address)
    init_ray()
    (call,) = ray_init
    assert call["kwargs"] == {**DRIVER_DEFAULTS, "address": address}
    assert call["env"] == "0" and call["node_ip"] == LOOPBACK


def test_init_ray_joins_the_cluster_ray_start_recorded(ray_init, monkeypatch):
    monkeypatch.setattr(ray_internals, "recorded_cluster_address", lambda: "127.0.0.1:7000")
    init_ray()
    assert ray_init[0]["kwargs"] == {**DRIVER_DEFAULTS, "address": "127.0.0.1:7000"} and ray_init[0]["env"] == "0"


@pytest.mark.parametrize("address", ["http://127.0.0.1:8265", "ray://127.0.0.1:10001", "auto", "10.0.0.5:6379",
                                     "head.example.org:6379"])
def test_init_ray_joins_other_clusters_as_ray_does(ray_init, monkeypatch, address):
    monkeypatch.setenv("RAY_ADDRESS", address)
    init_ray(include_dashboard=False)
    (call,) = ray_init
    assert call["kwargs"] == {**DRIVER_DEFAULTS, "include_dashboard": False, "address": address}
    assert call["env"] is None  # Ray's own network binding


def test_head_args():
    assert head_args(num_cpus=3) == [
        "ray", "start", "--head", "--node-ip-address=127.0.0.1", "--port=6379", "--num-cpus=3",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", "--dashboard-port=8265",
        "--dashboard-agent-listen-port=0", "--disable-usage-stats"]
    args = head_args(port=7000, dashboard_port=7001, num_cpus=1, temp_dir="/tmp/r", client_port=7002, agent_port=7003)
    assert args[4:6] == ["--port=7000", "--num-cpus=1"] and "--dashboard-port=7001" in args
    assert args[-3:] == ["--disable-usage-stats", "--temp-dir=/tmp/r", "--ray-client-server-port=7002"]
    assert "--dashboard-agent-listen-port=7003" in args
    assert head_args()[5] == f"--num-cpus={len(os.sched_getaffinity(0))}"


def test_start_head_raises_when_ray_does_not_start(monkeypatch):
    monkeypatch.setattr(local, "_ray_bin", lambda: "false")  # `ray start` exits 1 with nothing started
    with pytest.raises(RuntimeError, match="ray start exited with 1"):
        local.start_head(port=1, num_cpus=1, timeout=30)
