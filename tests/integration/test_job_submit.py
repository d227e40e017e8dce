"""`ray job submit` of experiments/ovenet_sweep.py against a Ray head started by the test."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from seglab.platform import tracking
from seglab.platform.cluster import local

from .conftest import REPO, TINY_OVERRIDES, free_port

BIN = Path(sys.executable).parent


def _env(tmp_path):
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}:{env.get('PATH', '')}",
        "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "NO_ALBUMENTATIONS_UPDATE": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "SEGLAB_HOME": str(tmp_path),
    })
    env.pop("RAY_ADDRESS", None)
    return env


def test_ray_job_submit_runs_the_sweep(tmp_path):
    env = _env(tmp_path)
    ray_tmp = tempfile.mkdtemp(prefix="rayjob-", dir="/tmp")  # AF_UNIX socket paths must stay < 108 bytes
    gcs, dash, client = free_port(), free_port(), free_port()
    # the demo's `ray start --head` (every socket on 127.0.0.1), on free ports
    session = local.start_head(port=gcs, dashboard_port=dash, num_cpus=2, temp_dir=ray_tmp, client_port=client,
                               env=env, timeout=120)
    try:
        runtime_env = json.dumps({
            "env_vars": {k: env[k] for k in ("MLFLOW_TRACKING_URI", "SEGLAB_HOME", "RAY_AUTH_MODE")},
            "excludes": [".venv", ".git", "runs", "outputs", "mlartifacts", "mlflow.db"],
        })
        args = [a for a in TINY_OVERRIDES if not a.startswith("trainer=")] + [
            "trainer=tiny", "trainer.num_workers=1", "sweep.experiment=jobtest"]
        job = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(REPO),
             "--runtime-env-json", runtime_env, "--", "python", "experiments/ovenet_sweep.py", *args],
            env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
        log = job.stdout + job.stderr
        assert job.returncode == 0, log[-4000:]
        assert "succeeded" in log.lower(), log[-4000:]
        assert "hrnet_w18_small_v1" in log and "val mIoU" in log
    finally:
        local.stop_head(session)  # this cluster only (`ray stop` would end everyone's)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    client = tracking.client(env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("jobtest")
    runs = client.search_runs([exp.experiment_id])
    assert sum(r.data.tags.get("seglab.kind") == "sweep" for r in runs) == 1
    assert sum(r.data.tags.get("seglab.kind") == "trial" for r in runs) == 2
