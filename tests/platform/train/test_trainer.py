"""The Trainer's behaviours, in-process and without Ray: the loop, the selection of the run's
checkpoint, the report split, resume, non-finite losses and the hooks (stop marker, time budget).

Every run here trains hrnet_w18_small_v1 on 8 generated 32x64 images (a few seconds per epoch)."""
import copy
import itertools
import math

import pytest
import torch
from torch.utils.data import DataLoader

from seglab.platform import checkpoint as ckpt
from seglab.platform.config import RunConfig
from seglab.platform.evaluation import SegmentationEvaluator, evaluate, validation_shard
from seglab.platform.train import hooks as H
from seglab.platform.train.trainer import Trainer

BASE = {
    "model": {"name": "hrnet_w18_small_v1"},
    "loss": {"name": "ce"},
    "dataset": {"name": "synthetic", "image_size": [32, 64], "seed": 0,
                "train": {"num_samples": 8, "augment": True, "crop_size": [32, 64], "scale_range": [0.75, 1.25]},
                "val": {"num_samples": 4, "augment": False}, "test": {"num_samples": 4, "augment": False}},
    "trainer": {"num_workers": 1, "epochs": 3, "batch_size": 4, "lr": 0.05, "seed": 0, "viz_samples": 0,
                "flops_input_size": [32, 64]},
    "label": "tiny",
}


def make_run(**trainer):
    d = copy.deepcopy(BASE)
    d["trainer"].update(trainer)
    return RunConfig.from_dict(d)


class RecordingWriter:
    """An in-memory sink with the tracking writer's interface: what a run would have logged."""

    active = True

    def __init__(self):
        self.metrics, self.tags, self.artifacts, self.status = [], {}, [], None

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))

    def log_artifact(self, path, folder):
        self.artifacts.append((path, folder))

    def log_artifacts(self, folder, artifact_path):
        self.artifacts.append((folder, artifact_path))

    def set_tag(self, key, value):
        self.tags[key] = str(value)

    def finish(self, status="FINISHED"):
        self.status = status


def quiet_trainer(run, hooks=(), writer=None):
    torch.manual_seed(run.trainer.seed)
    return Trainer.from_run(run, hooks=hooks, writer=writer, say=lambda text: None)


def weights(trainer):
    return {k: v.clone() for k, v in ckpt.unwrap(trainer.model).state_dict().items()}


def test_fit_trains_every_epoch_selects_the_best_and_scores_the_report_split_with_it(tmp_path):
    writer = RecordingWriter()
    trainer = quiet_trainer(make_run(), hooks=[H.BestCheckpoint(tmp_path / "best.pt"), H.Tracking(tmp_path)],
                            writer=writer)
    scores = trainer.fit()
    per_epoch = [m for _, m in writer.metrics if "val_miou" in m]
    assert [m["epoch"] for m in per_epoch] == [1, 2, 3]
    best = max(range(3), key=lambda i: per_epoch[i]["val_miou"])  # the first epoch of the highest score
    assert scores["selected_epoch"] == best + 1
    assert per_epoch[-1]["selection_score"] == pytest.approx(per_epoch[best]["val_miou"])
    assert [m["progress"] for m in per_epoch] == pytest.approx([1 / 3, 2 / 3, 1.0])
    # the result is the report split scored with the selected epoch's weights (best.pt), independently
    state = ckpt.load(str(tmp_path / "best.pt"))
    assert state["epoch"] == best + 1
    model = ckpt.model_from_state(state)
    test_ds = trainer.data.report_dataset()
    expected = evaluate(model, DataLoader(validation_shard(test_ds, 0, 1), batch_size=2),
                        [SegmentationEvaluator(trainer.data.report_context())], torch.device("cpu"))
    assert scores["test_miou"] == pytest.approx(expected["val_miou"], abs=1e-12)
    # ... and final_test_* with the last epoch's weights, which the model keeps afterwards
    last = evaluate(trainer.model, DataLoader(validation_shard(test_ds, 0, 1), batch_size=2),
                    [SegmentationEvaluator(trainer.data.report_context())], torch.device("cpu"))
    assert scores["final_test_miou"] == pytest.approx(last["val_miou"], abs=1e-12)
    assert writer.status == "FINISHED" and writer.tags["seglab.report_split"] == "test"
    assert ("checkpoints" in [f for _, f in writer.artifacts])


def test_the_selection_follows_the_configured_metric_and_mode():
    trainer = quiet_trainer(make_run(selection_metric="val_miou", selection_mode="min"))
    history = []
    trainer.register([type("Keep", (H.HookBase,), {"after_epoch": lambda self, e, m: history.append(m)})()])
    scores = trainer.fit()
    worst = min(range(3), key=lambda i: history[i]["val_miou"])
    assert scores["selected_epoch"] == worst + 1
    assert history[-1]["selection_score"] == pytest.approx(history[worst]["val_miou"])


def test_an_unknown_selection_metric_is_one_clear_error():
    trainer = quiet_trainer(make_run(epochs=1, selection_metric="val_nope"))
    with pytest.raises(Exception, match="sweep.metric=val_nope is not a metric this run validates"):
        trainer.fit()


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one():
    straight = quiet_trainer(make_run(epochs=2))
    straight.fit()
    first = quiet_trainer(make_run(epochs=2))
    first.register([type("StopAfter1", (H.HookBase,), {
        "before_epoch": lambda self, e: self.trainer.stop("test") if e == 2 else None})()])
    first.fit()
    assert first.last_epoch == 1
    state = copy.deepcopy(first.state_dict())
    resumed = quiet_trainer(make_run(epochs=2))
    resumed.load_state_dict(state, selected_weights=first.selected_weights)
    resumed.fit()
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.final_scores["test_miou"] == straight.final_scores["test_miou"]


def test_a_non_finite_loss_fails_the_run_with_its_epoch_step_and_terms(tmp_path):
    writer = RecordingWriter()
    trainer = quiet_trainer(make_run(lr=1e30, epochs=3), hooks=[H.Tracking(tmp_path)], writer=writer)
    scores = trainer.fit()
    assert scores == {}
    assert trainer.failure is not None and trainer.failure.startswith("non-finite loss at epoch ")
    assert "step" in trainer.failure and "loss=" in trainer.failure
    assert writer.status == "FAILED" and writer.tags["seglab.failure"] == trainer.failure
    assert H.failure_marker(tmp_path).read_text().strip() == trainer.failure
    assert trainer.last_epoch < 3


def test_a_stop_marker_ends_the_run_before_its_next_epoch(tmp_path):
    writer = RecordingWriter()

    class WriteMarker(H.HookBase):
        def after_epoch(self, epoch, metrics):
            if epoch == 1:
                (tmp_path / H.STOP_MARKER).write_text("stopped by ASHA at progress=0.33\n")

    trainer = quiet_trainer(make_run(epochs=3), hooks=[WriteMarker(), H.StopMarker(tmp_path)], writer=writer)
    trainer.fit()
    assert trainer.last_epoch == 1
    assert writer.tags["seglab.stopped_early"] == "true"
    assert trainer.stop_reason.startswith("stopped early after epoch 1: stopped by ASHA")
    assert trainer.final_scores["selected_epoch"] == 1  # a stopped run is still scored, on what it trained


class FakeClock:
    """``time.perf_counter`` that advances 10 s per call: training an epoch costs 10 s, the rest 10 s more."""

    def __init__(self):
        self.t = itertools.count(0, 10)

    def __call__(self):
        return float(next(self.t))


def test_the_time_budget_counts_training_seconds_only():
    """Issue 19 item 10: each epoch costs 10 s of training and 20 s of validation (fake clock). With a
    budget of 25 s the run trains 2 epochs (20 s of training; a third would pass 25 s). Charging the
    validation too (30 s per epoch, the old accounting) would stop it after one epoch."""
    writer = RecordingWriter()
    trainer = quiet_trainer(make_run(epochs=5, time_limit_s=25.0), hooks=[H.TimeBudget()], writer=writer)
    trainer.clock = FakeClock()
    trainer.fit()
    assert trainer.train_epoch_times == [10.0, 10.0]
    assert trainer.last_epoch == 2
    assert "20 s of training" in writer.tags["seglab.stopped_by_budget"]
    assert trainer.last_metrics["train_time_s"] == 20.0 and trainer.last_metrics["epoch_time_s"] == 30.0
    assert trainer.last_metrics["progress"] == pytest.approx(20 / 25)


def test_the_time_budget_drives_the_lr_schedule_by_training_time():
    from seglab.platform.train.schedule import poly_lr

    trainer = quiet_trainer(make_run(epochs=5, time_limit_s=40.0, lr=0.1, poly_power=1.0))
    trainer.train_epoch_times = [10.0, 10.0]  # 20 of 40 s spent: half of the schedule
    steps = trainer.total_steps
    assert trainer.lr_at(0) == pytest.approx(poly_lr(0.1, steps // 2, steps, 1.0))
    assert trainer.lr_at(0, 0.5) == pytest.approx(poly_lr(0.1, int(25 / 40 * steps), steps, 1.0))
    assert math.isclose(trainer.lr_at(steps - 1), poly_lr(0.1, steps - 1, steps, 1.0))
