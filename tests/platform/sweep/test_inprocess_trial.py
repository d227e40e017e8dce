"""The in-process executor runs a trial's training as a Ray Train worker does (train/worker.py):
torch's thread count is the trial's CPU budget (``trainer.cpus_per_worker``, rounded, at least 1) and
``trainer.seed`` decides the initial weights, whatever the process did before; the process's own
thread count is back afterwards (a notebook keeps its setting). An attempt that crashes stops like a
crashed worker: nothing of it keeps running in the process, and the retry delivers its records.

Each trial is real (a SQLite store, its MLflow child run, the Trainer with its model and data); in
the first tests ``fit`` is replaced by a probe that records what training would start with.
"""
from __future__ import annotations

import copy
import threading

import pytest
import torch

from seglab.platform import tracking
from seglab.platform.config import RunConfig
from seglab.platform.sweep.inprocess import run_trial_inprocess
from seglab.platform.train.trainer import Trainer

RUN = {
    "model": {"name": "hrnet_w18_small_v1"},
    "loss": {"name": "ce"},
    "dataset": {"name": "synthetic", "image_size": [32, 64], "seed": 0,
                "train": {"num_samples": 4, "crop_size": [32, 64]}, "val": {"num_samples": 2},
                "test": {"num_samples": 2}},
    "trainer": {"num_workers": 1, "epochs": 1, "batch_size": 2, "seed": 7, "viz_samples": 0, "cpus_per_worker": 0.9,
                "flops_input_size": [32, 64], "max_failures": 0},
    "label": "tiny",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite store and an experiment (made once: a fresh store's migrations take seconds)."""
    root = tmp_path_factory.mktemp("inprocess")
    uri = f"sqlite:///{root / 'm.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEGLAB_ARTIFACT_ROOT", (root / "art").as_uri())
        exp = tracking.ensure_experiment("inprocess", uri)
    return uri, exp


@pytest.fixture
def trial(store, tmp_path):
    """Runs one trial of a sweep of its own (``name``: its folder); returns its result."""
    uri, exp = store
    parent = tracking.start_parent_run(exp, "sweep", {}, uri)
    ctx = {"tracking_uri": uri, "experiment_id": exp, "parent_run_id": parent, "use_gpu": False,
           "executor": "inprocess", "single_node": True, "method": None, "resources": {}, "summaries": {}}

    def run(name, **trainer):
        d = copy.deepcopy(RUN)
        d["trainer"].update(trainer)
        return run_trial_inprocess({"trial": RunConfig.from_dict(d).to_dict(),
                                    "ctx": {**ctx, "storage_path": str(tmp_path / name)}})

    return run


@pytest.fixture
def sweep(trial, monkeypatch):
    """Runs one trial with a probe for ``fit``; returns what the trial's training started with."""
    seen = []

    def probe(trainer):
        seen.append({"threads": torch.get_num_threads(), "initial_seed": torch.initial_seed(),
                     "weights": copy.deepcopy(trainer.model.state_dict())})
        trainer.writer.finish()  # what the tracking hook would do at the end
        return {}

    monkeypatch.setattr(Trainer, "fit", probe)

    def run(name, **trainer):
        trial(name, **trainer)
        return seen[-1]

    return run


@pytest.fixture
def threads():
    """The test process's thread count, set to 2 (as on a 2-core machine) and restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_a_trial_trains_with_its_cpu_budget_as_torchs_thread_count_and_gives_it_back(sweep, threads):
    assert sweep("a", cpus_per_worker=0.9)["threads"] == 1  # as a Ray worker: round(0.9)
    assert torch.get_num_threads() == threads
    assert sweep("b", cpus_per_worker=3)["threads"] == 3
    assert torch.get_num_threads() == threads


def test_trainer_seed_decides_the_initial_weights(sweep, threads):
    torch.manual_seed(123)
    first = sweep("a", seed=7)
    torch.rand(1000)  # the process's random stream moved on
    again = sweep("b", seed=7)
    other = sweep("c", seed=8)
    assert first["initial_seed"] == again["initial_seed"] == 7 and other["initial_seed"] == 8
    for name, tensor in first["weights"].items():
        assert torch.equal(tensor, again["weights"][name]), name
    assert any(not torch.equal(t, other["weights"][n]) for n, t in first["weights"].items() if t.is_floating_point())


def _background_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("seglab-"))


def test_a_crashed_attempt_leaves_nothing_running_and_its_records_reach_the_run(trial, store):
    """An attempt that raises (here at the start of epoch 2) stops as a crashed Ray worker would: its
    writer and samplers stop; the retry from the checkpoint delivers what the first attempt logged."""
    uri, _ = store
    before = _background_threads()
    result = trial("crash", epochs=2, fail_once_at_epoch=2, max_failures=1)
    assert _background_threads() == before  # no writer or sampler of either attempt still running
    c = tracking.client(uri)
    run = c.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["seglab.restarts"] == "1"
    assert sorted(m.step for m in c.get_metric_history(run.info.run_id, "val_miou")) == [1, 2]
