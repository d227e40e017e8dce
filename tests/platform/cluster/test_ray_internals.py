"""Each wrapper of a Ray-private API against the installed Ray: after a Ray upgrade, a failure here
names the wrapper in seglab/platform/cluster/ray_internals.py to revisit. ``session_dir`` and
``dashboard_url`` need a connected driver: tests/integration/test_faults.py and
test_job_and_resume.py use them."""
import inspect
import logging
import os
import subprocess
import sys

import pytest
import ray
from ray.train.torch import TorchConfig

from seglab.platform.cluster import ray_internals
from seglab.platform.cluster.ray_internals import SINGLE_NODE_ENV


@pytest.mark.parametrize("before", [None, "1"])
def test_single_node_mode_keeps_127_0_0_1_and_restores_everything(monkeypatch, before):
    if before is None:
        monkeypatch.delenv(SINGLE_NODE_ENV, raising=False)
    else:
        monkeypatch.setenv(SINGLE_NODE_ENV, before)
    outside = ray.util.get_node_ip_address()  # the machine's network address (no Ray is connected)
    with ray_internals.single_node_mode():
        assert os.environ[SINGLE_NODE_ENV] == "0"
        assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert os.environ.get(SINGLE_NODE_ENV) == before
    assert ray.util.get_node_ip_address() == outside


def test_single_node_mode_is_the_variable_ray_reads_at_import():
    code = "import ray; print(ray.util.get_node_ip_address())"
    env = {**os.environ, SINGLE_NODE_ENV: "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "127.0.0.1", out.stderr[-2000:]


def test_recorded_cluster_address_reads_what_ray_start_writes(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert ray_internals.recorded_cluster_address() is None
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:7000\n")  # stop_head removes this one
    assert ray_internals.recorded_cluster_address() == "127.0.0.1:7000"


def test_the_torch_backend_base_is_the_one_torch_config_uses():
    base = ray_internals.torch_backend_base()
    assert TorchConfig().backend_cls is base
    assert callable(base.on_start) and callable(base.on_shutdown)
    assert not ray_internals.is_v1_worker_group(object())
    assert callable(ray_internals.set_torch_distributed_env_vars)


def test_quiet_train_worker_silences_the_logger_of_the_report_line():
    ray_internals.quiet_train_worker()
    context = sys.modules["ray.train.v2._internal.execution.context"]
    assert "Reporting training result" in inspect.getsource(context)  # the line is still logged there
    assert context.logger.getEffectiveLevel() == logging.WARNING  # by the logger quiet_train_worker raised

