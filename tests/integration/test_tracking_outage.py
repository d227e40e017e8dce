"""R3: the tracking server goes down in mid-run and comes back; training does not notice.

A real ``mlflow server`` (SQLite store, artifacts served by it) and a one-trial baseline sweep run
as ``python experiments/baselines.py ... cluster=inprocess`` (the in-process executor: the same
Trainer, hooks and journaled ``RunWriter`` as a Ray worker, without Ray's start-up; its output
captured). Once the first epoch's metric is in the server, the server is stopped until the trainer
has printed two more epochs, then started again on the same port. The run must end FINISHED with
every epoch's metrics and pictures, the metrics logged during the outage must carry the step and
the time they were logged at, and the writer must say once that it buffers (and once that it
delivered the backlog); nothing is lost (every per-epoch metric and system sample) and nothing is
left unsent, spooled or refused.

A worker killed during an outage (its journal delivered by the next writer of the trial) is
tests/platform/tracking/test_writer.py's case.
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
    "sweep.models=[hrnet_w18_small_v1]", f"trainer.epochs={EPOCHS}", "dataset.train.num_samples=48",
    "trainer.viz_samples=2", "sweep.experiment=r3", "cluster=inprocess"]


def _env(tmp_path: Path, uri: str) -> dict:
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}:{env.get('PATH', '')}", "NO_ALBUMENTATIONS_UPDATE": "1", "MLFLOW_TRACKING_URI": uri,
        "SEGLAB_HOME": str(tmp_path), "SEGLAB_ARTIFACT_ROOT": "mlflow-artifacts:",  # artifacts go through the server too
    })
    for key in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        env.pop(key, None)  # the sweep runs with MLflow's defaults (the test's client does not)
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


def _per_epoch_metrics(client, run) -> dict:
    """{key: history} of the metrics logged with every epoch (those logged with epoch 1's record)."""
    first = next(m for m in client.get_metric_history(run.info.run_id, "val_miou") if m.step == 1)
    out = {}
    for key in run.data.metrics:
        history = client.get_metric_history(run.info.run_id, key)
        if any(m.step == 1 and m.timestamp == first.timestamp for m in history):
            out[key] = history
    return out


def _system_samples(client, run) -> dict:
    """{step: time} of the system sampler's samples (every ``system/`` metric has each step once, at one time)."""
    keys = [k for k in run.data.metrics if k.startswith("system/")]
    assert keys, sorted(run.data.metrics)
    per_key = [{m.step: m.timestamp for m in client.get_metric_history(run.info.run_id, k)} for k in keys]
    assert all(h == per_key[0] for h in per_key), keys
    return dict(sorted(per_key[0].items()))


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
    assert "trials one after another in this process" in output and "(no Ray)" in output, output[:3000]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", output[-4000:]
    epochs = list(range(1, EPOCHS + 1))
    history = client.get_metric_history(run_id, "val_miou")
    assert sorted(m.step for m in history) == epochs
    per_epoch = _per_epoch_metrics(client, run)
    assert {"train_loss", "epoch_time_s", "best_val_miou", "lr", "val_miou"} <= set(per_epoch), sorted(per_epoch)
    logged_at = {m.step: m.timestamp for m in history}  # one record per epoch: one time for all its metrics
    assert [logged_at[e] for e in epochs] == sorted(logged_at.values()) and len(set(logged_at.values())) == EPOCHS
    for key, values in per_epoch.items():
        assert {m.step: m.timestamp for m in values} == logged_at, key  # every epoch, its own step and time
    assert client.get_metric_history(run_id, "test_miou")[0].step == EPOCHS  # the report split's scores at the end
    assert run.info.end_time >= max(logged_at.values())
    # training went on while the server was down: epochs were logged (with their own time) then
    during = sorted(m.step for m in history if down_at < m.timestamp / 1000 < up_at - 0.5)
    assert len(during) >= 2 and up_at - down_at > epoch_s, (during, epoch_s, up_at - down_at)
    after = sorted(m.step for m in history if m.timestamp / 1000 > up_at)
    # the system sampler's records too: every sample, numbered on without a gap, some taken while it was down
    samples = _system_samples(client, run)
    assert samples and list(samples) == list(range(len(samples))), samples
    sampled_during = [step for step, ts in samples.items() if down_at < ts / 1000 < up_at]
    assert sampled_during, (samples, down_at, up_at)
    viz = {a.path for a in client.list_artifacts(run_id, "viz")}
    assert viz == {f"viz/epoch_{e:03d}" for e in epochs}
    assert {a.path for a in client.list_artifacts(run_id, "checkpoints")} == {"checkpoints/best.pt"}
    # one line when buffering started, one when the backlog was delivered; nothing left behind
    assert output.count("unreachable since") == 1, output[-6000:]
    assert output.count("reachable again: delivered") == 1, output[-6000:]
    assert "mlflow_unsent" not in output and f"MLflow at {server.uri} refused" not in output, output[-6000:]
    for name in ("mlflow_spool*", "mlflow_unsent*.jsonl", "mlflow_rejected*.jsonl"):
        assert not list(tmp_path.glob(f"runs/**/{name}")), name
    said = [line.split("seglab: ")[-1] for line in output.splitlines() if "reachable" in line]
    print(f"\nR3: outage {up_at - down_at:.1f} s (epoch {epoch_s:.1f} s, server start {up_at - starting_at:.1f} s), "
          f"epochs logged while down {during}, after {after}, system samples while down {sampled_during}, "
          f"sweep {took:.0f} s; the writer said {said}")
