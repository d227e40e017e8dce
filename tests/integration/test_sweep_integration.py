"""A real 2-trial sweep (HRNet baseline + OVeNet), 2 DDP workers each, on a local Ray cluster.

Resuming after faults (an exception, a killed worker, a killed driver) is tested in test_faults.py
and test_sweep_resume.py.
"""
import torch

from seglab.platform import checkpoint as ckpt
from seglab.platform import tracking
from seglab.platform.sweep import SweepConfig, run_sweep

from .conftest import TINY_OVERRIDES, compose


def test_two_trial_sweep_logs_nested_runs(ray_cluster, mlflow_store, tmp_path):
    base, sweep_dict = compose(TINY_OVERRIDES + ["sweep.experiment=itest"])
    sweep = SweepConfig.from_dict(sweep_dict)
    result = run_sweep(base, sweep, storage_root=str(tmp_path / "runs"))
    assert result.errors == []

    client = tracking.client(mlflow_store)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    children = list(tracking.child_runs(result.parent_run_id, mlflow_store))
    assert len(children) == 2
    by_model = {c.data.tags["seglab.model"]: c for c in children}
    assert set(by_model) == {"hrnet_w18_small_v1", "ovenet_hrnet_w18_small_v1"}
    assert by_model["hrnet_w18_small_v1"].data.tags["seglab.baseline"] == "true"

    for child in children:
        run_id = child.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.tags[tracking.PARENT_TAG] == result.parent_run_id
        steps = sorted(m.step for m in client.get_metric_history(run_id, "val_miou"))
        assert steps == [1, 2]
        assert 0.0 <= child.data.metrics["val_miou"] <= 1.0
        assert int(child.data.params["model.params"]) > 100_000
        assert child.data.metrics["gflops"] > 0
        assert "train_loss" in child.data.metrics and "images_per_s" in child.data.metrics

        # the best checkpoint is an artifact that loads back into the model
        local = client.download_artifacts(run_id, "checkpoints/best.pt", str(tmp_path / run_id))
        state = ckpt.load(local)
        model = ckpt.load_model(local)
        for k, v in model.state_dict().items():
            assert torch.equal(v, state["model"][k])
        out = model(torch.randn(1, 3, 32, 64))
        assert out.logits.shape == (1, state["num_classes"], 8, 16)

    ovenet = by_model["ovenet_hrnet_w18_small_v1"].data
    for term in ("train_loss_final", "train_loss_seed", "train_loss_initial", "train_loss_conf"):
        assert term in ovenet.metrics
    assert "val_miou_initial" in ovenet.metrics
    assert float(ovenet.params["loss.kappa"]) == 0.5

    # the comparison table: one row per trial, baseline marked, logged on the parent run
    assert len(result.rows) == 2
    assert sum(r["baseline"] for r in result.rows) == 1
    assert "*" in result.table and "ovenet_hrnet_w18_small_v1" in result.table
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"comparison.md", "comparison.csv", "val_miou_curves.png"} <= artifacts


def test_baseline_sweep_trains_ocr_and_deeplab(ray_cluster, mlflow_store, tmp_path):
    from seglab.models import build_model
    from seglab.models.complexity import count_parameters

    from .conftest import TINY_DATA

    base, sweep_dict = compose(TINY_DATA + ["sweep.models=[hrnet_w18_small_v1_ocr,deeplabv3plus_r50]",
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
    assert {"train_loss_main", "train_loss_aux"} <= set(ocr)  # aux head weighted 0.4 / main 1.0
    assert children["hrnet_w18_small_v1_ocr"].data.tags["seglab.baseline"] == "true"  # first = reference row
