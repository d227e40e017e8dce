"""System metrics of a worker (``system/cpu_utilization_percentage``, ``system/system_memory_usage_megabytes``,
disk, network and, where there is one, GPU use), sampled with MLflow's own monitors into a sink.

Not MLflow's ``SystemMetricsMonitor``: that one talks to the server in its own thread and, with the
server down, either blocks for minutes in MLflow's retries or gives up for the rest of the run
after one warning. Here the samples are ordinary metrics handed to ``sink`` (the trial's
:class:`~seglab.platform.tracking.writer.RunWriter`: buffered, delivered late with their own
timestamps). Steps count the samples, 0, 1, 2, ...; with a ``state_file`` they number on across a
worker restart: the file holds the next step, a worker that dies leaves it behind, and the next
sampler with the same file continues from it; :meth:`SystemSampler.stop` removes it.

Only the standard library is imported at module level (MLflow's monitors when sampling starts).
"""
from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

#: where a trial keeps its sampler's next step (inside the trial folder)
STATE_NAME = "system_metrics_step"


def system_monitors() -> list:
    """MLflow's samplers of CPU, memory, disk, network and (if any) GPU use; [] if unavailable."""
    try:
        from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
        from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
        from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

        monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    except Exception:  # noqa: BLE001 - no MLflow / psutil: no system metrics
        return []
    try:
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        monitors.append(GPUMonitor())
    except Exception:  # noqa: BLE001 - no NVIDIA GPU / no pynvml
        pass
    return monitors


class SystemSampler:
    """Every ``interval_s`` seconds, one sample of every monitor -> ``sink.log_metrics(values, step)``.

    Args:
        sink: an object with ``log_metrics(metrics, step)`` (a ``RunWriter``).
        interval_s: seconds between samples (0 = no sampling).
        state_file: where the next step is kept (e.g. ``<trial>/system_metrics_step``), so that steps
            number on across a restart; None = steps from 0.
        monitors: objects with ``collect_metrics()``, ``aggregate_metrics()`` and ``clear_metrics()``
            (default: MLflow's, see :func:`system_monitors`).
    """

    def __init__(self, sink: Any, interval_s: float = 5.0, state_file: Optional[str] = None, *,
                 monitors: Optional[List[Any]] = None) -> None:
        self.sink, self.interval_s = sink, float(interval_s)
        self.state_file = Path(state_file) if state_file else None
        self._monitors = monitors
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.step = 0  # the next sample's step

    @property
    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "SystemSampler":
        """Start sampling in a background thread (nothing without monitors or with ``interval_s`` 0)."""
        if self._thread is not None or self.interval_s <= 0:
            return self
        monitors = system_monitors() if self._monitors is None else list(self._monitors)
        if not monitors:
            return self
        self.step = self._read_step()
        self._thread = threading.Thread(target=self._run, args=(monitors,), name="seglab-system-metrics", daemon=True)
        self._thread.start()
        return self

    def abandon(self) -> None:
        """Stop as a crashed worker would: the state file stays, so the next attempt numbers on."""
        self.stop(keep_state=True)

    def stop(self, keep_state: bool = False) -> None:
        """Stop sampling; remove the state file unless ``keep_state`` (a worker that ends normally is
        not resumed). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.state_file is not None and not keep_state:
            self.state_file.unlink(missing_ok=True)

    def sample(self, monitors: List[Any]) -> Dict[str, float]:
        """One sample of ``monitors`` as ``system/<name>`` metrics (NaN values left out)."""
        values: Dict[str, float] = {}
        for monitor in monitors:
            monitor.collect_metrics()
            values.update(monitor.aggregate_metrics())
            monitor.clear_metrics()
        return {f"system/{k}": float(v) for k, v in values.items() if not math.isnan(float(v))}

    def _read_step(self) -> int:
        if self.state_file is None:
            return 0
        try:
            return int(self.state_file.read_text())
        except (OSError, ValueError):
            return 0

    def _run(self, monitors: List[Any]) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                values = self.sample(monitors)
            except Exception:  # noqa: BLE001 - a sampler failing must not touch training
                continue
            if not values:
                continue
            try:
                self.sink.log_metrics(values, self.step)
            except Exception:  # noqa: BLE001
                continue
            self.step += 1
            if self.state_file is not None:
                try:
                    self.state_file.write_text(str(self.step))
                except OSError:
                    pass
