"""Rank 0's MLflow handle inside a Train worker: metrics, tags and artifacts of the trial's run.

Training must never wait for, or die of, the tracking server. Every call therefore only writes a
record to a journal in the trial folder and hands it to a background thread, which delivers the
records in order and retries with a capped backoff while the server is unreachable:

- ``<trial>/mlflow_spool/journal.jsonl``: one JSON line per record (metrics with their original
  step and timestamp, a tag, an artifact, a run status) and one ``{"done": id}`` line per
  delivered record. It is emptied whenever everything has been delivered. A worker that crashes
  leaves its undelivered records there, and the next ``TrialLogger`` of the same trial folder (the
  resumed worker) delivers them first; :func:`replay` delivers them by hand.
- ``<trial>/mlflow_spool/files/<id>/``: a hard link (or copy) of each artifact, taken before the
  call returns: callers delete their temporary folders right after logging them.
- ``finish()`` waits up to ``flush_timeout_s`` for the backlog and ends the run (FINISHED). If the
  server is still unreachable then, the undelivered records go to ``<trial>/mlflow_unsent.jsonl``
  (same format as the journal) and one line says how to deliver them later::

      python -m seglab.platform.trial_log <trial>/mlflow_unsent.jsonl --uri http://host:5000

Output (stderr): one line when delivery first fails ("MLflow at ... unreachable since ...: buffering
..., training continues"), one line when the backlog has been delivered after the outage ("...
reachable again: delivered K buffered records after an outage of T s"), nothing per retry; and at
``finish()`` during an outage, one line that it waits and, if in vain, one that says where the
records are.

For a remote (http/https) tracking URI, MLflow's own HTTP retries are switched off and its timeout
shortened for this process (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``, ``MLFLOW_HTTP_REQUEST_TIMEOUT=20``,
unless set already), so a refused connection is noticed at once; this thread does the retrying.
Redelivery is harmless: a metric is stored once per (key, value, step, timestamp), tags and
artifacts overwrite, and the run status is set, not toggled.

System metrics (``system/cpu_utilization_percentage``, ...) are sampled here with MLflow's own
monitors instead of MLflow's ``SystemMetricsMonitor``: that one talks to the server in its own
thread and, with the server down, either blocks for minutes in MLflow's retries or gives up for
the rest of the run after one warning. Here the samples are ordinary metrics records (buffered,
delivered late with their own timestamps, steps numbered on across a worker restart).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, List, Optional, Tuple

SPOOL_DIR = "mlflow_spool"
JOURNAL_NAME = "journal.jsonl"
UNSENT_NAME = "mlflow_unsent.jsonl"
REJECTED_NAME = "mlflow_rejected.jsonl"
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch request
# MLflow's own HTTP behaviour for a remote server, for this process (only where the user set nothing).
SHORT_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
# Error codes of a request the server understood and refused: retrying cannot help.
PERMANENT_CODES = frozenset({
    "BAD_REQUEST", "INVALID_PARAMETER_VALUE", "INVALID_STATE", "MALFORMED_REQUEST", "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS", "NOT_FOUND", "ENDPOINT_NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED",
    "CUSTOMER_UNAUTHORIZED", "FEATURE_DISABLED", "INVALID_ARGUMENT",
})
# the loggers of this process that use SHORT_HTTP_ENV, and what it set (restored when the last finishes)
_ENV_LOCK = threading.Lock()
_ENV_USERS = 0
_ENV_SET: Dict[str, str] = {}


def _say(text: str) -> None:
    print(f"seglab: {text}", file=sys.stderr, flush=True)


def _reason(error: BaseException) -> str:
    """A short cause for the outage line (MLflow's messages quote the whole urllib3 chain)."""
    text = str(error)
    for needle, short in (("refused", "connection refused"), ("timed out", "timed out"),
                          ("Name or service not known", "unknown host"), ("Temporary failure in name", "DNS failure")):
        if needle in text:
            return short
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first[:160]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_remote(uri: Optional[str]) -> bool:
    return bool(uri) and str(uri).lower().startswith(("http://", "https://"))


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


def _metric_count(records: Iterable[Dict[str, Any]]) -> int:
    return sum(len(r["metrics"]) for r in records if r["kind"] == "metrics")


def _next_batch(records: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
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


def _deliver(client, batch: List[Dict[str, Any]]) -> None:
    """Send one batch (see :func:`_next_batch`) to MLflow; raises what the client raises."""
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


def _drop_spooled(rec: Dict[str, Any]) -> None:
    """Remove the spooled copy of a delivered artifact record."""
    if rec["kind"] in ("artifact", "artifacts") and rec.get("spool"):
        shutil.rmtree(rec["spool"], ignore_errors=True)


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


def _write_lines(path: Path, objs: Iterable[Dict[str, Any]], mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as f:
        for obj in objs:
            f.write(json.dumps(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())


def replay(path: str, uri: Optional[str] = None) -> int:
    """Deliver the undelivered records of an unsent file (or of a journal a crashed worker left) to
    the MLflow server at ``uri`` (default ``$MLFLOW_TRACKING_URI``), in order, marking each one
    delivered in the file as it goes: calling it again after an error continues where it stopped.
    Returns how many records it delivered; raises the first delivery error."""
    from mlflow.tracking import MlflowClient

    from seglab.platform.tracking import tracking_uri

    todo = deque(pending_records(path))
    client = MlflowClient(tracking_uri=uri or tracking_uri())
    delivered = 0
    with open(path, "a", encoding="utf-8") as f:
        while todo:
            batch = _next_batch(todo)
            _deliver(client, batch)
            for rec in batch:
                todo.popleft()
                f.write(json.dumps({"done": rec["id"]}) + "\n")
                _drop_spooled(rec)
            f.flush()
            delivered += len(batch)
    return delivered


# -- the logger --------------------------------------------------------------------------------------


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _system_monitors() -> list:
    """MLflow's samplers of CPU, memory, disk, network and (if any) GPU use; [] if unavailable."""
    try:
        from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
        from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
        from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

        monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    except Exception:
        return []
    try:
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        monitors.append(GPUMonitor())
    except Exception:  # no NVIDIA GPU / no pynvml
        pass
    return monitors


class TrialLogger:
    """Rank 0's MLflow handle (a no-op on other ranks or when no run id is given).

    Args:
        enabled, uri, run_id: log to run ``run_id`` at ``uri`` when ``enabled`` and both are given.
        trial_dir: the trial's folder (journal, artifact spool, unsent file); a temporary folder if
            None (then nothing survives a crash of this process).
        flush_timeout_s: how long :meth:`finish` waits for an unreachable server before it writes
            the undelivered records to ``<trial_dir>/mlflow_unsent.jsonl``.
        retry_max_s: the cap of the backoff between delivery attempts while the server is down.
        system_metrics_interval_s: sampling interval of system metrics (0 = none).
    """

    def __init__(self, enabled: bool, uri: Optional[str], run_id: Optional[str], trial_dir: Optional[str] = None,
                 *, flush_timeout_s: float = 300.0, retry_max_s: float = 5.0,
                 system_metrics_interval_s: float = 5.0) -> None:
        self.active = bool(enabled and uri and run_id)
        if not self.active:
            return
        self.uri, self.run_id = str(uri), str(run_id)
        self.flush_timeout_s, self.retry_max_s = float(flush_timeout_s), float(retry_max_s)
        self.trial_dir = Path(trial_dir) if trial_dir else Path(tempfile.mkdtemp(prefix="seglab-mlflow-"))
        try:
            (self.trial_dir / SPOOL_DIR / "files").mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a read-only trial folder must not stop training either
            self.trial_dir = Path(tempfile.mkdtemp(prefix="seglab-mlflow-"))
            (self.trial_dir / SPOOL_DIR / "files").mkdir(parents=True)
            _say(f"cannot write MLflow's spool beside the trial ({error}); using {self.trial_dir}")
        self.spool = self.trial_dir / SPOOL_DIR
        self.journal_path = self.spool / JOURNAL_NAME
        self.unsent_path = self.trial_dir / UNSENT_NAME
        self._env_set = self._shorten_http_retries()

        self._cond = threading.Condition()
        self._pending: Deque[Dict[str, Any]] = deque()
        self._closing = False  # finish(): the thread exits once the backlog is empty
        self._abandon = threading.Event()  # finish() gave up waiting: the thread exits now
        self._outage_since: Optional[float] = None
        self._outage_delivered = 0
        self._rejected = 0
        self._journal_failed = False
        self.stats = {"outages": 0, "buffered_max": 0, "delivered_after_outage": 0, "unsent": 0}

        # undelivered records of an earlier worker of this trial (it crashed) go first
        left = pending_records(str(self.journal_path)) if self.journal_path.exists() else []
        tmp = self.journal_path.with_suffix(".tmp")
        _write_lines(tmp, left)
        os.replace(tmp, self.journal_path)
        self._journal = open(self.journal_path, "a", encoding="utf-8")
        self._pending.extend(left)
        if left:
            _say(f"{len(left)} MLflow record(s) left by an earlier worker of this trial are delivered first")
        self._put({"kind": "status", "status": "RUNNING"})

        self._thread = threading.Thread(target=self._deliver_loop, name="seglab-mlflow", daemon=True)
        self._thread.start()
        self._stop_sampling = threading.Event()
        self._sampler: Optional[threading.Thread] = None
        if system_metrics_interval_s > 0:
            self._sampler = threading.Thread(target=self._sample_system, args=(float(system_metrics_interval_s),),
                                             name="seglab-system-metrics", daemon=True)
            self._sampler.start()

    # -- the calls of the training loop (they never wait for the server) --

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        if self.active and metrics:
            ts = _now_ms()
            self._put({"kind": "metrics", "metrics": [[k, float(v), ts, int(step)] for k, v in metrics.items()]})

    def log_artifact(self, path: str, folder: str) -> None:
        if self.active:
            rid = uuid.uuid4().hex
            spool = self.spool / "files" / rid
            spool.mkdir(parents=True)
            local = _link_or_copy(path, str(spool / os.path.basename(path)))
            self._put({"kind": "artifact", "local": local, "spool": str(spool), "artifact_path": folder}, rid)

    def log_artifacts(self, folder: str, artifact_path: str) -> None:
        if self.active:
            rid = uuid.uuid4().hex
            spool = self.spool / "files" / rid
            shutil.copytree(folder, spool, copy_function=_link_or_copy)
            self._put({"kind": "artifacts", "local": str(spool), "spool": str(spool), "artifact_path": artifact_path},
                      rid)

    def set_tag(self, key: str, value: Any) -> None:
        if self.active:
            self._put({"kind": "tag", "key": str(key), "value": str(value)})

    def finish(self, status: str = "FINISHED") -> None:
        """Stop sampling, end the run with ``status`` and wait up to ``flush_timeout_s`` for the
        backlog; what is still undelivered then goes to the unsent file (nothing is dropped)."""
        if not self.active:
            return
        self._stop_sampling.set()
        if self._sampler is not None:
            self._sampler.join(timeout=10)
        self._put({"kind": "end", "status": status, "ts": _now_ms()})
        deadline = time.monotonic() + self.flush_timeout_s
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            if self._pending and self._outage_since is not None:
                _say(f"waiting up to {self.flush_timeout_s:.0f} s for MLflow at {self.uri} to take "
                     f"{len(self._pending)} buffered record(s)")
            self._cond.wait_for(lambda: not self._pending, timeout=max(0.0, deadline - time.monotonic()))
            drained = not self._pending
        if not drained:
            self._abandon.set()
        self._thread.join(timeout=30)
        with self._cond:
            left = list(self._pending)
            self._pending.clear()
            self._journal.close()
        if left:
            self._write_unsent(left)
        else:
            self.journal_path.unlink(missing_ok=True)
            (self.spool / "system_step").unlink(missing_ok=True)
            shutil.rmtree(self.spool / "files", ignore_errors=True)
            try:
                self.spool.rmdir()
            except OSError:
                pass
        if self._rejected:
            _say(f"MLflow at {self.uri} refused {self._rejected} record(s); they are kept in "
                 f"{self.trial_dir / REJECTED_NAME}")
        self._restore_http_env()
        self.active = False

    def backlog(self) -> int:
        """How many records wait for delivery (0 when inactive)."""
        if not self.active:
            return 0
        with self._cond:
            return len(self._pending)

    # -- internals --

    def _put(self, rec: Dict[str, Any], rid: Optional[str] = None) -> None:
        rec = {"id": rid or uuid.uuid4().hex, "run_id": self.run_id, **rec}
        with self._cond:
            if self._journal.closed:  # a late system-metrics sample after finish()
                return
            try:
                self._journal.write(json.dumps(rec) + "\n")
                self._journal.flush()
            except OSError as error:  # e.g. a full disk: the record is still delivered from memory
                if not self._journal_failed:
                    _say(f"cannot write {self.journal_path} ({error}); MLflow records are buffered in memory only")
                self._journal_failed = True
            self._pending.append(rec)
            self.stats["buffered_max"] = max(self.stats["buffered_max"], len(self._pending))
            self._cond.notify_all()

    def _deliver_loop(self) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        delay = 0.5
        while not self._abandon.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closing or self._abandon.is_set())
                if not self._pending or self._abandon.is_set():
                    return
                batch = _next_batch(self._pending)
            try:
                _deliver(client, batch)
            except Exception as error:  # noqa: BLE001 - every failure is either retried or set aside
                if is_transient(error):
                    self._note_outage(error)
                    self._abandon.wait(delay)
                    delay = min(delay * 2, self.retry_max_s)
                    continue
                self._reject(batch, error)
            delay = 0.5
            self._acknowledge(batch)

    def _note_outage(self, error: BaseException) -> None:
        with self._cond:
            if self._outage_since is not None:
                return
            self._outage_since = time.time()
            self._outage_delivered = 0
            self.stats["outages"] += 1
            records, metrics = len(self._pending), _metric_count(self._pending)
        _say(f"MLflow at {self.uri} unreachable since {time.strftime('%H:%M:%S')} ({_reason(error)}): buffering "
             f"{records} record(s) ({metrics} metrics), training continues; records are kept in {self.journal_path}")

    def _acknowledge(self, batch: List[Dict[str, Any]]) -> None:
        with self._cond:
            if self._journal.closed:  # finish() gave up on this delivery and saved the records already
                return
            for rec in batch:
                if self._pending and self._pending[0]["id"] == rec["id"]:
                    self._pending.popleft()
            try:
                if self._pending:
                    self._journal.write("".join(json.dumps({"done": rec["id"]}) + "\n" for rec in batch))
                else:  # everything delivered: start the journal afresh
                    self._journal.seek(0)
                    self._journal.truncate()
                self._journal.flush()
            except OSError:  # the worst case is a record delivered twice after a crash (harmless)
                pass
            outage_over = None
            if self._outage_since is not None:
                self._outage_delivered += len(batch)
                if not self._pending:
                    outage_over = (self._outage_delivered, time.time() - self._outage_since)
                    self.stats["delivered_after_outage"] += self._outage_delivered
                    self._outage_since = None
            self._cond.notify_all()
        for rec in batch:
            _drop_spooled(rec)
        if outage_over:
            _say(f"MLflow at {self.uri} reachable again: delivered {outage_over[0]} buffered records after "
                 f"an outage of {outage_over[1]:.0f} s")

    def _reject(self, batch: List[Dict[str, Any]], error: BaseException) -> None:
        """A request MLflow refused (e.g. a bad value): keep the records beside the trial, say so once."""
        with open(self.trial_dir / REJECTED_NAME, "a", encoding="utf-8") as f:
            for rec in batch:
                f.write(json.dumps({**rec, "error": str(error)[:2000]}) + "\n")
        if not self._rejected:
            _say(f"MLflow at {self.uri} refused a {batch[0]['kind']} record ({str(error).strip()[:200]}); "
                 f"kept in {self.trial_dir / REJECTED_NAME}")
        self._rejected += len(batch)
        for rec in batch:  # the spooled file stays with the rejected record
            rec.pop("spool", None)

    def _write_unsent(self, left: List[Dict[str, Any]]) -> None:
        _write_lines(self.unsent_path, left, mode="a")
        self.journal_path.unlink(missing_ok=True)
        self.stats["unsent"] = len(left)
        artifacts = sum(r["kind"] in ("artifact", "artifacts") for r in left)
        _say(f"MLflow at {self.uri} still unreachable after {self.flush_timeout_s:.0f} s: {len(left)} record(s) "
             f"({_metric_count(left)} metrics, {artifacts} artifact(s), files in {self.spool / 'files'}) saved to "
             f"{self.unsent_path}; deliver them later with: python -m seglab.platform.trial_log "
             f"{self.unsent_path} --uri {self.uri}")

    def _sample_system(self, interval: float) -> None:
        monitors = _system_monitors()
        if not monitors:
            return
        state = self.spool / "system_step"
        try:
            step = int(state.read_text())
        except (OSError, ValueError):
            step = 0
        while not self._stop_sampling.wait(interval):
            values: Dict[str, float] = {}
            try:
                for monitor in monitors:
                    monitor.collect_metrics()
                    values.update(monitor.aggregate_metrics())
                    monitor.clear_metrics()
            except Exception:  # a sampler failing must not touch training
                continue
            values = {f"system/{k}": float(v) for k, v in values.items() if not math.isnan(float(v))}
            if values:
                self.log_metrics(values, step)
                step += 1
                try:
                    state.write_text(str(step))
                except OSError:
                    pass

    def _shorten_http_retries(self) -> bool:
        if not _is_remote(self.uri):
            return False
        global _ENV_USERS
        with _ENV_LOCK:
            if _ENV_USERS == 0:
                _ENV_SET.clear()
                _ENV_SET.update({k: v for k, v in SHORT_HTTP_ENV.items() if k not in os.environ})
                os.environ.update(_ENV_SET)
            _ENV_USERS += 1
        return True

    def _restore_http_env(self) -> None:
        if not self._env_set:
            return
        global _ENV_USERS
        with _ENV_LOCK:
            _ENV_USERS -= 1
            if _ENV_USERS == 0:
                for key, value in _ENV_SET.items():
                    if os.environ.get(key) == value:
                        os.environ.pop(key, None)
                _ENV_SET.clear()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seglab.platform.trial_log",
                                     description="Deliver the MLflow records a trial could not send.")
    parser.add_argument("path", help="mlflow_unsent.jsonl (or mlflow_spool/journal.jsonl of a crashed trial)")
    parser.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI)")
    args = parser.parse_args(argv)
    n = replay(args.path, args.uri)
    print(f"delivered {n} record(s) from {args.path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
