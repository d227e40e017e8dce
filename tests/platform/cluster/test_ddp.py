"""The loopback DDP backend driven by a stand-in worker group (one worker: this process), so the
process group it builds is real while no Ray cluster runs; the 2-worker run on a real cluster is
tests/integration/test_faults.py (the session cluster and DDP) and test_job_and_resume.py (the demo head)."""
import os
import pickle

import psutil
import pytest
import ray
import torch
import torch.distributed as dist
from ray.train.torch import TorchConfig

from seglab.platform.cluster import ddp, ray_internals
from seglab.platform.cluster.ddp import loopback_torch_config


class OneWorkerGroup:
    """What the backend asks of a Ray Train worker group, run in this process."""

    def __init__(self, resources=None):
        self.resources = resources or {"CPU": 1}
        self.executed = []

    def __len__(self):
        return 1

    def get_resources_per_worker(self):
        return self.resources

    def execute(self, fn, *args, **kwargs):
        return [self.execute_single(0, fn, *args, **kwargs)]

    def execute_async(self, fn, *args, **kwargs):
        return self.execute(fn, *args, **kwargs)

    def execute_single(self, index, fn, *args, **kwargs):
        """Runs ddp.py's worker functions; Ray's own (and the wrapper of one) need a Ray Train
        worker's context: recorded only."""
        assert index == 0
        self.executed.append(fn)
        return fn(*args, **kwargs) if fn.__module__ == ddp.__name__ else None

    def execute_single_async(self, index, fn, *args, **kwargs):
        return self.execute_single(index, fn, *args, **kwargs)


def _no_cluster(*args, **kwargs):
    raise AssertionError("a Ray cluster was started")


@pytest.fixture
def worker_env(monkeypatch):
    """Results instead of object refs (``ray.get``), the node IP the test chooses, and the process
    group's environment variables restored afterwards."""
    monkeypatch.setattr(ray, "get", lambda refs, timeout=None: refs)
    monkeypatch.setattr(ray, "init", _no_cluster)  # nothing here may start one (ray.get_gpu_ids() would)
    for key in ("MASTER_ADDR", "MASTER_PORT", "GLOO_SOCKET_IFNAME"):
        monkeypatch.delenv(key, raising=False)
    node = {"ip": "127.0.0.1"}
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: node["ip"])
    yield node
    if dist.is_initialized():
        dist.destroy_process_group()


def test_the_config_is_a_torch_config_pickled_by_reference():
    config = loopback_torch_config(timeout_s=60)
    assert isinstance(config, TorchConfig) and config.timeout_s == 60 and config.backend is None
    assert issubclass(config.backend_cls, ray_internals.torch_backend_base())
    assert config.backend_cls is ddp.LoopbackTorchBackend and type(config) is ddp.LoopbackTorchConfig
    assert type(config).__module__ == "seglab.platform.cluster.ddp"
    assert b"seglab.platform.cluster.ddp" in pickle.dumps(config)
    assert type(pickle.loads(pickle.dumps(config))) is ddp.LoopbackTorchConfig


def test_on_a_loopback_node_the_process_group_listens_on_127_0_0_1_only(worker_env):
    config = loopback_torch_config(timeout_s=60)
    group = OneWorkerGroup()
    config.backend_cls().on_start(group, config)
    assert dist.is_initialized() and dist.get_backend() == "gloo" and dist.get_world_size() == 1
    assert ray_internals.set_torch_distributed_env_vars in group.executed  # as Ray Train V2 does
    port = int(os.environ["MASTER_PORT"])
    assert os.environ["MASTER_ADDR"] == "127.0.0.1" and os.environ["GLOO_SOCKET_IFNAME"] in psutil.net_if_addrs()
    store = [c.laddr for c in psutil.Process().net_connections(kind="inet")
             if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert [a.ip for a in store] == ["127.0.0.1"]  # torch's own TCPStore would listen on [::]
    t = torch.ones(2)
    dist.all_reduce(t)
    assert t.tolist() == [1.0, 1.0]
    config.backend_cls().on_shutdown(group, config)  # Ray Train's shutdown, then the store dropped
    assert [f.__name__ for f in group.executed[-2:]] == ["_shutdown_torch", "_drop_store"]


@pytest.mark.parametrize("node_ip,resources,backend", [
    ("192.0.2.7", {"CPU": 1}, None),     # workers on another node: Ray Train's own rendezvous
    ("127.0.0.1", {"GPU": 1}, None),     # nccl
    ("127.0.0.1", {"CPU": 1}, "nccl"),
])
def test_elsewhere_it_is_ray_trains_backend(worker_env, monkeypatch, node_ip, resources, backend):
    worker_env["ip"] = node_ip
    started = []
    monkeypatch.setattr(ray_internals.torch_backend_base(), "on_start", lambda self, g, c: started.append(c))
    config = loopback_torch_config(backend=backend)
    config.backend_cls().on_start(OneWorkerGroup(resources), config)
    assert started == [config] and not dist.is_initialized()
