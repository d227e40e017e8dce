"""Real faults on a real local Ray cluster and MLflow store (reliability issue: R1, R4).

(A run that crashes at the start of epoch 2 of 4 trains all 4 epochs: test_multinode.py.)
- R1: SIGKILL of one of the two DDP worker processes mid-epoch: Ray Train restarts the worker group
  from the last checkpoint, the trial finishes in the same MLflow run, tagged with the restart, with
  the uninterrupted run's final weights and metric: a resumed run equals an uninterrupted one
  (optimizer state, LR step, sampler epoch and the per-(seed, epoch, sample) augmentation restored);
- R4: a trial that diverges (κ = 1e39 overflows the loss in float32; the sweep's other trial, the
  baseline, shares its learning rate, so an absurd lr would fail both) is FAILED with the reason as
  a tag, is not retried, the baseline trains on, and the comparison lists the failed trial.
R6 (8 fractional trials, no leaked placement group) is the ablation sweep in test_ovenet_sweeps.py.
"""
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from seglab.platform import checkpoint as ckpt
from seglab.platform import tracking
from seglab.platform.config import RunConfig
from seglab.platform.sweep import SweepConfig, run_sweep

from .conftest import TINY_OVERRIDES, compose

# 64 samples / 2 workers / batch 2: 16 steps per epoch, long enough to kill a worker mid-epoch.
RESUME = TINY_OVERRIDES + ["trainer.epochs=4", "dataset.train.num_samples=64", "trainer.viz_samples=0",
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


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    worst = max((x.float() - y.float()).abs().max().item() for x, y in zip(a.values(), b.values()))
    assert worst <= 1e-5, f"resumed weights differ from the uninterrupted run's by up to {worst:g}"


@pytest.fixture(scope="module")
def uninterrupted(ray_cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        mp.setenv("SEGLAB_HOME", str(folder))
        result, storage, key = _trial(RESUME, folder, "uninterrupted")
    return result, _last_weights(storage, key)


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


def test_r1_a_worker_killed_mid_epoch_restarts_the_group_from_the_checkpoint(uninterrupted, mlflow_store, tmp_path):
    outcome = {}

    def train():
        try:
            outcome["result"] = _trial(RESUME, tmp_path, "worker_killed")
        except BaseException as exc:  # surfaced by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=train)
    thread.start()
    client = tracking.client()
    killed, deadline = None, time.monotonic() + 240
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        runs = client.search_runs([tracking.ensure_experiment("faults")],
                                  filter_string="tags.`seglab.label` = 'worker_killed'")
        if runs and len(client.get_metric_history(runs[0].info.run_id, "val_miou")) >= 2:
            time.sleep(0.3)  # into epoch 3
            pids = _train_worker_pids()
            assert len(pids) == 2, pids
            os.kill(pids[1], signal.SIGKILL)
            killed = (pids[1], time.monotonic())
        time.sleep(0.1)
    thread.join(timeout=300)
    assert killed is not None, "the run never reached epoch 3"
    assert "error" not in outcome, outcome.get("error")
    result, storage, key = outcome["result"]
    recovered_s = time.monotonic() - killed[1]
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["seglab.restarts"] == "1"
    resumed_from = int(run.data.tags["seglab.resumed_from_epoch"])  # the last checkpoint Ray had registered
    assert 1 <= resumed_from <= 3
    steps = sorted({m.step for m in client.get_metric_history(run.info.run_id, "val_miou")})
    assert steps == [1, 2, 3, 4]
    epoch, weights = _last_weights(storage, key)
    assert epoch == 4
    _assert_same_weights(weights, uninterrupted[1][1])
    assert result["val_miou"] == pytest.approx(uninterrupted[0]["val_miou"], abs=1e-6)
    print(f"R1: killed worker pid {killed[0]} in epoch 3, resumed after epoch {resumed_from}; the trial finished {recovered_s:.1f} s later "
          f"with the uninterrupted run's weights (val mIoU {result['val_miou']:.4f})")


def test_r4_a_diverging_trial_fails_with_its_reason_and_the_sweep_goes_on(ray_cluster, mlflow_store, tmp_path):
    base, sweep_dict = compose(TINY_OVERRIDES + [
        "trainer.num_workers=1", "trainer.cpus_per_worker=0.9", "trainer.epochs=2", "trainer.viz_samples=0",
        "sweep.kappa=[1e39]", "sweep.experiment=r4", "trainer.log_checkpoints=none"])
    result = run_sweep(base, SweepConfig.from_dict(sweep_dict), storage_root=str(tmp_path / "runs"))
    assert len(result.rows) == 2  # listed, not dropped
    failed, ok = result.rows[1], result.rows[0]  # failed trials sort last
    assert failed["failed"] and failed["kappa"] == pytest.approx(1e39)
    assert failed["status"].startswith("FAILED: non-finite loss at epoch 1 step 1 (loss terms ")
    assert tracking.client().get_run(failed["run_id"]).data.tags["seglab.failure"].startswith(
        "non-finite loss at epoch 1 step 1 (loss terms ")
    assert ok["baseline"] and ok["status"] == "FINISHED" and ok["epochs"] == 2  # the baseline trained on
    assert len(result.errors) == 1 and "non-finite loss at epoch 1 step 1" in result.errors[0]
    assert "FAILED: non-finite loss at epoch 1 step 1" in result.table
    assert tracking.client().get_run(result.parent_run_id).info.status == "FAILED"
    assert tracking.client().list_artifacts(ok["run_id"], "checkpoints") == []  # trainer.log_checkpoints=none
