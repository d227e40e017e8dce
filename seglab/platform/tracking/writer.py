"""One buffered MLflow writer for every process that logs into a trial's run: rank 0's metrics,
tags and artifacts, the other ranks' GPU metrics, the samplers' records.

Training must never wait for, or die of, the tracking server. Every call therefore only writes a
record (see :mod:`seglab.platform.tracking.journal`) to a journal in the trial folder and hands it
to a background thread, which delivers the records in order and retries with a capped backoff
while the server is unreachable. Files of rank 0 (rank ``r > 0`` has its own:
``mlflow_spool_rank<r>/``, ``mlflow_unsent_rank<r>.jsonl``, ``mlflow_rejected_rank<r>.jsonl``):

- ``<trial>/mlflow_spool/journal.jsonl``: one JSON line per record and one ``{"done": id}`` line
  per delivered record. It is emptied whenever everything has been delivered. A worker that
  crashes leaves its undelivered records there, and the next ``RunWriter`` of the same trial folder
  and rank (the resumed worker) delivers them first; ``journal.replay`` delivers them by hand.
- ``<trial>/mlflow_spool/files/<id>/``: a hard link (or copy) of each artifact, taken before the
  call returns: callers delete their temporary folders right after logging them.
- ``finish()`` waits up to ``flush_timeout_s`` for the backlog and, for the writer that owns the
  run, ends it (FINISHED). If the server is still unreachable then, the undelivered records go to
  ``<trial>/mlflow_unsent.jsonl`` (the journal's format) and one line says how to deliver them::

      python -m seglab.platform.tracking.journal <trial>/mlflow_unsent.jsonl --uri http://host:5000

  ``abandon()`` instead (an attempt that crashed in a process that lives on, e.g. the in-process
  executor's retry) stops delivery at once and leaves the journal to the next writer, as a crash would.
- ``<trial>/mlflow_rejected.jsonl``: records the server refused (a bad value, an unknown run),
  each with its error; retrying them cannot help.

Who owns the run: the trial's rank 0 (``owns_run=True``) marks it RUNNING when it starts and ends it
at :meth:`RunWriter.finish`; a non-owning writer (other ranks, a sampler's own sink) never touches
the run's status.

Output (stderr, prefixed ``rank <r>:`` for ranks other than 0): one line when delivery first fails
("MLflow at ... unreachable since ...: buffering ..., training continues"), one line when the backlog
has been delivered after the outage ("... reachable again: delivered K buffered records after an
outage of T s"), nothing per retry; and at ``finish()`` during an outage, one line that it waits
and, if in vain, one that says where the records are.

For a remote (http/https) tracking URI, MLflow's own HTTP retries are switched off and its timeout
shortened for this process (``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0``, ``MLFLOW_HTTP_REQUEST_TIMEOUT=20``,
unless set already), so a refused connection is noticed at once; this thread does the retrying.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional

from seglab.platform.tracking.journal import (
    ARTIFACT_KINDS, REPLAY_COMMAND, deliver, drop_spooled, is_transient, metric_count, next_batch, now_ms,
    pending_records, reason, say, write_lines,
)
from seglab.platform.tracking.store import JOURNAL_NAME, REJECTED_NAME, SPOOL_DIR, UNSENT_NAME, for_rank, is_remote

# MLflow's own HTTP behaviour for a remote server, for this process (only where the user set nothing).
SHORT_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
# the writers of this process that use SHORT_HTTP_ENV, and what it set (restored when the last finishes)
_ENV_LOCK = threading.Lock()
_ENV_USERS = 0
_ENV_SET: Dict[str, str] = {}


def shorten_http_retries(uri: str) -> bool:
    """Switch MLflow's HTTP retries off for this process while a writer to a remote ``uri`` lives
    (see the module doc); True when it counts as a user (then call :func:`restore_http_env`)."""
    if not is_remote(uri):
        return False
    global _ENV_USERS
    with _ENV_LOCK:
        if _ENV_USERS == 0:
            _ENV_SET.clear()
            _ENV_SET.update({k: v for k, v in SHORT_HTTP_ENV.items() if k not in os.environ})
            os.environ.update(_ENV_SET)
        _ENV_USERS += 1
    return True


def restore_http_env() -> None:
    """One user of :func:`shorten_http_retries` less; the last one restores what it set."""
    global _ENV_USERS
    with _ENV_LOCK:
        _ENV_USERS -= 1
        if _ENV_USERS == 0:
            for key, value in _ENV_SET.items():
                if os.environ.get(key) == value:
                    os.environ.pop(key, None)
            _ENV_SET.clear()


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


class RunWriter:
    """Buffered, journaled MLflow writer of one process into run ``run_id`` (see the module doc).

    Args:
        uri, run_id: the tracking URI and the run; without either, the writer is inactive (every
            call a no-op, nothing written).
        folder: the trial's folder (journal, artifact spool, unsent and rejected files); a temporary
            folder if None (then nothing survives a crash of this process).
        rank: the worker's rank: its own file names for ``rank > 0`` and a ``rank <r>:`` prefix on
            its lines.
        owns_run: this writer marks the run RUNNING at its start and ends it at :meth:`finish`;
            False (other ranks, samplers): the run's status is never touched.
        flush_timeout_s: how long :meth:`finish` waits for an unreachable server before it writes
            the undelivered records to the unsent file.
        retry_max_s: the cap of the backoff between delivery attempts while the server is down.
    """

    def __init__(self, uri: Optional[str], run_id: Optional[str], folder: Optional[str] = None, *, rank: int = 0,
                 owns_run: bool = True, flush_timeout_s: float = 300.0, retry_max_s: float = 5.0) -> None:
        self.active = bool(uri and run_id)
        self.rank, self.owns_run = int(rank), bool(owns_run)
        self.label = f"rank {self.rank}: " if self.rank else ""
        self.uri, self.run_id = (str(uri) if uri else None), (str(run_id) if run_id else None)
        self.stats = {"outages": 0, "buffered_max": 0, "delivered_after_outage": 0, "unsent": 0, "rejected": 0}
        if not self.active:
            return
        self.flush_timeout_s, self.retry_max_s = float(flush_timeout_s), float(retry_max_s)
        self._open_folder(folder)
        self._env_set = shorten_http_retries(self.uri)

        self._cond = threading.Condition()
        self._pending: Deque[Dict[str, Any]] = deque()
        self._closing = False  # finish(): the thread exits once the backlog is empty
        self._abandon = threading.Event()  # finish() gave up waiting: the thread exits now
        self._outage_since: Optional[float] = None
        self._outage_delivered = 0
        self._journal_failed = False

        # undelivered records of an earlier worker of this trial and rank (it crashed) go first
        left = pending_records(str(self.journal_path)) if self.journal_path.exists() else []
        tmp = self.journal_path.with_suffix(".tmp")
        write_lines(tmp, left)
        os.replace(tmp, self.journal_path)
        self._journal = open(self.journal_path, "a", encoding="utf-8")
        self._pending.extend(left)
        if left:
            self._say(f"{len(left)} MLflow record(s) left by an earlier worker of this trial are delivered first")
        if self.owns_run:
            self._put({"kind": "status", "status": "RUNNING"})
        self._thread = threading.Thread(target=self._deliver_loop, name=f"seglab-mlflow-rank{self.rank}",
                                        daemon=True)
        self._thread.start()

    # -- the calls of the training loop (they never wait for the server) --

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        if self.active and metrics:
            ts = now_ms()
            self._put({"kind": "metrics", "metrics": [[k, float(v), ts, int(step)] for k, v in metrics.items()]})

    def log_artifact(self, path: str, artifact_folder: str) -> None:
        """Log the file ``path`` under ``artifact_folder`` of the run (a hard link is spooled at once)."""
        if self.active:
            rid = uuid.uuid4().hex
            spool = self.spool / "files" / rid
            spool.mkdir(parents=True)
            local = _link_or_copy(path, str(spool / os.path.basename(path)))
            self._put({"kind": "artifact", "local": local, "spool": str(spool), "artifact_path": artifact_folder}, rid)

    def log_artifacts(self, folder: str, artifact_path: str) -> None:
        """Log the files of ``folder`` under ``artifact_path`` of the run (spooled at once)."""
        if self.active:
            rid = uuid.uuid4().hex
            spool = self.spool / "files" / rid
            shutil.copytree(folder, spool, copy_function=_link_or_copy)
            self._put({"kind": "artifacts", "local": str(spool), "spool": str(spool), "artifact_path": artifact_path},
                      rid)

    def set_tag(self, key: str, value: Any) -> None:
        if self.active:
            self._put({"kind": "tag", "key": str(key), "value": str(value)})

    def backlog(self) -> int:
        """How many records wait for delivery (0 when inactive)."""
        if not self.active:
            return 0
        with self._cond:
            return len(self._pending)

    def finish(self, status: str = "FINISHED") -> None:
        """End the run with ``status`` (only a writer that owns the run) and wait up to
        ``flush_timeout_s`` for the backlog; what is still undelivered then goes to the unsent file
        (nothing is dropped). Idempotent: the writer is inactive afterwards."""
        if not self.active:
            return
        if self.owns_run:
            self._put({"kind": "end", "status": status, "ts": now_ms()})
        left = self._drain()
        if left:
            self._write_unsent(left)
        else:
            self.journal_path.unlink(missing_ok=True)
            shutil.rmtree(self.spool / "files", ignore_errors=True)
            try:
                self.spool.rmdir()
            except OSError:
                pass
        if self.stats["rejected"]:
            self._say(f"MLflow at {self.uri} refused {self.stats['rejected']} record(s); they are kept in "
                      f"{self.rejected_path}")
        if self._env_set:
            restore_http_env()
        self.active = False

    def abandon(self) -> None:
        """Stop at once, as the death of this process would: no end record, the run's status left
        alone, the undelivered records left in the journal for the next writer of the trial folder
        and rank (an in-process trial retried after a crash). Idempotent: inactive afterwards."""
        if not self.active:
            return
        with self._cond:
            self._abandon.set()
            self._cond.notify_all()
        self._thread.join(timeout=30)
        with self._cond:
            self._journal.close()  # a record delivered meanwhile stays in it: delivered twice (harmless)
        if self._env_set:
            restore_http_env()
        self.active = False

    # -- internals --

    def _say(self, text: str) -> None:
        say(self.label + text)

    def _open_folder(self, folder: Optional[str]) -> None:
        spool_name = for_rank(SPOOL_DIR, self.rank)
        self.trial_dir = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="seglab-mlflow-"))
        try:
            (self.trial_dir / spool_name / "files").mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a read-only trial folder must not stop training either
            self.trial_dir = Path(tempfile.mkdtemp(prefix="seglab-mlflow-"))
            (self.trial_dir / spool_name / "files").mkdir(parents=True)
            self._say(f"cannot write MLflow's spool beside the trial ({error}); using {self.trial_dir}")
        self.spool = self.trial_dir / spool_name
        self.journal_path = self.spool / JOURNAL_NAME
        self.unsent_path = self.trial_dir / for_rank(UNSENT_NAME, self.rank)
        self.rejected_path = self.trial_dir / for_rank(REJECTED_NAME, self.rank)

    def _put(self, rec: Dict[str, Any], rid: Optional[str] = None) -> None:
        rec = {"id": rid or uuid.uuid4().hex, "run_id": self.run_id, **rec}
        with self._cond:
            if self._journal.closed:  # a late sampler's record after finish()
                return
            try:
                self._journal.write(json.dumps(rec) + "\n")
                self._journal.flush()
            except OSError as error:  # e.g. a full disk: the record is still delivered from memory
                if not self._journal_failed:
                    self._say(f"cannot write {self.journal_path} ({error}); MLflow records are buffered in memory only")
                self._journal_failed = True
            self._pending.append(rec)
            self.stats["buffered_max"] = max(self.stats["buffered_max"], len(self._pending))
            self._cond.notify_all()

    def _drain(self) -> List[Dict[str, Any]]:
        """Let the thread deliver the backlog for up to ``flush_timeout_s``, stop it, close the
        journal; returns the records still undelivered."""
        deadline = time.monotonic() + self.flush_timeout_s
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            if self._pending and self._outage_since is not None:
                self._say(f"waiting up to {self.flush_timeout_s:.0f} s for MLflow at {self.uri} to take "
                          f"{len(self._pending)} buffered record(s)")
            self._cond.wait_for(lambda: not self._pending or not self._thread.is_alive(),
                                timeout=max(0.0, deadline - time.monotonic()))
            drained = not self._pending
        if not drained:
            self._abandon.set()
        self._thread.join(timeout=30)
        with self._cond:
            left = list(self._pending)
            self._pending.clear()
            self._journal.close()
        return left

    def _client(self):
        """The thread's ``MlflowClient``, or None (no MLflow here: the records stay for finish())."""
        try:
            from mlflow.tracking import MlflowClient

            return MlflowClient(tracking_uri=self.uri)
        except Exception as error:  # noqa: BLE001
            self._say(f"no MLflow client ({type(error).__name__}: {error}); MLflow records are kept for the end")
            return None

    def _deliver_loop(self) -> None:
        try:
            client, delay = None, 0.5
            while not self._abandon.is_set():
                with self._cond:
                    self._cond.wait_for(lambda: self._pending or self._closing or self._abandon.is_set())
                    if not self._pending or self._abandon.is_set():
                        return
                    batch = next_batch(self._pending)
                if client is None:  # MLflow is imported with the first record: a writer with none never pays for it
                    client = self._client()
                    if client is None:
                        return
                try:
                    deliver(client, batch)
                except Exception as error:  # noqa: BLE001 - every failure is either retried or set aside
                    if is_transient(error):
                        self._note_outage(error)
                        self._abandon.wait(delay)
                        delay = min(delay * 2, self.retry_max_s)
                        continue
                    self._reject(batch, error)
                delay = 0.5
                self._acknowledge(batch)
        finally:
            with self._cond:  # finish() stops waiting for a thread that is gone
                self._cond.notify_all()

    def _note_outage(self, error: BaseException) -> None:
        with self._cond:
            if self._outage_since is not None:
                return
            self._outage_since = time.time()
            self._outage_delivered = 0
            self.stats["outages"] += 1
            records, metrics = len(self._pending), metric_count(self._pending)
        self._say(f"MLflow at {self.uri} unreachable since {time.strftime('%H:%M:%S')} ({reason(error)}): buffering "
                  f"{records} record(s) ({metrics} metrics), training continues; records are kept in "
                  f"{self.journal_path}")

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
            drop_spooled(rec)
        if outage_over:
            self._say(f"MLflow at {self.uri} reachable again: delivered {outage_over[0]} buffered records after "
                      f"an outage of {outage_over[1]:.0f} s")

    def _reject(self, batch: List[Dict[str, Any]], error: BaseException) -> None:
        """A request MLflow refused (e.g. a bad value): keep the records beside the trial, say so once."""
        try:
            with open(self.rejected_path, "a", encoding="utf-8") as f:
                for rec in batch:
                    f.write(json.dumps({**rec, "error": str(error)[:2000]}) + "\n")
        except OSError as write_error:
            self._say(f"cannot keep {len(batch)} refused MLflow record(s) in {self.rejected_path} ({write_error})")
        if not self.stats["rejected"]:
            self._say(f"MLflow at {self.uri} refused a {batch[0]['kind']} record ({str(error).strip()[:200]}); "
                      f"kept in {self.rejected_path}")
        self.stats["rejected"] += len(batch)
        for rec in batch:  # the spooled file stays with the rejected record
            rec.pop("spool", None)

    def _write_unsent(self, left: List[Dict[str, Any]]) -> None:
        write_lines(self.unsent_path, left, mode="a")
        self.journal_path.unlink(missing_ok=True)
        self.stats["unsent"] = len(left)
        artifacts = sum(r["kind"] in ARTIFACT_KINDS for r in left)
        self._say(f"MLflow at {self.uri} still unreachable after {self.flush_timeout_s:.0f} s: {len(left)} record(s) "
                  f"({metric_count(left)} metrics, {artifacts} artifact(s), files in {self.spool / 'files'}) saved to "
                  f"{self.unsent_path}; deliver them later with: {REPLAY_COMMAND} {self.unsent_path} --uri {self.uri}")
