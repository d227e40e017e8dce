"""GpuMonitor against a fake NVML at the library boundary (this machine has no GPU).

Only NVML is replaced (``fake_nvml.FakeNvml``). Everything above it is real: the sampling thread,
the CUDA -> NVML device mapping, the means, the messages; and ``benchmarks/gpu_check.py``. The way
into MLflow (RunWriters of two ranks, the trial's summary, the report) is in ``test_summary.py``.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pynvml
import pytest
import torch

from seglab.platform.monitoring import gpu
from seglab.platform.monitoring.devices import visible_entries
from seglab.platform.monitoring.gpu import GpuMonitor
from tests.platform.monitoring.fake_nvml import NAMES, UUIDS, FakeNvml, Sink

REPO = Path(__file__).resolve().parents[3]


def _monitor(nvml, env, devices=(0,), rank=0, sink=None, **kw):
    kw.setdefault("interval_s", 3600.0)  # no thread readings: the test drives poll()/emit()
    return GpuMonitor(rank, sink if sink is not None else Sink(), nvml=nvml, env=env, devices=list(devices), **kw)


# -- which GPU ---------------------------------------------------------------------------------------


def test_lookup_by_uuid_full_and_prefix():
    nvml = FakeNvml()
    env = {"CUDA_VISIBLE_DEVICES": f"{UUIDS[2]},{UUIDS[0]}"}
    m1 = _monitor(nvml, env, devices=[torch.device("cuda", 1)], rank=1).start()
    assert [d["uuid"] for d in m1.devices] == [UUIDS[0]]  # cuda:1 = the 2nd entry, NVML index 0
    assert m1.sink.tags == {"gpu/rank1/uuid": UUIDS[0], "gpu/rank1/name": NAMES[0]}
    assert m1.sink.metrics[0][0] == {"gpu/rank1/devices": 1.0}
    m1.stop()
    m0 = _monitor(nvml, env, devices=["cuda:0"]).start()
    assert m0.devices[0]["uuid"] == UUIDS[2]
    m0.stop()
    # CUDA accepts a unique UUID prefix; NVML's lookup does not, so the monitor matches it
    m = _monitor(nvml, {"CUDA_VISIBLE_DEVICES": "GPU-3d4e"}).start()
    assert m.devices[0]["uuid"] == UUIDS[3] and m.devices[0]["name"] == "Tesla T4"
    m.stop()
    assert nvml.inits == nvml.shutdowns == 3


def test_lookup_by_index_with_pci_bus_id():
    nvml = FakeNvml()
    env = {"CUDA_VISIBLE_DEVICES": "3,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert _monitor(nvml, env, devices=[0]).start().devices[0]["uuid"] == UUIDS[3]
    assert _monitor(nvml, env, devices=[1]).start().devices[0]["uuid"] == UUIDS[1]
    # unset CUDA_VISIBLE_DEVICES: cuda:k is physical device k
    assert _monitor(nvml, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, devices=[2]).start().devices[0]["uuid"] == UUIDS[2]
    assert ("uuid", UUIDS[3]) not in nvml.lookups  # by index, no UUID needed


def test_index_without_pci_order_maps_by_cuda_uuid_else_warns_once(capsys):
    nvml = FakeNvml()
    env = {"CUDA_VISIBLE_DEVICES": "0,1"}
    # CUDA's fastest-first cuda:0 is NVML's device 2 here: the UUID CUDA reports (bare, as torch prints it) decides
    reported = {0: UUIDS[2][4:], 1: UUIDS[3][4:]}
    m = _monitor(nvml, env, devices=[0, 1], cuda_uuid=reported.get).start()
    assert [d["uuid"] for d in m.devices] == [UUIDS[2], UUIDS[3]]
    assert m.sink.tags["gpu/rank0/uuid"] == f"{UUIDS[2]}, {UUIDS[3]}"
    assert capsys.readouterr().err == ""
    # CUDA's UUID unknown (no torch CUDA): NVML index, with one warning for the entry
    for _ in range(2):
        m = _monitor(nvml, env, devices=[1], cuda_uuid=lambda k: None).start()
        assert m.devices[0]["uuid"] == UUIDS[1]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA_DEVICE_ORDER is not PCI_BUS_ID" in err[0] and "NVML device 1" in err[0]


# -- readings -> metrics -----------------------------------------------------------------------------


def test_readings_to_interval_and_summary_metrics_by_hand():
    nvml = FakeNvml(util={0: [10, 40, 70, 90, 100]}, mem={0: [2e9, 5e9, 3e9, 4e9, 1e9]},
                    power={0: [100_000, 200_000, 360_000, 250_000, 150_000]})
    sink = Sink()
    m = _monitor(nvml, {"CUDA_VISIBLE_DEVICES": UUIDS[0]}, rank=2, sink=sink, step_offset_s=120.0).start()
    for _ in range(3):
        m.poll()
    assert m.emit() == {"gpu/rank2/util_pct": 40.0, "gpu/rank2/mem_used_gb": 5.0, "gpu/rank2/power_w": 220.0}
    m.poll()
    m.poll()
    summary = m.stop()  # logs the open interval (2 readings), then the summary of all 5
    assert summary == {"gpu/rank2/util_pct_mean": 62.0, "gpu/rank2/mem_used_gb_max": 5.0,
                       "gpu/rank2/power_w_mean": 212.0}
    assert sink.metrics[0] == ({"gpu/rank2/devices": 1.0}, 120)
    assert sink.metrics[1] == ({"gpu/rank2/util_pct": 40.0, "gpu/rank2/mem_used_gb": 5.0, "gpu/rank2/power_w": 220.0},
                               121)
    assert sink.metrics[2] == ({"gpu/rank2/util_pct": 95.0, "gpu/rank2/mem_used_gb": 4.0, "gpu/rank2/power_w": 200.0},
                               122)
    assert sink.metrics[3] == (summary, 122)
    assert len(sink.metrics) == 4 and nvml.shutdowns == 1
    assert m.stop() == summary and len(sink.metrics) == 4  # idempotent


def test_two_gpus_of_one_rank_mean_util_summed_memory_and_power():
    nvml = FakeNvml(util={0: [20], 1: [60]}, mem={0: [1e9], 1: [3e9]}, power={0: [100_000], 1: [300_000]})
    m = _monitor(nvml, {"CUDA_VISIBLE_DEVICES": f"{UUIDS[0]},{UUIDS[1]}"}, devices=[0, 1]).start()
    assert m.poll() == {"util_pct": 40.0, "mem_used_gb": 4.0, "power_w": 400.0}
    assert m.sink.metrics[0][0] == {"gpu/rank0/devices": 2.0}
    assert m.stop()["gpu/rank0/power_w_mean"] == 400.0


def test_nvml_errors_mid_run_skip_that_reading_and_drop_unsupported_quantities(capsys):
    unsupported, unknown = ("err", pynvml.NVML_ERROR_NOT_SUPPORTED), ("err", pynvml.NVML_ERROR_UNKNOWN)
    nvml = FakeNvml(util={0: [50, unknown, 70, 90]}, mem={0: [1e9]}, power={0: [200_000, unsupported, 999_000]})
    sink = Sink()
    m = _monitor(nvml, {"CUDA_VISIBLE_DEVICES": UUIDS[0]}, sink=sink).start()
    readings = [m.poll() for _ in range(4)]
    assert readings == [{"util_pct": 50.0, "mem_used_gb": 1.0, "power_w": 200.0},
                        {"mem_used_gb": 1.0},  # util failed once, power is not supported from here on
                        {"util_pct": 70.0, "mem_used_gb": 1.0},
                        {"util_pct": 90.0, "mem_used_gb": 1.0}]
    assert nvml.calls["power"][0] == 2  # not asked again once unsupported
    assert m.stop() == {"gpu/rank0/util_pct_mean": 70.0, "gpu/rank0/mem_used_gb_max": 1.0,
                        "gpu/rank0/power_w_mean": 200.0}
    assert sink.values("gpu/rank0/util_pct") == [70.0]
    err = capsys.readouterr().err
    assert err.count("does not report power_w") == 1 and err.count("NVML failed to read util_pct") == 1


def test_power_never_supported_leaves_the_power_keys_out():
    nvml = FakeNvml(util={0: [30]}, mem={0: [2e9]}, power={0: [("err", pynvml.NVML_ERROR_NOT_SUPPORTED)]})
    sink = Sink()
    m = _monitor(nvml, {"CUDA_VISIBLE_DEVICES": "MIG-" + UUIDS[0][4:]}, sink=sink)
    nvml.uuids[0] = "MIG-" + UUIDS[0][4:]  # a MIG slice, found by its MIG UUID
    m.start()
    m.poll()
    assert m.stop() == {"gpu/rank0/util_pct_mean": 30.0, "gpu/rank0/mem_used_gb_max": 2.0}
    assert all(not k.endswith(("power_w", "power_w_mean")) for metrics, _ in sink.metrics for k in metrics)


def test_background_thread_logs_every_interval():
    nvml = FakeNvml(util={0: [80]}, mem={0: [6e9]}, power={0: [300_000]})
    sink = Sink()
    m = GpuMonitor(0, sink, 0.1, poll_s=0.02, nvml=nvml, env={"CUDA_VISIBLE_DEVICES": UUIDS[0]}, devices=[0]).start()
    time.sleep(0.55)
    summary = m.stop()
    utils = sink.values("gpu/rank0/util_pct")
    assert len(utils) >= 2 and set(utils) == {80.0}
    assert set(sink.values("gpu/rank0/power_w")) == {300.0}
    assert summary == {"gpu/rank0/util_pct_mean": 80.0, "gpu/rank0/mem_used_gb_max": 6.0,
                       "gpu/rank0/power_w_mean": 300.0}
    steps = [s for _, s in sink.metrics]
    assert steps[:-1] == sorted(set(steps[:-1])) and steps[-1] == steps[-2]  # increasing; summary at the last
    assert nvml.calls["util"][0] >= 8  # ~27 readings at 0.02 s
    assert m._thread is not None and not m._thread.is_alive()


# -- no GPU ------------------------------------------------------------------------------------------


def test_no_gpu_logs_nothing_and_says_so_once(capsys):
    sink = Sink()
    # the real pynvml on this GPU-less machine: nvmlInit raises (no NVML library)
    real = GpuMonitor(3, sink, devices=[0], env={"CUDA_VISIBLE_DEVICES": "0"}).start()
    assert not real.active and "NVML" in real.off_reason and real.stop() == {}
    # a fake NVML whose init fails the same way; and a CPU worker (NVML not even started)
    fake = FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    assert _monitor(fake, {}, rank=3, sink=sink).start().stop() == {}
    cpu = FakeNvml()
    assert _monitor(cpu, {}, devices=[torch.device("cpu")], rank=3, sink=sink).start().stop() == {}
    assert cpu.inits == 0
    # CUDA_VISIBLE_DEVICES naming a GPU NVML does not have
    assert _monitor(FakeNvml(), {"CUDA_VISIBLE_DEVICES": "GPU-ffff"}, rank=3, sink=sink).start().stop() == {}
    assert sink.metrics == [] and sink.tags == {}
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"seglab: no GPU visible to rank 3: GPU metrics off ({real.off_reason})"]


# -- benchmarks/gpu_check.py -------------------------------------------------------------------------


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_reads_nvidia_smi_lines_of_its_window():
    check = _gpu_check()
    lines = ["2026/11/30 12:00:00.100, GPU-aa, 10, 1024, 100.50",
             "2026/11/30 12:00:01.100, GPU-aa, 90, 40960, 400.00",
             "2026/11/30 12:00:02.100, GPU-aa, 70, 30720, [N/A]",
             "garbage",
             "2026/11/30 12:00:03.100, GPU-aa, 0, 512, 90.00"]
    t0 = check.parse_smi_time("2026/11/30 12:00:00.500")
    t1 = check.parse_smi_time("2026/11/30 12:00:02.500")
    rows = check.smi_rows(lines, t0, t1)
    assert [r["util"] for r in rows] == [90.0, 70.0]
    assert check.smi_summary(rows) == {"util_pct_mean": 80.0, "mem_used_gb_max": 40960 * 2**20 / 1e9,
                                       "power_w_mean": 400.0, "samples": 2}


def test_gpu_check_without_a_gpu_says_one_line_and_exits_0():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py")], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 1 and "no CUDA GPU" in out.stdout


def test_visible_entries_read_as_cuda_reads_them():
    assert visible_entries({}) is None
    assert visible_entries({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_entries({"CUDA_VISIBLE_DEVICES": " 3, +1gpu ,GPU-ab,-1,2"}) == ["3", "1", "GPU-ab"]
    assert visible_entries({"CUDA_VISIBLE_DEVICES": "MIG-x,07"}) == ["MIG-x", "7"]


class ClosingSink(Sink):
    def __init__(self):
        super().__init__()
        self.finished = 0

    def finish(self):
        self.finished += 1


def test_start_samples_the_workers_device_into_its_sink_and_can_close_it():
    nvml = FakeNvml(util={1: [25]}, mem={1: [3e9]}, power={1: [150_000]})
    env = {"CUDA_VISIBLE_DEVICES": f"{UUIDS[0]},{UUIDS[1]}"}
    own, shared = ClosingSink(), ClosingSink()
    m = gpu.start(1, torch.device("cuda", 1), own, 3600.0, 42.0, nvml=nvml, env=env, close_sink=True)
    m0 = gpu.start(0, torch.device("cuda", 0), shared, 3600.0, nvml=nvml, env=env)
    assert m.active and [d["uuid"] for d in m.devices] == [UUIDS[1]] and m.step_offset_s == 42.0
    assert own.metrics[0] == ({"gpu/rank1/devices": 1.0}, 42) and shared.metrics[0] == ({"gpu/rank0/devices": 1.0}, 0)
    m.poll()
    assert m.stop() == {"gpu/rank1/util_pct_mean": 25.0, "gpu/rank1/mem_used_gb_max": 3.0,
                        "gpu/rank1/power_w_mean": 150.0}
    m0.stop()
    assert own.finished == 1 and shared.finished == 0  # only a sink that belongs to the monitor is finished
    m.stop()
    assert own.finished == 1
