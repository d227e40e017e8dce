"""R2: the sweep driver killed (SIGKILL), then the Ray job running it stopped, and the sweep resumed.

One 2-trial sweep (the HRNet baseline and OVeNet, one trial at a time) on a real local Ray cluster:
1. run as a plain driver process, SIGKILLed once the first trial finished and the second is training;
   the dead driver's placement groups are released;
2. resumed with `sweep.resume=true` as a Ray job (`ray job submit`), stopped with `ray job stop`
   while the second trial trains again;
3. resumed again to the end.
The finished trial is not re-run, the other resumes from its checkpoints, and the same MLflow
parent and child runs continue (one parent, two children, every epoch logged).
"""
import json
import os
import signal
import subprocess
import sys
import time

from seglab.platform import tracking

from .conftest import REPO, TINY_OVERRIDES

EPOCHS = 6
ARGS = [a for a in TINY_OVERRIDES if a != "trainer=tiny"] + [
    "trainer=tiny", "trainer.num_workers=1", f"trainer.epochs={EPOCHS}", "trainer.viz_samples=0",
    "dataset.train.num_samples=48", "sweep.max_concurrent_trials=1", "sweep.experiment=resume"]
BIN = os.path.dirname(sys.executable)


def _children(client, exp_id):
    runs = client.search_runs([exp_id], filter_string="tags.`seglab.kind` = 'trial'")
    return {r.info.run_id: r for r in runs}


def _wait(predicate, what, timeout=240, on_timeout=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{on_timeout()}" if on_timeout else ""))


def _epochs(client, run_id):
    return {m.step for m in client.get_metric_history(run_id, "val_miou")}


def _check_what_the_sweep_logged(client, parent_id, children, stdout, tmp_path):
    """The resumed sweep's outputs are a normal sweep's: nested runs with params, metrics, the best
    checkpoint as an artifact that loads back, the comparison on the parent run."""
    import torch

    from seglab.platform import checkpoint as ckpt

    by_model = {c.data.tags["seglab.model"]: c for c in children}
    assert set(by_model) == {"hrnet_w18_small_v1", "ovenet_hrnet_w18_small_v1"}
    assert by_model["hrnet_w18_small_v1"].data.tags["seglab.baseline"] == "true"
    for child in children:
        assert child.data.tags[tracking.PARENT_TAG] == parent_id
        assert 0.0 <= child.data.metrics["val_miou"] <= 1.0
        assert int(child.data.params["model.params"]) > 100_000 and child.data.metrics["gflops"] > 0
        assert "train_loss" in child.data.metrics and "images_per_s" in child.data.metrics
        local = client.download_artifacts(child.info.run_id, "checkpoints/best.pt", str(tmp_path / child.info.run_id))
        state, model = ckpt.load(local), ckpt.load_model(local)
        assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())
        assert model(torch.randn(1, 3, 32, 64)).logits.shape == (1, state["num_classes"], 8, 16)
    ovenet = by_model["ovenet_hrnet_w18_small_v1"].data
    for term in ("train_loss_final", "train_loss_seed", "train_loss_initial", "train_loss_conf", "val_miou_initial"):
        assert term in ovenet.metrics
    assert float(ovenet.params["loss.kappa"]) == 0.5
    table = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 3 and sum(line.startswith("| *") for line in table) == 1  # header + 2 rows, baseline marked
    assert {"comparison.md", "comparison.csv", "val_miou_curves.png"} <= {a.path for a in client.list_artifacts(parent_id)}


def test_r2_killed_driver_and_stopped_job_resume_the_same_sweep(ray_cluster, mlflow_store, tmp_path):
    import ray
    from ray.util.placement_group import placement_group_table

    from seglab.platform.cluster import ray_internals

    gcs = ray.get_runtime_context().gcs_address
    env = {**os.environ, "RAY_ADDRESS": gcs, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    client = tracking.client(mlflow_store)
    log = open(tmp_path / "driver1.log", "w")
    driver = subprocess.Popen([sys.executable, "experiments/ovenet_sweep.py", *ARGS], cwd=REPO, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    exp_id = _wait(lambda: tracking.client(mlflow_store).get_experiment_by_name("resume"), "the experiment").experiment_id

    def first_done_second_training():
        kids = _children(client, exp_id)
        done = [r for r in kids.values() if r.info.status == "FINISHED"]
        other = [r for r in kids.values() if r.info.status == "RUNNING" and len(_epochs(client, r.info.run_id)) >= 2]
        return (done[0], other[0]) if done and other else None

    finished, resumed = _wait(first_done_second_training, "one finished trial and one training",
                              on_timeout=lambda: (tmp_path / "driver1.log").read_text()[-3000:])
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    killed_at = time.monotonic()
    # the dead driver's placement groups (its trial's workers) are released by Ray
    _wait(lambda: all(pg["state"] == "REMOVED" for pg in placement_group_table().values()),
          "the killed driver's placement groups to be removed", timeout=60)
    released_s = time.monotonic() - killed_at
    first_epochs = _epochs(client, finished.info.run_id)
    assert first_epochs == set(range(1, EPOCHS + 1))

    # 2. resume as a Ray job, stop the job while the second trial trains again
    from ray.job_submission import JobStatus, JobSubmissionClient

    jobs = JobSubmissionClient(f"http://{ray_internals.dashboard_url()}")
    def submit():
        try:
            return jobs.submit_job(
                entrypoint=" ".join([sys.executable, "experiments/ovenet_sweep.py", *ARGS, "sweep.resume=true"]),
                runtime_env={"working_dir": str(REPO),
                             "env_vars": {k: env[k] for k in ("MLFLOW_TRACKING_URI", "SEGLAB_HOME", "RAY_AUTH_MODE")
                                          if k in env},
                             "excludes": [".venv", ".git", "runs", "outputs", "mlartifacts", "mlflow.db"]})
        except RuntimeError as exc:  # the node's job agent may still be starting on a loaded machine
            if "No available agent" in str(exc):
                return None
            raise

    job_id = _wait(submit, "the Ray job agent to accept the job", timeout=120)
    _wait(lambda: client.get_run(resumed.info.run_id).data.tags.get("seglab.restarts") == "1",
          "the interrupted trial to resume in the Ray job", on_timeout=lambda: jobs.get_job_logs(job_id)[-3000:])
    assert jobs.stop_job(job_id)
    _wait(lambda: jobs.get_job_status(job_id) == JobStatus.STOPPED, "the job to stop", timeout=60)
    _wait(lambda: all(pg["state"] == "REMOVED" for pg in placement_group_table().values()),
          "the stopped job's placement groups to be removed", timeout=60)

    # 3. resume again, to the end
    t0 = time.monotonic()
    final = subprocess.run([sys.executable, "experiments/ovenet_sweep.py", *ARGS, "sweep.resume=true"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=400)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert "resuming" in final.stdout

    sweeps = client.search_runs([exp_id], filter_string="tags.`seglab.kind` = 'sweep'")
    assert len(sweeps) == 1 and sweeps[0].info.status == "FINISHED"  # the same parent run throughout
    assert sweeps[0].data.tags["seglab.resumed"] == "2"
    kids = _children(client, exp_id)
    assert set(kids) == {finished.info.run_id, resumed.info.run_id}  # the same child runs
    assert all(r.info.status == "FINISHED" for r in kids.values())
    # the finished trial was not re-run: its epochs were logged once, it never restarted
    history = client.get_metric_history(finished.info.run_id, "val_miou")
    assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))
    assert "seglab.restarts" not in kids[finished.info.run_id].data.tags
    # the interrupted one resumed from its checkpoints (twice) and logged every epoch
    assert _epochs(client, resumed.info.run_id) == set(range(1, EPOCHS + 1))
    assert kids[resumed.info.run_id].data.tags["seglab.restarts"] == "2"
    state = json.loads(next((tmp_path / "runs").glob("ovenet_vs_hrnet-*/sweep.json")).read_text())
    assert state["status"] == "FINISHED" and state["parent_run_id"] == sweeps[0].info.run_id
    _check_what_the_sweep_logged(client, sweeps[0].info.run_id, list(kids.values()), final.stdout, tmp_path)
    print(f"R2: placement groups released {released_s:.1f} s after the SIGKILL; final resume ran "
          f"{time.monotonic() - t0:.0f} s")
