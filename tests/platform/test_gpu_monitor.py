"""GpuMonitor against a fake NVML at the library boundary (this machine has no GPU).

Only NVML is replaced: :class:`FakeNvml` has the ``pynvml`` functions seglab calls, returning
programmed readings, and raises pynvml's own error classes. Everything above it is real: the
sampling thread, the CUDA -> NVML device mapping, the means, the MLflow logging into a real
SQLite store (rank 0 through the TrialLogger, rank 1 through its own RunLogger), the report.
"""
from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path

import pynvml
import pytest
import torch

from seglab.platform import gpu_monitor, report, tracking, trial_log
from seglab.platform.gpu_monitor import GpuMonitor, RunLogger, start_gpu_monitor, trial_gpu_summary
from seglab.platform.trial_log import TrialLogger

REPO = Path(__file__).resolve().parents[2]
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


@pytest.fixture(autouse=True)
def fresh_messages():
    """Every test starts as a fresh process would: nothing said once yet."""
    gpu_monitor._SAID.clear()
    yield
    gpu_monitor._SAID.clear()


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


# -- into MLflow -------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEGLAB_ARTIFACT_ROOT", (tmp_path / "art").as_uri())
    return uri


def test_two_ranks_log_into_one_run_of_a_real_store_and_the_report_shows_it(store, tmp_path):
    exp = tracking.ensure_experiment("gpu", store)
    parent = tracking.start_parent_run(exp, "sweep", {}, store)
    run_id = tracking.find_or_create_child(exp, parent, "k0", "hrnet", {}, {"seglab.method": "hrnet",
                                                                           "seglab.label": "hrnet"}, store)
    cpu_run = tracking.find_or_create_child(exp, parent, "k1", "cpu", {}, {"seglab.label": "cpu"}, store)
    c = tracking.client(store)
    for rid in (run_id, cpu_run):
        c.log_metric(rid, "best_val_miou", 0.5)
        c.log_metric(rid, "elapsed_s", 5400.0)
    trial_dir = tmp_path / "trial"
    config = {"tracking_uri": store, "mlflow_run_id": run_id, "trial_dir": str(trial_dir),
              "gpu_metrics_interval_s": 0.1}
    nvml = FakeNvml(util={0: [90], 1: [60]}, mem={0: [20e9], 1: [10e9]}, power={0: [500_000], 1: [300_000]})
    env = {"CUDA_VISIBLE_DEVICES": f"{UUIDS[0]},{UUIDS[1]}"}  # Ray Train shares a node's GPUs among its workers
    tracker = TrialLogger(True, store, run_id, trial_dir=str(trial_dir), system_metrics_interval_s=0)
    ranks = [start_gpu_monitor(r, torch.device("cuda", r), tracker if r == 0 else None, config, step_offset_s=30.0,
                               nvml=nvml, env=env, poll_s=0.02) for r in (0, 1)]
    assert isinstance(ranks[1].sink, RunLogger)
    time.sleep(0.45)
    summaries = [m.stop() for m in ranks]  # rank 1's stop also finishes its RunLogger
    tracker.finish()

    run = c.get_run(run_id)
    assert run.info.status == "FINISHED"
    for r, (util, mem, power, uuid, name) in enumerate([(90.0, 20.0, 500.0, UUIDS[0], NAMES[0]),
                                                        (60.0, 10.0, 300.0, UUIDS[1], NAMES[1])]):
        history = c.get_metric_history(run_id, f"gpu/rank{r}/util_pct")
        assert len(history) >= 2 and {h.value for h in history} == {util}
        assert min(h.step for h in history) >= 30
        assert run.data.metrics[f"gpu/rank{r}/util_pct_mean"] == util == summaries[r][f"gpu/rank{r}/util_pct_mean"]
        assert run.data.metrics[f"gpu/rank{r}/mem_used_gb_max"] == mem
        assert run.data.metrics[f"gpu/rank{r}/power_w_mean"] == power
        assert run.data.metrics[f"gpu/rank{r}/devices"] == 1.0
        assert run.data.tags[f"gpu/rank{r}/uuid"] == uuid and run.data.tags[f"gpu/rank{r}/name"] == name
    assert not list(trial_dir.glob("mlflow_unsent*"))

    # the trial driver's summary after fit(): the trial mean over ranks and the GPU-hours, as run metrics
    assert gpu_monitor.log_trial_summary(run_id, store) == {"gpu_util_pct": 75.0, "gpu_hours": 3.0}
    assert gpu_monitor.log_trial_summary(cpu_run, store) == {}
    metrics = c.get_run(run_id).data.metrics
    assert metrics["gpu_util_pct"] == 75.0 and metrics["gpu_hours"] == 3.0
    assert "gpu_util_pct" not in c.get_run(cpu_run).data.metrics

    rows = {r["label"]: r for r in report.collect(parent, store)}
    assert rows["hrnet"]["gpu_util_pct"] == 75.0  # (90 + 60) / 2
    assert rows["hrnet"]["gpu_hours"] == 3.0  # 2 GPUs x 5400 s
    assert rows["cpu"]["gpu_util_pct"] is None and rows["cpu"]["gpu_hours"] is None
    table = [line for line in report.format_table(list(rows.values())).splitlines() if line.startswith("|")]
    assert "GPU util %" in table[0] and "GPU-hours" in table[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_logger_never_blocks_and_saves_what_an_unreachable_server_did_not_take(store, tmp_path, monkeypatch,
                                                                                  capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    exp = tracking.ensure_experiment("gpu", store)
    run_id = tracking.client(store).create_run(exp).info.run_id
    unsent = tmp_path / "trial" / "mlflow_unsent_rank1.jsonl"
    logger = RunLogger(f"http://127.0.0.1:{_closed_port()}", run_id, str(unsent), flush_timeout_s=1.0, label="rank 1")
    t0 = time.monotonic()
    for step in range(50):
        logger.log_metrics({"gpu/rank1/util_pct": float(step)}, step)
    logger.set_tag("gpu/rank1/name", "NVIDIA H100")
    assert time.monotonic() - t0 < 0.5
    logger.finish()
    assert logger.stats["unsent"] == 51 and unsent.is_file()
    err = capsys.readouterr().err
    assert "unreachable" in err and "python -m seglab.platform.trial_log" in err
    # trial_log's replay delivers the saved records (e.g. once the server is back)
    assert trial_log.replay(str(unsent), store) == 51
    c = tracking.client(store)
    assert [h.value for h in sorted(c.get_metric_history(run_id, "gpu/rank1/util_pct"), key=lambda h: h.step)] == \
        [float(s) for s in range(50)]
    assert c.get_run(run_id).data.tags["gpu/rank1/name"] == "NVIDIA H100"
    assert c.get_run(run_id).info.status == "RUNNING"  # a rank's logger never ends the run


# -- the trial's summary and the report's columns ------------------------------------------------------


def test_trial_summary_by_hand():
    metrics = {"gpu/rank0/util_pct_mean": 80.0, "gpu/rank1/util_pct_mean": 60.0, "gpu/rank2/util_pct_mean": 91.0,
               "gpu/rank0/devices": 1.0, "gpu/rank1/devices": 1.0, "gpu/rank2/devices": 2.0, "elapsed_s": 5400.0,
               "gpu/rank0/util_pct": 5.0, "val_miou": 0.4}
    assert trial_gpu_summary(metrics) == {"gpu_util_pct": pytest.approx(77.0), "gpu_hours": pytest.approx(6.0)}
    assert trial_gpu_summary({"elapsed_s": 100.0, "val_miou": 0.4}) == {"gpu_util_pct": None, "gpu_hours": None}
    assert gpu_monitor.report_fields({"gpu/rank0/util_pct_mean": 33.333, "gpu/rank0/devices": 1.0,
                                      "elapsed_s": 60.0}) == {"gpu_util_pct": 33.3, "gpu_hours": 0.017}


def test_report_columns_from_hand_built_rows():
    base = {"methods": (), "method": "hrnet", "best_val_miou": 0.5, "delta": None, "val_pixel_acc": 0.9,
            "params_m": 1.5, "gflops": 2.0, "wall_s": 100.0, "status": "FINISHED", "epochs": 8, "run_id": "x"}
    rows = [{**base, "mark": "*", "label": "gpu run", "gpu_util_pct": 87.5, "gpu_hours": 0.056},
            {**base, "mark": "", "label": "cpu run", "gpu_util_pct": None, "gpu_hours": None}]
    lines = [line for line in report.format_table(rows).splitlines() if line.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    assert header[-3:] == ["GPU util %", "GPU-hours", "status"]
    cells = lambda line: [x.strip() for x in line.strip("|").split("|")]  # noqa: E731
    assert cells(lines[2])[-3:] == ["87.5", "0.056", "FINISHED"]
    assert cells(lines[3])[-3:] == ["-", "-", "FINISHED"]
    csv_lines = report.to_csv(rows).splitlines()
    keys = csv_lines[0].split(",")
    assert csv_lines[1].split(",")[keys.index("gpu_util_pct")] == "87.5"
    assert csv_lines[2].split(",")[keys.index("gpu_hours")] == ""


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
