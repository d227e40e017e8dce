"""The demo's Ray head, `ray job submit`, and a sweep that survives its driver (R2), on one cluster.

``python -m seglab.platform.cluster start`` starts the head as ``scripts/demo.sh`` does (its own ports
and --temp-dir), then one 2-trial sweep (the HRNet baseline and OVeNet, one trial at a time):

1. run as a plain driver process connected to the head (``RAY_ADDRESS``, as the sweep connects inside
   a job), SIGKILLed once the first trial finished and the second is training; while it trains, every
   socket of the cluster (GCS, raylet, dashboard and its agents, Ray Client server, workers, the
   driver) listens on 127.0.0.1 only;
2. resumed with ``sweep.resume=true`` as a job (``ray job submit``), stopped with ``ray job stop``
   while the second trial trains again;
3. resumed again to the end, as a job: it succeeds, and no placement group is left. Ray releases an
   ended driver's placement groups, except one created while the job is stopped (Ray Train restarting
   its worker group): each resumed driver releases what the sweep's ended drivers left
   (test_leftover_placement_groups.py makes such a leftover on purpose).

The finished trial is not re-run, the other resumes from its checkpoints (twice), and the same MLflow
parent and child runs continue (one parent, two children, every epoch logged); the outputs are a
normal sweep's. ``... cluster stop`` then ends that cluster's processes only and forgets it (no later
``ray.init()`` tries the dead cluster).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seglab.platform import tracking
from seglab.platform.cluster.listeners import cluster_listeners, cluster_processes
from seglab.platform.cluster.local import SINGLE_NODE_ENV

from .conftest import RAY, REPO, TINY_OVERRIDES, free_port

pytestmark = RAY

EPOCHS = 4
ARGS = [a for a in TINY_OVERRIDES if a != "trainer=tiny"] + [
    "trainer=tiny", "trainer.num_workers=1", f"trainer.epochs={EPOCHS}", "trainer.viz_samples=0",
    "dataset.train.num_samples=24", "sweep.max_concurrent_trials=1", "sweep.experiment=resume"]
BIN = Path(sys.executable).parent
EXCLUDES = [".venv", ".git", "runs", "outputs", "mlartifacts", "mlflow.db"]


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", SINGLE_NODE_ENV)}
    env.update({"PATH": f"{BIN}:{env.get('PATH', '')}", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                "NO_ALBUMENTATIONS_UPDATE": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
                "SEGLAB_HOME": str(tmp_path),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))})
    return env


def _wait(predicate, what, timeout=240, on_timeout=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{on_timeout()}" if on_timeout else ""))


def _children(client, exp_id):
    runs = client.search_runs([exp_id], filter_string="tags.`seglab.kind` = 'trial'")
    return {r.info.run_id: r for r in runs}


def _epochs(client, run_id):
    return {m.step for m in client.get_metric_history(run_id, "val_miou")}


def _no_placement_groups(dashboard):
    from ray.util.state import list_placement_groups

    return all(pg.state == "REMOVED" for pg in list_placement_groups(address=dashboard, raise_on_missing_output=False))


def _placement_groups(dashboard):
    """What a failure shows: every placement group of the cluster, its state and job."""
    from ray.util.state import list_placement_groups

    return "\n".join(f"{pg.placement_group_id} {pg.state} job={pg.creator_job_id} {pg.name}"
                     for pg in list_placement_groups(address=dashboard, raise_on_missing_output=False))


def _submit(env, dashboard, *extra, submission_id=None):
    """``ray job submit`` of the sweep with ``sweep.resume=true``, as a user submits the demo."""
    runtime_env = json.dumps({"env_vars": {k: env[k] for k in ("MLFLOW_TRACKING_URI", "SEGLAB_HOME", "RAY_AUTH_MODE")},
                              "excludes": EXCLUDES})
    cmd = [str(BIN / "ray"), "job", "submit", "--address", dashboard, "--working-dir", str(REPO),
           "--runtime-env-json", runtime_env]
    if submission_id:
        cmd += ["--submission-id", submission_id, "--no-wait"]
    cmd += ["--", "python", "experiments/ovenet_sweep.py", *ARGS, "sweep.resume=true", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def _check_what_the_sweep_logged(client, parent_id, children, table_text, tmp_path):
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
    table = [line for line in table_text.splitlines() if line.startswith("| ")]
    assert len(table) == 3 and sum(line.startswith("| *") for line in table) == 1  # header + 2 rows, baseline marked
    assert {"comparison.md", "comparison.csv", "val_miou_curves.png"} <= {a.path for a in client.list_artifacts(parent_id)}


def _check_loopback(found, session_ports, driver_pid):
    ports, names = {listener.port for listener in found}, {listener.name for listener in found}
    assert set(session_ports) <= ports, f"GCS, dashboard or Ray Client not found among {sorted(ports)}"
    assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, names
    assert any(n.startswith("ray::") and "Agent" not in n for n in names), f"no worker found: {names}"
    assert driver_pid in {listener.pid for listener in found}
    beyond = [str(listener) for listener in found if not listener.loopback]
    assert beyond == [], f"{len(beyond)} of {len(found)} listening sockets are not on loopback:\n  " + "\n  ".join(beyond)


def _run_the_three_drivers(env, gcs, dashboard, tmp_path):
    """Steps 1-3 of the module docstring; returns what the assertions need."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = tracking.client(env["MLFLOW_TRACKING_URI"])
    log = open(tmp_path / "driver1.log", "w")
    driver = subprocess.Popen([sys.executable, "experiments/ovenet_sweep.py", *ARGS], cwd=REPO,
                              env={**env, "RAY_ADDRESS": f"127.0.0.1:{gcs}"}, stdout=log, stderr=subprocess.STDOUT)
    exp_id = _wait(lambda: client.get_experiment_by_name("resume"), "the experiment").experiment_id

    def first_done_second_training():
        kids = _children(client, exp_id)
        done = [r for r in kids.values() if r.info.status == "FINISHED"]
        other = [r for r in kids.values() if r.info.status == "RUNNING" and len(_epochs(client, r.info.run_id)) >= 2]
        return (done[0], other[0]) if done and other else None

    finished, resumed = _wait(first_done_second_training, "one finished trial and one training",
                              on_timeout=lambda: (tmp_path / "driver1.log").read_text()[-3000:])
    found = cluster_listeners(env["SESSION"], [driver.pid])  # a trial is training: its workers count too
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    assert _epochs(client, finished.info.run_id) == set(range(1, EPOCHS + 1))

    jobs = JobSubmissionClient(dashboard)

    def submit():
        done = _submit(env, dashboard, submission_id="resume-1")
        if done.returncode != 0 and "No available agent" in done.stdout + done.stderr:
            return None  # the node's job agent may still be starting on a loaded machine
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return done

    _wait(submit, "the Ray job agent to accept the job", timeout=120)
    _wait(lambda: client.get_run(resumed.info.run_id).data.tags.get("seglab.restarts") == "1",
          "the interrupted trial to resume in the Ray job", on_timeout=lambda: jobs.get_job_logs("resume-1")[-3000:])
    assert jobs.stop_job("resume-1")
    _wait(lambda: jobs.get_job_status("resume-1") == JobStatus.STOPPED, "the job to stop", timeout=60)
    final = _submit(env, dashboard)  # releases what the stopped job may have left (a Ray race)
    _wait(lambda: _no_placement_groups(dashboard), "every placement group to be removed after the sweep", timeout=60,
          on_timeout=lambda: _placement_groups(dashboard))
    return client, exp_id, finished, resumed, found, driver.pid, final


def test_the_demo_head_runs_a_sweep_that_survives_a_killed_driver_and_a_stopped_job(tmp_path):
    env = _env(tmp_path)
    ray_tmp = tempfile.mkdtemp(prefix="rayjob-", dir="/tmp")  # AF_UNIX socket paths must stay < 108 bytes
    gcs, dash, client_port = free_port(), free_port(), free_port()
    start = subprocess.run(
        [sys.executable, "-m", "seglab.platform.cluster", "start", f"--port={gcs}", f"--dashboard-port={dash}",
         "--num-cpus=2", f"--temp-dir={ray_tmp}", f"--ray-client-server-port={client_port}",
         f"--log={ray_tmp}/start.log"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    session = start.stdout.strip()
    env["SESSION"] = session
    dashboard = f"http://127.0.0.1:{dash}"
    try:
        assert start.returncode == 0 and session, start.stderr + Path(ray_tmp, "start.log").read_text()[-3000:]
        client, exp_id, finished, resumed, found, driver_pid, final = _run_the_three_drivers(env, gcs, dashboard,
                                                                                           tmp_path)
    finally:
        if session:
            subprocess.run([sys.executable, "-m", "seglab.platform.cluster", "stop", session], cwd=REPO, env=env,
                           timeout=60)
        left = cluster_processes(session) if session else []
        recorded = Path(ray_tmp, "ray_current_cluster").exists()  # ray start's note for ray.init()
        shutil.rmtree(ray_tmp, ignore_errors=True)

    _check_loopback(found, (gcs, dash, client_port), driver_pid)
    assert left == [], f"`cluster stop` left {left}"
    assert not recorded, "`cluster stop` left ray_current_cluster: a later ray.init() would try the dead cluster"
    log = final.stdout + final.stderr
    assert final.returncode == 0 and "succeeded" in log.lower(), log[-4000:]
    assert "resuming" in log and "val mIoU" in log

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
    assert len(state["ray_jobs"]) == len(set(state["ray_jobs"])) == 3  # each driver's Ray job, for the next one
    _check_what_the_sweep_logged(client, sweeps[0].info.run_id, list(kids.values()), log, tmp_path)
