"""The processes of a local Ray cluster and the TCP sockets they listen on.

A cluster is found through its session folder (``/tmp/ray/session_<date>_<pid>``): every process
naming it on its command line (GCS, raylet, dashboard, monitors), those naming its GCS address
(Ray Client server), and everything they started (agents, workers, job drivers). psutil reads
their LISTEN sockets (TCP, IPv4 and IPv6); :attr:`Listener.loopback` says whether one is reachable
from this machine only. ``python -m seglab.platform.cluster listeners SESSION_DIR`` prints them.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from seglab.platform.cluster import ray_internals


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str
    ip: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.ip)

    def __str__(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.name} (pid {self.pid}) listens on {host}:{self.port}"


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.0.0.1); not the wildcard."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _cmdline(proc) -> str:
    import psutil

    try:
        return " ".join(proc.cmdline())
    except (psutil.Error, OSError):
        return ""


def _arg(cmdline: str, name: str) -> Optional[str]:
    m = re.search(rf"(?:^|\s){re.escape(name)}=(\S+)", cmdline)
    return m.group(1) if m else None


def find_gcs(gcs_port: int, started_after: float = 0.0):
    """The gcs_server process serving on ``gcs_port`` (started after the given time), or None."""
    import psutil

    best = None
    for proc in psutil.process_iter(["name", "create_time"]):
        try:
            if "gcs_server" not in (proc.info["name"] or ""):
                continue
            if proc.info["create_time"] + 1.0 < started_after:
                continue
        except psutil.Error:
            continue
        cmd = _cmdline(proc)
        if _arg(cmd, "--gcs_server_port") == str(gcs_port) and _arg(cmd, "--session-dir"):
            if best is None or proc.info["create_time"] > best.info["create_time"]:
                best = proc
    return best


def session_of(gcs_proc) -> str:
    """The session folder of a gcs_server process (:func:`find_gcs`)."""
    return _arg(_cmdline(gcs_proc), "--session-dir")


def _session_re(session_dir: str):
    return re.compile(re.escape(str(session_dir).rstrip("/")) + r"(?![\w.-])")


def gcs_address(session_dir: str, processes: Optional[Iterable] = None) -> Optional[str]:
    """``ip:port`` of the GCS of the cluster of ``session_dir`` (from its command line), or None."""
    import psutil

    session_re = _session_re(session_dir)
    for proc in psutil.process_iter(["name"]) if processes is None else processes:
        cmd = _cmdline(proc)
        if "gcs_server" in cmd.split(" ", 1)[0] and session_re.search(cmd):
            ip, port = _arg(cmd, "--node-ip-address"), _arg(cmd, "--gcs_server_port")
            if ip and port:
                return f"{ip}:{port}"
    return None


def cluster_processes(session_dir: str, extra_pids: Iterable[int] = ()) -> list:
    """Every live process of the cluster whose session folder is ``session_dir``: those naming
    it (GCS, raylet, dashboard, monitors) or the GCS address (Ray Client server), everything they
    started (agents, workers, job drivers), and ``extra_pids`` with theirs (an in-process driver)."""
    import psutil

    me = os.getpid()  # naming the session (`python -m seglab.platform.cluster stop SESSION_DIR`) is not Ray
    session_re = _session_re(session_dir)
    roots: Dict[int, object] = {}
    for proc in psutil.process_iter():
        if proc.pid != me and session_re.search(_cmdline(proc)):
            roots[proc.pid] = proc
    address = gcs_address(session_dir, roots.values())
    if address:
        address_re = re.compile(r"=" + re.escape(address) + r"(?!\d)")
        for proc in psutil.process_iter():
            if proc.pid not in roots and proc.pid != me and address_re.search(_cmdline(proc)):
                roots[proc.pid] = proc
    for pid in extra_pids:
        with contextlib.suppress(psutil.Error):
            roots.setdefault(pid, psutil.Process(pid))
    found = dict(roots)
    for proc in roots.values():
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                found.setdefault(child.pid, child)
    return [found[pid] for pid in sorted(found)]


def _title(proc) -> str:
    import psutil

    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return "?"
    if not cmd:
        return proc.name()
    if cmd[0].startswith("ray::") or cmd[0].startswith("ray-"):  # workers and agents set a title
        return cmd[0].split(" ", 1)[0]
    prog = Path(cmd[0]).name
    for arg in cmd[1:3]:
        if arg.endswith(".py") or arg.startswith("ray."):
            return f"{prog} {Path(arg).name if arg.endswith('.py') else arg}"
    return prog


def listeners(processes: Sequence) -> List[Listener]:
    """The listening TCP sockets (IPv4 and IPv6) of ``processes``."""
    import psutil

    out = []
    for proc in processes:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN and c.laddr:
                out.append(Listener(proc.pid, _title(proc), c.laddr.ip, c.laddr.port))
    return sorted(set(out), key=lambda l: (l.pid, l.port, l.ip))


def cluster_listeners(session_dir: str, extra_pids: Iterable[int] = ()) -> List[Listener]:
    """The listening sockets of every process of the cluster of ``session_dir`` (:func:`cluster_processes`)."""
    return listeners(cluster_processes(session_dir, extra_pids))


def current_session_dir() -> str:
    """The session folder of the cluster this process is connected to (after ``ray.init``)."""
    return ray_internals.session_dir()
