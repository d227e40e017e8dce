"""What a sweep may ask of a cluster: trials that never deadlock, GPUs when there are some.

Each trial is a Tune trial whose driver takes :data:`TRIAL_DRIVER_CPU` and whose Ray Train
workers take ``trainer.num_workers x trainer.cpus_per_worker`` CPUs (and one GPU each with
``use_gpu``); :func:`plan_resources` derives how many run at once from the cluster's resources,
:func:`wait_for_free_cpus` fails fast when the CPUs stay held by someone else, after
:func:`release_leftover_placement_groups` has freed what an earlier driver of the same sweep left.
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple

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


ENDED_JOB = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
"""Ray job statuses after which none of the job's placement groups has a user left."""


def leftover_placement_groups(groups: Iterable[Dict[str, Any]], job_status: Dict[str, str],
                              owners: Iterable[str]) -> List[str]:
    """The ids of ``groups`` (rows of Ray's placement-group state: ``placement_group_id``, ``state``,
    ``creator_job_id``, ``is_detached``) that still hold resources although the job that created them,
    one of ``owners``, has ended (``job_status``: job id -> status). Detached groups are never left over."""
    owners = set(owners)
    return [g["placement_group_id"] for g in groups
            if g.get("creator_job_id") in owners and job_status.get(g["creator_job_id"]) in ENDED_JOB
            and g.get("state") != "REMOVED" and not g.get("is_detached")]


def release_leftover_placement_groups(owners: Iterable[str]) -> List[str]:
    """Remove the placement groups that earlier drivers of this sweep (Ray job ids ``owners``) left
    holding CPUs and GPUs after they ended; returns their ids.

    Ray removes a job's placement groups when the job ends, but not one created while the job is
    being stopped: ``ray job stop`` during Ray Train's worker-group (re)start leaves the new group's
    placement group CREATED for good (Ray 2.60), and the resumed sweep would wait for CPUs that never
    come back. Every placement group a sweep's driver and its actors create belongs to the sweep, so
    none of them has a user once that driver's job has ended."""
    owners = [o for o in dict.fromkeys(owners) if o]
    if not owners:
        return []
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group
    from ray.util.state import list_jobs, list_placement_groups

    status, groups = {}, []
    address = ray.get_runtime_context().gcs_address  # this cluster's, though the machine may run others
    try:
        for job in owners:
            status.update({j.job_id: str(getattr(j.status, "value", j.status)) for j in list_jobs(
                address=address, filters=[("job_id", "=", job)], raise_on_missing_output=False)})
            groups += [g if isinstance(g, dict) else dict(vars(g)) for g in list_placement_groups(
                address=address, filters=[("creator_job_id", "=", job)], detail=True, limit=10_000,
                raise_on_missing_output=False)]
    except Exception as e:  # no dashboard (Ray's state API): Ray's own clean-up is all there is
        print(f"could not look for placement groups left by this sweep's earlier drivers ({type(e).__name__}: "
              f"{str(e).splitlines()[0][:160]}); continuing", flush=True)
        return []
    left = leftover_placement_groups(groups, status, owners)
    for pg_id in left:
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))  # no-op once removed
    if left:
        print(f"released {len(left)} placement group(s) that this sweep's ended driver (Ray job "
              f"{', '.join(sorted({g['creator_job_id'] for g in groups if g['placement_group_id'] in left}))}) "
              f"left holding resources: {', '.join(left)}", flush=True)
    return left
