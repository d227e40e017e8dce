"""A Ray cluster of three nodes on this machine (a head and two `ray start --address` nodes).

- a 2-worker trial whose workers land on different nodes (1 CPU per node, 0.9 per worker) trains
  with its storage on the shared path, crashes once at epoch 2 of 3 and resumes from that path (and
  still trains all 3 epochs: the reliability issue's review bug);
- the sweep's storage check: the third node runs in its own mount namespace where another folder
  is hidden under an empty tmpfs (a node that does not mount the shared file system); a sweep whose
  `cluster.storage_path` is that folder stops with one line naming the path and the node, before
  any trial starts. (Needs `unshare` + `mount`, i.e. root or CAP_SYS_ADMIN; skipped otherwise.)
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from seglab.platform import tracking
from seglab.platform.cluster.listeners import find_gcs, session_of
from seglab.platform.cluster.local import SINGLE_NODE_ENV, stop_head

from .conftest import RAY, REPO, TINY_DATA, free_port

pytestmark = RAY

BIN = Path(sys.executable).parent


def _can_unshare() -> bool:
    probe = tempfile.mkdtemp(prefix="unshare-")
    try:
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               f"mount -t tmpfs none {probe} && umount {probe}"], capture_output=True, timeout=30)
        return done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


@pytest.fixture(scope="module")
def three_nodes():
    """Head + 2 nodes with Ray's own network binding: a multi-node cluster cannot be loopback-only
    (Ray refuses to join nodes in its single-node mode); real clusters turn token auth on."""
    import re

    temp = tempfile.mkdtemp(prefix="rmn-", dir="/tmp")  # AF_UNIX paths stay < 108 bytes
    hidden = tempfile.mkdtemp(prefix="seglab-unshared-")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "RAY_AUTH_MODE": "disabled",
           "NO_ALBUMENTATIONS_UPDATE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    env.pop(SINGLE_NODE_ENV, None)
    port = free_port()
    head = subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=1",
                           "--include-dashboard=false", f"--ray-client-server-port={free_port()}",
                           f"--temp-dir={temp}", "--disable-usage-stats"],
                          env=env, capture_output=True, text=True, timeout=180)
    gcs = find_gcs(port)
    session = session_of(gcs) if gcs is not None else None
    isolated = _can_unshare()
    try:
        assert head.returncode == 0 and session, head.stdout + head.stderr
        address = re.search(r"--address='([^']+)'", head.stdout).group(1)
        join = [str(BIN / "ray"), "start", f"--address={address}", "--num-cpus=1", "--disable-usage-stats"]
        node2 = subprocess.run(join, env=env, capture_output=True, text=True, timeout=120)
        assert node2.returncode == 0, node2.stdout + node2.stderr
        if isolated:  # node 3 cannot see `hidden` (an empty tmpfs over it in its mount namespace)
            cmd = f"mount -t tmpfs none {hidden} && exec {' '.join(join)}"
            node3 = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd], env=env,
                                   capture_output=True, text=True, timeout=120)
        else:
            node3 = subprocess.run(join, env=env, capture_output=True, text=True, timeout=120)
        assert node3.returncode == 0, node3.stdout + node3.stderr
        yield {"address": address, "env": env, "hidden": hidden, "isolated": isolated}
    finally:
        if session:
            stop_head(session)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(hidden, ignore_errors=True)


def _sweep(nodes, tmp_path, *overrides):
    env = {**nodes["env"], "RAY_ADDRESS": nodes["address"], "SEGLAB_HOME": str(tmp_path),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    args = TINY_DATA + ["trainer.num_workers=2", "trainer.viz_samples=0", "sweep.models=[hrnet_w18_small_v1]",
                        "sweep.experiment=multinode", *overrides]
    return subprocess.run([sys.executable, "experiments/baselines.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=400), env["MLFLOW_TRACKING_URI"]


def test_a_two_worker_trial_spans_two_nodes_and_resumes_from_the_shared_path(three_nodes, tmp_path):
    shared = tmp_path / "shared"
    done, uri = _sweep(three_nodes, tmp_path, "trainer.epochs=3", "trainer.fail_once_at_epoch=2",
                       f"cluster.storage_path={shared}", "trainer.log_checkpoints=last",
                       "trainer.precision=bf16", "trainer.channels_last=true")  # DDP in bf16, NHWC
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client = tracking.client(uri)
    exp = client.get_experiment_by_name("multinode")
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.`seglab.kind` = 'trial'")
    assert run.info.status == "FINISHED"
    assert run.data.tags["seglab.num_nodes"] == "2"  # one worker per node (1 CPU each, 0.9 per worker)
    assert run.data.tags["seglab.restarts"] == "1" and run.data.tags["seglab.resumed_from_epoch"] == "1"
    # the review bug: the injected failure's marker was taken for the early-stop marker, so a run failing
    # at epoch 2 of 4 stopped after epoch 3, tagged stopped_early; now it trains every epoch
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_miou")) == [1, 2, 3]
    assert run.data.params["trainer.precision"] == "bf16" and run.data.metrics["train_loss"] == run.data.metrics["train_loss"]
    assert "seglab.stopped_early" not in run.data.tags
    # checkpoints and the sweep folder live on the shared path, not a node's default folder
    assert list(shared.glob("baselines-*/train/train-*/checkpoint_*/checkpoint.pt"))
    assert list(shared.glob("baselines-*/sweep.json")) and not (tmp_path / "runs").exists()
    # trainer.log_checkpoints=last: the last epoch's checkpoint is the run's artifact
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/last.pt"]
    local = client.download_artifacts(run.info.run_id, "checkpoints/last.pt", str(tmp_path / "dl"))
    import torch

    assert torch.load(local, map_location="cpu", weights_only=True)["epoch"] == 3


def test_a_storage_path_one_node_cannot_see_fails_with_one_line_before_the_trials(three_nodes, tmp_path):
    if not three_nodes["isolated"]:
        pytest.skip("needs `unshare --mount` and `mount` (root or CAP_SYS_ADMIN) to hide a folder from one node")
    done, uri = _sweep(three_nodes, tmp_path, "trainer.epochs=1", f"cluster.storage_path={three_nodes['hidden']}")
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    err = [line for line in done.stderr.splitlines() if line.startswith("seglab: error:")]
    assert len(err) == 1, done.stderr[-3000:]
    assert f"storage path {three_nodes['hidden']} is not shared" in err[0] and "(" in err[0]
    client = tracking.client(uri)
    exp = client.get_experiment_by_name("multinode")
    assert exp is None or not client.search_runs([exp.experiment_id])  # no parent, no trial started
