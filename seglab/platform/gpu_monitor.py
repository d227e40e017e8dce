"""Per-worker GPU utilisation: every Train worker samples the GPU(s) *it* uses with NVML and logs
them to the trial's MLflow run, from a background thread that never touches training.

Which GPU. NVML ignores ``CUDA_VISIBLE_DEVICES`` and numbers GPUs by PCI bus id, while CUDA numbers
the visible ones fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``. The worker's CUDA ordinal
``k`` (``cuda:k``, what ``ray.train.torch.get_device()`` returns) is mapped to an NVML handle so:

- ``CUDA_VISIBLE_DEVICES`` set: its entry ``k``; a ``GPU-...`` / ``MIG-...`` UUID (or a unique UUID
  prefix, as CUDA accepts) -> by UUID; an integer -> by NVML index when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``,
  else by the UUID CUDA reports for ``cuda:k`` (``torch.cuda.get_device_properties(k).uuid``), and
  only if that is unknown by NVML index, with one warning that it may be another GPU;
- unset: ``cuda:k`` is physical device ``k`` in CUDA's order: the same rules with entry ``k``.

A CPU worker, a missing ``pynvml``, an NVML that does not start (no driver) or a device NVML cannot
find: nothing is logged and one line says so ("no GPU visible to rank r: GPU metrics off (...)").

What is logged (``r`` = the worker's rank; several GPUs of one worker are combined: mean
utilisation, summed memory and power):

- every ``interval_s`` (default 5 s), from ``poll_s`` (default 1 s) readings: ``gpu/rank<r>/util_pct``
  (mean of the readings, % of time a kernel ran, as ``nvidia-smi``'s ``utilization.gpu``),
  ``gpu/rank<r>/mem_used_gb`` (max, 1 GB = 1e9 bytes), ``gpu/rank<r>/power_w`` (mean);
- at :meth:`GpuMonitor.start`: tags ``gpu/rank<r>/name``, ``gpu/rank<r>/uuid`` and the metric
  ``gpu/rank<r>/devices`` (how many GPUs the rank uses: the report's GPU-hours);
- at :meth:`GpuMonitor.stop`: ``gpu/rank<r>/util_pct_mean``, ``gpu/rank<r>/mem_used_gb_max``,
  ``gpu/rank<r>/power_w_mean`` over every reading of this worker.

The metric step is seconds of training: ``step_offset_s`` (the ``elapsed_s`` of the checkpoint a
worker resumed from) plus whole seconds since :meth:`GpuMonitor.start`, so it lines up with the
``elapsed_s`` metric and keeps growing across a restart. A reading that NVML refuses is skipped;
a quantity the device does not support (``NVMLError_NotSupported``: power on some boards, utilisation
of a MIG slice) is dropped for the rest of the run, with one line.

Where the records go: rank 0 hands them to its :class:`~seglab.platform.trial_log.TrialLogger`
(journaled, outage-proof); every other rank to a :class:`RunLogger` of its own (same run id), which
delivers from a thread, retries while the server is down and, if it is still down at the end, saves
what is left in the trial folder in ``trial_log``'s format (``python -m seglab.platform.trial_log``
delivers it later). It never ends or changes the run's status: that is rank 0's and the driver's.

The trial's summary, ``gpu_util_pct`` (mean over ranks) and ``gpu_hours`` (GPUs x ``elapsed_s``),
is computed from these metrics by :func:`trial_gpu_summary` (the comparison table uses it).

Only the standard library is imported here at module level (``pynvml``, ``torch`` and ``mlflow``
when needed), so ``benchmarks/gpu_check.py`` runs where neither Ray nor MLflow is installed.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import sys
import threading
import time
import uuid as uuidlib
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

GB = 1e9
NVML_ERROR_NOT_SUPPORTED = 3  # pynvml.NVML_ERROR_NOT_SUPPORTED
QUANTITIES = ("util_pct", "mem_used_gb", "power_w")

_SAID: set = set()  # what this process has said once already
_SAID_LOCK = threading.Lock()


def _say(text: str) -> None:
    print(f"seglab: {text}", file=sys.stderr, flush=True)


def _say_once(key: Any, text: str) -> None:
    with _SAID_LOCK:
        if key in _SAID:
            return
        _SAID.add(key)
    _say(text)


def _text(value: Any) -> str:
    """NVML strings (bytes in older pynvml versions) -> str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# -- which GPU ---------------------------------------------------------------------------------------


def visible_entries(env: Mapping[str, str]) -> Optional[List[str]]:
    """The entries of ``CUDA_VISIBLE_DEVICES`` as CUDA reads them (UUIDs kept, integers normalised,
    the list cut at the first entry CUDA would not accept), or None when the variable is unset."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    entries: List[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if entry.startswith(("GPU-", "MIG-")):
            entries.append(entry)
            continue
        number = re.match(r"\+?\d+", entry)  # CUDA parses like strtoul: "1gpu" is 1, "-1" or "" ends the list
        if not number:
            break
        entries.append(str(int(number.group())))
    return entries


def _torch_cuda_uuid(ordinal: int) -> Optional[str]:
    """The UUID CUDA reports for ``cuda:<ordinal>`` of this process, or None (no torch CUDA)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return str(torch.cuda.get_device_properties(ordinal).uuid)
    except Exception:  # noqa: BLE001 - no CUDA, an old torch, a broken driver: fall back
        return None


def _handle_by_uuid(nvml, uuid: str):
    """NVML handle of a full UUID or of a unique prefix of one (CUDA accepts prefixes)."""
    try:
        return nvml.nvmlDeviceGetHandleByUUID(uuid)
    except nvml.NVMLError:
        matches = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            if _text(nvml.nvmlDeviceGetUUID(handle)).startswith(uuid):
                matches.append(handle)
        if len(matches) != 1:
            raise
        return matches[0]


def resolve_device(nvml, ordinal: int, env: Mapping[str, str],
                   cuda_uuid: Callable[[int], Optional[str]] = _torch_cuda_uuid) -> Tuple[Any, str]:
    """``(NVML handle, how it was found)`` of this process's ``cuda:<ordinal>``; raises
    ``nvml.NVMLError`` when NVML does not know the device, LookupError when CUDA would not see it."""
    entries = visible_entries(env)
    if entries is not None:
        if ordinal >= len(entries):
            raise LookupError(f"cuda:{ordinal} is not among CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')!r}")
        entry = entries[ordinal]
    else:
        entry = str(ordinal)
    if entry.startswith(("GPU-", "MIG-")):
        return _handle_by_uuid(nvml, entry), f"UUID {entry}"
    if env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":  # CUDA's order is NVML's
        return nvml.nvmlDeviceGetHandleByIndex(int(entry)), f"index {entry} (PCI_BUS_ID order)"
    reported = cuda_uuid(ordinal)
    if reported:
        bare = reported.split("-", 1)[1] if reported.startswith(("GPU-", "MIG-")) else reported
        candidates = [reported] if reported.startswith(("GPU-", "MIG-")) else [f"GPU-{bare}", f"MIG-{bare}"]
        for candidate in candidates:
            try:
                return _handle_by_uuid(nvml, candidate), f"CUDA's UUID {candidate}"
            except nvml.NVMLError:
                continue
    _say_once(("order", entry), f"GPU {entry}: CUDA_DEVICE_ORDER is not PCI_BUS_ID and CUDA's UUID of cuda:{ordinal} "
              f"is unknown, so GPU metrics read NVML device {entry}, which can be another GPU on a machine with "
              f"mixed GPUs (set CUDA_DEVICE_ORDER=PCI_BUS_ID to be sure)")
    return nvml.nvmlDeviceGetHandleByIndex(int(entry)), f"index {entry} (order unknown)"


def _ordinals(devices: Optional[Sequence[Any]], env: Mapping[str, str]) -> Tuple[List[int], str]:
    """CUDA ordinals to sample, and why there are none. ``devices``: ints, ``"cuda:k"`` or
    ``torch.device``; None = the device torch uses, else every entry of ``CUDA_VISIBLE_DEVICES``."""
    if devices is None:
        try:
            import torch

            if torch.cuda.is_available():
                return [int(torch.cuda.current_device())], ""
        except Exception:  # noqa: BLE001
            pass
        entries = visible_entries(env)
        if not entries:
            return [], "no CUDA device in use and CUDA_VISIBLE_DEVICES names none"
        return list(range(len(entries))), ""
    out: List[int] = []
    kinds = set()
    for d in devices:
        if isinstance(d, int):
            out.append(d)
            continue
        if hasattr(d, "type"):  # torch.device
            kind, index = d.type, d.index
        else:
            kind, _, text = str(d).partition(":")
            index = int(text) if text else None
        kinds.add(kind)
        if kind == "cuda":
            if index is None:
                try:
                    import torch

                    index = torch.cuda.current_device()
                except Exception:  # noqa: BLE001
                    index = 0
            out.append(int(index))
    return out, ("" if out else f"the worker trains on {', '.join(sorted(kinds)) or 'no device'}")


# -- the sampler -------------------------------------------------------------------------------------


class _Stats:
    """Sum, count and max of one quantity."""

    __slots__ = ("total", "count", "peak")

    def __init__(self) -> None:
        self.total, self.count, self.peak = 0.0, 0, float("-inf")

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1
        self.peak = max(self.peak, value)

    def mean(self) -> Optional[float]:
        return self.total / self.count if self.count else None

    def max(self) -> Optional[float]:
        return self.peak if self.count else None


class GpuMonitor:
    """Samples this worker's GPU(s) and logs ``gpu/rank<rank>/...`` to ``sink`` (see the module doc).

    Args:
        rank: the worker's rank (in every key).
        sink: where records go: an object with ``log_metrics(metrics, step)`` and (optionally)
            ``set_tag(key, value)`` (a :class:`TrialLogger`, a :class:`RunLogger`), or a callable
            ``log_fn(metrics, step)`` (then no tags), or None (nothing logged; :meth:`stop` still
            returns the summary).
        interval_s: seconds between logged values; poll_s: seconds between NVML readings
            (default ``min(1, interval_s)``), each logged value summarises the readings since the last.
        devices: the CUDA devices of this process to sample (ints, ``"cuda:k"``, ``torch.device``;
            a CPU device = none); None = the device torch uses, else all of ``CUDA_VISIBLE_DEVICES``.
        nvml: the NVML module (default ``pynvml``); env: the environment (default ``os.environ``);
        cuda_uuid: ``ordinal -> UUID`` CUDA reports (default torch's), for integer entries without
            ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
        step_offset_s: seconds of training before this worker (the resumed checkpoint's ``elapsed_s``).
        close_sink: call ``sink.finish()`` in :meth:`stop` (the sink belongs to the monitor).
    """

    def __init__(self, rank: int, sink: Any, interval_s: float = 5.0, *, poll_s: Optional[float] = None,
                 devices: Optional[Sequence[Any]] = None, nvml: Any = None, env: Optional[Mapping[str, str]] = None,
                 cuda_uuid: Optional[Callable[[int], Optional[str]]] = None, step_offset_s: float = 0.0,
                 close_sink: bool = False) -> None:
        self.rank = int(rank)
        self.prefix = f"gpu/rank{self.rank}/"
        self.sink, self.close_sink = sink, close_sink
        if sink is None:  # sample (the summary is returned by stop()), log nothing
            self._log, self._tag = (lambda metrics, step: None), None
        elif callable(sink) and not hasattr(sink, "log_metrics"):
            self._log, self._tag = sink, None
        else:
            self._log, self._tag = sink.log_metrics, getattr(sink, "set_tag", None)
        self.interval_s = float(interval_s)
        self.poll_s = float(poll_s) if poll_s is not None else min(1.0, self.interval_s)
        self._devices_arg, self._nvml, self._env = devices, nvml, env
        self._cuda_uuid = cuda_uuid or _torch_cuda_uuid
        self.step_offset_s = float(step_offset_s or 0.0)
        self.devices: List[Dict[str, Any]] = []  # {"handle", "uuid", "name", "how", "off": set()}
        self.off_reason: Optional[str] = None
        self._interval = {q: _Stats() for q in QUANTITIES}
        self._total = {q: _Stats() for q in QUANTITIES}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._started = self._stopped = False
        self._t0 = 0.0
        self._last_step = -1
        self.seconds = 0.0
        self.summary: Dict[str, float] = {}

    @property
    def active(self) -> bool:
        """Whether a GPU is being sampled."""
        return bool(self.devices) and not self._stopped

    # -- start / stop --

    def start(self) -> "GpuMonitor":
        """Find the GPU(s), tag the run and start sampling; without a GPU, say so once and do nothing.
        Never raises."""
        if self._started:
            return self
        self._started = True
        try:
            self._open()
        except Exception as error:  # noqa: BLE001 - a sampler must never stop training
            self._off(f"{type(error).__name__}: {error}")
        if not self.devices:
            return self
        self._t0 = time.monotonic()
        names = ", ".join(d["name"] for d in self.devices)
        self._set_tag("name", names)
        self._set_tag("uuid", ", ".join(d["uuid"] for d in self.devices))
        self._emit_metrics({self.prefix + "devices": float(len(self.devices))})
        self._thread = threading.Thread(target=self._run, name=f"seglab-gpu-rank{self.rank}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Dict[str, float]:
        """Stop sampling, log what the last interval gathered and the summary (see the module doc);
        returns the summary (empty without a GPU or readings). Idempotent; never raises."""
        if self._stopped:
            return self.summary
        self._stopped = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            if self._started and self.devices:
                self.seconds = time.monotonic() - self._t0
                if any(s.count for s in self._interval.values()):
                    self.emit()
                self.summary = self._summary()
                if self.summary:
                    self._emit_metrics(self.summary, self._last_step if self._last_step >= 0 else None)
                try:
                    self._nvml.nvmlShutdown()
                except Exception:  # noqa: BLE001
                    pass
        except Exception as error:  # noqa: BLE001
            _say(f"rank {self.rank}: GPU metrics' summary failed ({type(error).__name__}: {error})")
        if self.close_sink and hasattr(self.sink, "finish"):
            try:
                self.sink.finish()
            except Exception as error:  # noqa: BLE001
                _say(f"rank {self.rank}: GPU metrics' logger failed at its end ({type(error).__name__}: {error})")
        return self.summary

    # -- one reading / one logged value (the thread calls them; tests may too) --

    def poll(self) -> Dict[str, float]:
        """One NVML reading of every device, added to the interval's and the run's statistics;
        returns it (quantities a device did not give this time are missing)."""
        util: List[float] = []
        mem: List[float] = []
        power: List[float] = []
        for d in self.devices:
            for quantity, read, into in (("util_pct", self._util, util), ("mem_used_gb", self._mem, mem),
                                         ("power_w", self._power, power)):
                if quantity in d["off"]:
                    continue
                try:
                    into.append(float(read(d["handle"])))
                except self._nvml.NVMLError as error:
                    if getattr(error, "value", None) == getattr(self._nvml, "NVML_ERROR_NOT_SUPPORTED",
                                                                NVML_ERROR_NOT_SUPPORTED):
                        d["off"].add(quantity)
                        _say(f"rank {self.rank}: GPU {d['uuid']} does not report {quantity} ({error}): "
                             f"gpu/rank{self.rank}/{quantity} is left out")
                    else:
                        _say_once(("nvml-error", self.rank, d["uuid"], quantity),
                                  f"rank {self.rank}: NVML failed to read {quantity} of GPU {d['uuid']} ({error}); "
                                  f"such readings are skipped")
        reading = {}
        if util:
            reading["util_pct"] = sum(util) / len(util)
        if mem:
            reading["mem_used_gb"] = sum(mem)
        if power:
            reading["power_w"] = sum(power)
        for quantity, value in reading.items():
            self._interval[quantity].add(value)
            self._total[quantity].add(value)
        return reading

    def emit(self) -> Dict[str, float]:
        """Log the interval's values (mean utilisation, max memory, mean power of its readings) at
        the next step and start a new interval; returns what was logged."""
        i = self._interval
        values = {"util_pct": i["util_pct"].mean(), "mem_used_gb": i["mem_used_gb"].max(),
                  "power_w": i["power_w"].mean()}
        metrics = {self.prefix + k: v for k, v in values.items() if v is not None}
        self._interval = {q: _Stats() for q in QUANTITIES}
        if metrics:
            self._emit_metrics(metrics)
        return metrics

    # -- internals --

    def _open(self) -> None:
        env = os.environ if self._env is None else self._env
        ordinals, why = _ordinals(self._devices_arg, env)
        if not ordinals:
            self._off(why)
            return
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                self._off("pynvml is not installed: pip install nvidia-ml-py")
                return
            self._nvml = pynvml
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as error:
            self._off(f"NVML: {error}")
            return
        problems = []
        for ordinal in ordinals:
            try:
                handle, how = resolve_device(nvml, ordinal, env, self._cuda_uuid)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
                name = _text(nvml.nvmlDeviceGetName(handle))
            except (nvml.NVMLError, LookupError, ValueError) as error:
                problems.append(f"cuda:{ordinal}: {error}")
                continue
            self.devices.append({"handle": handle, "uuid": uuid, "name": name, "how": how, "ordinal": ordinal,
                                 "off": set()})
        if not self.devices:
            try:
                nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._off("; ".join(problems))
        elif problems:
            _say(f"rank {self.rank}: GPU metrics leave out {'; '.join(problems)}")

    def _off(self, reason: str) -> None:
        self.off_reason = reason
        _say_once("no-gpu", f"no GPU visible to rank {self.rank}: GPU metrics off ({reason})")

    def _util(self, handle) -> float:
        return self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu

    def _mem(self, handle) -> float:
        nvml = self._nvml
        version = getattr(nvml, "nvmlMemory_v2", None)
        if version is not None:  # v2's "used" excludes driver-reserved memory, as nvidia-smi's memory.used
            try:
                return nvml.nvmlDeviceGetMemoryInfo(handle, version=version).used / GB
            except (nvml.NVMLError, TypeError):
                pass
        return nvml.nvmlDeviceGetMemoryInfo(handle).used / GB

    def _power(self, handle) -> float:
        return self._nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # mW -> W

    def _run(self) -> None:
        next_emit = time.monotonic() + self.interval_s
        failures = 0
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
                if time.monotonic() >= next_emit:
                    self.emit()
                    next_emit = max(next_emit + self.interval_s, time.monotonic() + self.poll_s)
                failures = 0
            except Exception as error:  # noqa: BLE001 - the sampler gives up, training goes on
                failures += 1
                _say_once(("sampler", self.rank), f"rank {self.rank}: GPU sampling failed "
                          f"({type(error).__name__}: {error})")
                if failures >= 10:
                    return

    def _next_step(self) -> int:
        step = int(self.step_offset_s + time.monotonic() - self._t0)
        self._last_step = max(self._last_step + 1, step)
        return self._last_step

    def _emit_metrics(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        try:
            self._log(metrics, self._next_step() if step is None else step)
        except Exception as error:  # noqa: BLE001
            _say_once(("sink", self.rank), f"rank {self.rank}: logging GPU metrics failed ({type(error).__name__}: "
                      f"{error})")

    def _set_tag(self, key: str, value: str) -> None:
        if self._tag is None:
            return
        try:
            self._tag(self.prefix + key, value)
        except Exception as error:  # noqa: BLE001
            _say_once(("sink", self.rank), f"rank {self.rank}: logging GPU tags failed ({type(error).__name__}: "
                      f"{error})")

    def _summary(self) -> Dict[str, float]:
        t = self._total
        values = {"util_pct_mean": t["util_pct"].mean(), "mem_used_gb_max": t["mem_used_gb"].max(),
                  "power_w_mean": t["power_w"].mean()}
        return {self.prefix + k: v for k, v in values.items() if v is not None}


# -- ranks other than 0: their own outage-tolerant MLflow logger ---------------------------------------


class RunLogger:
    """Metrics and tags of one worker into an existing MLflow run, delivered by a background thread.

    For ranks other than 0 (rank 0 has the trial's :class:`~seglab.platform.trial_log.TrialLogger`).
    Calls return at once; records go out in order, in batches; while the server is unreachable
    they wait in memory and delivery is retried with a capped backoff (one line when it starts, one
    when it ends). :meth:`finish` waits up to ``flush_timeout_s``; what is still undelivered then is
    appended to ``unsent_path`` in ``trial_log``'s journal format (one line says how to deliver it:
    ``python -m seglab.platform.trial_log <file> --uri <uri>``). It never sets the run's status.
    Inactive (every call a no-op) without ``uri`` or ``run_id``. MLflow is imported by the thread,
    which starts with the first record.
    """

    def __init__(self, uri: Optional[str], run_id: Optional[str], unsent_path: Optional[str] = None, *,
                 flush_timeout_s: float = 60.0, retry_max_s: float = 5.0, label: str = "") -> None:
        self.active = bool(uri and run_id)
        self.uri, self.run_id = (str(uri) if uri else None), (str(run_id) if run_id else None)
        self.unsent_path = Path(unsent_path) if unsent_path else None
        self.flush_timeout_s, self.retry_max_s = float(flush_timeout_s), float(retry_max_s)
        self.label = label or "a worker"
        self._cond = threading.Condition()
        self._pending: Deque[Dict[str, Any]] = deque()
        self._closing = self._closed = False
        self._abandon = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._outage_since: Optional[float] = None
        self.stats = {"delivered": 0, "outages": 0, "unsent": 0, "rejected": 0}

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        if self.active and metrics:
            ts = int(time.time() * 1000)
            self._put({"kind": "metrics", "metrics": [[k, float(v), ts, int(step)] for k, v in metrics.items()]})

    def set_tag(self, key: str, value: Any) -> None:
        if self.active:
            self._put({"kind": "tag", "key": str(key), "value": str(value)})

    def backlog(self) -> int:
        with self._cond:
            return len(self._pending)

    def finish(self) -> None:
        """Deliver the backlog (waiting up to ``flush_timeout_s``), save what is left; idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = self._closing = True
            self._cond.notify_all()
            if self._thread is None:
                return
            if self._pending and self._outage_since is not None:
                _say(f"{self.label}: waiting up to {self.flush_timeout_s:.0f} s for MLflow at {self.uri} to take "
                     f"{len(self._pending)} buffered GPU record(s)")
            self._cond.wait_for(lambda: not self._pending, timeout=self.flush_timeout_s)
            left = list(self._pending)
            self._pending.clear()
        self._abandon.set()
        self._thread.join(timeout=5)
        if left:
            self._save_unsent(left)

    def _put(self, rec: Dict[str, Any]) -> None:
        rec = {"id": uuidlib.uuid4().hex, "run_id": self.run_id, **rec}
        with self._cond:
            if self._closed:
                return
            self._pending.append(rec)
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver_loop, name="seglab-mlflow-rank", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _deliver_loop(self) -> None:
        try:
            from mlflow.tracking import MlflowClient

            from seglab.platform.trial_log import _deliver, _next_batch, is_transient

            client = MlflowClient(tracking_uri=self.uri)
        except Exception as error:  # noqa: BLE001 - e.g. no mlflow: records stay for finish() to save
            _say(f"{self.label}: no MLflow client ({type(error).__name__}: {error}); GPU records are kept for the end")
            return
        delay = 0.5
        while not self._abandon.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closing or self._abandon.is_set())
                if not self._pending or self._abandon.is_set():
                    return
                batch = _next_batch(list(itertools.islice(self._pending, 1000)))
            try:
                _deliver(client, batch)
            except Exception as error:  # noqa: BLE001 - retried, or set aside when the server refused it
                if is_transient(error):
                    self._note_outage(error)
                    self._abandon.wait(delay)
                    delay = min(delay * 2, self.retry_max_s)
                    continue
                self.stats["rejected"] += len(batch)
                _say_once(("rejected", id(self)), f"{self.label}: MLflow at {self.uri} refused a GPU "
                          f"{batch[0]['kind']} record ({str(error).strip()[:200]}); such records are dropped")
            delay = 0.5
            self._acknowledge(batch)

    def _note_outage(self, error: BaseException) -> None:
        with self._cond:
            if self._outage_since is not None:
                return
            self._outage_since = time.time()
            self.stats["outages"] += 1
            count = len(self._pending)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        _say(f"{self.label}: MLflow at {self.uri} unreachable ({first}): buffering {count} GPU record(s) in memory, "
             f"training continues")

    def _acknowledge(self, batch: List[Dict[str, Any]]) -> None:
        back_after = None
        with self._cond:
            for rec in batch:
                if self._pending and self._pending[0]["id"] == rec["id"]:
                    self._pending.popleft()
                    self.stats["delivered"] += 1
            if self._outage_since is not None and not self._pending:
                back_after = time.time() - self._outage_since
                self._outage_since = None
            self._cond.notify_all()
        if back_after is not None:
            _say(f"{self.label}: MLflow at {self.uri} reachable again after {back_after:.0f} s; GPU records delivered")

    def _save_unsent(self, left: List[Dict[str, Any]]) -> None:
        self.stats["unsent"] = len(left)
        if self.unsent_path is None:
            _say(f"{self.label}: MLflow at {self.uri} still unreachable: {len(left)} GPU record(s) lost")
            return
        try:
            self.unsent_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.unsent_path, "a", encoding="utf-8") as f:
                for rec in left:
                    f.write(json.dumps(rec) + "\n")
        except OSError as error:
            _say(f"{self.label}: cannot save {len(left)} undelivered GPU record(s) to {self.unsent_path} ({error})")
            return
        _say(f"{self.label}: MLflow at {self.uri} still unreachable after {self.flush_timeout_s:.0f} s: "
             f"{len(left)} GPU record(s) saved to {self.unsent_path}; deliver them later with: python -m seglab.platform.trial_log "
             f"{self.unsent_path} --uri {self.uri}")


# -- the train loop's call -----------------------------------------------------------------------------


def start_gpu_monitor(rank: int, device: Any, tracker: Any, config: Mapping[str, Any], *,
                      step_offset_s: float = 0.0, **monitor_args: Any) -> GpuMonitor:
    """Start sampling ``device`` (the worker's ``torch.device``) of a Train worker: rank 0 logs
    through its ``tracker`` (TrialLogger), other ranks through a :class:`RunLogger` of their own
    into ``config["mlflow_run_id"]`` at ``config["tracking_uri"]`` (undelivered records end in
    ``<trial_dir>/mlflow_unsent_rank<r>.jsonl``). ``config["gpu_metrics_interval_s"]`` (default 5)
    sets the interval; ``monitor_args`` go to :class:`GpuMonitor` (``nvml``, ``env``...). Call
    ``.stop()`` before rank 0's ``tracker.finish()``."""
    interval = float(config.get("gpu_metrics_interval_s") or 5.0)
    if rank == 0:
        sink, own = tracker, False
    else:
        trial_dir = config.get("trial_dir")
        sink = RunLogger(config.get("tracking_uri"), config.get("mlflow_run_id"),
                         os.path.join(trial_dir, f"mlflow_unsent_rank{rank}.jsonl") if trial_dir else None,
                         label=f"rank {rank}")
        own = True
    return GpuMonitor(rank, sink, interval, devices=[device], step_offset_s=step_offset_s, close_sink=own,
                      **monitor_args).start()


# -- the trial's summary (the comparison table) ---------------------------------------------------------

_RANK_KEY = re.compile(r"^gpu/rank(\d+)/(\w+)$")


def trial_gpu_summary(metrics: Mapping[str, float]) -> Dict[str, Optional[float]]:
    """From a run's (latest) metrics: ``gpu_util_pct``, the mean over ranks of
    ``gpu/rank<r>/util_pct_mean``, and ``gpu_hours``, the sum over ranks of ``gpu/rank<r>/devices``
    x ``elapsed_s`` / 3600 (training time, restarts included); None where the run has none (CPU)."""
    util: Dict[int, float] = {}
    devices: Dict[int, float] = {}
    for key, value in metrics.items():
        match = _RANK_KEY.match(key)
        if not match or value is None:
            continue
        rank, name = int(match.group(1)), match.group(2)
        if name == "util_pct_mean":
            util[rank] = float(value)
        elif name == "devices":
            devices[rank] = float(value)
    elapsed = metrics.get("elapsed_s")
    return {"gpu_util_pct": sum(util.values()) / len(util) if util else None,
            "gpu_hours": sum(devices.values()) * float(elapsed) / 3600.0 if devices and elapsed is not None else None}


def report_fields(metrics: Mapping[str, float]) -> Dict[str, Optional[float]]:
    """:func:`trial_gpu_summary` rounded for the table (0.1 %, 0.001 GPU-hours)."""
    s = trial_gpu_summary(metrics)
    return {"gpu_util_pct": None if s["gpu_util_pct"] is None else round(s["gpu_util_pct"], 1),
            "gpu_hours": None if s["gpu_hours"] is None else round(s["gpu_hours"], 3)}


def log_trial_summary(run_id: str, uri: Optional[str] = None) -> Dict[str, float]:
    """For the trial's driver after ``fit()``: log :func:`trial_gpu_summary` of run ``run_id``
    as its ``gpu_util_pct`` and ``gpu_hours`` metrics (nothing for a CPU run); returns what it
    logged. Never raises (one line instead): the summary can always be recomputed from the run."""
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri) if uri else MlflowClient()
        summary = {k: v for k, v in trial_gpu_summary(client.get_run(run_id).data.metrics).items() if v is not None}
        for key, value in summary.items():
            client.log_metric(run_id, key, value)
        return summary
    except Exception as error:  # noqa: BLE001
        _say(f"could not log the GPU summary of run {run_id} ({type(error).__name__}: {error})")
        return {}
