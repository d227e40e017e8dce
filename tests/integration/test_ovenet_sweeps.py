"""OVeNet's two study sweeps end to end on a local Ray cluster, at the smallest size.

* ``sweep=ovenet_ablation``: the baseline + seven variants (one of them frozen at the baseline's
  trained weights, started after it) -> a Table-5-shaped comparison, per-trial pictures.
* ``sweep=ovenet_kappa_lambda_tau``: Optuna proposes (κ, λ, τ), ASHA stops weak trials, the
  baseline always runs the full schedule.
"""
import time

import cv2
import numpy as np
import torch

from seglab.platform import checkpoint as ckpt
from seglab.platform import tracking
from seglab.platform.sweep import SweepConfig, run_sweep

from .conftest import compose

# 1 worker per trial (two trials at a time on 2 CPUs), 64x128 images (the smallest HRNet input
# whose stride-32 branch still has 2x4 pixels).
SMALLEST = [
    "trainer=tiny", "trainer.num_workers=1", "trainer.viz_samples=2",
    "dataset.image_size=[64,128]", "dataset.train.num_samples=4", "dataset.train.crop_size=[64,128]",
    "dataset.val.num_samples=2",
    "dataset.test.num_samples=2",
]


def test_ablation_sweep_runs_seven_variants_and_the_baseline(ray_cluster, mlflow_store, tmp_path):
    """Also the reliability issue's R6: 8 trials with fractional resources (0.4 CPU per worker, so
    4 trials at a time on 2 CPUs) finish with no deadlock and leave no placement group behind."""
    from ray.util.placement_group import placement_group_table

    base, sweep_dict = compose(SMALLEST + ["sweep=ovenet_ablation", "trainer.epochs=1", "sweep.experiment=ablation",
                                           "trainer.cpus_per_worker=0.4"])
    result = run_sweep(base, SweepConfig.from_dict(sweep_dict), storage_root=str(tmp_path / "runs"))
    assert result.errors == []
    left = []
    for _ in range(60):  # Ray removes a finished trial's placement group asynchronously
        left = [pg for pg in placement_group_table().values() if pg.get("state") != "REMOVED"]
        if not left:
            break
        time.sleep(0.5)
    assert left == [], f"placement groups left after the sweep: {left}"
    client = tracking.client(mlflow_store)
    children = {c.data.tags["seglab.label"]: c for c in tracking.child_runs(result.parent_run_id, mlflow_store)}
    assert len(children) == 8 and all(c.info.status == "FINISHED" for c in children.values())
    baseline = next(c for c in children.values() if c.data.tags["seglab.baseline"] == "true")
    assert baseline.data.tags["seglab.model"] == "hrnet_w18_small_v1"

    # the frozen variant started from the baseline's best checkpoint and kept its body bit-identical
    frozen = children["Fr Br4 τ0.5 OHEM"].data
    body_file = frozen.params["model.body_checkpoint"]
    assert body_file.endswith("best.pt") and frozen.params["model.freeze_body"] == "True"
    base_state = ckpt.load(body_file)["model"]
    frozen_best = client.download_artifacts(children["Fr Br4 τ0.5 OHEM"].info.run_id, "checkpoints/best.pt",
                                            str(tmp_path / "frozen"))
    frozen_state = ckpt.load(frozen_best)["model"]
    shared = [k for k in base_state if k in frozen_state]
    assert len(shared) > 100
    assert all(torch.equal(base_state[k], frozen_state[k]) for k in shared)

    # every OVeNet variant: loss terms, S_i / S_s scores, offset diagnostics and the pictures
    for label, child in children.items():
        if child is baseline:
            continue
        m = child.data.metrics
        for key in ("train_loss_final", "train_loss_seed", "train_loss_initial", "train_loss_conf",
                    "val_miou_initial", "val_miou_seed", "val_offset_px", "val_confidence", "val_frac_changed",
                    "val_miou_gain_over_initial"):
            assert key in m, (label, key)
        assert 0.0 <= m["val_confidence"] <= 1.0 and 0.0 <= m["val_frac_changed"] <= 1.0
        assert abs(m["val_miou_gain_over_initial"] - (m["val_miou"] - m["val_miou_initial"])) < 1e-9
    pictures = [a.path for a in client.list_artifacts(children["Br4 τ0.2 OHEM"].info.run_id, "viz/epoch_001")]
    assert sorted(pictures) == ["viz/epoch_001/val_00000.png", "viz/epoch_001/val_00001.png"]
    local = client.download_artifacts(children["Br4 τ0.2 OHEM"].info.run_id, pictures[0], str(tmp_path / "viz"))
    panel = cv2.imread(local)
    assert panel is not None and panel.shape[1] == 4 * 128 and panel.shape[0] >= 2 * 64
    assert np.unique(panel.reshape(-1, 3), axis=0).shape[0] > 10  # a real picture, not a blank

    # the Table-5-shaped comparison, logged on the parent run
    table = result.table.splitlines()
    assert table[0].replace(" ", "").startswith("|variant|Fr|Br|τ|Ref|OHEM|mIoU|S_i|S_s|")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip().strip("|").split("|")] for line in table[2:10]}
    assert rows["Fr Br4 τ0.5 OHEM"][1:6] == ["✓", "4", "0.5", "", "✓"]
    assert rows["Br3 τ0.2 OHEM"][1:6] == ["", "3", "0.2", "", "✓"]
    assert rows["Br4 τ0.2 OHEM Ref2"][1:6] == ["", "4", "0.2", "2", "✓"]
    assert rows["Br4 τ0.2 CE"][1:6] == ["", "4", "0.2", "", ""]
    assert "comparison.md" in {a.path for a in client.list_artifacts(result.parent_run_id)}


def test_optuna_asha_sweep_keeps_the_baseline_running(ray_cluster, mlflow_store, tmp_path):
    base, sweep_dict = compose(SMALLEST + ["sweep=ovenet_kappa_lambda_tau", "sweep.num_samples=3",
                                           "trainer.epochs=2", "trainer.viz_samples=0", "sweep.experiment=optuna"])
    result = run_sweep(base, SweepConfig.from_dict(sweep_dict), storage_root=str(tmp_path / "runs"))
    assert result.errors == []
    client = tracking.client(mlflow_store)
    children = list(tracking.child_runs(result.parent_run_id, mlflow_store))
    assert len(children) == 4
    baseline = [c for c in children if c.data.tags["seglab.baseline"] == "true"]
    assert len(baseline) == 1 and baseline[0].info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(baseline[0].info.run_id, "val_miou"))
    assert steps == [1, 2]  # ASHA never stops the baseline
    for child in children:
        if child.data.tags["seglab.baseline"] == "true":
            continue
        p = child.data.params
        assert 0.1 <= float(p["loss.kappa"]) <= 1.0 and 0.1 <= float(p["loss.lam"]) <= 1.0
        assert float(p["model.tau"]) in (0.1, 0.2, 0.5, 1.0)
        epochs = sorted(m.step for m in client.get_metric_history(child.info.run_id, "val_miou"))
        # a trial ASHA cut after epoch 1 stops itself: FINISHED, tagged, one epoch logged
        assert child.info.status == "FINISHED"
        if child.data.tags.get("seglab.stopped_early") == "true":
            assert epochs == [1]
        else:
            assert epochs == [1, 2]
    methods = [c for c in children if c.data.tags["seglab.baseline"] != "true"]
    assert len({(c.data.params["loss.kappa"], c.data.params["loss.lam"]) for c in methods}) == 3


def test_a_trial_with_a_stop_marker_ends_itself_after_the_epoch(ray_cluster, mlflow_store, tmp_path):
    """What ASHA's stop does end to end: the run sees its marker before epoch 2, closes its MLflow
    run (FINISHED, tagged) and frees its workers; the trial returns normally."""
    from seglab.platform.config import RunConfig
    from seglab.platform.train.hooks import stop_marker
    from seglab.platform.sweep.trial import run_trial

    base, _ = compose(SMALLEST + ["trainer.epochs=3", "trainer.viz_samples=0"])
    run = RunConfig.from_dict({**base, "label": "stopped"})
    storage = tmp_path / "train"
    marker = stop_marker(str(storage), run.key())
    marker.parent.mkdir(parents=True)
    marker.write_text("stopped by the test\n")
    experiment_id = tracking.ensure_experiment("stop", mlflow_store)
    parent = tracking.start_parent_run(experiment_id, "stop", {}, mlflow_store)
    ctx = {"tracking_uri": mlflow_store, "experiment_id": experiment_id, "parent_run_id": parent,
           "storage_path": str(storage), "use_gpu": False}
    out = run_trial({"trial": run.to_dict(), "ctx": ctx})
    child = tracking.client(mlflow_store).get_run(out["mlflow_run_id"])
    assert child.info.status == "FINISHED" and child.data.tags["seglab.stopped_early"] == "true"
    history = tracking.client(mlflow_store).get_metric_history(child.info.run_id, "val_miou")
    assert sorted(m.step for m in history) == [1]
    for _ in range(120):  # the worker's CPU is back (Ray releases a finished run's resources asynchronously)
        if ray_cluster.available_resources().get("CPU", 0) >= 2 - 1e-6:
            break
        time.sleep(0.25)
    assert ray_cluster.available_resources().get("CPU", 0) >= 2 - 1e-6


def test_every_model_and_loss_switch_trains_in_the_ray_pipeline(ray_cluster, mlflow_store, tmp_path):
    variants = [
        {"label": "ocr br2 ohem", "model": {"name": "ovenet_hrnet_w18_small_v1_ocr", "branch_stage": 2},
         "loss": {"criterion": {"name": "ohem", "thresh": 0.7, "min_kept": 1000}}},
        {"label": "iso probs seed-out ref1", "model": {"tau_mode": "isotropic", "resample": "probs",
                                                       "inference_output": "seed", "cascade_steps": 1},
         "loss": {"criterion": "ohem", "criterion_seed": "ce", "class_weights": [1.0] * 9}},
    ]
    base, sweep_dict = compose(SMALLEST + ["trainer.epochs=1", "trainer.viz_samples=1", "sweep.experiment=switches"])
    sweep_dict = {**sweep_dict, "include_baseline": False, "variants": variants}
    result = run_sweep(base, SweepConfig.from_dict(sweep_dict), storage_root=str(tmp_path / "runs"))
    assert result.errors == []
    client = tracking.client(mlflow_store)
    children = {c.data.tags["seglab.label"]: c for c in tracking.child_runs(result.parent_run_id, mlflow_store)}
    assert set(children) == {"ocr br2 ohem", "iso probs seed-out ref1"}
    ocr = children["ocr br2 ohem"].data
    for term in ("train_loss_final_aux", "train_loss_seed_aux", "train_loss_initial_aux"):
        assert term in ocr.metrics  # OCR: soft-region logits resampled, fused and supervised too
    seed_out = children["iso probs seed-out ref1"].data
    # inference_output=seed: the headline val mIoU is S_s's, S_f is reported next to it
    assert seed_out.metrics["val_miou"] == seed_out.metrics["val_miou_seed"]
    assert "val_miou_final" in seed_out.metrics
    gain = seed_out.metrics["val_miou_final"] - seed_out.metrics["val_miou_initial"]
    assert abs(seed_out.metrics["val_miou_gain_over_initial"] - gain) < 1e-9
    for child in children.values():
        assert child.info.status == "FINISHED"
        assert client.list_artifacts(child.info.run_id, "viz/epoch_001")
