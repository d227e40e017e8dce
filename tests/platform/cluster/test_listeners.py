import os
import subprocess
import sys

import psutil
import pytest

from seglab.platform.cluster.listeners import (Listener, cluster_listeners, cluster_processes, find_gcs,
                                               gcs_address, is_loopback, listeners, session_of)


def test_is_loopback():
    assert all(is_loopback(ip) for ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "127.0.1.1", "::1%lo"))
    assert not any(is_loopback(ip) for ip in ("0.0.0.0", "::", "192.0.2.2", "::ffff:10.0.0.1"))
    with pytest.raises(ValueError):
        is_loopback("localhost")  # an address, not a host name


def test_listener_prints_like_an_address():
    assert str(Listener(7, "raylet", "127.0.0.1", 6379)) == "raylet (pid 7) listens on 127.0.0.1:6379"
    assert str(Listener(7, "gcs_server", "::", 6379)) == "gcs_server (pid 7) listens on [::]:6379"
    assert Listener(7, "x", "::ffff:127.0.0.1", 1).loopback and not Listener(7, "x", "0.0.0.0", 1).loopback


def test_the_gcs_and_its_session_are_found_by_port(fake_cluster):
    c = fake_cluster()
    gcs = find_gcs(c.port)
    assert gcs is not None and gcs.pid == c.gcs.pid
    assert session_of(gcs) == str(c.session)
    assert gcs_address(str(c.session)) == f"127.0.0.1:{c.port}"
    assert find_gcs(c.port, started_after=gcs.create_time() + 60) is None  # an older one is not the new cluster


def test_a_clusters_processes_are_found_through_its_session_folder(fake_cluster, spawn):
    c = fake_cluster()
    found = {p.pid for p in cluster_processes(str(c.session))}
    assert found == c.members  # not the decoys, nor this process
    assert cluster_processes(str(c.session) + "/") and cluster_processes(str(c.session) + "3") == []
    driver = spawn("--child=127.0.0.1")  # an in-process driver: named by pid, with what it started
    with_driver = {p.pid for p in cluster_processes(str(c.session), [driver.pid])}
    assert with_driver == c.members | {driver.pid, psutil.Process(driver.pid).children()[0].pid}


def test_the_listening_sockets_of_a_cluster(fake_cluster):
    c = fake_cluster(worker_host="0.0.0.0")
    found = cluster_listeners(str(c.session))
    by_pid = {l.pid: l for l in found}
    assert set(by_pid) == c.members and len(found) == 3
    assert by_pid[c.gcs.pid] == Listener(c.gcs.pid, "gcs_server fake_ray.py", "127.0.0.1", c.port)
    assert by_pid[c.gcs.pid].loopback and by_pid[c.client.pid].loopback
    assert by_pid[c.worker].ip == "0.0.0.0" and not by_pid[c.worker].loopback
    assert by_pid[c.worker].name == f"{os.path.basename(sys.executable)} fake_ray.py"
    # a process that listens on nothing has no listener (not this test process: an earlier test in the
    # same pytest worker, e.g. a Ray driver, may have left a socket listening in it)
    quiet = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert listeners([psutil.Process(quiet.pid)]) == []
    finally:
        quiet.kill()
        quiet.wait()
