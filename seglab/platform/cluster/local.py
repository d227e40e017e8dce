"""Local Ray clusters that listen on the loopback interface only.

Ray 2.60 binds its servers (GCS, raylet, object manager, dashboard/runtime-env agents, metrics,
Ray Client server, workers) to the *node IP*, and turns a node IP of ``127.0.0.1`` into the
machine's network address (``services.resolve_ip_for_localhost``) unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` -- Ray's own single-node mode, the default on macOS and
Windows. With both (node IP 127.0.0.1 and that variable), every socket of the cluster listens on
127.0.0.1 (or ``::ffff:127.0.0.1``); Ray Train's DDP store needs
:func:`seglab.platform.cluster.ddp.loopback_torch_config`. Nothing on the network can reach such a
cluster, which is why ``RAY_AUTH_MODE=disabled`` stays safe for the clusters started here. (Other
users of the same machine can still connect through loopback: on a shared host, use
``RAY_AUTH_MODE=token``.)

* :func:`init_ray` -- what a sweep driver calls: connect to ``RAY_ADDRESS`` (or the cluster the
  last ``ray start`` recorded) when there is one, else start an in-process local cluster.
* :func:`init_local` -- ``ray.init`` of a new local cluster bound to loopback (tests).
* :func:`start_head` / :func:`stop_head` -- the ``ray start --head`` of ``make demo``
  (``python -m seglab.platform.cluster start``), and stopping only that cluster.

A multi-node cluster cannot be loopback-only: join nodes with ``ray start --address`` in a shell
without ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, and turn Ray's token authentication on.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from seglab.platform.cluster import ray_internals
from seglab.platform.cluster.listeners import cluster_processes, find_gcs, gcs_address, is_loopback, session_of
from seglab.platform.cluster.ray_internals import SINGLE_NODE_ENV

LOOPBACK = "127.0.0.1"
DEFAULT_GCS_PORT = 6379
DEFAULT_DASHBOARD_PORT = 8265
__all__ = ["LOOPBACK", "SINGLE_NODE_ENV", "DEFAULT_GCS_PORT", "DEFAULT_DASHBOARD_PORT", "loopback_env",
           "init_local", "init_ray", "head_args", "start_head", "stop_head"]


def loopback_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment for a ``ray start`` whose processes must all listen on loopback."""
    env = dict(os.environ if base is None else base)
    env[SINGLE_NODE_ENV] = "0"
    return env


# ---------------------------------------------------------------------------------------------
# in-process clusters (ray.init)


def init_local(**ray_init_kwargs):
    """``ray.init`` of a *new* local cluster (never ``RAY_ADDRESS``) whose processes all listen
    on 127.0.0.1; the dashboard, when included, on 127.0.0.1 as well."""
    import ray

    kwargs = dict(ray_init_kwargs)
    kwargs.setdefault("dashboard_host", LOOPBACK)
    with ray_internals.single_node_mode():
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
    address = os.environ.get("RAY_ADDRESS") or ray_internals.recorded_cluster_address()
    if not address:
        kwargs.setdefault("include_dashboard", True)
        return init_local(**kwargs)
    if _is_loopback_address(address):  # else Ray swaps 127.0.0.1 for the network address
        with ray_internals.single_node_mode():
            return ray.init(address=address, **kwargs)
    return ray.init(address=address, **kwargs)


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
    session folder, which :func:`stop_head` and :func:`~seglab.platform.cluster.listeners.cluster_listeners`
    take. ``log``: a file object for ray start's output; ``env``: the environment of the cluster's
    processes (default this one's). On failure a partly started cluster of ours is stopped and
    ``RuntimeError`` raised."""
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
    address = gcs_address(session_dir)
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
        if address and recorded.read_text().strip() == address:
            recorded.unlink()  # as ray stop does: no later ray.init() tries the dead cluster
    return killed
