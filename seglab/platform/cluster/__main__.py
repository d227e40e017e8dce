"""``python -m seglab.platform.cluster start|stop|listeners``: the demo's local Ray head.

* ``start`` -- ``ray start --head`` with every socket on 127.0.0.1 (``scripts/demo.sh``); prints
  the new cluster's session folder (exit 1 with one line on stderr if Ray does not start).
* ``stop SESSION_DIR`` -- stops that cluster only (``ray stop`` would end every cluster of the user).
* ``listeners SESSION_DIR`` -- the listening addresses of the cluster's processes; exit 1 if one
  is not on loopback.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Optional, Sequence

from seglab.platform.cluster import local
from seglab.platform.cluster.listeners import cluster_listeners
from seglab.platform.cluster.local import DEFAULT_DASHBOARD_PORT, DEFAULT_GCS_PORT


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m seglab.platform.cluster", description=local.__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
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
    return p


def start(args: argparse.Namespace) -> int:
    log = open(args.log, "w") if args.log else sys.stderr
    try:
        session = local.start_head(port=args.port, dashboard_port=args.dashboard_port, num_cpus=args.num_cpus,
                                   temp_dir=args.temp_dir, client_port=args.ray_client_server_port, log=log)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"seglab: error: could not start Ray: {e}", file=sys.stderr)
        return 1
    finally:
        if args.log:
            log.close()
    print(session)
    return 0


def show_listeners(session_dir: str) -> int:
    found = cluster_listeners(session_dir)
    for listener in found:
        print(("  " if listener.loopback else "! ") + str(listener))
    bad = [l for l in found if not l.loopback]
    print(f"{len(bad)} of {len(found)} listening sockets beyond loopback")
    return 1 if bad else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "start":
        return start(args)
    if args.cmd == "stop":
        local.stop_head(args.session_dir)
        return 0
    return show_listeners(args.session_dir)


if __name__ == "__main__":
    sys.exit(main())
