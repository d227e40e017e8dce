"""The journal: the record format of seglab's MLflow writer, its files, and delivery of records.

A record is one JSON object with an ``id`` (hex), the ``run_id`` and a ``kind``:

- ``metrics``: ``"metrics": [[key, value, timestamp_ms, step], ...]`` (the time it was logged at);
- ``tag``: ``"key"``, ``"value"``;
- ``artifact`` / ``artifacts``: ``"local"`` (a spooled file or folder), ``"artifact_path"`` and
  ``"spool"`` (the spool folder removed once delivered);
- ``status``: ``"status"`` (e.g. RUNNING, set when an owning writer starts);
- ``end``: ``"status"`` and ``"ts"`` (the run ends with that status at that time).

A journal (``<trial>/mlflow_spool/journal.jsonl``) and an unsent file (``<trial>/mlflow_unsent.jsonl``)
hold such records, one per line, and one ``{"done": id}`` line per delivered record; a torn last
line (a crash in mid-write) is skipped. Records are delivered in order, consecutive metrics of one
run in one ``log_batch`` request (:func:`next_batch`, :func:`deliver`). Redelivery is harmless: a
metric is stored once per (key, value, step, timestamp), tags and artifacts overwrite, and the run
status is set, not toggled.

Deliver an unsent file (or the journal a crashed worker left) by hand::

    python -m seglab.platform.tracking.journal <trial>/mlflow_unsent.jsonl --uri http://host:5000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from seglab.platform.tracking.store import tracking_uri

#: how the unsent file of a writer is delivered later (the writer's last line quotes it)
REPLAY_COMMAND = "python -m seglab.platform.tracking.journal"
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch request
# Error codes of a request the server understood and refused: retrying cannot help.
PERMANENT_CODES = frozenset({
    "BAD_REQUEST", "INVALID_PARAMETER_VALUE", "INVALID_STATE", "MALFORMED_REQUEST", "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS", "NOT_FOUND", "ENDPOINT_NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED",
    "CUSTOMER_UNAUTHORIZED", "FEATURE_DISABLED", "INVALID_ARGUMENT",
})
ARTIFACT_KINDS = ("artifact", "artifacts")


def say(text: str) -> None:
    """One line on stderr, ``seglab: <text>``."""
    print(f"seglab: {text}", file=sys.stderr, flush=True)


def reason(error: BaseException) -> str:
    """A short cause for an outage line (MLflow's messages quote the whole urllib3 chain)."""
    text = str(error)
    for needle, short in (("refused", "connection refused"), ("timed out", "timed out"),
                          ("Name or service not known", "unknown host"), ("Temporary failure in name", "DNS failure")):
        if needle in text:
            return short
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first[:160]


def now_ms() -> int:
    return int(time.time() * 1000)


def is_transient(error: BaseException) -> bool:
    """True for errors of an unreachable or failing server (worth retrying), False for a request the
    server refused (bad value, unknown run) or a local problem (missing file)."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        return error.error_code not in PERMANENT_CODES
    try:
        import requests

        if isinstance(error, requests.HTTPError) and error.response is not None:
            status = error.response.status_code
            return status >= 500 or status in (408, 429)
        if isinstance(error, requests.RequestException):
            return True
    except ImportError:  # pragma: no cover - requests comes with mlflow
        pass
    try:
        from sqlalchemy.exc import OperationalError  # a local SQLite store that is locked or unreachable

        if isinstance(error, OperationalError):
            return True
    except ImportError:  # pragma: no cover - sqlalchemy comes with mlflow
        pass
    return isinstance(error, (ConnectionError, TimeoutError))


# -- records -----------------------------------------------------------------------------------------


def metric_count(records: Iterable[Dict[str, Any]]) -> int:
    """How many metric values ``records`` hold."""
    return sum(len(r["metrics"]) for r in records if r["kind"] == "metrics")


def next_batch(records: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The records to deliver in one go from the head of ``records``: consecutive metrics records of
    one run (one ``log_batch`` request, at most :data:`MAX_BATCH` values), else the head alone."""
    batch: List[Dict[str, Any]] = []
    count = 0
    for rec in records:
        if not batch:
            batch.append(rec)
            count = len(rec["metrics"]) if rec["kind"] == "metrics" else 0
            if rec["kind"] != "metrics":
                break
            continue
        if rec["kind"] != "metrics" or rec["run_id"] != batch[0]["run_id"] or count + len(rec["metrics"]) > MAX_BATCH:
            break
        batch.append(rec)
        count += len(rec["metrics"])
    return batch


def deliver(client, batch: List[Dict[str, Any]]) -> None:
    """Send one batch (see :func:`next_batch`) with an ``MlflowClient``; raises what the client raises."""
    from mlflow.entities import Metric

    head = batch[0]
    run_id, kind = head["run_id"], head["kind"]
    if kind == "metrics":
        metrics = [Metric(k, v, ts, step) for rec in batch for k, v, ts, step in rec["metrics"]]
        for i in range(0, len(metrics), MAX_BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + MAX_BATCH], synchronous=True)
    elif kind == "tag":
        client.set_tag(run_id, head["key"], head["value"], synchronous=True)
    elif kind == "artifact":
        client.log_artifact(run_id, head["local"], head["artifact_path"])
    elif kind == "artifacts":
        client.log_artifacts(run_id, head["local"], head["artifact_path"])
    elif kind == "status":
        client.update_run(run_id, status=head["status"])
    elif kind == "end":
        client.set_terminated(run_id, status=head["status"], end_time=head["ts"])
    else:
        raise ValueError(f"unknown MLflow record kind {kind!r}")


def drop_spooled(rec: Dict[str, Any]) -> None:
    """Remove the spooled copy of a delivered artifact record."""
    if rec["kind"] in ARTIFACT_KINDS and rec.get("spool"):
        shutil.rmtree(rec["spool"], ignore_errors=True)


# -- files -------------------------------------------------------------------------------------------


def read_journal(path: str) -> Tuple[List[Dict[str, Any]], set]:
    """(records in order, ids of delivered ones) of a journal or unsent file; a torn last line
    (a crash in mid-write) is skipped."""
    records: List[Dict[str, Any]] = []
    done: set = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "done" in obj:
                done.add(obj["done"])
            elif "id" in obj and "kind" in obj:
                records.append(obj)
    return records, done


def pending_records(path: str) -> List[Dict[str, Any]]:
    """The records of a journal or unsent file not yet delivered, in order (each once)."""
    records, done = read_journal(path)
    seen, out = set(done), []
    for rec in records:
        if rec["id"] not in seen:
            seen.add(rec["id"])
            out.append(rec)
    return out


def write_lines(path: Path, objs: Iterable[Dict[str, Any]], mode: str = "w") -> None:
    """Write ``objs`` as JSON lines to ``path`` and sync them to disk."""
    with open(path, mode, encoding="utf-8") as f:
        for obj in objs:
            f.write(json.dumps(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())


def replay(path: str, uri: Optional[str] = None) -> int:
    """Deliver the undelivered records of an unsent file (or of a journal a crashed worker left) to
    the MLflow store at ``uri`` (default: seglab's tracking URI, ``$MLFLOW_TRACKING_URI``), in order,
    marking each one delivered in the file as it goes: calling it again after an error continues
    where it stopped. Returns how many records it delivered; raises the first delivery error."""
    from mlflow.tracking import MlflowClient

    todo = deque(pending_records(path))
    client = MlflowClient(tracking_uri=uri or tracking_uri())
    delivered = 0
    with open(path, "a", encoding="utf-8") as f:
        while todo:
            batch = next_batch(todo)
            deliver(client, batch)
            for rec in batch:
                todo.popleft()
                f.write(json.dumps({"done": rec["id"]}) + "\n")
                drop_spooled(rec)
            f.flush()
            delivered += len(batch)
    return delivered


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=REPLAY_COMMAND,
                                     description="Deliver the MLflow records a trial could not send.")
    parser.add_argument("path", help="mlflow_unsent.jsonl, mlflow_unsent_rank<r>.jsonl (or mlflow_spool/journal.jsonl "
                                     "of a crashed trial)")
    parser.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI, else the local "
                                                                "store sqlite:///$SEGLAB_HOME/mlflow.db)")
    args = parser.parse_args(argv)
    n = replay(args.path, args.uri)
    print(f"delivered {n} record(s) from {args.path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
