"""Local Ray clusters that listen on the loopback interface only.

Ray 2.60 binds its servers (GCS, raylet, object manager, dashboard/runtime-env agents, metrics,
Ray Client server, workers) to the *node IP*, and turns a node IP of ``127.0.0.1`` into the
machine's network address (``services.resolve_ip_for_localhost``) unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` -- Ray's own single-node mode, the default on macOS and
Windows. With both (node IP 127.0.0.1 and that variable), every socket of the cluster listens on
127.0.0.1 (or ``::ffff:127.0.0.1``); Ray Train's DDP store needs :func:`loopback_torch_config`.
Nothing on the network can reach such a cluster, which is why ``RAY_AUTH_MODE=disabled`` stays
safe for the clusters started here. (Other users of the same machine can still connect through
loopback: on a shared host, use ``RAY_AUTH_MODE=token``.)

* :func:`init_ray` -- what a sweep driver calls: connect to ``RAY_ADDRESS`` (or the cluster the
  last ``ray start`` recorded) when there is one, else start an in-process local cluster.
* :func:`init_local` -- ``ray.init`` of a new local cluster bound to loopback (tests).
* :func:`loopback_torch_config` -- ``TorchTrainer(torch_config=...)`` whose gloo process group
  (torch's TCPStore, otherwise on all interfaces) listens on 127.0.0.1.
* ``python -m seglab.platform.raylocal start|stop|listeners`` -- the ``ray start --head`` of
  ``make demo`` (:func:`start_head`), stopping only that cluster (:func:`stop_head`), and the
  listening addresses of a cluster's processes (:func:`cluster_listeners`; exit 1 if one is not
  on loopback).

A multi-node cluster cannot be loopback-only: join nodes with ``ray start --address`` in a shell
without ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, and turn Ray's token authentication on.
"""
from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

LOOPBACK = "127.0.0.1"
# Ray's single-node switch (read by ray._private.ray_constants at import): "0" keeps 127.0.0.1
# as the node IP instead of replacing it with the machine's network address.
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
DEFAULT_GCS_PORT = 6379
DEFAULT_DASHBOARD_PORT = 8265


def loopback_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment for a ``ray start`` whose processes must all listen on loopback."""
    env = dict(os.environ if base is None else base)
    env[SINGLE_NODE_ENV] = "0"
    return env


# ---------------------------------------------------------------------------------------------
# in-process clusters (ray.init)


@contextlib.contextmanager
def _single_node() -> Iterator[None]:
    """While ``ray.init`` starts a local cluster: Ray's single-node mode, in this process (the
    constant was read when ray was imported) and in the processes it starts (the environment).
    Both are restored afterwards, so nothing else in the driver changes."""
    from ray._private import ray_constants

    saved_env = os.environ.get(SINGLE_NODE_ENV)
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_NODE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(SINGLE_NODE_ENV, None)
        else:
            os.environ[SINGLE_NODE_ENV] = saved_env


def init_local(**ray_init_kwargs):
    """``ray.init`` of a *new* local cluster (never ``RAY_ADDRESS``) whose processes all listen
    on 127.0.0.1; the dashboard, when included, on 127.0.0.1 as well."""
    import ray

    kwargs = dict(ray_init_kwargs)
    kwargs.setdefault("dashboard_host", LOOPBACK)
    with _single_node():
        return ray.init(address="local", _node_ip_address=LOOPBACK, **kwargs)


def init_ray(**ray_init_kwargs):
    """The sweep driver's Ray, as ``ray.init()`` decides: the cluster of ``RAY_ADDRESS`` (a job
    submitted with ``ray job submit`` gets it from Ray), else the one the last ``ray start`` on
    this machine recorded, else a new local cluster -- bound to loopback (:func:`init_local`).

    The dashboard is included: it serves Ray's state API, which Ray Train's placement-group
    cleaner needs to release the resources of a crashed trial."""
    import ray

    kwargs = dict(log_to_driver=True, configure_logging=True, logging_level="warning")
    kwargs.update(ray_init_kwargs)
    address = os.environ.get("RAY_ADDRESS") or _recorded_cluster()
    if not address:
        kwargs.setdefault("include_dashboard", True)
        return init_local(**kwargs)
    if _is_loopback_address(address):  # else Ray swaps 127.0.0.1 for the network address
        with _single_node():
            return ray.init(address=address, **kwargs)
    return ray.init(address=address, **kwargs)


def _recorded_cluster() -> Optional[str]:
    """The GCS address the last ``ray start`` on this machine recorded (``ray stop`` and
    :func:`stop_head` remove it), which ``ray.init()`` connects to when ``RAY_ADDRESS`` is unset."""
    from ray._private.utils import read_ray_address

    return read_ray_address() or None


def _is_loopback_address(address: str) -> bool:
    """``127.0.0.1:6379``, ``localhost:6379``, ``[::1]:6379`` (a GCS address); not ``auto``,
    ``ray://...`` or ``http://...``."""
    if "://" in address:
        return False
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return is_loopback(host)
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# the processes of a cluster and what they listen on


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
    return _arg(_cmdline(gcs_proc), "--session-dir")


def _session_re(session_dir: str):
    return re.compile(re.escape(str(session_dir).rstrip("/")) + r"(?![\w.-])")


def _gcs_address(session_dir: str, processes: Optional[Iterable] = None) -> Optional[str]:
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

    me = os.getpid()  # naming the session (`raylocal stop SESSION_DIR`) does not make it a Ray process
    session_re = _session_re(session_dir)
    roots: Dict[int, object] = {}
    for proc in psutil.process_iter():
        if proc.pid != me and session_re.search(_cmdline(proc)):
            roots[proc.pid] = proc
    gcs_address = _gcs_address(session_dir, roots.values())
    if gcs_address:
        address_re = re.compile(r"=" + re.escape(gcs_address) + r"(?!\d)")
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
    return listeners(cluster_processes(session_dir, extra_pids))


def current_session_dir() -> str:
    """The session folder of the cluster this process is connected to (after ``ray.init``)."""
    import ray

    return ray._private.worker.global_worker.node.get_session_dir_path()


# ---------------------------------------------------------------------------------------------
# Ray Train's DDP process group on loopback
#
# Ray Train's TorchConfig makes rank 0 start torch's TCPStore, whose server listens on all
# interfaces ([::]) whatever MASTER_ADDR says, and gloo picks the address of the host name. On a
# loopback node, LoopbackTorchConfig instead hands rank 0's TCPStore a socket bound to 127.0.0.1
# (torch's ``master_listen_fd``) and gloo the loopback interface; elsewhere it is TorchConfig.

_STORE: Dict[str, object] = {}  # in the rank-0 worker: the TCPStore server, kept alive


def _loopback_interface() -> str:
    import psutil

    for name, addrs in psutil.net_if_addrs().items():
        if any(a.address == LOOPBACK for a in addrs):
            return name
    return "lo"


def _serve_store(world_size: int, timeout_s: float) -> int:
    """In the rank-0 worker: a TCPStore server listening on 127.0.0.1 only; returns its port."""
    import socket
    from datetime import timedelta

    import torch.distributed as dist

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    _STORE["store"] = dist.TCPStore(LOOPBACK, port, world_size, True, timedelta(seconds=timeout_s),
                                    wait_for_workers=False, master_listen_fd=sock.detach())  # it owns the fd
    _STORE["port"] = port
    return port


def _join_process_group(backend: str, rank: int, world_size: int, port: int, timeout_s: float) -> None:
    """In every worker: ``init_process_group`` through the loopback store, gloo on loopback."""
    from datetime import timedelta

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR=LOOPBACK, MASTER_PORT=str(port))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback_interface())
    if rank == 0:
        store = _STORE["store"]
    else:
        store = dist.TCPStore(LOOPBACK, port, world_size, False, timedelta(seconds=timeout_s))
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))


def _drop_store() -> None:
    _STORE.clear()


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


def _torch_classes() -> Dict[str, type]:
    import ray
    from ray.train._internal.worker_group import WorkerGroup as V1WorkerGroup
    from ray.train.torch.config import TorchConfig, _set_torch_distributed_env_vars, _TorchBackend

    class LoopbackTorchBackend(_TorchBackend):
        def on_start(self, worker_group, backend_config):
            backend = backend_config.backend
            if backend is None:
                backend = "nccl" if worker_group.get_resources_per_worker().get("GPU", 0) > 0 else "gloo"
            if backend != "gloo" or not is_loopback(worker_group.execute_single(0, _node_ip)):
                return super().on_start(worker_group, backend_config)  # nccl, or workers on other nodes
            world_size = len(worker_group)
            port = worker_group.execute_single(0, _serve_store, world_size, backend_config.timeout_s)
            if not isinstance(worker_group, V1WorkerGroup):
                worker_group.execute(_set_torch_distributed_env_vars)
            ray.get([worker_group.execute_single_async(i, _join_process_group, backend, i, world_size, port,
                                                       backend_config.timeout_s) for i in range(world_size)])

        def on_shutdown(self, worker_group, backend_config):
            super().on_shutdown(worker_group, backend_config)
            worker_group.execute(_drop_store)

    class LoopbackTorchConfig(TorchConfig):
        """``TorchConfig`` whose gloo process group listens on 127.0.0.1 only on a loopback node."""

        @property
        def backend_cls(self):
            return LoopbackTorchBackend

    for cls in (LoopbackTorchBackend, LoopbackTorchConfig):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__  # pickled by reference
    return {"LoopbackTorchBackend": LoopbackTorchBackend, "LoopbackTorchConfig": LoopbackTorchConfig}


def __getattr__(name: str):
    """``LoopbackTorchConfig`` / ``LoopbackTorchBackend``, built on first use (they import Ray Train
    and torch, which the rest of this module does not need)."""
    if name in ("LoopbackTorchConfig", "LoopbackTorchBackend"):
        globals().update(_torch_classes())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def loopback_torch_config(**kwargs):
    """``TorchTrainer(..., torch_config=raylocal.loopback_torch_config())``: see above."""
    return __getattr__("LoopbackTorchConfig")(**kwargs)


# ---------------------------------------------------------------------------------------------
# the demo's head: ray start / stop


def head_args(*, port: int = DEFAULT_GCS_PORT, dashboard_port: int = DEFAULT_DASHBOARD_PORT,
              num_cpus: Optional[int] = None, temp_dir: Optional[str] = None,
              client_port: Optional[int] = None, agent_port: int = 0) -> List[str]:
    """``ray start --head`` for a single-machine cluster on loopback (run it with
    :func:`loopback_env`). ``ray start`` always starts a Ray Client server (``client_port``,
    Ray's default 10001; it cannot be turned off): it listens on 127.0.0.1 too. The dashboard
    agent's HTTP port (``agent_port``) is a free one, as with ``ray.init``, instead of ``ray
    start``'s fixed 52365: with that one taken by another cluster, ``ray job submit`` fails
    ("No available agent to submit job")."""
    if num_cpus is None:
        num_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    args = ["ray", "start", "--head", f"--node-ip-address={LOOPBACK}", f"--port={port}",
            f"--num-cpus={num_cpus}", "--include-dashboard=true", f"--dashboard-host={LOOPBACK}",
            f"--dashboard-port={dashboard_port}", f"--dashboard-agent-listen-port={agent_port}",
            "--disable-usage-stats"]
    if temp_dir:
        args.append(f"--temp-dir={temp_dir}")
    if client_port:
        args.append(f"--ray-client-server-port={client_port}")
    return args


def _ray_bin() -> str:
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.exists() else "ray"


def start_head(*, log=None, env: Optional[Dict[str, str]] = None, timeout: float = 180, **head_kwargs) -> str:
    """Run the demo's ``ray start --head`` (:func:`head_args`) and return the new cluster's
    session folder, which :func:`stop_head` and :func:`cluster_listeners` take. ``log``: a file
    object for ray start's output; ``env``: the environment of the cluster's processes (default
    this one's). On failure a partly started cluster of ours is stopped and ``RuntimeError`` raised."""
    args = head_args(**head_kwargs)
    args[0] = _ray_bin()
    port = head_kwargs.get("port", DEFAULT_GCS_PORT)
    t0 = time.time()
    out = subprocess.run(args, env=loopback_env(env), stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, text=True, timeout=timeout)
    gcs = find_gcs(port, started_after=t0)
    if out.returncode != 0 or gcs is None:
        if gcs is not None:
            stop_head(session_of(gcs))
        detail = (out.stdout or "")[-2000:] if log is None else ""
        raise RuntimeError(f"ray start exited with {out.returncode}" + (f":\n{detail}" if detail else ""))
    return session_of(gcs)


def stop_head(session_dir: str) -> int:
    """Stop the cluster of ``session_dir`` like ``ray stop --force`` (SIGKILL; the GCS ignores
    SIGTERM for ~20 s), but only its processes: ``ray stop`` ends every Ray cluster of the user.
    Returns how many processes were killed."""
    import psutil

    recorded = Path(session_dir).parent / "ray_current_cluster"  # written by ray start, for ray.init()
    gcs_address = _gcs_address(session_dir)
    killed = 0
    for _ in range(3):  # again for anything started meanwhile (a worker being spawned)
        procs = [p for p in cluster_processes(session_dir) if p.pid != os.getpid()]
        if not procs:
            break
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
                killed += 1
        psutil.wait_procs(procs, timeout=5)
    with contextlib.suppress(OSError):
        if gcs_address and recorded.read_text().strip() == gcs_address:
            recorded.unlink()  # as ray stop does: no later ray.init() tries the dead cluster
    return killed


def _main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seglab.platform.raylocal", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="ray start --head on loopback; prints the session folder")
    start.add_argument("--port", type=int, default=DEFAULT_GCS_PORT, help="GCS port")
    start.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT)
    start.add_argument("--num-cpus", type=int, default=None, help="default: the CPUs this process may use")
    start.add_argument("--temp-dir", default=None)
    start.add_argument("--ray-client-server-port", type=int, default=None, help="default: Ray's (10001)")
    start.add_argument("--log", default=None, help="file for ray start's output (default: stderr)")
    stop = sub.add_parser("stop", help="stop the cluster of SESSION_DIR only")
    stop.add_argument("session_dir")
    show = sub.add_parser("listeners", help="listening addresses of the cluster of SESSION_DIR; exit 1 if one "
                                            "is not loopback")
    show.add_argument("session_dir")
    args = parser.parse_args(argv)

    if args.cmd == "start":
        log = open(args.log, "w") if args.log else sys.stderr
        try:
            session = start_head(port=args.port, dashboard_port=args.dashboard_port, num_cpus=args.num_cpus,
                                 temp_dir=args.temp_dir, client_port=args.ray_client_server_port, log=log)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"seglab: error: could not start Ray: {e}", file=sys.stderr)
            return 1
        finally:
            if args.log:
                log.close()
        print(session)
        return 0
    if args.cmd == "stop":
        stop_head(args.session_dir)
        return 0
    found = cluster_listeners(args.session_dir)
    for listener in found:
        print(("  " if listener.loopback else "! ") + str(listener))
    bad = [l for l in found if not l.loopback]
    print(f"{len(bad)} of {len(found)} listening sockets beyond loopback")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(_main())
