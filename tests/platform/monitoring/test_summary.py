"""A trial's GPU summary, by hand and end to end: two ranks' GpuMonitors (fake NVML) log through
their RunWriters into one run of a real SQLite store and the trial driver logs the summary.

The last two tests check the report's use of it (``report.collect`` over runs with GPU metrics,
the table's columns from hand-built rows); they import ``seglab.platform.report`` where they run.
"""
from __future__ import annotations

import time

import pytest
import torch

from seglab.platform import tracking
from seglab.platform.monitoring import gpu, summary
from seglab.platform.monitoring.summary import trial_gpu_summary
from seglab.platform.tracking.writer import RunWriter
from tests.platform.monitoring.fake_nvml import NAMES, UUIDS, FakeNvml


def test_two_ranks_log_into_one_run_of_a_real_store_and_the_driver_logs_the_summary(store, tmp_path):
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
    nvml = FakeNvml(util={0: [90], 1: [60]}, mem={0: [20e9], 1: [10e9]}, power={0: [500_000], 1: [300_000]})
    env = {"CUDA_VISIBLE_DEVICES": f"{UUIDS[0]},{UUIDS[1]}"}  # Ray Train shares a node's GPUs among its workers
    tracker = RunWriter(store, run_id, str(trial_dir))  # rank 0's: it owns the run
    rank1 = RunWriter(store, run_id, str(trial_dir), rank=1, owns_run=False)  # the GPU hook's, for rank 1
    ranks = [gpu.start(r, torch.device("cuda", r), sink, 0.1, 30.0, nvml=nvml, env=env, poll_s=0.02,
                       close_sink=sink is rank1) for r, sink in ((0, tracker), (1, rank1))]
    time.sleep(0.45)
    summaries = [m.stop() for m in ranks]  # rank 1's stop also finishes its writer
    assert not rank1.active and tracker.active
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
    assert not list(trial_dir.iterdir())  # both writers delivered everything: no spool, no unsent file

    # the trial driver's summary after fit(): the trial mean over ranks and the GPU-hours, as run metrics
    assert summary.log_trial_summary(run_id, store) == {"gpu_util_pct": 75.0, "gpu_hours": 3.0}
    assert summary.log_trial_summary(cpu_run, store) == {}
    metrics = c.get_run(run_id).data.metrics
    assert metrics["gpu_util_pct"] == 75.0 and metrics["gpu_hours"] == 3.0
    assert "gpu_util_pct" not in c.get_run(cpu_run).data.metrics


def test_trial_summary_by_hand():
    metrics = {"gpu/rank0/util_pct_mean": 80.0, "gpu/rank1/util_pct_mean": 60.0, "gpu/rank2/util_pct_mean": 91.0,
               "gpu/rank0/devices": 1.0, "gpu/rank1/devices": 1.0, "gpu/rank2/devices": 2.0, "elapsed_s": 5400.0,
               "gpu/rank0/util_pct": 5.0, "val_miou": 0.4}
    assert trial_gpu_summary(metrics) == {"gpu_util_pct": pytest.approx(77.0), "gpu_hours": pytest.approx(6.0)}
    assert trial_gpu_summary({"elapsed_s": 100.0, "val_miou": 0.4}) == {"gpu_util_pct": None, "gpu_hours": None}
    assert summary.report_fields({"gpu/rank0/util_pct_mean": 33.333, "gpu/rank0/devices": 1.0,
                                  "elapsed_s": 60.0}) == {"gpu_util_pct": 33.3, "gpu_hours": 0.017}


def test_the_report_shows_the_trial_summary(store):
    from seglab.platform import report

    exp = tracking.ensure_experiment("gpu", store)
    parent = tracking.start_parent_run(exp, "sweep", {}, store)
    gpu_run = tracking.find_or_create_child(exp, parent, "k0", "hrnet", {}, {"seglab.method": "hrnet",
                                                                           "seglab.label": "hrnet"}, store)
    cpu_run = tracking.find_or_create_child(exp, parent, "k1", "cpu", {}, {"seglab.label": "cpu"}, store)
    c = tracking.client(store)
    for rid in (gpu_run, cpu_run):
        c.log_metric(rid, "best_val_miou", 0.5)
        c.log_metric(rid, "elapsed_s", 5400.0)
    for key, value in (("gpu/rank0/util_pct_mean", 90.0), ("gpu/rank1/util_pct_mean", 60.0),
                       ("gpu/rank0/devices", 1.0), ("gpu/rank1/devices", 1.0)):
        c.log_metric(gpu_run, key, value)
    rows = {r["label"]: r for r in report.collect(parent, store)}
    assert rows["hrnet"]["gpu_util_pct"] == 75.0  # (90 + 60) / 2
    assert rows["hrnet"]["gpu_hours"] == 3.0  # 2 GPUs x 5400 s
    assert rows["cpu"]["gpu_util_pct"] is None and rows["cpu"]["gpu_hours"] is None
    table = [line for line in report.format_table(list(rows.values())).splitlines() if line.startswith("|")]
    assert "GPU util %" in table[0] and "GPU-hours" in table[0]


def test_report_columns_from_hand_built_rows():
    from seglab.platform import report
    from seglab.platform.report import files

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
    csv_lines = files.to_csv(rows).splitlines()
    keys = csv_lines[0].split(",")
    assert csv_lines[1].split(",")[keys.index("gpu_util_pct")] == "87.5"
    assert csv_lines[2].split(",")[keys.index("gpu_hours")] == ""
