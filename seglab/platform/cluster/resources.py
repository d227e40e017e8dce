"""What a sweep may ask of a cluster: trials that never deadlock, GPUs when there are some.

Each trial is a Tune trial whose driver takes :data:`TRIAL_DRIVER_CPU` and whose Ray Train
workers take ``trainer.num_workers x trainer.cpus_per_worker`` CPUs (and one GPU each with
``use_gpu``); :func:`plan_resources` derives how many run at once from the cluster's resources,
:func:`wait_for_free_cpus` fails fast when the CPUs stay held by someone else.
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from seglab.errors import ConfigError, check

if TYPE_CHECKING:
    from seglab.platform.config import RunConfig

TRIAL_DRIVER_CPU = 0.1


def resolve_use_gpu(use_gpu: Any, cluster_gpus: float) -> bool:
    """``trainer.use_gpu`` (true, false or "auto") on a cluster with ``cluster_gpus`` GPUs."""
    return bool(cluster_gpus > 0) if use_gpu == "auto" else bool(use_gpu)


def plan_resources(runs: List[RunConfig], cluster: Dict[str, float], max_concurrent: Optional[int] = None,
                   total: Optional[int] = None) -> Tuple[int, bool]:
    """(concurrent trials, use_gpu) for ``runs`` on a cluster with ``cluster`` resources.

    Raises ConfigError when one trial can never fit (naming trainer.num_workers).
    """
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    t = runs[0].trainer  # every trial of a sweep shares the trainer config
    use_gpu = resolve_use_gpu(t.use_gpu, gpus)
    per_trial_cpu = TRIAL_DRIVER_CPU + t.num_workers * t.cpus_per_worker
    check(per_trial_cpu <= cpus + 1e-9,
          f"trainer.num_workers={t.num_workers} x trainer.cpus_per_worker={t.cpus_per_worker} "
          f"(+{TRIAL_DRIVER_CPU} for the trial driver) needs {per_trial_cpu:g} CPUs but the cluster has {cpus:g}; "
          f"lower trainer.num_workers or trainer.cpus_per_worker")
    concurrent = int(math.floor(cpus / per_trial_cpu + 1e-9))
    if use_gpu:
        check(t.num_workers <= gpus, f"trainer.num_workers={t.num_workers} needs {t.num_workers} GPUs with "
                                     f"trainer.use_gpu={t.use_gpu} but the cluster has {gpus:g}")
        concurrent = min(concurrent, int(gpus // t.num_workers))
    if max_concurrent:
        concurrent = min(concurrent, int(max_concurrent))
    return max(1, min(concurrent, total or len(runs))), use_gpu


def wait_for_free_cpus(needed: float, timeout_s: float = 30.0) -> None:
    """Fail fast when the cluster's CPUs stay held (e.g. by placement groups of a killed driver).

    Ray releases a dead job's placement groups shortly after it dies, so wait ``timeout_s`` first.
    """
    import ray
    from ray.util.placement_group import placement_group_table

    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("CPU", 0.0) + 1e-9 < needed:
        if time.monotonic() > deadline:
            held = [pg for pg in placement_group_table().values() if pg.get("state") == "CREATED"]
            raise ConfigError(
                f"the Ray cluster has {ray.available_resources().get('CPU', 0.0):g} free CPUs, a trial needs "
                f"{needed:g}; {len(held)} placement group(s) hold the rest (another sweep, or one whose driver "
                f"was killed): wait for it, or restart the cluster (`ray stop; ray start --head`)")
        time.sleep(1.0)
