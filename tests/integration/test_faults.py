"""R1 on a real local Ray cluster: a DDP worker SIGKILLed mid-epoch.

Ray Train restarts the worker group from the last checkpoint; the trial finishes in the same MLflow
run, tagged with the restart, with every epoch logged and the weights of an uninterrupted run (the
same two-rank DDP run trained in two local processes without Ray: the Trainer's optimizer state, LR
step, sampler epoch and per-(seed, epoch, sample) augmentation are restored from the checkpoint).

While the two workers train, every socket the session's cluster listens on -- its GCS, raylets,
dashboard and agents, the workers and the DDP process group's TCPStore -- is on 127.0.0.1.

(R4, a diverging trial, is in test_ray_sweep.py; a run that crashes once at epoch 2 resumes in
test_multinode.py; resume equality without Ray: tests/platform/train/test_trainer.py.)
"""
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from seglab.platform import checkpoint as ckpt
from seglab.platform import tracking
from seglab.platform.config import RunConfig

from .conftest import RAY, TINY_OVERRIDES, compose

pytestmark = RAY

# 32 samples / 2 workers / batch 2: 8 steps per epoch, long enough to kill a worker mid-epoch.
RESUME = TINY_OVERRIDES + ["trainer.epochs=3", "dataset.train.num_samples=32", "trainer.viz_samples=0",
                           "sweep.experiment=faults"]


def _trial(overrides, tmp_path, name):
    """Run one trial through the trial function (a TorchTrainer with 2 DDP workers, no Tune)."""
    from seglab.platform.sweep.trial import run_trial

    base, _ = compose(overrides)
    uri = tracking.tracking_uri()
    exp = tracking.ensure_experiment("faults", uri)
    parent = tracking.start_parent_run(exp, name, {}, uri)
    run = RunConfig.from_dict(base)
    run.label = name
    ctx = {"tracking_uri": uri, "experiment_id": exp, "parent_run_id": parent,
           "storage_path": str(tmp_path / name), "use_gpu": False}
    result = run_trial({"trial": run.to_dict(), "ctx": ctx})
    return result, Path(ctx["storage_path"]), run.key()


def _last_weights(storage: Path, key: str):
    """The model of the run's latest reported checkpoint (Ray Train's storage)."""
    found = sorted((storage / f"train-{key}").glob("checkpoint_*/checkpoint.pt"), key=lambda p: p.parent.name)
    assert found, f"no checkpoint under {storage}"
    state = ckpt.load(str(found[-1]))
    return state["epoch"], state["model"]


def _uninterrupted_rank(rank, base, init_file, out):
    """One rank of the uninterrupted reference: what a Ray Train worker does, without Ray."""
    from seglab.platform.train.trainer import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        run = RunConfig.from_dict(base)
        torch.manual_seed(run.trainer.seed + rank)
        trainer = Trainer.from_run(run, wrap=lambda m: DDP(m), say=lambda text: None)
        trainer.fit()
        if rank == 0:
            torch.save({"model": trainer.state_dict()["model"], "val_miou": trainer.last_metrics["val_miou"]}, out)
    finally:
        dist.destroy_process_group()


def _uninterrupted(tmp_path):
    base, _ = compose(RESUME)
    out = tmp_path / "uninterrupted.pt"
    mp.spawn(_uninterrupted_rank, args=(base, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    return torch.load(out, weights_only=True)


def _train_worker_pids():
    """PIDs of the Ray Train worker processes of this test's cluster (its raylet is our child)."""
    import psutil

    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(p.cmdline()):
                found.append(p.pid)
        except psutil.Error:
            continue
    return sorted(found)


def _loopback_check():
    """Every listening socket of the session's cluster and of this driver, while workers train."""
    from seglab.platform.cluster.listeners import cluster_listeners, current_session_dir

    found = cluster_listeners(current_session_dir(), extra_pids=[os.getpid()])
    return found, [str(listener) for listener in found if not listener.loopback]


def test_r1_a_worker_killed_mid_epoch_restarts_the_group_from_the_checkpoint(ray_cluster, mlflow_store, tmp_path,
                                                                            monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))  # the spawned ranks import tests.*
    outcome, killed, sockets = {}, None, None

    def train():
        try:
            outcome["result"] = _trial(RESUME, tmp_path, "worker_killed")
        except BaseException as exc:  # surfaced by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=train)
    thread.start()
    client = tracking.client()
    deadline = time.monotonic() + 300
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        runs = client.search_runs([tracking.ensure_experiment("faults")],
                                  filter_string="tags.`seglab.label` = 'worker_killed'")
        if runs and len(client.get_metric_history(runs[0].info.run_id, "val_miou")) >= 1:
            pids = _train_worker_pids()
            assert len(pids) == 2, pids
            sockets = _loopback_check()  # two DDP workers up: their sockets count too
            time.sleep(0.3)  # into epoch 2
            os.kill(pids[1], signal.SIGKILL)
            killed = (pids[1], time.monotonic())
        time.sleep(0.1)
    thread.join(timeout=300)
    assert killed is not None, "the run never reached epoch 2"
    assert "error" not in outcome, outcome.get("error")
    found, beyond = sockets
    assert len(found) >= 10 and beyond == [], "\n".join(beyond)
    result, storage, key = outcome["result"]
    recovered_s = time.monotonic() - killed[1]
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["seglab.restarts"] == "1"
    resumed_from = int(run.data.tags["seglab.resumed_from_epoch"])  # the last checkpoint Ray had registered
    assert 1 <= resumed_from <= 2
    steps = sorted({m.step for m in client.get_metric_history(run.info.run_id, "val_miou")})
    assert steps == [1, 2, 3]
    epoch, weights = _last_weights(storage, key)
    assert epoch == 3
    reference = _uninterrupted(tmp_path)
    worst = max((weights[k].float() - v.float()).abs().max().item() for k, v in reference["model"].items())
    assert worst <= 1e-5, f"resumed weights differ from the uninterrupted run's by up to {worst:g}"
    assert result["val_miou"] == pytest.approx(reference["val_miou"], abs=1e-6)
    print(json.dumps({"R1": f"killed worker pid {killed[0]} in epoch 2, resumed after epoch {resumed_from}; the trial "
                            f"finished {recovered_s:.1f} s later with the uninterrupted run's weights (max |Δ| {worst:g})",
                      "listening sockets on loopback": len(found)}))
