"""RunWriter against a real ``mlflow server`` (SQLite backend) that is stopped and started again,
and against a local SQLite store.

Training must not wait for the tracking server: while it is down every call returns at once, the
records are buffered and delivered later with their original steps and timestamps; if it never
comes back they are saved beside the trial and ``journal.replay`` delivers them. A worker killed
with SIGKILL in mid-outage loses nothing either: the next writer of the trial (and rank) delivers
its journal. Only the writer that owns the run touches its status; other ranks' writers never do.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from seglab.platform import tracking
from seglab.platform.monitoring.system import STATE_NAME, SystemSampler
from seglab.platform.tracking import journal
from seglab.platform.tracking.writer import RunWriter
from tests.platform.tracking.mlflow_server import free_port

REPO = Path(__file__).resolve().parents[3]
# one pytest worker: the module's mlflow server (conftest.py) starts once, not once per worker
pytestmark = pytest.mark.xdist_group("tracking_writer")
FAST = 0.5  # s: a logging call must return well within this, server up or down
REPLAY = "python -m seglab.platform.tracking.journal"


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


def _wait_delivered(log: RunWriter, timeout: float = 30.0) -> None:
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
    log = RunWriter(up.uri, run_id, str(trial), retry_max_s=0.5)
    system = SystemSampler(log, 0.3, state_file=str(trial / STATE_NAME)).start()
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
    system.stop()
    log.finish()
    err = capsys.readouterr().err

    assert max(durations) < FAST, durations
    assert err.count("unreachable since") == 1, err
    assert err.count("reachable again: delivered") == 1, err
    assert "rank " not in err  # rank 0's lines carry no prefix
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
    assert sorted(p.name for p in trial.iterdir()) == []  # no spool, no unsent file, no sampler state left


def test_server_that_never_returns_leaves_an_unsent_file_that_replays(up, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    run_id = _new_run(up.uri, "never")
    trial = tmp_path / "trial"
    log = RunWriter(up.uri, run_id, str(trial), flush_timeout_s=2.0, retry_max_s=0.5)
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
    unsent = trial / tracking.UNSENT_NAME
    assert f"saved to {unsent}; deliver them later with: {REPLAY} {unsent} --uri {up.uri}" in err
    records = journal.pending_records(str(unsent))
    kinds = [r["kind"] for r in records]
    assert kinds.count("metrics") == 3 and kinds.count("artifacts") == 3 and kinds[-2:] == ["tag", "end"]
    assert sorted(m[3] for r in records if r["kind"] == "metrics" for m in r["metrics"]) == [2, 2, 3, 3, 4, 4]
    assert log.stats["unsent"] == len(records)

    up.start()  # a fresh server process on the same store
    proc = subprocess.run([sys.executable, "-m", "seglab.platform.tracking.journal", str(unsent), "--uri", up.uri],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"delivered {len(records)} record(s)" in proc.stdout
    assert journal.replay(str(unsent), up.uri) == 0  # everything is marked delivered: nothing twice
    client = MlflowClient(up.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["seglab.note"] == "down"
    assert [s for s, _ in _steps(client, run_id, "val_miou")] == [1, 2, 3, 4]
    assert {a.path for a in client.list_artifacts(run_id, "viz")} == {f"viz/epoch_{e:03d}" for e in (2, 3, 4)}
    assert not list((trial / tracking.SPOOL_DIR / "files").iterdir())  # spooled copies removed once delivered


@pytest.mark.parametrize("rank, owns_run", [(0, True), (1, False)])
def test_worker_killed_during_an_outage_loses_nothing(up, tmp_path, rank, owns_run):
    """A worker process is SIGKILLed while the server is down; the resumed worker's writer (same
    trial folder, same rank) delivers what the dead one had buffered. A rank's journal is its own."""
    from mlflow.tracking import MlflowClient

    run_id = _new_run(up.uri, "crash")
    trial = tmp_path / "trial"
    up.stop()
    script = textwrap.dedent(f"""
        import sys, time
        from seglab.platform.tracking.writer import RunWriter
        log = RunWriter({up.uri!r}, {run_id!r}, {str(trial)!r}, rank={rank}, owns_run={owns_run})
        for epoch in (1, 2, 3):
            log.log_metrics({{"val_miou": epoch / 10}}, step=epoch)
        log.set_tag("before_crash", "yes")
        print("logged", flush=True)
        time.sleep(600)
    """)
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert worker.stdout.readline().strip() == "logged", worker.stderr.read()[-3000:]
    finally:
        worker.kill()
        worker.wait()
    spool = trial / tracking.for_rank(tracking.SPOOL_DIR, rank)
    assert len(journal.pending_records(str(spool / tracking.JOURNAL_NAME))) == 4 + owns_run  # + RUNNING
    up.start()
    log = RunWriter(up.uri, run_id, str(trial), rank=rank, owns_run=owns_run)
    log.log_metrics({"val_miou": 0.4}, step=4)
    log.finish()
    client = MlflowClient(up.uri)
    run = client.get_run(run_id)
    assert [s for s, _ in _steps(client, run_id, "val_miou")] == [1, 2, 3, 4]
    assert run.data.tags["before_crash"] == "yes"
    assert run.info.status == ("FINISHED" if owns_run else "RUNNING")
    assert not spool.exists()


def test_ranks_writer_never_blocks_and_saves_what_an_unreachable_server_did_not_take(store, tmp_path, monkeypatch,
                                                                                    capsys):
    """Another rank's writer (not the run's owner) against a server that is not there: calls return
    at once, the rest goes to that rank's own unsent file, which the journal's replay delivers."""
    uri, client, exp = store
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    run_id = client.create_run(exp).info.run_id
    trial = tmp_path / "trial"
    down = f"http://127.0.0.1:{free_port()}"
    writer = RunWriter(down, run_id, str(trial), rank=1, owns_run=False, flush_timeout_s=1.0)
    t0 = time.monotonic()
    for step in range(50):
        writer.log_metrics({"gpu/rank1/util_pct": float(step)}, step)
    writer.set_tag("gpu/rank1/name", "NVIDIA H100")
    assert time.monotonic() - t0 < 0.5
    writer.finish()
    unsent = trial / "mlflow_unsent_rank1.jsonl"
    assert writer.stats["unsent"] == 51 and unsent.is_file()  # 50 metrics records + 1 tag, no status records
    assert not (trial / tracking.UNSENT_NAME).exists() and not (trial / "mlflow_spool_rank1" / "journal.jsonl").exists()
    err = capsys.readouterr().err
    assert f"seglab: rank 1: MLflow at {down} unreachable since" in err
    assert f"deliver them later with: {REPLAY} {unsent} --uri {down}" in err
    # the journal's replay delivers the saved records (e.g. once the server is back)
    assert journal.replay(str(unsent), uri) == 51
    assert [h.value for h in sorted(client.get_metric_history(run_id, "gpu/rank1/util_pct"), key=lambda h: h.step)] \
        == [float(s) for s in range(50)]
    assert client.get_run(run_id).data.tags["gpu/rank1/name"] == "NVIDIA H100"
    assert client.get_run(run_id).info.status == "RUNNING"  # a rank's writer never ends the run


def test_only_the_owner_sets_the_run_status(store, tmp_path):
    uri, client, exp = store
    run_id = client.create_run(exp).info.run_id
    client.set_terminated(run_id, "KILLED")  # e.g. a run a restarted trial continues
    other = RunWriter(uri, run_id, str(tmp_path / "trial"), rank=1, owns_run=False)
    other.log_metrics({"gpu/rank1/devices": 1.0}, step=0)
    other.finish("FAILED")
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.metrics["gpu/rank1/devices"] == 1.0

    owner = RunWriter(uri, run_id, str(tmp_path / "trial"))
    _wait_delivered(owner)
    assert client.get_run(run_id).info.status == "RUNNING"  # the owner marks the run running at its start
    owner.log_metrics({"val_miou": 0.25}, step=1)
    before = int(time.time() * 1000)
    owner.finish("FAILED")
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.info.end_time >= before
    assert run.data.metrics["val_miou"] == 0.25
    assert not (tmp_path / "trial" / tracking.SPOOL_DIR).exists()


def test_refused_records_are_kept_in_the_rejected_file(store, tmp_path, capsys):
    uri, client, _ = store
    trial = tmp_path / "trial"
    writer = RunWriter(uri, "0123456789abcdef0123456789abcdef", str(trial), rank=2, owns_run=False)
    writer.log_metrics({"gpu/rank2/util_pct": 50.0}, step=3)
    writer.set_tag("gpu/rank2/name", "Tesla T4")
    writer.finish()
    assert writer.stats["rejected"] == 2 and writer.stats["unsent"] == 0
    lines = [json.loads(x) for x in (trial / "mlflow_rejected_rank2.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["metrics", "tag"]
    assert lines[0]["metrics"][0][:2] == ["gpu/rank2/util_pct", 50.0] and lines[0]["metrics"][0][3] == 3
    assert all("0123456789abcdef0123456789abcdef" in r["error"] for r in lines)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err  # one line at the first refusal, one at the end
    assert err[0].startswith("seglab: rank 2: MLflow at") and "refused a metrics record" in err[0]
    assert err[1].endswith(f"refused 2 record(s); they are kept in {trial / 'mlflow_rejected_rank2.jsonl'}")
    assert not (trial / "mlflow_unsent_rank2.jsonl").exists()


def test_inactive_writer_does_nothing(tmp_path):
    (tmp_path / "x").mkdir()
    picture = _picture_folder(tmp_path / "x", 1)
    writers = [RunWriter(None, "r", str(tmp_path)), RunWriter("http://127.0.0.1:1", None, str(tmp_path)),
               RunWriter(None, None, str(tmp_path), rank=1, owns_run=False)]
    for log in writers:
        assert not log.active
        log.log_metrics({"a": 1.0}, step=1)
        log.set_tag("k", "v")
        log.log_artifacts(str(picture), "viz")
        log.log_artifact(str(picture / "val_00001.png"), "viz")
        assert log.backlog() == 0
        log.finish()
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


def test_local_sqlite_store(store, tmp_path):
    """The default store of seglab (SQLite, no server): same calls, same results, nothing left behind."""
    uri, client, exp = store
    run_id = client.create_run(exp).info.run_id
    trial = tmp_path / "trial"
    before = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    log = RunWriter(uri, run_id, str(trial))
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
    assert not (trial / tracking.SPOOL_DIR).exists()


def test_remote_writers_shorten_mlflow_http_retries_while_they_live(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # set by the user: kept
    uri = f"http://127.0.0.1:{free_port()}"
    first = RunWriter(uri, "r1", str(tmp_path), flush_timeout_s=0.0)
    second = RunWriter(uri, "r2", str(tmp_path), rank=1, owns_run=False, flush_timeout_s=0.0)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0" and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    first.finish()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"  # the second writer still lives
    second.finish()
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
