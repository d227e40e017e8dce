"""TrialLogger against a real ``mlflow server`` (SQLite backend) that is stopped and started again.

Training must not wait for the tracking server: while it is down every call returns at once, the
records are buffered and delivered later with their original steps and timestamps; if it never
comes back they are saved beside the trial and :func:`replay` delivers them. A worker killed with
SIGKILL in mid-outage loses nothing either: the next logger of the trial delivers its journal.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from seglab.platform import trial_log
from seglab.platform.trial_log import TrialLogger, replay

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
FAST = 0.5  # s: a logging call must return well within this, server up or down


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real ``mlflow server`` process on a fixed loopback port (SQLite store, served artifacts)."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        with open(self.root / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.root / 'm.db'}",
                 "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "1"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"mlflow server on {self.uri} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the port refuses connections before we go on
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def up(server):
    if server.proc is None:
        server.start()
    return server


def _new_run(uri: str, name: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name) or None
    exp_id = exp.experiment_id if exp else client.create_experiment(name)
    return client.create_run(exp_id).info.run_id


def _timed(call, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    call(*args, **kwargs)
    return time.perf_counter() - t0


def _picture_folder(root: Path, epoch: int) -> Path:
    folder = root / f"pics{epoch}"
    folder.mkdir()
    (folder / f"val_{epoch:05d}.png").write_bytes(b"\x89PNG fake " + bytes([epoch]))
    return folder


def _wait_delivered(log: TrialLogger, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while log.backlog() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.backlog() == 0


def _steps(client, run_id: str, key: str):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_outage_is_buffered_and_delivered_after_restart(up, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    run_id = _new_run(up.uri, "outage")
    trial = tmp_path / "trial"
    log = TrialLogger(True, up.uri, run_id, str(trial), retry_max_s=0.5, system_metrics_interval_s=0.3)
    epochs, durations = list(range(1, 9)), []
    times = {}
    for epoch in epochs:
        if epoch == 3:  # the server goes away for several "epochs"
            up.stop()
            down_at = time.time()
        if epoch == 7:
            up.start()
            up_at = time.time()
        times[epoch] = time.time()
        durations.append(_timed(log.log_metrics, {"val_miou": epoch / 10, "train_loss": 1 / epoch}, step=epoch))
        folder = _picture_folder(tmp_path, epoch)
        durations.append(_timed(log.log_artifacts, str(folder), f"viz/epoch_{epoch:03d}"))
        for p in folder.iterdir():  # the caller's temporary folder is gone right after the call
            p.unlink()
        folder.rmdir()
        durations.append(_timed(log.set_tag, "last_epoch", epoch))
        time.sleep(0.6 if 3 <= epoch < 7 else 0.2)
    best = tmp_path / "best.pt"
    best.write_bytes(b"weights")
    durations.append(_timed(log.log_artifact, str(best), "checkpoints"))
    best.unlink()
    log.finish()
    err = capsys.readouterr().err

    assert max(durations) < FAST, durations
    assert err.count("unreachable since") == 1, err
    assert err.count("reachable again: delivered") == 1, err
    assert log.stats["outages"] == 1 and log.stats["delivered_after_outage"] >= 4 * 3
    client = MlflowClient(up.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["last_epoch"] == "8"
    assert _steps(client, run_id, "val_miou") == [(e, e / 10) for e in epochs]
    assert [s for s, _ in _steps(client, run_id, "train_loss")] == epochs
    # buffered metrics keep the time they were logged at, not the time they were delivered
    history = {m.step: m.timestamp for m in client.get_metric_history(run_id, "val_miou")}
    for epoch in range(3, 7):
        assert abs(history[epoch] / 1000 - times[epoch]) < 1.0
        assert down_at - 0.5 < history[epoch] / 1000 < up_at
    # system metrics went through the same buffer: contiguous steps from 0, some from the outage
    cpu = client.get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert sorted(m.step for m in cpu) == list(range(len(cpu))) and len(cpu) >= 5
    assert any(down_at < m.timestamp / 1000 < up_at for m in cpu)
    artifacts = {a.path for a in client.list_artifacts(run_id, "viz")}
    assert artifacts == {f"viz/epoch_{e:03d}" for e in epochs}
    for epoch in epochs:
        files = client.list_artifacts(run_id, f"viz/epoch_{epoch:03d}")
        assert [f.path for f in files] == [f"viz/epoch_{epoch:03d}/val_{epoch:05d}.png"]
    local = client.download_artifacts(run_id, "checkpoints/best.pt", str(tmp_path / "dl"))
    assert Path(local).read_bytes() == b"weights"
    assert not (trial / trial_log.SPOOL_DIR).exists() and not (trial / trial_log.UNSENT_NAME).exists()


def test_server_that_never_returns_leaves_an_unsent_file_that_replays(up, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    run_id = _new_run(up.uri, "never")
    trial = tmp_path / "trial"
    log = TrialLogger(True, up.uri, run_id, str(trial), flush_timeout_s=2.0, retry_max_s=0.5,
                      system_metrics_interval_s=0)
    log.log_metrics({"val_miou": 0.1}, step=1)
    _wait_delivered(log)
    up.stop()
    durations = []
    for epoch in (2, 3, 4):
        durations.append(_timed(log.log_metrics, {"val_miou": epoch / 10, "lr": 0.01}, step=epoch))
        folder = _picture_folder(tmp_path, epoch)
        durations.append(_timed(log.log_artifacts, str(folder), f"viz/epoch_{epoch:03d}"))
    durations.append(_timed(log.set_tag, "seglab.note", "down"))
    t0 = time.monotonic()
    log.finish()
    waited = time.monotonic() - t0
    err = capsys.readouterr().err
    assert max(durations) < FAST, durations
    assert 2.0 <= waited < 10.0
    assert err.count("unreachable since") == 1, err
    unsent = trial / trial_log.UNSENT_NAME
    assert f"saved to {unsent}" in err and "python -m seglab.platform.trial_log" in err
    records = trial_log.pending_records(str(unsent))
    kinds = [r["kind"] for r in records]
    assert kinds.count("metrics") == 3 and kinds.count("artifacts") == 3 and kinds[-2:] == ["tag", "end"]
    assert sorted(m[3] for r in records if r["kind"] == "metrics" for m in r["metrics"]) == [2, 2, 3, 3, 4, 4]

    up.start()  # a fresh server process on the same store
    proc = subprocess.run([sys.executable, "-m", "seglab.platform.trial_log", str(unsent), "--uri", up.uri],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"delivered {len(records)} record(s)" in proc.stdout
    assert replay(str(unsent), up.uri) == 0  # everything is marked delivered: nothing twice
    client = MlflowClient(up.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["seglab.note"] == "down"
    assert [s for s, _ in _steps(client, run_id, "val_miou")] == [1, 2, 3, 4]
    assert {a.path for a in client.list_artifacts(run_id, "viz")} == {f"viz/epoch_{e:03d}" for e in (2, 3, 4)}
    assert not list((trial / trial_log.SPOOL_DIR / "files").iterdir())  # spooled copies removed once delivered


def test_worker_killed_during_an_outage_loses_nothing(up, tmp_path):
    """A worker process is SIGKILLed while the server is down; the resumed worker's logger (same
    trial folder) delivers what the dead one had buffered."""
    from mlflow.tracking import MlflowClient

    run_id = _new_run(up.uri, "crash")
    trial = tmp_path / "trial"
    up.stop()
    script = textwrap.dedent(f"""
        import sys, time
        from seglab.platform.trial_log import TrialLogger
        log = TrialLogger(True, {up.uri!r}, {run_id!r}, {str(trial)!r}, system_metrics_interval_s=0)
        for epoch in (1, 2, 3):
            log.log_metrics({{"val_miou": epoch / 10}}, step=epoch)
        log.set_tag("before_crash", "yes")
        print("logged", flush=True)
        time.sleep(600)
    """)
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO)
    try:
        assert worker.stdout.readline().strip() == "logged", worker.stderr.read()[-3000:]
    finally:
        worker.kill()
        worker.wait()
    up.start()
    log = TrialLogger(True, up.uri, run_id, str(trial), system_metrics_interval_s=0)
    log.log_metrics({"val_miou": 0.4}, step=4)
    log.finish()
    client = MlflowClient(up.uri)
    run = client.get_run(run_id)
    assert [s for s, _ in _steps(client, run_id, "val_miou")] == [1, 2, 3, 4]
    assert run.data.tags["before_crash"] == "yes" and run.info.status == "FINISHED"


def test_batches_and_error_kinds():
    from mlflow.exceptions import MlflowException, RestException

    def metrics(run, n):
        return {"id": str(n), "run_id": run, "kind": "metrics", "metrics": [["a", 1.0, 0, i] for i in range(n)]}

    tag = {"id": "t", "run_id": "r", "kind": "tag", "key": "k", "value": "v"}
    assert len(trial_log._next_batch([metrics("r", 2), metrics("r", 3), tag, metrics("r", 1)])) == 2
    assert len(trial_log._next_batch([metrics("r", 2), metrics("s", 3)])) == 1
    assert len(trial_log._next_batch([metrics("r", 600), metrics("r", 600)])) == 1
    assert trial_log._next_batch([tag, metrics("r", 1)]) == [tag]
    down = MlflowException("API request to http://x failed with exception HTTPConnectionPool: Max retries exceeded")
    assert trial_log.is_transient(down) and trial_log.is_transient(ConnectionRefusedError())
    refused = RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"})
    assert not trial_log.is_transient(refused) and not trial_log.is_transient(FileNotFoundError("x"))


def test_inactive_logger_does_nothing(tmp_path):
    for log in (TrialLogger(False, "http://127.0.0.1:1", "r", str(tmp_path)), TrialLogger(True, None, "r"),
                TrialLogger(True, "http://127.0.0.1:1", None)):
        assert not log.active
        log.log_metrics({"a": 1.0}, step=1)
        log.set_tag("k", "v")
        log.finish()
    assert not list(tmp_path.iterdir())


def test_journal_reading_skips_a_torn_line_and_delivered_records(tmp_path):
    path = tmp_path / "j.jsonl"
    lines = [{"id": "a", "run_id": "r", "kind": "tag", "key": "k", "value": "1"},
             {"id": "b", "run_id": "r", "kind": "tag", "key": "k", "value": "2"}, {"done": "a"}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"id": "c", "run_')
    assert [r["id"] for r in trial_log.pending_records(str(path))] == ["b"]


def test_local_sqlite_store(tmp_path):
    """The default store of seglab (SQLite, no server): same calls, same results, nothing left behind."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("local", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(exp).info.run_id
    trial = tmp_path / "trial"
    before = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    log = TrialLogger(True, uri, run_id, str(trial), system_metrics_interval_s=0)
    assert os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") == before  # MLflow's HTTP settings: remote only
    for epoch in (1, 2):
        log.log_metrics({"val_miou": epoch / 10}, step=epoch)
        log.log_artifacts(str(_picture_folder(tmp_path, epoch)), f"viz/epoch_{epoch:03d}")
    log.set_tag("seglab.resumed_from_epoch", 1)
    log.finish()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["seglab.resumed_from_epoch"] == "1"
    assert [s for s, _ in _steps(client, run_id, "val_miou")] == [1, 2]
    assert {a.path for a in client.list_artifacts(run_id, "viz")} == {"viz/epoch_001", "viz/epoch_002"}
    assert not (trial / trial_log.SPOOL_DIR).exists()
