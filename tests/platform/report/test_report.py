"""The comparison table, read back from a real MLflow SQLite store filled as the trials do
(metric names and tags of the issue-14 contract), and ``seglab compare`` end to end."""
import numpy as np
import pytest
from mlflow.entities import Metric
from scipy import stats as sps

from seglab.platform import report, tracking
from seglab.platform.report import files, findings, plots
from seglab.platform.cli import main as cli_main
from tests.conftest import new_mlflow_store


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = new_mlflow_store(tmp_path, "m.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEGLAB_ARTIFACT_ROOT", (tmp_path / "art").as_uri())
    return uri


def _sweep(uri, name="sweep", experiment="seglab", budget="schedule", seeds=3, method="ovenet", params=None):
    exp = tracking.ensure_experiment(experiment, uri)
    parent = tracking.start_parent_run(exp, name, params or {"dataset.name": "synthetic",
                                                             "dataset.image_size": [128, 256], "trainer.epochs": 4},
                                       uri, tags={"seglab.method": method, "seglab.budget": budget,
                                                  "seglab.seeds": str(seeds)})
    return exp, parent


def _trial(uri, exp, parent, label, group, seed, *, baseline=False, method="ovenet", phase="search",
           val=(0.5,), test=None, final=None, classes=None, gflops=2.0, spent=None, params=None, status="FINISHED",
           failure=None, extra=None):
    """A child run as the train loop leaves it: val_* per epoch on the selection split; test_* of the
    selected checkpoint and final_test_* of the last epoch on the report split, at the last step."""
    tags = {"seglab.method": method, "seglab.baseline": "true" if baseline else "false", "seglab.label": label,
            "seglab.group": group, "seglab.seed": str(seed), "seglab.phase": phase,
            "seglab.selection_split": "val", "seglab.report_split": "test"}
    if failure:
        tags["seglab.failure"] = failure
    run_id = tracking.find_or_create_child(exp, parent, f"{group}-{seed}-{phase}", label, params or {}, tags, uri)
    c = tracking.client(uri)
    batch = [Metric(k, v, 0, epoch) for epoch, value in enumerate(val, start=1)
             for k, v in (("val_miou", value), ("epoch", epoch))]
    last = len(val)
    best = int(np.argmax(val)) + 1
    metrics = {"best_val_miou": max(val), "params_m": 1.5, "gflops": gflops, "elapsed_s": 100.0 + seed,
               "selected_epoch": best}
    if test is not None:
        metrics["test_miou"] = test
        metrics["test_pixel_acc"] = 0.9
    if final is not None:
        metrics["final_test_miou"] = final
    if spent is not None:
        metrics["train_gflops_spent"] = spent
    for name, value in (classes or {}).items():
        metrics[f"test_iou_{name}"] = value
    metrics.update(extra or {})
    c.log_batch(run_id, metrics=batch + [Metric(k, v, 0, last) for k, v in metrics.items()])
    c.set_terminated(run_id, status)
    return run_id


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table_rows(table):
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header = _cells(lines[0])
    return header, {_cells(line)[1]: dict(zip(header, _cells(line))) for line in lines[2:]}


def test_early_peak_reports_the_selected_checkpoints_test_score_with_paired_delta(store):
    exp, parent = _sweep(store, budget="flops")
    base_test, base_final = [0.60, 0.62, 0.61], [0.59, 0.60, 0.60]
    # the method's validation score peaks at epoch 2 and falls: its row must show test_miou (the
    # selected epoch-2 checkpoint on the report split), never the val peak 0.72 or the last val value
    ovenet_test, ovenet_final = [0.63, 0.64, 0.615], [0.60, 0.61, 0.58]
    for seed in range(3):
        _trial(store, exp, parent, "hrnet", "g-base", seed, baseline=True, method="hrnet", val=(0.55, 0.60, 0.61),
               test=base_test[seed], final=base_final[seed], classes={"road": 0.9, "pole": 0.0},
               spent=3 * 2.0 * 400 * 3)
        _trial(store, exp, parent, "ovenet τ=0.5", "g-ovenet", seed, val=(0.50, 0.72, 0.66, 0.64),
               test=ovenet_test[seed], final=ovenet_final[seed], classes={"road": 0.92 + seed / 100, "pole": 0.004},
               gflops=2.7, spent=3 * 2.7 * 400 * 4, params={"loss.kappa": 0.5, "model.tau": 0.5},
               extra={"test_miou_initial": 0.62, "test_miou_seed": 0.4})
    rows = report.collect(parent, store)
    assert [r["label"] for r in rows] == ["hrnet", "ovenet τ=0.5"]  # one row per group, baseline first
    base, ov = rows
    assert ov["test_miou"] == pytest.approx(np.mean(ovenet_test)) and ov["seeds"] == 3
    assert ov["final_test_miou"] == pytest.approx(np.mean(ovenet_final))
    assert ov["selection_score"] == pytest.approx(0.72)  # runs without selection_score: best_val_miou selected
    low, high = sps.t.interval(0.95, 2, loc=np.mean(ovenet_test), scale=sps.sem(ovenet_test))
    assert (ov["test_miou_low"], ov["test_miou_high"]) == (pytest.approx(low), pytest.approx(high))
    diffs = np.subtract(ovenet_test, base_test)  # 0.03, 0.02, 0.005
    ref = sps.ttest_rel(ovenet_test, base_test).confidence_interval(0.95)
    assert ov["delta"] == pytest.approx(100 * diffs.mean()) == pytest.approx(1.8333333)
    assert (ov["delta_low"], ov["delta_high"]) == (pytest.approx(100 * ref.low), pytest.approx(100 * ref.high))
    assert ov["claim"] == "single configuration" and not ov["selected"] and base["mark"] == "*"
    assert ov["tau"] == 0.5 and ov["miou_initial"] == pytest.approx(0.62)

    table = report.format_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("**Comparison** · budget: flops · seeds: 3 per configuration")
    assert "checkpoint selected on split: val" in lines[0] and "scores reported on split: test" in lines[0]
    header, cells = _table_rows(table)
    assert header[:3] == ["", "configuration", "method"] and "val mIoU" not in header
    half = (high - low) / 2 * 100
    # by hand: s = 0.012583, half-width = 4.3027 x s / sqrt(3) = 0.03126
    assert cells["ovenet τ=0.5"]["test mIoU"] == f"{100 * np.mean(ovenet_test):.2f} ± {half:.2f}" == "62.83 ± 3.13"
    assert cells["ovenet τ=0.5"]["final mIoU"].startswith("59.67 ± ")
    assert cells["ovenet τ=0.5"]["Δ vs base"] == f"+1.83 ± {100 * (ref.high - ref.low) / 2:.2f}"
    assert cells["ovenet τ=0.5"]["sel. score"] == "72.00" and cells["hrnet"]["Δ vs base"] == "-"
    assert "72.00" not in cells["ovenet τ=0.5"]["test mIoU"] and "64.00" not in cells["ovenet τ=0.5"]["test mIoU"]
    # 3 x 2.7 GFLOPs x 400 images x 4 epochs = 12960 GFLOPs = 12.7 TFLOPs (2^10)
    assert cells["ovenet τ=0.5"]["train TFLOPs"] == "12.7" and cells["ovenet τ=0.5"]["seeds"] == "3"
    assert "no significant difference (+1.83 points;" in table  # the interval contains 0
    assert "class(es) pole score test IoU 0.00 in every run" in table
    assert "budget: flops (every run spends the baseline's training FLOPs" in table

    report.log_to_parent(parent, rows, table, store)
    c = tracking.client(store)
    names = {x.path for x in c.list_artifacts(parent)}
    assert {"comparison.md", "comparison.csv", "comparison_runs.csv", "val_miou_curves.png", "per_class_iou.png",
            "miou_vs_gflops.png"} <= names
    m = c.get_run(parent).data.metrics
    assert "best_gain_over_baseline" not in m and "best_method_val_miou" not in m
    assert m["method_test_miou_mean"] == pytest.approx(np.mean(ovenet_test))
    assert m["gain_over_baseline_mean"] == pytest.approx(1.8333333)
    assert (m["gain_ci_low"], m["gain_ci_high"]) == (pytest.approx(100 * ref.low), pytest.approx(100 * ref.high))
    assert m["seeds"] == 3


def test_a_search_marks_its_selection_and_claims_a_gain_only_from_confirm_runs(store):
    exp, parent = _sweep(store, seeds=2)
    for seed in (0, 1):
        _trial(store, exp, parent, "hrnet", "base", seed, baseline=True, method="hrnet", val=(0.6,), test=0.60)
        _trial(store, exp, parent, "A", "A", seed, val=(0.62,), test=0.65)  # higher test, lower selection score
        _trial(store, exp, parent, "B", "B", seed, val=(0.64 + seed / 100,), test=0.61)
    _trial(store, exp, parent, "B", "B", 7, val=(0.64,), test=0.70)  # a seed the baseline does not have
    rows = report.collect(parent, store)
    by = {r["label"]: r for r in rows}
    assert [r["label"] for r in rows] == ["hrnet", "B", "A"]  # selected row right after the baseline
    assert by["B"]["selected"] and by["B"]["mark"] == "sel" and by["B"]["claim"] == "selected, not confirmed"
    assert by["A"]["claim"] == "search" and not by["A"]["selected"]
    assert by["B"]["seeds"] == 3 and by["B"]["delta_n"] == 2 and by["B"]["unpaired_seeds"] == ["7"]
    assert by["B"]["delta"] == pytest.approx(1.0)  # seeds 0, 1: 0.61 - 0.60 twice, no spread: no interval
    assert by["B"]["delta_low"] is None and by["B"]["delta_high"] is None
    table = report.format_table(rows)
    assert "Δ of B vs hrnet: +1.00 points on each of n=2 paired seeds; no variation across seeds" in table
    assert "selected, not confirmed" in _table_rows(table)[1]["B"]["status"]
    assert "its score is biased upward, no gain is claimed" in table
    assert "seed(s) 7 have no baseline run and are left out" in table
    report.log_to_parent(parent, rows, table, store)
    run = tracking.client(store).get_run(parent)
    assert "gain_over_baseline_mean" not in run.data.metrics
    assert run.data.tags["seglab.claim"] == "selected, not confirmed"

    # the confirm phase: B and the baseline again with fresh seeds 10, 11 -> only those back the gain
    base_c, b_c = [0.600, 0.610], [0.630, 0.655]
    for i, seed in enumerate((10, 11)):
        _trial(store, exp, parent, "hrnet", "base", seed, baseline=True, method="hrnet", phase="confirm", val=(0.6,),
               test=base_c[i])
        _trial(store, exp, parent, "B", "B", seed, phase="confirm", val=(0.6,), test=b_c[i])
    rows = report.collect(parent, store)
    by = {r["label"]: r for r in rows}
    assert by["B"]["claim"] == "selected, confirmed (2 fresh seeds)" and by["B"]["phase"] == "confirm"
    assert by["B"]["test_miou"] == pytest.approx(0.6425) and by["hrnet"]["test_miou"] == pytest.approx(0.605)
    assert by["B"]["selection_score"] == pytest.approx((0.64 + 0.65 + 0.64) / 3)  # selection used the search runs
    ref = sps.ttest_rel(b_c, base_c).confidence_interval(0.95)  # diffs 0.030, 0.045
    assert by["B"]["delta"] == pytest.approx(3.75)
    assert by["B"]["delta_low"] == pytest.approx(100 * ref.low) and by["B"]["delta_high"] == pytest.approx(100 * ref.high)
    table = report.format_table(rows)
    report.log_to_parent(parent, rows, table, store)
    m = tracking.client(store).get_run(parent).data.metrics
    assert m["gain_over_baseline_mean"] == pytest.approx(3.75) and m["seeds"] == 2
    assert m["gain_ci_low"] == pytest.approx(100 * ref.low)


def test_identical_differences_over_seeds_claim_nothing_and_log_no_interval(store):
    # every seed: method - baseline = 0.01 exactly as logged (0.61 - 0.60, 0.62 - 0.61, 0.63 - 0.62)
    exp, parent = _sweep(store, seeds=3)
    for seed, base in enumerate((0.60, 0.61, 0.62)):
        _trial(store, exp, parent, "hrnet", "base", seed, baseline=True, method="hrnet", val=(0.5,), test=base)
        _trial(store, exp, parent, "ovenet", "ov", seed, val=(0.5,), test=base + 0.01)
    rows = report.collect(parent, store)
    ov = rows[1]
    assert ov["claim"] == "single configuration" and ov["delta"] == pytest.approx(1.0) and ov["delta_n"] == 3
    assert (ov["delta_low"], ov["delta_high"]) == (None, None)
    table = report.format_table(rows)
    assert _table_rows(table)[1]["ovenet"]["Δ vs base"] == "+1.00 (no variation, n=3)"
    finding = next(line for line in table.splitlines() if "Δ of ovenet vs hrnet" in line)
    assert "no variation across seeds: no interval" in finding and "significant" not in finding
    head = findings.headline(rows, parent)
    assert head["metrics"]["gain_over_baseline_mean"] == pytest.approx(1.0) and head["metrics"]["seeds"] == 3
    assert "gain_ci_low" not in head["metrics"] and "gain_ci_high" not in head["metrics"]
    report.log_to_parent(parent, rows, table, store)
    m = tracking.client(store).get_run(parent).data.metrics
    assert m["gain_over_baseline_mean"] == pytest.approx(1.0)
    assert "gain_ci_low" not in m and "gain_ci_high" not in m


def test_an_ablation_is_planned_not_searched_and_compare_adds_its_table(store, capsys):
    exp, parent = _sweep(store, seeds=1, params={"sweep.variants": "[{'label': 'Br4'}, {'label': 'Br3'}]"})
    _trial(store, exp, parent, "HRNet", "base", 0, baseline=True, method="hrnet", val=(0.5,), test=0.50)
    _trial(store, exp, parent, "Br4", "br4", 0, val=(0.6,), test=0.52, params={"model.branch_stage": 4},
           extra={"test_miou_initial": 0.51, "test_miou_seed": 0.3})
    _trial(store, exp, parent, "Br3", "br3", 0, val=(0.4,), test=0.49, params={"model.branch_stage": 3})
    rows = report.collect(parent, store)
    assert [r["claim"] for r in rows] == ["", "planned comparison", "planned comparison"]
    assert not any(r["selected"] for r in rows) and [r["mark"] for r in rows] == ["*", "", ""]
    assert findings.headline(rows)["metrics"] == {}  # no single configuration to claim a gain for
    assert "2 planned comparisons against one baseline" in report.format_table(rows)
    assert cli_main(["compare", parent, "--no-log"]) == 0
    out = capsys.readouterr().out
    ablation = [line for line in out.splitlines() if line.startswith("| Br4 ")][0]
    # mIoU of S_f, S_i, S_s of the same (selected) checkpoint, Δ = 0.52 - 0.50 from one seed
    assert [c.strip() for c in ablation.strip("|").split("|")][6:] == ["52.00 (n=1)", "51.00", "30.00",
                                                                       "+2.00 (n=1)", "1"]
    assert tracking.client(store).list_artifacts(parent, "compare") == []  # --no-log


def test_runs_without_the_new_metrics_still_render_and_failures_sort_last(store):
    exp, parent = _sweep(store, seeds=1)
    c = tracking.client(store)
    old = tracking.find_or_create_child(exp, parent, "k0", "hrnet", {}, {"seglab.method": "hrnet",
                                                                          "seglab.baseline": "true",
                                                                          "seglab.label": "hrnet"}, store)
    c.log_metric(old, "best_val_miou", 0.5)
    _trial(store, exp, parent, "ovenet κ=1e39", "bad", 0, val=(0.1,), status="FAILED", failure="non-finite loss")
    rows = report.collect(parent, store)
    assert [r["label"] for r in rows] == ["hrnet", "ovenet κ=1e39"] and rows[1]["failed"]
    assert rows[1]["status"] == "FAILED: non-finite loss" and rows[0]["group"] == f"run:{old}"
    table = report.format_table(rows)
    _, cells = _table_rows(table)
    assert cells["hrnet"]["test mIoU"] == "-" and cells["hrnet"]["sel. score"] == "50.00"
    assert "checkpoint selected on split: val" in table.splitlines()[0]  # from the tagged trial
    assert "seeds: 1 per configuration: no confidence interval" in table
    assert files.to_csv(rows).splitlines()[0].startswith("label,method,baseline,")


def test_seglab_compare_end_to_end_logs_plots_for_one_and_several_sweeps(store, tmp_path, capsys):
    exp, first = _sweep(store, name="first")
    for seed in range(2):
        _trial(store, exp, first, "hrnet", "b", seed, baseline=True, method="hrnet", val=(0.5, 0.6), test=0.58,
               classes={"road": 0.8, "car": 0.5 + seed / 10})
        _trial(store, exp, first, "ovenet", "o", seed, val=(0.55 + seed / 100, 0.62 + seed / 100),
               test=0.60 + seed / 100,
               classes={"road": 0.82, "car": 0.52})
    assert cli_main(["compare"]) == 0  # the latest sweep
    out = capsys.readouterr().out
    assert first in out and "**Comparison**" in out and "60.50 ± " in out and "Δ vs base" in out
    c = tracking.client(store)
    logged = {a.path for a in c.list_artifacts(first, "compare")}
    assert logged == {f"compare/{n}" for n in ("comparison.md", "comparison.csv", "comparison_runs.csv",
                                               "val_miou_curves.png", "per_class_iou.png", "miou_vs_gflops.png")}
    _, second = _sweep(store, name="second", budget="time")
    _trial(store, exp, second, "hrnet", "b", 0, baseline=True, method="hrnet", val=(0.4,), test=0.41)
    out_dir = tmp_path / "out"
    assert cli_main(["compare", first, second, "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    header, _ = _table_rows(out[out.index("| "):])
    assert header[1] == "sweep" and "budget: schedule (first); budget: time (second)" in out
    import matplotlib.image as mpimg

    for name in ("val_miou_curves.png", "per_class_iou.png", "miou_vs_gflops.png"):
        picture = mpimg.imread(out_dir / name)
        assert picture.shape[0] > 200 and picture.shape[1] > 400 and picture.std() > 0.01, name
    assert "compare/comparison.md" in {a.path for a in c.list_artifacts(second, "compare")}
    # learning curves: per configuration the mean over seeds and the lowest..highest seed per epoch
    rows = report.collect(first, store)
    car = rows[0]["class_iou"]["car"]  # the baseline's bars: 0.5, 0.6 -> 0.55 ± t(.975, 1) x 0.05
    assert car.mean == pytest.approx(0.55) and car.half_width == pytest.approx(12.706204736 * 0.05)
    assert [r["label"] for r in plots.reference_rows(rows)] == ["hrnet", "ovenet"]
    curves = plots.learning_curves(rows, store)
    assert list(curves) == ["hrnet (baseline)", "ovenet"]
    assert curves["ovenet"]["epochs"] == [1, 2] and curves["ovenet"]["n"] == 2
    assert curves["ovenet"]["mean"] == pytest.approx([0.555, 0.625])  # seeds: (0.55, 0.62), (0.56, 0.63)
    assert curves["ovenet"]["low"] == pytest.approx([0.55, 0.62])
    assert curves["ovenet"]["high"] == pytest.approx([0.56, 0.63])
    runs_csv = (out_dir / "comparison_runs.csv").read_text().splitlines()
    assert len(runs_csv) == 1 + 5 and "test_iou_car" in runs_csv[0]


def test_cli_compare_bad_run_id_is_one_line(store, capsys):
    tracking.ensure_experiment("seglab", store)
    assert cli_main(["compare", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no MLflow run 'nope'" in err[0]


def _listed(out):
    """The model names of ``seglab models``' table, in printed order, and their lines."""
    lines = out.split("\n\n")[0].splitlines()[1:]
    return [line.split()[0] for line in lines], {line.split()[0]: line for line in lines}


def test_cli_models_with_patterns_lists_the_matching_models_with_published_counts(capsys):
    # registry order, each model once (hrnet_w48 matches two patterns); only the matching models are built
    assert cli_main(["models", "unet", "hrnet_w4?", "hrnet_w48", "phgmm_r1?", "--size", "1024x2048"]) == 0
    out = capsys.readouterr().out
    names, lines = _listed(out)
    assert names == ["hrnet_w48", "phgmm_r18", "unet"]
    params, gflops = (float(v) for v in lines["hrnet_w48"].split()[1:3])
    assert params == pytest.approx(65.86, abs=0.01) and gflops == pytest.approx(696.2, abs=0.1)
    assert "19 classes, input 1024x2048." in out


def test_cli_models_without_patterns_lists_every_registered_model(capsys, monkeypatch):
    """The unfiltered listing: one line per registered model, in registry order, each counted at --size
    (the counts themselves are checked above and in tests/models; here a stand-in returns 1.5)."""
    from seglab.models import complexity, list_models

    sizes = []
    monkeypatch.setattr(complexity, "count_flops", lambda model, input_size: sizes.append(input_size) or 1.5)
    assert cli_main(["models", "--size", "32x64", "--num-classes", "5"]) == 0
    out = capsys.readouterr().out
    names, lines = _listed(out)
    assert names == list_models() and "ovenet_hrnet_w48" in names and len(names) == 28
    assert sizes == [(32, 64)] * 28 and all(line.split()[2] == "1.5" for line in lines.values())
    assert "5 classes, input 32x64." in out


def test_cli_models_pattern_matching_nothing_is_one_line(capsys):
    assert cli_main(["models", "hrnet_w48", "nope*"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing built or printed before the error
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seglab: error: no registered model matches 'nope*'; valid model "
                                               "names: deeplabv2_r101,"), err


def test_cli_bad_size_is_one_line(capsys):
    with pytest.raises(SystemExit):
        cli_main(["models", "--size", "12"])
    assert "--size must be HxW" in capsys.readouterr().err

