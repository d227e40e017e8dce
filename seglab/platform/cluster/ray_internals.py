"""Every Ray-private API seglab uses, behind small public names; no other seglab module imports one.

"Private" means a module path with a component starting with ``_`` (``ray._private``,
``ray._common``, ``ray.train._internal``, ``ray.train.v2._internal``) or an underscore name taken
from a Ray module (``ray.train.torch.config._TorchBackend``). Ray may change these in any release,
so they are gathered here: a Ray upgrade touches this file (and, where a base class changes,
:mod:`seglab.platform.cluster.ddp`). ``tests/platform/cluster/test_ray_private_imports.py`` fails
when another module imports one.

Every name below was checked against **Ray 2.60.0**; each docstring says what to look at when
Ray is upgraded. After an upgrade run ``tests/platform/cluster`` (seconds: it calls each of these
against the installed Ray) and ``tests/integration/test_faults.py`` and ``test_job_and_resume.py``
(real clusters; a changed bind address or DDP rendezvous shows up there).

Imports happen inside the functions: importing this module imports no Ray.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, Optional

SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's single-node switch (``ray._private.ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR`` in 2.60):
"0" keeps 127.0.0.1 as the node IP instead of replacing it with the machine's network address."""


@contextlib.contextmanager
def single_node_mode() -> Iterator[None]:
    """While ``ray.init`` starts (or joins) a local cluster: Ray's single-node mode, in this process
    and in the processes it starts. Both are restored afterwards, so nothing else in the driver
    changes.

    Ray 2.60 reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, at import, into
    ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``; ``ray._private.services.get_node_ip_address``
    (and ``resolve_ip_for_localhost``) consult that constant, so the constant is flipped here and
    the environment variable is set for the processes Ray starts. On an upgrade check that both
    names still exist and still decide whether 127.0.0.1 is swapped for the network address
    (test_job_and_resume.py and test_faults.py fail if not)."""
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


def recorded_cluster_address() -> Optional[str]:
    """The GCS address the last ``ray start`` on this machine recorded, or None; ``ray.init()``
    connects to it when ``RAY_ADDRESS`` is unset (``ray stop`` removes it).

    Ray 2.60: ``ray._private.utils.read_ray_address()`` reads ``<temp dir>/ray/ray_current_cluster``
    (the temp dir honours ``RAY_TMPDIR``). On an upgrade check the function's name and that the
    file is still where :func:`seglab.platform.cluster.local.stop_head` removes it."""
    from ray._private.utils import read_ray_address

    return read_ray_address() or None


def session_dir() -> str:
    """The session folder of the cluster this process is connected to (after ``ray.init``).

    Ray 2.60: ``ray._private.worker.global_worker.node.get_session_dir_path()`` (no public API
    returns it). On an upgrade check ``global_worker.node`` and that method."""
    from ray._private.worker import global_worker

    return global_worker.node.get_session_dir_path()


def dashboard_url() -> str:
    """``host:port`` of the dashboard of the cluster this process is connected to (after
    ``ray.init``); what ``ray.init(...).dashboard_url`` reports. Used by tests that submit jobs to
    a cluster they did not start themselves.

    Ray 2.60: ``ray._private.worker.get_dashboard_url()`` (the node's ``webui_url``, or
    ``RAY_OVERRIDE_DASHBOARD_URL``). On an upgrade check that function's name."""
    from ray._private.worker import get_dashboard_url

    return get_dashboard_url()


def torch_backend_base() -> type:
    """Ray Train's torch backend class, the base of seglab's loopback DDP backend
    (:mod:`seglab.platform.cluster.ddp`), whose ``on_start`` sets up the process group and whose
    ``on_shutdown`` tears it down.

    Ray 2.60: ``ray.train.torch.config._TorchBackend``, returned by ``TorchConfig.backend_cls``.
    On an upgrade check its ``on_start(worker_group, backend_config)`` / ``on_shutdown`` and the
    worker-group methods ddp.py calls (``len``, ``execute``, ``execute_single``,
    ``execute_single_async``, ``get_resources_per_worker``); compare ``_TorchBackend.on_start``
    with ddp.py's, which follows it for gloo on a loopback node."""
    from ray.train.torch.config import _TorchBackend

    return _TorchBackend


def is_v1_worker_group(worker_group) -> bool:
    """Whether ``worker_group`` is Ray Train V1's (``ray.train._internal.worker_group.WorkerGroup``
    in 2.60). ``_TorchBackend.on_start`` sets the torch.distributed environment variables
    (:func:`set_torch_distributed_env_vars`) before the process group for V2 groups only (V1 does
    it in ``on_training_start``); ddp.py does the same. On an upgrade check that test in
    ``_TorchBackend.on_start``."""
    from ray.train._internal.worker_group import WorkerGroup as V1WorkerGroup

    return isinstance(worker_group, V1WorkerGroup)


def set_torch_distributed_env_vars() -> None:
    """In a Ray Train worker: ``LOCAL_RANK``, ``RANK``, ``WORLD_SIZE``... as torchrun sets them.

    Ray 2.60: ``ray.train.torch.config._set_torch_distributed_env_vars``. On an upgrade check that
    ``_TorchBackend.on_start`` still calls it (and with no arguments)."""
    from ray.train.torch.config import _set_torch_distributed_env_vars

    _set_torch_distributed_env_vars()


def quiet_train_worker() -> None:
    """In a Ray Train worker: drop the INFO line every ``ray.train.report`` writes
    ("Reporting training result ..."). Its logger is named after the module's file path.

    Ray 2.60: the line is logged by ``ray.train.v2._internal.execution.context`` through
    ``logging.getLogger(__file__)``. On an upgrade check which module logs it and how its logger
    is named (the line reappears in a trial's output if this stops matching)."""
    import ray.train.v2._internal.execution.context as train_context

    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


_TRAINER_CLASS: dict = {}


def trainer_class() -> type:
    """``ray.train.torch.TorchTrainer`` without the Ray Data actor when a run passes no Ray datasets.

    Ray 2.60's Train V2 starts a ``DatasetManager`` actor for every run (its ``DatasetsCallback``),
    even with ``datasets={}``: one more process per trial, which imports Ray Data (seconds of CPU on
    a small machine). seglab's runs load their data in the workers (PyTorch data sets), so the
    callback is dropped when there are no datasets. Ray 2.60: the callbacks come from the private
    ``DataParallelTrainer._create_default_callbacks`` and the class from
    ``ray.train.v2._internal.callbacks.DatasetsCallback``. On an upgrade check both names; if either
    is gone, return ``TorchTrainer`` itself (the only cost is the extra actor)."""
    if "cls" not in _TRAINER_CLASS:
        from ray.train.torch import TorchTrainer
        from ray.train.v2._internal.callbacks import DatasetsCallback

        class TorchTrainerWithoutRayData(TorchTrainer):
            def _create_default_callbacks(self):
                callbacks = super()._create_default_callbacks()
                if self.datasets:
                    return callbacks
                return [c for c in callbacks if not isinstance(c, DatasetsCallback)]

        TorchTrainerWithoutRayData.__module__, TorchTrainerWithoutRayData.__qualname__ = __name__, "TorchTrainerWithoutRayData"
        globals()["TorchTrainerWithoutRayData"] = TorchTrainerWithoutRayData  # pickled by reference
        _TRAINER_CLASS["cls"] = TorchTrainerWithoutRayData
    return _TRAINER_CLASS["cls"]
