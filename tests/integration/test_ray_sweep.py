"""A sweep on a real Ray cluster: what only Ray Tune and Ray Train can show (the sweep's logic, phases,
report and methods are proven in-process, tests/integration/test_honest_sweep.py and the method tests).

One grid sweep, the HRNet baseline and OVeNet at κ = 0.5 and κ = 1e39, one worker per trial with a
fraction of a CPU (0.4 + 0.1 for the trial's driver: all three at once on the 2-CPU session cluster, R6:
no deadlock, no placement group left afterwards), ASHA on:

* the stop marker on Ray (what ASHA writes when it cuts a trial): κ = 0.5's marker appears after the
  sweep's folder does; its trial ends itself after epoch 1, FINISHED and tagged, its workers freed
  (the module's check: no placement group left, every CPU free);
* R4: κ = 1e39 overflows the loss at step 1: the trial is FAILED with the reason (the loss terms
  named), not retried (no restart), the sweep goes on, the comparison lists it, the parent is FAILED;
* the baseline trains its whole schedule under ASHA; every trial is tagged with its node count.

And the SEMEDA edge-net stage as a Ray task (the in-process sweep runs it in the driver).
"""
import threading
import time
from pathlib import Path


from seglab.platform import tracking
from seglab.platform.config import RunConfig
from seglab.platform.sweep import SweepConfig, plan_trials, run_sweep
from seglab.platform.train.hooks import STOP_MARKER

from .conftest import RAY, TINY_DATA, TINY_OVERRIDES, compose

pytestmark = RAY

OVERRIDES = TINY_OVERRIDES + ["trainer.num_workers=1", "trainer.cpus_per_worker=0.4", "trainer.epochs=2",
                              "trainer.viz_samples=0",
                              "sweep.kappa=[0.5,1e39]", "++sweep.scheduler=asha", "sweep.experiment=ray_sweep",
                              "trainer.log_checkpoints=none"]


def _write_marker_when_the_sweep_starts(root: Path, key: str, stop: threading.Event) -> None:
    while not stop.is_set():
        for folder in root.glob("*/train"):
            (folder / key).mkdir(parents=True, exist_ok=True)
            (folder / key / STOP_MARKER).write_text("stopped by ASHA at progress=0.5: val_miou=0.0 (the test)\n")
            return
        time.sleep(0.05)


def test_a_stopped_and_a_diverging_trial_end_and_the_sweep_goes_on(ray_cluster, mlflow_store, tmp_path, capsys):
    base, sweep_dict = compose(OVERRIDES)
    sweep = SweepConfig.from_dict(sweep_dict)
    stopped = next(r for r in plan_trials(base, sweep) if r.loss.kwargs.get("kappa") == 0.5)
    done = threading.Event()
    writer = threading.Thread(target=_write_marker_when_the_sweep_starts,
                              args=(tmp_path / "runs", stopped.key(), done), daemon=True)
    writer.start()
    try:
        result = run_sweep(base, sweep, storage_root=str(tmp_path / "runs"))
    finally:
        done.set()
    assert "3 trial(s) at a time" in capsys.readouterr().out  # R6: fractional CPUs, min(4, 3 trials)
    client = tracking.client(mlflow_store)
    rows = {r["label"]: r for r in result.rows}
    children = {c.data.tags["seglab.label"]: c for c in tracking.child_runs(result.parent_run_id, mlflow_store)}
    assert len(children) == 3 and all(c.data.tags["seglab.num_nodes"] == "1" for c in children.values())
    epochs = {label: sorted(m.step for m in client.get_metric_history(c.info.run_id, "val_miou"))
              for label, c in children.items()}

    base_label = next(label for label, c in children.items() if c.data.tags["seglab.baseline"] == "true")
    assert epochs[base_label] == [1, 2] and "seglab.stopped_early" not in children[base_label].data.tags

    cut = next(label for label in children if "κ=0.5" in label)
    assert children[cut].info.status == "FINISHED" and children[cut].data.tags["seglab.stopped_early"] == "true"
    assert epochs[cut] == [1]

    failed = next(label for label in children if "κ=1e+39" in label)
    reason = children[failed].data.tags["seglab.failure"]
    assert children[failed].info.status == "FAILED"
    assert reason.startswith("non-finite loss at epoch 1 step 1 (loss terms ") and "loss=" in reason
    assert "seglab.restarts" not in children[failed].data.tags  # not retried: it would diverge again
    assert rows[failed]["status"].startswith("FAILED: non-finite loss at epoch 1 step 1")
    assert result.rows[-1]["label"] == failed  # failed rows sort last, listed, not dropped
    assert len(result.errors) == 1 and "non-finite loss at epoch 1 step 1" in result.errors[0]
    assert client.get_run(result.parent_run_id).info.status == "FAILED"
    assert RunConfig.from_dict(base).trainer.epochs == 2


def test_the_semeda_edge_net_stage_runs_as_a_ray_task(ray_cluster, mlflow_store, tmp_path):
    from seglab.losses.semeda import load_edge_net
    from seglab.platform import methods
    from seglab.platform.methods.semeda import RESOURCE, EdgeNetStage

    base, _ = compose(TINY_DATA + ["model=hrnet_w18_small_v1",
                                   "loss.edge_net={steps:20,max_rounds:1,val_samples:2,target_f1:0.5}"],
                      config_name="semeda")
    run = RunConfig.from_dict(base)
    exp = tracking.ensure_experiment("stage", mlflow_store)
    parent = tracking.start_parent_run(exp, "stage", {}, mlflow_store)
    ctx = methods.StageContext(mlflow_store, exp, parent, str(tmp_path / "cache"), use_gpu=False, inprocess=False)
    (path,) = EdgeNetStage().run([run], ctx)[RESOURCE].values()
    net, meta = load_edge_net(path)
    assert meta["steps"] == 20 and meta["num_classes"] == net.num_classes
    stage_run = tracking.client(mlflow_store).get_run(meta["mlflow_run_id"])
    assert stage_run.data.tags["seglab.kind"] == "stage" and stage_run.info.status == "FINISHED"
    assert stage_run.data.tags[tracking.PARENT_TAG] == parent
