"""PHGMM end to end with the in-process executor (``cluster=inprocess``: the same Trainer, hooks, MLflow
child runs in a real SQLite store and comparison table as on Ray, trials one after another in this
process, one worker each) at the smallest size: two K values (one without the global latent) and an
HRNet baseline on the embedded 11-class data, each logging its KL terms, clustering indices and
pictures every epoch (two epochs)."""
import math

from seglab.datasets.reduced import REDUCED12_NAMES
from seglab.platform import tracking
from seglab.platform.sweep import SweepConfig, run_sweep

from .conftest import compose

SMALLEST = [
    "cluster=inprocess", "trainer=tiny", "trainer.num_workers=1", "trainer.epochs=2", "trainer.viz_samples=1",
    "trainer.trimap_widths=[1,2,5]", "model=phgmm_r18", "dataset.image_size=[32,64]",
    "dataset.train.num_samples=4", "dataset.train.crop_size=[32,64]", "dataset.val.num_samples=4",
    "dataset.test.num_samples=4",
]
LATENT_METRICS = ("val_kl_z", "val_kl_z_shuffled", "val_ssi", "val_chi", "val_dbi", "val_pi_entropy")


def test_phgmm_sweep_logs_kl_terms_clustering_and_pictures_per_epoch(mlflow_store, tmp_path):
    base, sweep_dict = compose(SMALLEST + ["sweep.experiment=phgmm"], config_name="phgmm")
    variants = [{"label": "K=2", "model": {"num_components": 2, "use_global": True}},
                {"label": "K=4 no g", "model": {"num_components": 4, "use_global": False}}]
    result = run_sweep(base, SweepConfig.from_dict({**sweep_dict, "variants": variants}),
                       storage_root=str(tmp_path / "runs"))
    assert result.errors == []
    client = tracking.client(mlflow_store)
    trials = {r.data.tags["seglab.label"]: r for r in tracking.child_runs(result.parent_run_id, mlflow_store)}
    assert set(trials) == {"hrnet_w18_small_v1", "K=2", "K=4 no g"}
    history = lambda run, key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key))  # noqa: E731

    for label in ("K=2", "K=4 no g"):
        run = trials[label]
        assert run.info.status == "FINISHED" and run.data.tags["seglab.method"] == "phgmm"
        for key in LATENT_METRICS + ("train_kl_z", "train_seg", "train_soft_iou", "val_precision",
                                     "val_recall", "val_trimap_error_w2"):
            assert history(run, key) == [1, 2], (label, key)
        m, p = run.data.metrics, run.data.params
        assert -1.0 <= m["val_ssi"] <= 1.0 and m["val_dbi"] >= 0.0 and m["val_chi"] >= 0.0
        assert m["val_kl_z"] >= 0.0 and m["val_kl_z_shuffled"] >= 0.0
        # PostNet is training-only: the inference parameter count leaves it out
        assert int(p["model.params_inference"]) < int(p["model.params"])
        for epoch in (1, 2):
            pictures = {a.path.rsplit("/", 1)[1] for a in client.list_artifacts(run.info.run_id, f"viz/epoch_00{epoch}")}
            assert pictures == {"val_00000.png", "trimap.png", "latents_pca.png", "mixture_weights.png"}, label
        # the reported mean covers the 11 classes, never the background label (a data-set property)
        ious = [m[f"val_iou_{n.replace(' ', '_')}"] for n in REDUCED12_NAMES[:11] if f"val_iou_{n.replace(' ', '_')}" in m]
        assert math.isclose(m["val_miou"], sum(ious) / len(ious), rel_tol=1e-9)
    assert history(trials["K=2"], "val_kl_g") == [1, 2] and "train_kl_g" in trials["K=2"].data.metrics
    assert "val_kl_g" not in trials["K=4 no g"].data.metrics

    baseline = trials["hrnet_w18_small_v1"]
    assert baseline.data.tags["seglab.baseline"] == "true" and "val_precision" in baseline.data.metrics
    assert "val_ssi" not in baseline.data.metrics  # no latent space

    lines = [line for line in result.table.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert {"K", "g", "KL z", "SSI", "CHI", "DBI"} <= set(header)
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.strip().strip("|").split("|")]
            for line in lines[2:5]}
    assert rows["K=4 no g"][header.index("K")] == "4" and rows["K=4 no g"][header.index("g")] == "off"
    assert rows["hrnet_w18_small_v1"][header.index("K")] == "-"
