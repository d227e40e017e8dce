"""On-disk data sets through the whole pipeline: fixtures written in the official layouts.

* a spine sweep (HRNet baseline + OVeNet) on a Cityscapes root via ``dataset=cityscapes dataset.root=...``;
* ACDC validation reported per condition;
* bad data fails with one line before Ray is asked for anything (the sweep script as a subprocess).

The two sweeps run with the in-process executor (``cluster=inprocess``: the same Trainer, data loading,
evaluators and MLflow child runs in a real SQLite store as on Ray, one worker per trial, no Ray).
"""
import os
import subprocess
import sys

import cv2
import numpy as np

from seglab.datasets.fixtures.acdc import write_acdc
from seglab.datasets.fixtures.cityscapes import write_cityscapes
from seglab.platform import tracking
from seglab.platform.sweep import SweepConfig, run_sweep

from .conftest import REPO, compose

SMALL = ["dataset.selection_fraction=null", "cluster=inprocess", "trainer=tiny", "trainer.num_workers=1", "trainer.epochs=1", "trainer.viz_samples=1",
         "dataset.base_size=128", "dataset.train.crop_size=[64,128]"]


def test_spine_sweep_on_a_cityscapes_root(mlflow_store, tmp_path):
    root = tmp_path / "cityscapes"
    write_cityscapes(root, splits={"train": 4, "val": 2}, size=(64, 128))
    base, sweep_dict = compose(["model=ovenet_hrnet_w18_small_v1", "dataset=cityscapes", f"dataset.root={root}",
                                *SMALL, "sweep.experiment=cityscapes"])
    result = run_sweep(base, SweepConfig.from_dict(sweep_dict), storage_root=str(tmp_path / "runs"))
    assert result.errors == []
    children = list(tracking.child_runs(result.parent_run_id, mlflow_store))
    assert sorted(c.data.tags["seglab.model"] for c in children) == ["hrnet_w18_small_v1", "ovenet_hrnet_w18_small_v1"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["dataset.name"] == "cityscapes" and child.data.params["dataset.root"] == str(root)
        assert 0.0 <= child.data.metrics["val_miou"] <= 1.0
        # the 19 Cityscapes classes: per-class IoU is logged under the official names
        assert any(k.startswith("val_iou_") for k in child.data.metrics)
        assert "val_iou_traffic_sign" in child.data.metrics or "val_iou_road" in child.data.metrics


def test_acdc_validation_is_reported_per_condition(mlflow_store, tmp_path):
    root = tmp_path / "acdc"
    write_acdc(root, splits={"train": 1, "val": 1}, conditions=("fog", "night"), size=(64, 128))
    base, sweep_dict = compose(["dataset=acdc", f"dataset.root={root}", "dataset.conditions=[fog,night]", *SMALL,
                                "sweep.models=[hrnet_w18_small_v1]", "sweep.experiment=acdc"],
                               config_name="baselines")
    result = run_sweep(base, SweepConfig.from_dict(sweep_dict), storage_root=str(tmp_path / "runs"))
    assert result.errors == []
    (child,) = list(tracking.child_runs(result.parent_run_id, mlflow_store))
    m = child.data.metrics
    assert {"val_miou_fog", "val_miou_night"} <= set(m)
    assert all(0.0 <= m[k] <= 1.0 for k in ("val_miou_fog", "val_miou_night"))


def test_a_bad_label_fails_with_one_line_before_ray(tmp_path):
    root = tmp_path / "cityscapes"
    written = write_cityscapes(root, splits={"train": 2, "val": 2}, size=(32, 64))
    image = written["val"][1]
    label = str(image).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelIds.png")
    bad = cv2.imread(label, cv2.IMREAD_UNCHANGED)
    bad[0, 0] = 200  # not a Cityscapes labelId
    cv2.imwrite(label, bad)
    env = {**os.environ, "SEGLAB_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    proc = subprocess.run([sys.executable, "experiments/ovenet_sweep.py", "dataset=cityscapes",
                           f"dataset.root={root}", "dataset.selection_fraction=null", "trainer=tiny"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seglab: error:"), proc.stderr
    assert "1 of 2 val samples of dataset 'cityscapes' are bad" in err[0] and label in err[0] and "[200]" in err[0]
    assert "dataset.on_bad_sample=skip" in err[0]
    assert not (tmp_path / "m.db").exists()
    assert np.array_equal(cv2.imread(label, cv2.IMREAD_UNCHANGED)[0, 0], 200)  # nothing rewrote the user's data
