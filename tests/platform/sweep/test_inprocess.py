"""The in-process executor's trial (:func:`seglab.platform.sweep.inprocess.run_trial_inprocess`), no Ray:
one trial at a time against a real MLflow SQLite store.

Every run here trains hrnet_w18_small_v1 on 8 generated 32x64 images (a few seconds per epoch)."""
import pytest
import torch

from seglab.platform import checkpoint as ckpt
from seglab.platform import tracking
from seglab.platform.sweep.inprocess import run_trial_inprocess
from seglab.platform.train.hooks import stop_marker
from seglab.platform.train.trainer import Trainer
from tests.platform.train.test_trainer import make_run as trainer_test_run


def make_run(**trainer):
    """The trainer tests' tiny run, one epoch with seed 3 unless told otherwise."""
    return trainer_test_run(**{"epochs": 1, "seed": 3, **trainer})


@pytest.fixture
def ctx(tmp_path, mlflow_store):
    """A sweep's context for trials run in this process, with its MLflow parent run in a SQLite store."""
    uri = mlflow_store
    experiment_id = tracking.ensure_experiment("inprocess", uri)
    parent = tracking.start_parent_run(experiment_id, "inprocess", {}, uri)
    return {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent,
            "storage_path": str(tmp_path / "train"), "use_gpu": False, "executor": "inprocess"}


def test_a_trial_starts_from_the_weights_of_its_seed_whatever_ran_before(ctx):
    """As a Ray Train worker of rank 0 does (``torch.manual_seed(trainer.seed + rank)`` before the model
    is built), an in-process trial initialises its model from ``trainer.seed``, not from whatever state
    the process's random generator was left in by the trials (or anything else) before it. Reference:
    a bare Trainer built right after ``torch.manual_seed(trainer.seed)`` and trained the same epoch on
    the trial's one thread."""
    run = make_run()
    torch.manual_seed(12345)  # what an earlier trial of the sweep leaves behind
    torch.rand(1000)
    out = run_trial_inprocess({"trial": run.to_dict(), "ctx": ctx})
    trained = ckpt.load(str(latest_checkpoint(ctx, run)))["model"]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the trial's CPU budget (one thread), so the sums add in the same order
    try:
        torch.manual_seed(run.trainer.seed)
        reference = Trainer.from_run(run, say=lambda text: None)
        reference.fit()
    finally:
        torch.set_num_threads(threads)
    expected = ckpt.unwrap(reference.model).state_dict()
    assert set(trained) == set(expected)
    assert all(torch.equal(trained[k], expected[k]) for k in expected)
    assert out["val_miou"] == reference.last_metrics["val_miou"]


def latest_checkpoint(ctx, run):
    return stop_marker(ctx["storage_path"], run.key()).parent / ckpt.CHECKPOINT_NAME


def test_a_trial_with_a_stop_marker_ends_itself_after_the_epoch(ctx):
    """What ASHA's stop does to an in-process trial (moved from the Ray integration test): the run sees
    its marker before epoch 2, closes its MLflow run FINISHED with ``seglab.stopped_early=true`` and one
    epoch logged, and the trial returns normally with the epoch's result. A run configured for two DDP
    workers logs the one process that trained it."""
    run = make_run(epochs=3, num_workers=2)
    marker = stop_marker(ctx["storage_path"], run.key())
    marker.parent.mkdir(parents=True)
    marker.write_text("stopped by the test\n")
    out = run_trial_inprocess({"trial": run.to_dict(), "ctx": ctx})
    client = tracking.client(ctx["tracking_uri"])
    child = client.get_run(out["mlflow_run_id"])
    assert child.info.status == "FINISHED" and child.data.tags["seglab.stopped_early"] == "true"
    assert child.data.tags[tracking.PARENT_TAG] == ctx["parent_run_id"]
    assert child.data.params["trainer.num_workers"] == "1"
    history = client.get_metric_history(child.info.run_id, "val_miou")
    assert sorted(m.step for m in history) == [1]
    assert out["epoch"] == 1 and out["best_val_miou"] == history[0].value
    assert child.data.metrics["selected_epoch"] == 1  # still scored on the report split, with what it trained


def test_a_retried_trial_leaves_no_thread_of_its_failed_attempt_behind(ctx):
    """A Ray worker that crashes takes its sampler and MLflow-writer threads with it; in process, a
    failed attempt must stop them itself. Otherwise its system sampler goes on logging into the run
    (and its writer delivering) after the trial has ended, for as long as the process lives. The
    retry resumes from the attempt's checkpoint: one restart, both epochs logged, FINISHED."""
    import threading

    run = make_run(epochs=2, fail_once_at_epoch=2, max_failures=1)
    before = set(threading.enumerate())
    out = run_trial_inprocess({"trial": run.to_dict(), "ctx": ctx})
    left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []
    client = tracking.client(ctx["tracking_uri"])
    child = client.get_run(out["mlflow_run_id"])
    assert child.info.status == "FINISHED" and child.data.tags["seglab.restarts"] == "1"
    assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_miou")) == [1, 2]
