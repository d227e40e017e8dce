"""Every socket a local Ray cluster of seglab listens on is on loopback (127.0.0.1 / ::1).

Ray binds its servers to the node IP; left alone that is the machine's network address (or all
interfaces), and ``RAY_AUTH_MODE=disabled`` (Makefile) then means anyone on the network could hand
the cluster code. Two clusters are checked, with workers running so that their sockets count too:

* the demo's head: ``python -m seglab.platform.cluster start`` as ``scripts/demo.sh`` runs it
  (its own ports and --temp-dir), a driver connected the way the sweep connects inside a job
  (``cluster.local.init_ray`` with ``RAY_ADDRESS`` = the GCS address), then ``... cluster stop``;
* the in-process local cluster of ``cluster.local.init_ray()`` (the sweep driver without
  ``RAY_ADDRESS``), in a subprocess so it cannot clash with this process's Ray, measured during a
  2-worker gloo DDP run with ``cluster.ddp.loopback_torch_config()`` (torch's TCPStore otherwise
  listens on all interfaces).

Every process of the cluster is found through its session folder (GCS, raylet, dashboard and its
modules, monitors, Ray Client server, agents, workers, the driver) and its LISTEN sockets (TCP, IPv4
and IPv6) read with psutil.
"""
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from seglab.platform.cluster.listeners import Listener, cluster_listeners, cluster_processes
from seglab.platform.cluster.local import SINGLE_NODE_ENV

from .conftest import REPO, free_port

BIN = Path(sys.executable).parent

# A driver connected or started through cluster.local.init_ray(**argv[1]) that makes the cluster
# start workers. "wait": tasks and an actor, print "ready", wait for stdin to close. "train": a 2-worker
# gloo DDP run with cluster.ddp's TorchConfig, whose rank 0 lists the cluster's listeners (the driver
# included) into argv[3] while the process group is up.
DRIVER = r"""
import json, os, sys
from seglab.platform.cluster import ddp, listeners, local
local.init_ray(**json.loads(sys.argv[1]))
import ray

if sys.argv[2] == "wait":
    @ray.remote
    def square(x):
        return x * x

    @ray.remote
    class Counter:
        def one(self):
            return 1

    counter = Counter.remote()
    assert ray.get(counter.one.remote()) == 1 and ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    print("ready", flush=True)
    sys.stdin.read()
else:
    import ray.train
    from ray.train.torch import TorchTrainer

    def loop(cfg):
        import torch
        import torch.distributed as dist
        from seglab.platform.cluster import listeners

        t = torch.ones(1)
        dist.all_reduce(t)
        assert t.item() == 2
        if dist.get_rank() == 0:
            found = listeners.cluster_listeners(cfg["session"], [cfg["driver"]])
            with open(cfg["out"], "w") as f:
                json.dump([[l.pid, l.name, l.ip, l.port] for l in found], f)
        dist.barrier()

    TorchTrainer(loop, train_loop_config={"session": listeners.current_session_dir(), "driver": os.getpid(),
                                          "out": sys.argv[3]},
                 scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
                 run_config=ray.train.RunConfig(storage_path=os.path.dirname(sys.argv[3]) + "/train"),
                 torch_config=ddp.loopback_torch_config()).fit()
ray.shutdown()
"""


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", SINGLE_NODE_ENV)}
    env.update({"PATH": f"{BIN}:{env.get('PATH', '')}", "RAY_AUTH_MODE": "disabled",
                "RAY_USAGE_STATS_ENABLED": "0", "NO_ALBUMENTATIONS_UPDATE": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))})
    return env


def _read_line(proc, timeout):
    """The next stdout line of ``proc`` within ``timeout`` seconds ('' if none)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            return proc.stdout.readline().strip()
        if proc.poll() is not None:
            break
    return ""


def _assert_loopback_only(found, what):
    offenders = [str(l) for l in found if not l.loopback]
    report = "\n  ".join(str(l) for l in found)
    print(f"{what}: {len(found)} listening sockets, {len(offenders)} beyond loopback:\n  {report}")
    assert not offenders, f"{what}: {len(offenders)} of {len(found)} listening sockets are not on loopback:\n  " \
                          + "\n  ".join(offenders)


def test_the_demo_head_listens_on_loopback_only():
    env = _env()
    ray_tmp = tempfile.mkdtemp(prefix="raysec-", dir="/tmp")  # AF_UNIX socket paths must stay < 108 bytes
    gcs, dash, client = free_port(), free_port(), free_port()
    # scripts/demo.sh's start, on free ports and a private --temp-dir (and 2 CPUs: Ray starts a
    # worker per CPU for the first driver)
    start = subprocess.run(
        [sys.executable, "-m", "seglab.platform.cluster", "start", f"--port={gcs}", f"--dashboard-port={dash}",
         "--num-cpus=2", f"--temp-dir={ray_tmp}", f"--ray-client-server-port={client}",
         f"--log={ray_tmp}/start.log"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    session = start.stdout.strip()
    driver = None
    driver_log = Path(ray_tmp, "driver.log")
    try:
        assert start.returncode == 0 and session, start.stderr + Path(ray_tmp, "start.log").read_text()[-3000:]
        with driver_log.open("w") as log:
            driver = subprocess.Popen(
                [sys.executable, "-c", DRIVER, "{}", "wait"], cwd=REPO, env={**env, "RAY_ADDRESS": f"127.0.0.1:{gcs}"},
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        assert _read_line(driver, 90) == "ready", "the driver could not use the demo's head:\n" + \
            driver_log.read_text()[-3000:]
        found = cluster_listeners(session, [driver.pid])
    finally:
        if driver is not None:
            driver.stdin.close()
            try:
                driver.wait(timeout=30)
            except subprocess.TimeoutExpired:
                driver.kill()
        if session:
            subprocess.run([sys.executable, "-m", "seglab.platform.cluster", "stop", session], cwd=REPO, env=env,
                           timeout=60)
        left = cluster_processes(session) if session else []
        recorded = Path(ray_tmp, "ray_current_cluster").exists()  # ray start's note for ray.init()
        shutil.rmtree(ray_tmp, ignore_errors=True)

    ports = {l.port for l in found}
    names = {l.name for l in found}
    assert {gcs, dash, client} <= ports, f"GCS, dashboard or Ray Client not found among {sorted(ports)}"
    assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, names
    assert any(n.startswith("ray::") and "Agent" not in n for n in names), f"no worker found: {names}"
    assert driver.pid in {l.pid for l in found}
    _assert_loopback_only(found, "demo head")
    assert left == [], f"`cluster stop` left {left}"
    assert not recorded, "`cluster stop` left ray_current_cluster: a later ray.init() would try the dead cluster"


def test_the_sweeps_local_cluster_and_ddp_listen_on_loopback_only():
    env = _env()
    ray_tmp = tempfile.mkdtemp(prefix="raysec-", dir="/tmp")
    out = f"{ray_tmp}/listeners.json"
    try:
        # cluster.local.init_ray() without RAY_ADDRESS (the sweep driver's in-process cluster), then DDP;
        # RAY_TMPDIR: not a cluster some `ray start` recorded in /tmp/ray, which init_ray would join
        proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps({"num_cpus": 2, "_temp_dir": ray_tmp}),
                               "train", out], cwd=REPO, env={**env, "RAY_TMPDIR": ray_tmp},
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        found = [Listener(*row) for row in json.loads(Path(out).read_text())]
        sessions = list(Path(ray_tmp).glob("session_2*"))
        left = cluster_processes(str(sessions[0])) if sessions else []
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    names = {l.name for l in found}
    assert {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent", "python"} <= names, names
    assert any("dashboard.py" in n for n in names), names  # the sweep includes the dashboard
    train_workers = {l.pid for l in found if l.name.startswith("ray::RayTrainWorker")}
    assert len(train_workers) == 2, names
    _assert_loopback_only(found, "in-process cluster with a DDP run")
    _, alive = psutil.wait_procs(left, timeout=15)  # ray.shutdown() ends the cluster it started
    assert alive == [], f"ray.shutdown() left {alive}"
