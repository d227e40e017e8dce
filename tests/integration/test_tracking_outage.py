"""R3: the tracking server goes down in mid-run and comes back; training does not notice.

A real ``mlflow server`` (SQLite store, artifacts served by it) and a one-trial baseline sweep run
as ``python experiments/baselines.py`` (its own local Ray cluster, its output captured). Once the
first epoch's metric is in the server, the server is stopped until the worker has printed two more
epochs, then started again on the same port. The run must end FINISHED with every epoch's metrics and pictures, the
metrics logged during the outage must carry the time they were logged at, and the worker must
say once that it buffers (and once that it delivered the backlog).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.platform.tracking.mlflow_server import MlflowServer

from .conftest import REPO, TINY_DATA

BIN = Path(sys.executable).parent
EPOCHS = 10
ARGS = [a for a in TINY_DATA if not a.startswith("dataset.train.num_samples")] + [
    "sweep.models=[hrnet_w18_small_v1]", "trainer.num_workers=1", f"trainer.epochs={EPOCHS}",
    "dataset.train.num_samples=96", "trainer.viz_samples=2", "sweep.experiment=r3"]


def _env(tmp_path: Path, uri: str) -> dict:
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}:{env.get('PATH', '')}", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
        "NO_ALBUMENTATIONS_UPDATE": "1", "MLFLOW_TRACKING_URI": uri, "SEGLAB_HOME": str(tmp_path),
        "SEGLAB_ARTIFACT_ROOT": "mlflow-artifacts:",  # artifacts go through the server too
    })
    env.pop("RAY_ADDRESS", None)  # the sweep starts its own local Ray cluster
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        env.pop(key, None)  # the sweep and its workers run with MLflow's defaults (the test's client does not)
    return env


def _trial_run(client):
    exp = client.get_experiment_by_name("r3")
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], "tags.`seglab.kind` = 'trial'", max_results=1)
    return runs[0] if runs else None


def _wait_for_first_epoch(client, sweep: subprocess.Popen, log: Path, timeout: float = 240.0):
    """(run id, epoch time in s) once the trial's epoch-1 metrics are in the server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert sweep.poll() is None, log.read_text()[-4000:]
        run = _trial_run(client)
        if run is not None:
            history = client.get_metric_history(run.info.run_id, "epoch_time_s")
            if history:
                return run.info.run_id, history[0].value
        time.sleep(0.3)
    raise TimeoutError(log.read_text()[-4000:])


@pytest.fixture
def server(tmp_path, monkeypatch):
    # the test's own client fails fast while the server is down (no minutes of MLflow retries)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    srv = MlflowServer(tmp_path / "mlflow")
    srv.root.mkdir()
    srv.start()
    yield srv
    srv.stop()


def _last_epoch(log: Path) -> int:
    """The last epoch the worker printed (``[label] epoch k/E ...``) in the sweep's output."""
    found = re.findall(rf"\] epoch (\d+)/{EPOCHS} ", log.read_text(errors="replace"))
    return int(found[-1]) if found else 0


def _wait_for_epochs(epoch: int, sweep: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while _last_epoch(log) < epoch:
        assert sweep.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(0.2)


def test_tracking_server_outage_buffers_and_delivers_everything(server, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri)
    log = tmp_path / "sweep.log"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        sweep = subprocess.Popen([sys.executable, "experiments/baselines.py", *ARGS], cwd=REPO,
                                 env=_env(tmp_path, server.uri), stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        run_id, epoch_s = _wait_for_first_epoch(client, sweep, log)
        server.stop()
        down_at = time.time()
        _wait_for_epochs(_last_epoch(log) + 2, sweep, log)  # two whole epochs go by while it is down
        starting_at = time.time()
        server.start()  # its start-up time adds to the outage
        up_at = time.time()
        assert sweep.wait(timeout=300) == 0, log.read_text()[-4000:]
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
    took = time.monotonic() - t0

    output = log.read_text()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", output[-4000:]
    epochs = list(range(1, EPOCHS + 1))
    history = client.get_metric_history(run_id, "val_miou")
    assert sorted(m.step for m in history) == epochs
    for key in ("train_loss", "epoch_time_s", "best_val_miou", "lr"):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == epochs, key
    # training went on while the server was down: epochs were logged (with their own time) then
    during = sorted(m.step for m in history if down_at < m.timestamp / 1000 < up_at - 0.5)
    assert len(during) >= 2 and up_at - down_at > epoch_s, (during, epoch_s, up_at - down_at)
    after = sorted(m.step for m in history if m.timestamp / 1000 > up_at)
    viz = {a.path for a in client.list_artifacts(run_id, "viz")}
    assert viz == {f"viz/epoch_{e:03d}" for e in epochs}
    assert {a.path for a in client.list_artifacts(run_id, "checkpoints")} == {"checkpoints/best.pt"}
    # one line when buffering started, one when the backlog was delivered; nothing left behind
    assert output.count("unreachable since") == 1, output[-6000:]
    assert output.count("reachable again: delivered") == 1, output[-6000:]
    assert "mlflow_unsent" not in output
    assert not list(tmp_path.glob("runs/**/mlflow_spool")) and not list(tmp_path.glob("runs/**/mlflow_unsent.jsonl"))
    said = [line.split("seglab: ")[-1] for line in output.splitlines() if "reachable" in line]
    print(f"\nR3: outage {up_at - down_at:.1f} s (epoch {epoch_s:.1f} s, server start {up_at - starting_at:.1f} s), "
          f"epochs logged while down {during}, after {after}, sweep {took:.0f} s; worker said {said}")
