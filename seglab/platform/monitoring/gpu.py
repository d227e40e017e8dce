"""Per-worker GPU utilisation: every Train worker samples the GPU(s) *it* uses with NVML and hands
the values to a sink (the trial run's writer) from a background thread that never touches training.

Which GPU: :mod:`seglab.platform.monitoring.devices`. A CPU worker, a missing ``pynvml``, an NVML
that does not start (no driver) or a device NVML cannot find: nothing is logged and one line says
so ("no GPU visible to rank r: GPU metrics off (...)").

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

Where the records go: to the ``sink`` the caller passes, any object with ``log_metrics(metrics,
step)`` and ``set_tag(key, value)``. In a trial that is a
:class:`~seglab.platform.tracking.writer.RunWriter` (journaled, outage-proof): rank 0's own writer
(the one that owns the run), and for every other rank a non-owning one of its own
(``RunWriter(uri, run_id, trial_dir, rank=r, owns_run=False)``), which never ends or changes the
run's status: that is rank 0's and the driver's. The trial's summary of these metrics is in
:mod:`seglab.platform.monitoring.summary`.

Only the standard library is imported here at module level (``pynvml`` and ``torch`` when needed),
so ``benchmarks/gpu_check.py`` runs where neither Ray nor MLflow is installed.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from seglab.platform.monitoring.devices import cuda_ordinals, nvml_text, resolve_device, torch_cuda_uuid
from seglab.platform.monitoring.messages import say, say_once

GB = 1e9
NVML_ERROR_NOT_SUPPORTED = 3  # pynvml.NVML_ERROR_NOT_SUPPORTED
QUANTITIES = ("util_pct", "mem_used_gb", "power_w")


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
            ``set_tag(key, value)`` (a :class:`~seglab.platform.tracking.writer.RunWriter`), or a callable
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
        close_sink: call ``sink.finish()`` in :meth:`stop` (the sink belongs to the monitor, e.g. a
            rank's non-owning ``RunWriter`` made for it).
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
        self._cuda_uuid = cuda_uuid or torch_cuda_uuid
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
            say(f"rank {self.rank}: GPU metrics' summary failed ({type(error).__name__}: {error})")
        if self.close_sink and hasattr(self.sink, "finish"):
            try:
                self.sink.finish()
            except Exception as error:  # noqa: BLE001
                say(f"rank {self.rank}: GPU metrics' logger failed at its end ({type(error).__name__}: {error})")
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
                        say(f"rank {self.rank}: GPU {d['uuid']} does not report {quantity} ({error}): "
                             f"gpu/rank{self.rank}/{quantity} is left out")
                    else:
                        say_once(("nvml-error", self.rank, d["uuid"], quantity),
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
        ordinals, why = cuda_ordinals(self._devices_arg, env)
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
                uuid = nvml_text(nvml.nvmlDeviceGetUUID(handle))
                name = nvml_text(nvml.nvmlDeviceGetName(handle))
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
            say(f"rank {self.rank}: GPU metrics leave out {'; '.join(problems)}")

    def _off(self, reason: str) -> None:
        self.off_reason = reason
        say_once("no-gpu", f"no GPU visible to rank {self.rank}: GPU metrics off ({reason})")

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
                say_once(("sampler", self.rank), f"rank {self.rank}: GPU sampling failed "
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
            say_once(("sink", self.rank), f"rank {self.rank}: logging GPU metrics failed ({type(error).__name__}: "
                      f"{error})")

    def _set_tag(self, key: str, value: str) -> None:
        if self._tag is None:
            return
        try:
            self._tag(self.prefix + key, value)
        except Exception as error:  # noqa: BLE001
            say_once(("sink", self.rank), f"rank {self.rank}: logging GPU tags failed ({type(error).__name__}: "
                      f"{error})")

    def _summary(self) -> Dict[str, float]:
        t = self._total
        values = {"util_pct_mean": t["util_pct"].mean(), "mem_used_gb_max": t["mem_used_gb"].max(),
                  "power_w_mean": t["power_w"].mean()}
        return {self.prefix + k: v for k, v in values.items() if v is not None}


def start(rank: int, device: Any, sink: Any, interval_s: float = 5.0, step_offset_s: float = 0.0,
          **monitor_args: Any) -> GpuMonitor:
    """Start sampling ``device`` (the worker's ``torch.device``) of a Train worker into ``sink``
    (rank 0: the trial's ``RunWriter``; rank r: a non-owning ``RunWriter(..., rank=r, owns_run=False)``,
    with ``close_sink=True`` to have :meth:`GpuMonitor.stop` finish it). ``monitor_args`` go to
    :class:`GpuMonitor` (``poll_s``, ``close_sink``, ``nvml``, ``env``...). Call ``.stop()``
    before rank 0's ``writer.finish()``."""
    return GpuMonitor(rank, sink, interval_s, devices=[device], step_offset_s=step_offset_s, **monitor_args).start()
