"""A baseline sweep (OCR and DeepLab) with the in-process executor (``cluster=inprocess``: the same
Trainer, hooks and MLflow child runs in a real SQLite store as on Ray, one worker per trial).

The OVeNet-vs-HRNet sweep's outputs (nested runs, params, metrics, the checkpoint artifact, the
comparison) are checked at the end of test_sweep_resume.py; faults in test_faults.py.
"""
from seglab.platform import tracking
from seglab.platform.sweep import SweepConfig, run_sweep

from .conftest import compose


def test_baseline_sweep_trains_ocr_and_deeplab(mlflow_store, tmp_path):
    from seglab.models import build_model
    from seglab.models.complexity import count_parameters

    from .conftest import TINY_DATA

    # one worker (in process) on 4 training images: the 2 steps per epoch each of trainer=tiny's 2 workers took
    base, sweep_dict = compose(TINY_DATA + ["cluster=inprocess", "trainer.num_workers=1", "dataset.train.num_samples=4",
                                            "sweep.models=[hrnet_w18_small_v1_ocr,deeplabv3plus_r50]",
                                            "sweep.experiment=itest_baselines"], config_name="baselines")
    result = run_sweep(base, SweepConfig.from_dict(sweep_dict), storage_root=str(tmp_path / "runs"))
    assert result.errors == []
    client = tracking.client(mlflow_store)
    children = {c.data.tags["seglab.model"]: c for c in tracking.child_runs(result.parent_run_id, mlflow_store)}
    assert set(children) == {"hrnet_w18_small_v1_ocr", "deeplabv3plus_r50"}
    for name, child in children.items():
        assert child.info.status == "FINISHED"
        assert sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_miou")) == [1, 2]
        assert int(child.data.params["model.params"]) == count_parameters(build_model(name, num_classes=9))
    ocr = children["hrnet_w18_small_v1_ocr"].data.metrics
    assert {"train_loss_main", "train_loss_aux"} <= set(ocr)
    # aux head weighted 0.4 / main 1.0 (the epoch means of the terms are linear in them too)
    assert abs(ocr["train_loss"] - (ocr["train_loss_main"] + 0.4 * ocr["train_loss_aux"])) <= 1e-5 * ocr["train_loss"]
    assert children["hrnet_w18_small_v1_ocr"].data.tags["seglab.baseline"] == "true"  # first = reference row
