"""A stand-in for the processes of a local Ray cluster, with no Ray: what the cluster room finds
through a session folder is checked against processes whose command lines and sockets are known."""
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List

import psutil
import pytest

# argv: --listen=HOST:PORT (a LISTEN socket), --child=HOST (a child process listening on HOST:0),
# --python=EXE (the child's interpreter); prints "ready" when listening (and its child too).
FAKE_PROCESS = r'''
import socket, subprocess, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
socks = []
if "listen" in args:
    host, port = args["listen"].rsplit(":", 1)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, int(port)))
    s.listen()
    socks.append(s)
if "child" in args:
    child = subprocess.Popen([args["python"], __file__, "--listen=" + args["child"] + ":0"], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline().strip() == "ready"
print("ready", flush=True)
time.sleep(300)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FakeCluster:
    session: Path                 # its session folder, as Ray names it
    port: int                     # its GCS port
    gcs: subprocess.Popen         # "gcs_server" naming the session; listens on 127.0.0.1:port
    worker: int                   # the gcs's child (a worker: its command line names nothing)
    client: subprocess.Popen      # a "Ray Client server": names the GCS address only
    decoys: List[subprocess.Popen] = field(default_factory=list)  # of another session / GCS port

    @property
    def members(self) -> set:
        return {self.gcs.pid, self.worker, self.client.pid}


@pytest.fixture
def spawn(tmp_path) -> Callable[..., subprocess.Popen]:
    """``spawn(*args, exe=...)``: a fake process (FAKE_PROCESS) running until the test ends."""
    script = tmp_path / "fake_ray.py"
    script.write_text(FAKE_PROCESS)
    started = []

    def start(*args: str, exe: str = sys.executable) -> subprocess.Popen:
        proc = subprocess.Popen([exe, str(script), *args, f"--python={sys.executable}"], stdout=subprocess.PIPE,
                                text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    yield start
    for proc in started:
        try:
            family = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
        except psutil.NoSuchProcess:
            family = []
        for p in family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=10)  # reaped here; its (killed) children by whoever inherits them


@pytest.fixture
def fake_cluster(tmp_path, spawn) -> Callable[..., FakeCluster]:
    """``fake_cluster(worker_host="127.0.0.1")``: a GCS named ``gcs_server`` (a link to Python) with
    a worker child listening on ``worker_host``, a Ray Client server, and two decoys that a
    careless match would take for members (``<session>2``, ``<gcs address>1``)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcs_server").symlink_to(sys.executable)

    def make(worker_host: str = "127.0.0.1") -> FakeCluster:
        session = tmp_path / "ray" / "session_2026-12-08_10-00-00_000001_42"
        (session / "logs").mkdir(parents=True)
        port = free_port()
        gcs = spawn(f"--listen=127.0.0.1:{port}", f"--child={worker_host}", f"--gcs_server_port={port}",
                    "--node-ip-address=127.0.0.1", f"--session-dir={session}", f"--log_dir={session}/logs",
                    exe=str(bin_dir / "gcs_server"))
        client = spawn("--listen=127.0.0.1:0", f"--address=127.0.0.1:{port}")
        decoys = [spawn(f"--session-dir={session}2"), spawn(f"--address=127.0.0.1:{port}1")]
        worker = psutil.Process(gcs.pid).children()[0].pid
        return FakeCluster(session, port, gcs, worker, client, decoys)

    return make
