"""The journal: batching of records, which errors are worth a retry, reading journal files, and
delivering an unsent file (``replay`` and ``python -m seglab.platform.tracking.journal``) into a
real SQLite store."""
from __future__ import annotations

import json

from seglab.platform import tracking
from seglab.platform.tracking import journal


def _metrics(run, n, ident=None):
    return {"id": ident or str(n), "run_id": run, "kind": "metrics", "metrics": [["a", 1.0, 0, i] for i in range(n)]}


def test_batches_and_error_kinds():
    from mlflow.exceptions import MlflowException, RestException

    tag = {"id": "t", "run_id": "r", "kind": "tag", "key": "k", "value": "v"}
    assert len(journal.next_batch([_metrics("r", 2), _metrics("r", 3), tag, _metrics("r", 1)])) == 2
    assert len(journal.next_batch([_metrics("r", 2), _metrics("s", 3)])) == 1
    assert len(journal.next_batch([_metrics("r", 600), _metrics("r", 600)])) == 1
    assert len(journal.next_batch([_metrics("r", 600), _metrics("r", 400)])) == 2  # exactly MAX_BATCH values
    assert journal.next_batch([tag, _metrics("r", 1)]) == [tag]
    assert journal.metric_count([_metrics("r", 2), tag, _metrics("s", 3)]) == 5
    down = MlflowException("API request to http://x failed with exception HTTPConnectionPool: Max retries exceeded")
    assert journal.is_transient(down) and journal.is_transient(ConnectionRefusedError())
    refused = RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"})
    assert not journal.is_transient(refused) and not journal.is_transient(FileNotFoundError("x"))


def test_journal_reading_skips_a_torn_line_and_delivered_records(tmp_path):
    path = tmp_path / "j.jsonl"
    lines = [{"id": "a", "run_id": "r", "kind": "tag", "key": "k", "value": "1"},
             {"id": "b", "run_id": "r", "kind": "tag", "key": "k", "value": "2"}, {"done": "a"},
             {"id": "b", "run_id": "r", "kind": "tag", "key": "k", "value": "2"}]  # written twice: once pending
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"id": "c", "run_')
    assert [r["id"] for r in journal.pending_records(str(path))] == ["b"]


def test_trial_file_names_of_each_rank():
    assert tracking.for_rank(tracking.UNSENT_NAME, 0) == "mlflow_unsent.jsonl"
    assert tracking.for_rank(tracking.UNSENT_NAME, 3) == "mlflow_unsent_rank3.jsonl"
    assert tracking.for_rank(tracking.SPOOL_DIR, 1) == "mlflow_spool_rank1"
    assert tracking.for_rank(tracking.REJECTED_NAME, 12) == "mlflow_rejected_rank12.jsonl"


def test_the_command_delivers_an_unsent_file_once_in_order(store, tmp_path, capsys):
    uri, client, exp = store
    run_id = client.create_run(exp).info.run_id
    spooled = tmp_path / "spool" / "f1"
    spooled.mkdir(parents=True)
    (spooled / "best.pt").write_bytes(b"weights")
    records = [
        {"id": "m1", "run_id": run_id, "kind": "metrics", "metrics": [["val_miou", 0.1, 1_700_000_000_000, 1]]},
        {"id": "m2", "run_id": run_id, "kind": "metrics", "metrics": [["val_miou", 0.3, 1_700_000_001_000, 2],
                                                                       ["lr", 0.01, 1_700_000_001_000, 2]]},
        {"id": "t1", "run_id": run_id, "kind": "tag", "key": "seglab.note", "value": "late"},
        {"id": "a1", "run_id": run_id, "kind": "artifact", "local": str(spooled / "best.pt"),
         "spool": str(spooled), "artifact_path": "checkpoints"},
        {"id": "e1", "run_id": run_id, "kind": "end", "status": "FINISHED", "ts": 1_700_000_002_000},
    ]
    unsent = tmp_path / tracking.UNSENT_NAME
    journal.write_lines(unsent, records + [{"done": "m1"}])  # m1 was delivered before the outage
    client.log_metric(run_id, "val_miou", 0.1, timestamp=1_700_000_000_000, step=1)

    assert journal.main([str(unsent), "--uri", uri]) == 0
    assert capsys.readouterr().out.strip() == f"delivered 4 record(s) from {unsent}"
    assert journal.replay(str(unsent), uri) == 0  # every record marked delivered in the file
    assert journal.pending_records(str(unsent)) == []
    history = sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, "val_miou"))
    assert history == [(1, 0.1, 1_700_000_000_000), (2, 0.3, 1_700_000_001_000)]
    run = client.get_run(run_id)
    assert run.data.metrics["lr"] == 0.01 and run.data.tags["seglab.note"] == "late"
    assert run.info.status == "FINISHED" and run.info.end_time == 1_700_000_002_000
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/best.pt"]
    assert not spooled.exists()  # the spooled copy goes once delivered
