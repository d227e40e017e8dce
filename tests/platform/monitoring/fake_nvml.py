"""A fake NVML at the library boundary (this machine has no GPU) and an in-memory sink.

Only NVML is replaced: :class:`FakeNvml` has the ``pynvml`` functions seglab calls, returning
programmed readings, and raises pynvml's own error classes.
"""
from __future__ import annotations

import pynvml

# four GPUs in NVML's (PCI bus) order
UUIDS = ["GPU-0a1b2c3d-0000-1111-2222-333344445555", "GPU-1b2c3d4e-0000-1111-2222-333344445555",
         "GPU-2c3d4e5f-0000-1111-2222-333344445555", "GPU-3d4e5f60-0000-1111-2222-333344445555"]
NAMES = ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3", "Tesla T4"]


class FakeNvml:
    """The ``pynvml`` functions GpuMonitor calls, over programmed devices.

    Each device has sequences of readings (``util`` in %, ``mem`` in bytes, ``power`` in mW): call n
    returns item n (the last one repeats); an item that is an ``int`` error code *inside a tuple*,
    e.g. ``("err", pynvml.NVML_ERROR_NOT_SUPPORTED)``, raises ``pynvml.NVMLError`` with that code.
    """

    NVMLError = pynvml.NVMLError
    NVML_ERROR_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
    nvmlMemory_v2 = pynvml.nvmlMemory_v2

    def __init__(self, count=4, init_error=None, **readings):
        self.uuids, self.names = UUIDS[:count], NAMES[:count]
        self.init_error = init_error
        self.readings = {q: {i: list(v) for i, v in readings.get(q, {}).items()} for q in ("util", "mem", "power")}
        self.calls = {q: {i: 0 for i in range(count)} for q in ("util", "mem", "power")}
        self.inits = self.shutdowns = 0
        self.lookups = []

    def _next(self, quantity, index, default):
        seq = self.readings[quantity].get(index) or [default]
        n = self.calls[quantity][index]
        self.calls[quantity][index] += 1
        item = seq[min(n, len(seq) - 1)]
        if isinstance(item, tuple):
            raise pynvml.NVMLError(item[1])
        return item

    def nvmlInit(self):
        self.inits += 1
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return len(self.uuids)

    def nvmlDeviceGetHandleByIndex(self, index):
        self.lookups.append(("index", index))
        if not 0 <= index < len(self.uuids):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return ("handle", index)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.lookups.append(("uuid", uuid))
        if uuid not in self.uuids:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return ("handle", self.uuids.index(uuid))

    def nvmlDeviceGetUUID(self, handle):
        return self.uuids[handle[1]]

    def nvmlDeviceGetName(self, handle):
        return self.names[handle[1]].encode()  # older pynvml versions return bytes

    def nvmlDeviceGetUtilizationRates(self, handle):
        return pynvml.c_nvmlUtilization_t(gpu=self._next("util", handle[1], 0), memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        info = pynvml.c_nvmlMemory_v2_t()
        info.used, info.total = int(self._next("mem", handle[1], 0)), 80 * 10**9
        return info

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._next("power", handle[1], 0)


class Sink:
    """An in-memory sink: what the monitor logged, in order."""

    def __init__(self):
        self.metrics, self.tags = [], {}

    def log_metrics(self, metrics, step):
        self.metrics.append((dict(metrics), step))

    def set_tag(self, key, value):
        self.tags[key] = value

    def values(self, key):
        return [m[key] for m, _ in self.metrics if key in m]
