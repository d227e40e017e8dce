"""Issue 14 end to end with a real MLflow store: a warm start, paired seeds, a search whose choice is
re-run with fresh seeds, and every trial scored once on a report split that neither the checkpoint
choice nor the search saw. The trials run in this process (``cluster=inprocess``: the same Trainer,
hooks, MLflow runs and report as on Ray, without Ray's start-up per trial; the Ray path of a sweep is
tests/integration/test_ray_sweep.py).

One sweep (tiny sizes), then assertions on what MLflow holds:
- the warm-start run exists, is not a trial of the comparison, and every compared run loaded it;
- each configuration ran with seeds 0 and 1 (paired: the baseline has the same seeds);
- the confirmation re-ran the configuration with the best mean *selection* score (recomputed
  here from the runs' best_val_miou) and the baseline with seed 2, tagged phase=confirm;
- every trial has test_* / final_test_* / selected_epoch, and selected_epoch is the epoch of the
  best val_miou in its history; when the last epoch is the selected one both scores are equal;
- train_gflops_spent = 3 x GFLOPs(train crop) x images trained, recomputed here;
- ``seglab eval`` of a selected checkpoint reproduces its test_miou and logs a linked evaluation run;
  ``seglab compare`` prints the table and logs its plots (the commands called in-process: their exit
  statuses as a shell sees them are the bad-input matrix's, test_user_errors.py).
"""
import pytest

from seglab.platform import tracking
from seglab.platform.sweep import SweepConfig, run_sweep

from .conftest import TINY_OVERRIDES, compose

pytestmark = pytest.mark.integration

OVERRIDES = TINY_OVERRIDES + [
    "++dataset.test.num_samples=6",
    "++dataset.test.augment=false",
    "trainer.epochs=2",
    "trainer.num_workers=1",
    "sweep.kappa=[0.25,0.5]",
    "sweep.seeds=2",
    "sweep.confirm_seeds=1",
    "sweep.warm_start_epochs=1",
    "sweep.experiment=itest_honest",
    "trainer.viz_samples=0",
    "cluster=inprocess",
]


def test_warm_start_seeds_confirmation_and_report_split(mlflow_store, tmp_path, capsys):
    from seglab.models import build_model
    from seglab.models.complexity import count_flops

    base, sweep_dict = compose(OVERRIDES)
    result = run_sweep(base, SweepConfig.from_dict(sweep_dict), storage_root=str(tmp_path / "runs"))
    assert result.errors == []
    client = tracking.client(mlflow_store)
    runs = tracking.child_runs(result.parent_run_id, mlflow_store)
    parent = client.get_run(result.parent_run_id).data.tags
    assert (parent["seglab.budget"], parent["seglab.seeds"], parent["seglab.confirm_seeds"]) == ("schedule", "2", "1")

    warm = [r for r in runs if r.data.tags.get("seglab.kind") == "warm_start"]
    trials = [r for r in runs if r.data.tags.get("seglab.kind") == "trial"]
    assert len(warm) == 1 and warm[0].data.tags["seglab.phase"] == "warm_start"
    assert warm[0].info.status == "FINISHED"
    # every compared run started from the warm start's checkpoint
    for r in trials:
        p = r.data.params
        weights = p.get("model.body_checkpoint") or p.get("model.pretrained")
        assert weights and weights.endswith("best.pt") and "warm" not in r.data.tags["seglab.label"]

    search = [r for r in trials if r.data.tags["seglab.phase"] == "search"]
    confirm = [r for r in trials if r.data.tags["seglab.phase"] == "confirm"]
    groups = {}
    for r in search:
        groups.setdefault((r.data.tags["seglab.group"], r.data.tags["seglab.baseline"]), []).append(
            int(r.data.tags["seglab.seed"]))
    assert len(groups) == 3  # the baseline and two kappa values
    assert all(sorted(seeds) == [0, 1] for seeds in groups.values())  # paired seeds

    # the confirmation re-ran the method group with the best mean selection score, and the baseline
    means = {}
    for r in search:
        if r.data.tags["seglab.baseline"] == "false":
            means.setdefault(r.data.tags["seglab.group"], []).append(r.data.metrics["best_val_miou"])
    chosen = max(means, key=lambda g: sum(means[g]) / len(means[g]))
    assert sorted((r.data.tags["seglab.baseline"], r.data.tags["seglab.seed"]) for r in confirm) == [
        ("false", "2"), ("true", "2")]
    assert next(r for r in confirm if r.data.tags["seglab.baseline"] == "false").data.tags["seglab.group"] == chosen

    crop_gflops = {}
    for r in trials:
        m = r.data.metrics
        assert r.info.status == "FINISHED"
        for key in ("test_miou", "final_test_miou", "test_pixel_acc", "final_test_pixel_acc", "selected_epoch"):
            assert key in m, (key, r.data.tags["seglab.label"])
        history = sorted(client.get_metric_history(r.info.run_id, "val_miou"), key=lambda x: x.step)
        best_step = max(history, key=lambda x: (x.value, -x.step)).step  # the first epoch of the best value
        assert m["selected_epoch"] == best_step
        if best_step == history[-1].step:
            assert m["test_miou"] == m["final_test_miou"]
        assert r.data.tags["seglab.report_split"] == "test" and r.data.tags["seglab.selection_split"] == "val"
        name = r.data.tags["seglab.model"]
        if name not in crop_gflops:
            crop_gflops[name] = count_flops(build_model(name, num_classes=9), input_size=(32, 64), train=True)
        images = 2 * 8  # 2 epochs x 8 training images (batch 2 x 4 steps, one worker)
        assert r.data.tags["seglab.num_nodes"] == "1"
        assert m["train_gflops_spent"] == pytest.approx(3 * crop_gflops[name] * images, rel=1e-6)

    # `seglab eval` of a trial's selected checkpoint (best.pt) on its report split gives the test_miou
    # the trial logged, and logs an evaluation run linked to the trial; `seglab compare` of the sweep
    # prints the table and logs its plots to the parent run.
    import json
    from pathlib import Path

    from seglab.platform.cli import main

    trial = next(r for r in confirm if r.data.tags["seglab.baseline"] == "true")
    best = Path(result.storage_path) / "train" / trial.data.tags["seglab.trial_key"] / "best.pt"
    out = tmp_path / "eval.json"
    capsys.readouterr()
    assert main(["eval", str(best), "--json", str(out), "--no-progress", "--experiment", "itest_honest"]) == 0
    assert json.loads(out.read_text())["miou"] == pytest.approx(trial.data.metrics["test_miou"], abs=1e-9)
    evaluations = client.search_runs([trial.info.experiment_id],
                                     filter_string="tags.`seglab.kind` = 'evaluation'")
    assert [e.data.tags["seglab.evaluates"] for e in evaluations] == [trial.info.run_id]
    capsys.readouterr()
    assert main(["compare", result.parent_run_id]) == 0
    printed = capsys.readouterr().out
    assert "test mIoU" in printed and "Δ vs base" in printed
    logged = {a.path for a in client.list_artifacts(result.parent_run_id, "compare")}
    assert {"compare/per_class_iou.png", "compare/miou_vs_gflops.png", "compare/val_miou_curves.png"} <= logged
