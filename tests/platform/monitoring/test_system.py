"""SystemSampler with MLflow's real monitors (CPU, memory, disk, network of this machine) into an
in-memory sink: the metric names, one step per sample, steps numbered on across a restart."""
from __future__ import annotations

import time

from seglab.platform.monitoring.system import STATE_NAME, SystemSampler, system_monitors
from tests.platform.monitoring.fake_nvml import Sink

EXPECTED = {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
            "system/system_memory_usage_percentage", "system/disk_usage_percentage", "system/network_receive_megabytes"}


def _sample_for(sampler: SystemSampler, seconds: float, keep_state: bool = False) -> None:
    sampler.start()
    time.sleep(seconds)
    sampler.stop(keep_state=keep_state)


def test_samples_are_system_metrics_with_contiguous_steps_numbered_on_after_a_restart(tmp_path):
    state = tmp_path / STATE_NAME
    first = Sink()
    _sample_for(SystemSampler(first, 0.1, state_file=str(state)), 0.75, keep_state=True)  # a worker that dies
    steps = [s for _, s in first.metrics]
    assert len(steps) >= 3 and steps == list(range(len(steps)))
    assert all(EXPECTED <= set(m) for m, _ in first.metrics), first.metrics[0][0].keys()
    assert all(0.0 <= v <= 100.0 for v in first.values("system/cpu_utilization_percentage"))
    assert all(v > 0 for v in first.values("system/system_memory_usage_megabytes"))
    assert int(state.read_text()) == len(steps)  # the next step

    resumed = Sink()
    sampler = SystemSampler(resumed, 0.1, state_file=str(state))
    _sample_for(sampler, 0.55)  # ends normally: the state goes
    again = [s for _, s in resumed.metrics]
    assert again and again == list(range(len(steps), len(steps) + len(again)))
    assert sampler.step == again[-1] + 1
    assert not state.exists()


def test_no_sampling_without_interval_or_monitors_and_without_a_state_file_steps_start_at_0(tmp_path):
    sink = Sink()
    for sampler in (SystemSampler(sink, 0.0), SystemSampler(sink, 0.05, monitors=[])):
        sampler.start()
        assert not sampler.active
        time.sleep(0.15)
        sampler.stop()
    assert sink.metrics == []
    plain = SystemSampler(sink, 0.05, monitors=system_monitors())
    _sample_for(plain, 0.3)
    assert [s for _, s in sink.metrics][:2] == [0, 1]
    assert not list(tmp_path.iterdir())
