"""Ray Train's DDP process group on loopback: ``TorchTrainer(torch_config=loopback_torch_config())``.

Ray Train's ``TorchConfig`` makes rank 0 start torch's TCPStore, whose server listens on all
interfaces (``[::]``) whatever ``MASTER_ADDR`` says, and gloo picks the address of the host name.
On a loopback node (:mod:`seglab.platform.cluster.local`), ``LoopbackTorchConfig`` instead hands
rank 0's TCPStore a socket bound to 127.0.0.1 (torch's ``master_listen_fd``) and gloo the loopback
interface; elsewhere (nccl, or workers on other nodes) it is ``TorchConfig``.

``LoopbackTorchConfig`` / ``LoopbackTorchBackend`` are built on first use (they import Ray Train
and torch, which importing this module does not); their base class comes from
:func:`seglab.platform.cluster.ray_internals.torch_backend_base`.
"""
from __future__ import annotations

import os
from typing import Dict

from seglab.platform.cluster import ray_internals
from seglab.platform.cluster.listeners import is_loopback
from seglab.platform.cluster.local import LOOPBACK

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
    from ray.train.torch import TorchConfig

    class LoopbackTorchBackend(ray_internals.torch_backend_base()):
        def on_start(self, worker_group, backend_config):
            backend = backend_config.backend
            if backend is None:
                backend = "nccl" if worker_group.get_resources_per_worker().get("GPU", 0) > 0 else "gloo"
            if backend != "gloo" or not is_loopback(worker_group.execute_single(0, _node_ip)):
                return super().on_start(worker_group, backend_config)  # nccl, or workers on other nodes
            world_size = len(worker_group)
            port = worker_group.execute_single(0, _serve_store, world_size, backend_config.timeout_s)
            if not ray_internals.is_v1_worker_group(worker_group):
                worker_group.execute(ray_internals.set_torch_distributed_env_vars)
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
    """``TorchTrainer(..., torch_config=ddp.loopback_torch_config())``: a ``TorchConfig`` (same
    keyword arguments) whose gloo process group listens on 127.0.0.1 on a loopback node."""
    return __getattr__("LoopbackTorchConfig")(**kwargs)
