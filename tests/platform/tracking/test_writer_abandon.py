"""``RunWriter.abandon()``: what the death of a worker's process does to its writer, for an attempt
that crashes inside a process that lives on (the in-process executor retries a trial in the same
process). Delivery stops at once, the run's status is left alone, the process's MLflow HTTP settings
are given back, and the undelivered records stay in the journal, which the next writer of the trial
folder and rank delivers first -- as after a killed worker (test_writer.py).
"""
from __future__ import annotations

import os
import threading

from seglab.platform import tracking
from seglab.platform.tracking import journal
from seglab.platform.tracking.writer import SHORT_HTTP_ENV, RunWriter
from tests.platform.tracking.mlflow_server import free_port


def _delivery_threads():
    return [t for t in threading.enumerate() if t.name.startswith("seglab-mlflow-")]


def test_an_abandoned_writer_stops_and_leaves_its_records_to_the_next_one(store, tmp_path, monkeypatch):
    uri, client, exp = store
    run_id = client.create_run(exp).info.run_id
    for key in SHORT_HTTP_ENV:
        monkeypatch.delenv(key, raising=False)
    trial = tmp_path / "trial"
    before = _delivery_threads()
    down = f"http://127.0.0.1:{free_port()}"  # nobody listens: nothing is delivered
    log = RunWriter(down, run_id, str(trial), retry_max_s=0.2)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    for epoch in (1, 2):
        log.log_metrics({"val_miou": epoch / 10}, step=epoch)
    log.set_tag("attempt", "1")

    log.abandon()
    assert _delivery_threads() == before and not log.active
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # given back, as by finish()
    log.log_metrics({"val_miou": 0.9}, step=9)  # a late call (e.g. a sampler) is a no-op
    log.abandon()  # idempotent
    spool = trial / tracking.SPOOL_DIR
    left = journal.pending_records(str(spool / tracking.JOURNAL_NAME))
    assert [r["kind"] for r in left] == ["status", "metrics", "metrics", "tag"]  # RUNNING first; no end record
    assert not (trial / tracking.UNSENT_NAME).exists()

    # the next attempt's writer (the server reachable now) delivers them first, then its own
    again = RunWriter(uri, run_id, str(trial))
    again.log_metrics({"val_miou": 0.3}, step=3)
    again.finish()
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_miou")) == [
        (1, 0.1), (2, 0.2), (3, 0.3)]
    run = client.get_run(run_id)
    assert run.data.tags["attempt"] == "1" and run.info.status == "FINISHED"
    assert not spool.exists()


def test_abandoning_an_inactive_writer_does_nothing(tmp_path):
    log = RunWriter(None, None, str(tmp_path))
    log.abandon()
    assert not list(tmp_path.iterdir())
