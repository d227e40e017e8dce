"""SEMEDA end to end with the in-process executor (``cluster=inprocess``) and a real MLflow store, at the
smallest size: the edge-net stage runs in this process (``StageContext.inprocess``), the trials one
after another with the same Trainer, hooks, MLflow child runs and comparison table as on Ray.

One sweep pre-trains the edge network (stage 1: its own MLflow run) and trains PPCE + Sobel +
SEMEDA with trimap / F1 / E-measure metrics and pictures; a second sweep (Optuna over the λs, its
ASHA scheduler dropped: ASHA needs Ray Tune, and with one epoch it has no rung to stop a trial at)
reuses the cached edge net instead of training it again.
"""
import cv2
import ray

from seglab.platform import tracking
from seglab.platform.sweep import SweepConfig, run_sweep

from .conftest import compose

SMALLEST = [
    "cluster=inprocess", "trainer=tiny", "trainer.num_workers=1", "trainer.epochs=1", "trainer.viz_samples=1",
    "trainer.trimap_widths=[1,2,10]", "model=unet", "model.base_width=8",
    "dataset.image_size=[32,64]", "dataset.train.num_samples=4", "dataset.train.crop_size=[32,64]",
    "dataset.val.num_samples=2",
    "dataset.test.num_samples=2",
]
EDGE_NET = {"steps": 300, "crop": 32, "batch_size": 8, "val_samples": 8}


def _sweep(overrides, tmp_path, **sweep_changes):
    base, sweep_dict = compose(SMALLEST + overrides, config_name="semeda")
    base["loss"]["edge_net"] = dict(EDGE_NET)
    return run_sweep(base, SweepConfig.from_dict({**sweep_dict, **sweep_changes}), storage_root=str(tmp_path / "runs"))


def _runs(result, uri, kind):
    return [r for r in tracking.child_runs(result.parent_run_id, uri) if r.data.tags.get("seglab.kind") == kind]


def test_semeda_sweep_pretrains_the_edge_net_then_compares_ppce_sobel_semeda(mlflow_store, tmp_path, capsys):
    variants = [{"label": "Sobel λ1=1", "loss": {"name": "sobel", "lambda1": 1.0}},
                {"label": "SEMEDA (4,2,0)", "loss": {"lambda1": 4.0, "lambda2": 2.0, "lambda3": 0.0}}]
    ray_was_up = ray.is_initialized()
    result = _sweep(["sweep.experiment=semeda"], tmp_path, variants=variants)
    assert result.errors == []
    assert ray_was_up or not ray.is_initialized()  # the stage and the trials ran here: no Ray was started
    client = tracking.client(mlflow_store)

    # stage 1: one edge-net run nested under the sweep, F1 >= 0.99 on the val masks, weights as artifact
    (stage,) = _runs(result, mlflow_store, "stage")
    assert stage.info.status == "FINISHED" and stage.data.tags["seglab.stage"] == "semeda.edge_net"
    assert stage.data.metrics["val_edge_f1"] >= 0.99
    assert len(client.get_metric_history(stage.info.run_id, "edge_loss")) > 10
    assert {"edge_net", "edge_loss.png"} <= {a.path for a in client.list_artifacts(stage.info.run_id)}

    trials = {r.data.tags["seglab.label"]: r for r in _runs(result, mlflow_store, "trial")}
    assert set(trials) == {"unet", "Sobel λ1=1", "SEMEDA (4,2,0)"}
    assert trials["unet"].data.tags["seglab.baseline"] == "true"  # PPCE: the same U-Net with plain CE
    assert {t.data.tags["seglab.method"] for t in trials.values()} == {"unet", "sobel", "semeda"}
    edge_net = trials["SEMEDA (4,2,0)"].data.params["loss.edge_net"]
    assert edge_net.endswith("edge_net.pt") and stage.data.params["path"] == edge_net
    for label, run in trials.items():
        m = run.data.metrics
        assert run.info.status == "FINISHED", label
        for w in (1, 2, 10):  # every row of the comparison is measured alike, baseline included
            assert 0.0 <= m[f"val_trimap_miou_w{w}"] <= 1.0 and 0.0 <= m[f"val_nonboundary_miou_w{w}"] <= 1.0
            assert 0.0 <= m[f"val_trimap_error_w{w}"] <= 1.0
        assert 0.0 <= m["val_f1"] <= 1.0 and 0.0 <= m["val_emeasure"] <= 1.1
        pictures = {a.path for a in client.list_artifacts(run.info.run_id, "viz/epoch_001")}
        assert pictures == {"viz/epoch_001/val_00000.png", "viz/epoch_001/trimap.png"}, label
    semeda = trials["SEMEDA (4,2,0)"].data.metrics
    assert {"train_ce", "train_edge_l1", "train_edge_l2", "train_edge_l3"} <= set(semeda)
    assert "train_sobel" in trials["Sobel λ1=1"].data.metrics
    local = client.download_artifacts(trials["unet"].info.run_id, "viz/epoch_001/val_00000.png", str(tmp_path))
    panel = cv2.imread(local)
    assert panel.shape[1] == 4 * 64 and panel.shape[0] >= 2 * 32  # 2 x 4 tiles of the 32x64 image

    header = next(line for line in result.table.splitlines() if line.startswith("|"))
    assert "trimap w2" in header and "trimap w10" in header and "F1" in header and "λ1" in header
    assert {"comparison.md", "val_miou_curves.png"} <= {a.path for a in client.list_artifacts(result.parent_run_id)}

    # a second sweep (Optuna over the λs) reuses the cached edge net: no new stage run
    capsys.readouterr()
    again = _sweep(["sweep=semeda_lambdas_optuna", "sweep.num_samples=1", "sweep.scheduler=null",
                    "sweep.experiment=semeda"], tmp_path,
                   include_baseline=False)
    assert again.errors == []
    assert _runs(again, mlflow_store, "stage") == []
    assert "reusing the cached edge net" in capsys.readouterr().out
    (proposed,) = _runs(again, mlflow_store, "trial")
    assert proposed.data.params["loss.edge_net"] == edge_net
    assert 0.0 <= float(proposed.data.params["loss.lambda1"]) <= 4.0
    assert float(proposed.data.params["loss.lambda3"]) in (0.0, 0.25, 0.5)
