"""OVeNet's two study sweeps end to end with the in-process executor (``cluster=inprocess``: the same
Trainer, hooks, MLflow child runs in a real SQLite store, checkpoints, report split and comparison
table as on Ray, trials one after another in this process, one worker each), at the smallest size.

* ``sweep=ovenet_ablation``: the baseline + seven variants (one of them frozen at the baseline's
  trained weights, started after it) -> a Table-5-shaped comparison, per-trial pictures.
* every model and loss switch of OVeNet (OCR head, branch stage 2, isotropic τ, resampled
  probabilities, S_s as the inference output, one cascade step, class weights) trains and logs.
* ``sweep=ovenet_kappa_lambda_tau``: Optuna proposes (κ, λ, τ) after the fixed baseline run; the
  baseline's result is not fed to Optuna, each proposal's is; the proposals are TPE's, seeded with
  ``sweep.seed`` (checked against Optuna itself) and inside the space.

Left to the Ray tests (tests/integration, real Ray): ASHA (``sweep.scheduler=asha`` needs Ray Tune:
it never stops the baseline, a trial it cuts ends itself FINISHED with ``seglab.stopped_early`` and one
epoch), fractional CPUs per worker with no placement group left behind (reliability R6), and a
stopped trial's workers giving their CPUs back. The former
``test_a_trial_with_a_stop_marker_ends_itself_after_the_epoch`` is gone: the stop marker is tested in
process by tests/platform/train/test_trainer.py::test_a_stop_marker_ends_the_run_before_its_next_epoch
and, with its MLflow record (FINISHED, tagged, one epoch), by
tests/platform/sweep/test_inprocess.py::test_a_trial_with_a_stop_marker_ends_itself_after_the_epoch;
ASHA's stop on Ray is the Ray tests'.
"""
import cv2
import numpy as np
import optuna
import ray
import torch

from seglab.platform import checkpoint as ckpt
from seglab.platform import tracking
from seglab.platform.sweep import SweepConfig, run_sweep

from .conftest import compose

# In process, one worker per trial, 64x128 images (the smallest HRNet input whose stride-32 branch
# still has 2x4 pixels), 2 training steps of 2 images per epoch.
SMALLEST = [
    "cluster=inprocess", "trainer=tiny", "trainer.num_workers=1", "trainer.viz_samples=2",
    "dataset.image_size=[64,128]", "dataset.train.num_samples=4", "dataset.train.crop_size=[64,128]",
    "dataset.val.num_samples=2",
    "dataset.test.num_samples=2",
]


def test_ablation_sweep_runs_seven_variants_and_the_baseline(mlflow_store, tmp_path):
    base, sweep_dict = compose(SMALLEST + ["sweep=ovenet_ablation", "trainer.epochs=1", "sweep.experiment=ablation"])
    ray_was_up = ray.is_initialized()
    result = run_sweep(base, SweepConfig.from_dict(sweep_dict), storage_root=str(tmp_path / "runs"))
    assert result.errors == []
    assert ray_was_up or not ray.is_initialized()  # every trial ran in this process: no Ray was started
    client = tracking.client(mlflow_store)
    children = {c.data.tags["seglab.label"]: c for c in tracking.child_runs(result.parent_run_id, mlflow_store)}
    assert len(children) == 8 and all(c.info.status == "FINISHED" for c in children.values())
    baseline = next(c for c in children.values() if c.data.tags["seglab.baseline"] == "true")
    assert baseline.data.tags["seglab.model"] == "hrnet_w18_small_v1"

    # the frozen variant started after the baseline, from its best checkpoint, and kept its body bit-identical
    frozen = children["Fr Br4 τ0.5 OHEM"].data
    body_file = frozen.params["model.body_checkpoint"]
    assert body_file.endswith("best.pt") and frozen.params["model.freeze_body"] == "True"
    assert children["Fr Br4 τ0.5 OHEM"].info.start_time >= baseline.info.end_time
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


def _spy_on_optuna(monkeypatch):
    """Record what the sweep's searcher hands to Optuna (the inner searcher): every point it proposed and
    every result it was told, by Tune trial id."""
    from seglab.platform.sweep import search

    seen = {"suggested": [], "completed": []}
    real = search.make_searcher

    def make_searcher(*args, **kwargs):
        searcher = real(*args, **kwargs)
        inner_suggest, inner_complete = searcher.inner.suggest, searcher.inner.on_trial_complete

        def suggest(trial_id):
            point = inner_suggest(trial_id)
            seen["suggested"].append((trial_id, point))
            return point

        def on_trial_complete(trial_id, result=None, error=False):
            seen["completed"].append((trial_id, dict(result or {}), error))
            return inner_complete(trial_id, result=result, error=error)

        searcher.inner.suggest, searcher.inner.on_trial_complete = suggest, on_trial_complete
        return searcher

    monkeypatch.setattr(search, "make_searcher", make_searcher)
    return seen


def test_optuna_sweep_proposes_after_the_baseline_without_its_result(mlflow_store, tmp_path, monkeypatch):
    """The Optuna part of the κ/λ/τ study in process (``sweep.scheduler=asha`` dropped: ASHA needs Ray
    Tune, the Ray tests cover it). The reference is Optuna's own TPE sampler with ``sweep.seed``, asked
    for the same space and told the same results: its first three points, rounded to 4 places as the
    searcher rounds them, are the three runs' parameters."""
    seen = _spy_on_optuna(monkeypatch)
    base, sweep_dict = compose(SMALLEST + ["sweep=ovenet_kappa_lambda_tau", "sweep.num_samples=3",
                                           "sweep.scheduler=null", "trainer.epochs=1", "trainer.viz_samples=0",
                                           "sweep.experiment=optuna"])
    sweep = SweepConfig.from_dict(sweep_dict)
    result = run_sweep(base, sweep, storage_root=str(tmp_path / "runs"))
    assert result.errors == []
    client = tracking.client(mlflow_store)
    children = list(tracking.child_runs(result.parent_run_id, mlflow_store))
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    (baseline,) = [c for c in children if c.data.tags["seglab.baseline"] == "true"]
    proposed = sorted((c for c in children if c is not baseline), key=lambda c: c.info.start_time)
    assert [m.step for m in client.get_metric_history(baseline.info.run_id, "val_miou")] == [1]
    assert baseline.data.params["model.name"] == "hrnet_w18_small_v1"

    # the fixed baseline ran first; Optuna was asked for three points, each after it, and told their
    # results only (the baseline is not a point of its space)
    assert all(c.info.start_time >= baseline.info.end_time for c in proposed)
    assert len(seen["suggested"]) == 3 and len(seen["completed"]) == 3
    assert [t for t, _ in seen["suggested"]] == [t for t, _, _ in seen["completed"]]
    told = {r["mlflow_run_id"]: r for _, r, error in seen["completed"] if not error}
    assert set(told) == {c.info.run_id for c in proposed}  # never the baseline's run
    for child in proposed:
        assert told[child.info.run_id]["val_miou"] == child.data.metrics["val_miou"]

    # seeded: Optuna's TPE with sweep.seed=0 over the same space proposes exactly these points
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    dimensions = {"kappa": optuna.distributions.FloatDistribution(0.1, 1.0),
                  "lam": optuna.distributions.FloatDistribution(0.1, 1.0),
                  "tau": optuna.distributions.CategoricalDistribution([0.1, 0.2, 0.5, 1.0])}
    space = {name: dimensions[name] for name in sweep.space}  # drawn in the config's order
    for child in proposed:
        point = study.ask(fixed_distributions=space).params
        study.tell(study.trials[-1].number, child.data.metrics["val_miou"])
        p = child.data.params
        assert float(p["loss.kappa"]) == round(point["kappa"], 4) and float(p["loss.lam"]) == round(point["lam"], 4)
        assert float(p["model.tau"]) == point["tau"]
        # inside the space
        assert 0.1 <= float(p["loss.kappa"]) <= 1.0 and 0.1 <= float(p["loss.lam"]) <= 1.0
        assert float(p["model.tau"]) in (0.1, 0.2, 0.5, 1.0)
        # no scheduler: every run trains its full schedule
        assert child.data.tags.get("seglab.stopped_early") is None
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_miou")] == [1]
    assert len({(c.data.params["loss.kappa"], c.data.params["loss.lam"]) for c in proposed}) == 3


def test_every_model_and_loss_switch_trains_in_the_pipeline(mlflow_store, tmp_path):
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
    assert ocr.params["model.name"] == "ovenet_hrnet_w18_small_v1_ocr" and ocr.params["model.branch_stage"] == "2"
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
