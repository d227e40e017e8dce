"""What an ended driver left holding resources is released by the next driver of the same sweep, and
nothing else is (real Ray: the session cluster, a second driver process that ends).

The leftover is made on purpose: the ended driver's detached actor creates a (non-detached) placement
group, which Ray keeps after the driver's job ends because its creator actor lives on. That is the
state ``ray job stop`` can leave a Ray Train worker group's placement group in (test_job_and_resume.py
meets it by chance; here it is certain).
"""
import os
import subprocess
import sys
import time

from seglab.platform.cluster.resources import ENDED_JOB, release_leftover_placement_groups

from .conftest import RAY, REPO

pytestmark = RAY

ENDED_DRIVER = r'''
import ray
from seglab.platform.cluster.local import init_ray

init_ray(namespace="leftovers")

@ray.remote(num_cpus=0)
class Owner:
    def hold(self):
        from ray.util.placement_group import placement_group
        pg = placement_group([{"CPU": 1}])
        ray.get(pg.ready(), timeout=60)
        return pg.id.hex()

owner = Owner.options(name="owner", lifetime="detached").remote()
print(ray.get_runtime_context().get_job_id(), ray.get(owner.hold.remote()), flush=True)
'''


def _state(pg_id):
    from ray.util.placement_group import placement_group_table

    return placement_group_table().get(pg_id, {}).get("state")


def _ended(job):
    import ray
    from ray.util.state import list_jobs

    return any(str(j.status) in ENDED_JOB for j in list_jobs(address=ray.get_runtime_context().gcs_address,
                                                             filters=[("job_id", "=", job)]))


def test_a_resumed_sweep_releases_what_its_ended_driver_left_and_nothing_else(ray_cluster):
    ray = ray_cluster
    from ray.util.placement_group import placement_group, remove_placement_group

    mine = placement_group([{"CPU": 0.5}])  # this (live) driver's: never released
    ray.get(mine.ready(), timeout=60)
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", ENDED_DRIVER], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    job, left = done.stdout.split()[-2:]
    owner = ray.get_actor("owner", namespace="leftovers")
    try:
        deadline = time.monotonic() + 30
        while not _ended(job) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert _ended(job) and _state(left) == "CREATED"  # the job ended, its placement group stays

        assert release_leftover_placement_groups([]) == []
        assert release_leftover_placement_groups([ray.get_runtime_context().get_job_id()]) == []  # alive
        assert release_leftover_placement_groups([job, job]) == [left]
        deadline = time.monotonic() + 30
        while _state(left) != "REMOVED" and time.monotonic() < deadline:
            time.sleep(0.25)
        assert _state(left) == "REMOVED"
        assert _state(mine.id.hex()) == "CREATED"
        assert release_leftover_placement_groups([job]) == []  # once released, nothing is left
    finally:
        ray.kill(owner)
        remove_placement_group(mine)
