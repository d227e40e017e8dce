"""The sweep's storage path must be one folder that every node of the cluster reads and writes."""
from __future__ import annotations

from pathlib import Path

from seglab.errors import check


def check_shared_storage(root: Path, timeout_s: float = 120.0) -> None:
    """On a cluster of several nodes: every node must read and write ``root`` (Ray Train keeps
    checkpoints there, trials resume from it on any node). One task per node reads a token file
    the driver wrote and writes its own; a node that cannot fails the sweep with one line naming
    the path and the node, before any trial starts. A single node always passes."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return
    token = uuid.uuid4().hex
    probe = root / f".storage-check-{token}"
    probe.write_text(token)

    @ray.remote(num_cpus=0, max_retries=0)
    def look(path: str, expected: str, node: str) -> bool:
        try:
            if Path(path).read_text() != expected:
                return False
            Path(f"{path}.{node}").write_text(expected)
            return True
        except OSError:
            return False

    try:
        refs = [look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(probe), token, n["NodeID"][:12]) for n in nodes]
        seen = ray.get(refs, timeout=timeout_s)
        bad = [f"{n['NodeManagerAddress']} ({n['NodeID'][:12]})" for n, ok in zip(nodes, seen)
               if not (ok and _holds(Path(f"{probe}.{n['NodeID'][:12]}"), token))]
    finally:
        for f in root.glob(f"{probe.name}*"):
            f.unlink(missing_ok=True)
    check(not bad, f"storage path {root} is not shared: node(s) {', '.join(bad)} cannot read or write it; mount one "
                   f"shared file system (EFS, Filestore, NFS, GCS FUSE) at the same path on every node and set "
                   f"cluster.storage_path to it (infra/README.md)")


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text
    except OSError:
        return False
