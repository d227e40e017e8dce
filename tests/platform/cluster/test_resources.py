import importlib

import pytest
import ray

from seglab.errors import ConfigError
from seglab.platform.cluster.resources import (TRIAL_DRIVER_CPU, leftover_placement_groups, plan_resources,
                                             resolve_use_gpu, wait_for_free_cpus)
from seglab.platform.config import RunConfig, set_dotted

BASE = {
    "model": {"name": "ovenet_hrnet_w18_small_v1", "tau": 0.5, "pretrained": None},
    "loss": {"name": "ovenet", "kappa": 0.5, "lam": 0.5, "conf_weight": 1.0},
    "dataset": {"name": "synthetic", "image_size": [32, 64], "train": {"num_samples": 4}, "val": {"num_samples": 2}},
    "trainer": {"num_workers": 2, "cpus_per_worker": 0.9, "epochs": 1},
}


def _runs(n=3, **trainer):
    base = BASE
    for key, value in trainer.items():
        base = set_dotted(base, f"trainer.{key}", value)
    return [RunConfig.from_dict(set_dotted(base, "loss.kappa", 0.25 * (i + 1))) for i in range(n)]


def test_resources_never_deadlock_on_two_cpus():
    runs = _runs()
    # 2 workers x 0.9 + 0.1 = 1.9 CPUs per trial: one trial at a time on 2 CPUs
    assert TRIAL_DRIVER_CPU == 0.1
    assert plan_resources(runs, {"CPU": 2.0}) == (1, False)
    one = _runs(num_workers=1)
    assert plan_resources(one, {"CPU": 2.0}) == (2, False)  # 1.0 CPU per trial: two at a time
    assert plan_resources(one, {"CPU": 8.0}) == (3, False)  # never more than there are trials
    assert plan_resources(one, {"CPU": 8.0}, total=5) == (5, False)  # ... than `total` when given
    assert plan_resources(one, {"CPU": 8.0}, max_concurrent=1) == (1, False)
    assert plan_resources(one, {"CPU": 8.0, "GPU": 2.0}) == (2, True)  # use_gpu=auto, 1 GPU per worker
    with pytest.raises(ConfigError, match="trainer.num_workers=2 .* needs 1.9 CPUs but the cluster has 1"):
        plan_resources(runs, {"CPU": 1.0})


def test_gpus_bound_concurrency_and_must_suffice_for_one_trial():
    assert plan_resources(_runs(), {"CPU": 8.0, "GPU": 4.0}) == (2, True)  # 2 workers x 1 GPU each
    assert plan_resources(_runs(use_gpu=False), {"CPU": 8.0, "GPU": 4.0}) == (3, False)
    with pytest.raises(ConfigError, match="trainer.num_workers=2 needs 2 GPUs with trainer.use_gpu=auto but the "
                                          "cluster has 1"):
        plan_resources(_runs(), {"CPU": 8.0, "GPU": 1.0})
    with pytest.raises(ConfigError, match="trainer.use_gpu=True but the cluster has 0"):
        plan_resources(_runs(use_gpu=True), {"CPU": 8.0})


@pytest.mark.parametrize("use_gpu,gpus,expected", [
    ("auto", 0, False), ("auto", 0.5, True), ("auto", 2, True), (True, 0, True), (False, 4, False)])
def test_resolve_use_gpu(use_gpu, gpus, expected):
    assert resolve_use_gpu(use_gpu, gpus) is expected


def test_wait_for_free_cpus_names_the_placement_groups_holding_them(monkeypatch):
    free = {"CPU": 0.5}
    monkeypatch.setattr(ray, "available_resources", lambda: dict(free))
    pg = importlib.import_module("ray.util.placement_group")  # the module (ray.util.placement_group is a function)
    monkeypatch.setattr(pg, "placement_group_table", lambda: {
        "a": {"state": "CREATED"}, "b": {"state": "REMOVED"}, "c": {"state": "CREATED"}})
    wait_for_free_cpus(0.5, timeout_s=-1)  # enough: returns at once
    with pytest.raises(ConfigError, match=r"has 0.5 free CPUs, a trial needs 1.9; 2 placement group\(s\) hold"):
        wait_for_free_cpus(1.9, timeout_s=-1)


def test_leftover_placement_groups_are_those_of_the_sweeps_ended_jobs_still_holding_resources():
    groups = [
        {"placement_group_id": "a", "state": "CREATED", "creator_job_id": "03000000", "is_detached": False},
        {"placement_group_id": "b", "state": "REMOVED", "creator_job_id": "03000000", "is_detached": False},
        {"placement_group_id": "c", "state": "PENDING", "creator_job_id": "01000000", "is_detached": False},
        {"placement_group_id": "d", "state": "CREATED", "creator_job_id": "03000000", "is_detached": True},
        {"placement_group_id": "e", "state": "CREATED", "creator_job_id": "04000000", "is_detached": False},
        {"placement_group_id": "f", "state": "CREATED", "creator_job_id": "05000000", "is_detached": False},
        {"placement_group_id": "g", "state": "CREATED", "creator_job_id": "02000000", "is_detached": False},
    ]
    status = {"01000000": "FAILED", "02000000": "SUCCEEDED", "03000000": "STOPPED", "04000000": "RUNNING",
              "05000000": "STOPPED"}
    # 01 (a killed driver) and 03 (a stopped job) ended; 04 still runs; 05 ended but is not this sweep's;
    # 02 ended but is not listed either; b is already removed, d is detached (it outlives its job on purpose)
    owners = ["01000000", "03000000", "04000000"]
    assert leftover_placement_groups(groups, status, owners) == ["a", "c"]
    assert leftover_placement_groups(groups, status, []) == []
    assert leftover_placement_groups(groups, {}, owners) == []  # a job Ray does not know is not taken as ended
