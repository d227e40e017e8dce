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
    tiny = [o for o in TINY_DATA if not o.startswith("sweep.register_model")]  # on, its default: checked below
    base, sweep_dict = compose(tiny + ["cluster=inprocess", "trainer.num_workers=1", "dataset.train.num_samples=4",
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
    check_registered_model(result, mlflow_store, tmp_path)


def check_registered_model(result, uri, tmp_path):
    """The sweep registered its best configuration (a planned comparison of two models: the best
    selection score) as a pyfunc model, a version per sweep, tagged with the sweep run; pyfunc's label
    maps and `seglab predict models:/NAME/VERSION`'s equal the eager argmax of the trial's checkpoint."""
    import cv2
    import mlflow
    import numpy as np
    import torch

    from seglab.platform import checkpoint as ckpt
    from seglab.platform.cli import main

    client = tracking.client(uri)
    target = client.get_run(result.parent_run_id).data.tags["seglab.registered_model"]
    assert target == "models:/baselines/1"
    version = client.get_model_version("baselines", "1")
    assert version.tags["seglab.sweep_run_id"] == result.parent_run_id
    best = max((r for r in result.rows if not r["failed"]), key=lambda r: r["selection_score"])
    assert version.tags["seglab.trial_run_id"] in best["run_ids"]
    assert version.tags["seglab.configuration"] == best["label"] and version.tags["seglab.claim"]
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 64, 3)).astype(np.uint8)
    labels = mlflow.pyfunc.load_model(target).predict(images)
    path = client.download_artifacts(version.tags["seglab.trial_run_id"], "checkpoints/best.pt", str(tmp_path))
    model = ckpt.load_model(path)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((images / 255.0 - mean) / std).transpose(0, 3, 1, 2)).float()
    with torch.no_grad():
        logits = torch.nn.functional.interpolate(model(x).logits, size=(32, 64), mode="bilinear", align_corners=False)
    expected = logits.argmax(1).numpy()
    assert labels.shape == (2, 32, 64) and np.array_equal(labels, expected)
    cv2.imwrite(str(tmp_path / "street.png"), images[0][:, :, ::-1])
    assert main(["predict", target, str(tmp_path / "street.png"), "--out", str(tmp_path / "pred"), "--no-progress"]) == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "pred" / "labels" / "street.png"), cv2.IMREAD_UNCHANGED), expected[0])
