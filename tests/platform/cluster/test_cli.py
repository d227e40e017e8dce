"""``python -m seglab.platform.cluster start|stop|listeners`` (start: tests/integration/test_job_and_resume.py)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil

from seglab.platform.cluster.__main__ import main

REPO = Path(__file__).resolve().parents[3]


def _cli_async(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "seglab.platform.cluster", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cli(*args):
    proc = _cli_async(*args)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_listeners_exits_0_when_every_socket_is_on_loopback(fake_cluster):
    c = fake_cluster()
    out = _cli("listeners", str(c.session))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert f"  gcs_server fake_ray.py (pid {c.gcs.pid}) listens on 127.0.0.1:{c.port}" in lines
    assert len(lines) == 4 and lines[-1] == "0 of 3 listening sockets beyond loopback"


def test_listeners_exits_1_and_marks_a_socket_beyond_loopback(fake_cluster, capsys):
    c = fake_cluster(worker_host="0.0.0.0")
    assert main(["listeners", str(c.session)]) == 1
    lines = capsys.readouterr().out.splitlines()
    marked = [l for l in lines if l.startswith("! ")]
    assert len(marked) == 1 and re.fullmatch(rf"! \S+ fake_ray\.py \(pid {c.worker}\) listens on 0\.0\.0\.0:\d+", marked[0])
    assert len(lines) == 4 and lines[-1] == "1 of 3 listening sockets beyond loopback"


def test_stop_ends_that_cluster_only_and_forgets_its_address(fake_cluster):
    c = fake_cluster()
    recorded = c.session.parent / "ray_current_cluster"  # what ray start writes for ray.init()
    recorded.write_text(f"127.0.0.1:{c.port}\n")
    stop = _cli_async("stop", str(c.session))
    c.gcs.wait(timeout=30)  # this test started them: reap them as they die (Ray's are reaped by init)
    c.client.wait(timeout=30)
    out, err = stop.communicate(timeout=60)
    assert stop.returncode == 0 and out == "", err
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in c.members)
    assert all(d.poll() is None for d in c.decoys)  # another session, another GCS port: left alone
    assert not recorded.exists()


def test_bad_usage_exits_2():
    out = _cli("listeners")
    assert out.returncode == 2 and "session_dir" in out.stderr
    assert _cli("launch").returncode == 2
    assert "python -m seglab.platform.cluster" in _cli("--help").stdout
