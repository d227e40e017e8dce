"""The comparison table, read back from a real MLflow SQLite store."""
import pytest

from seglab.platform import report, tracking
from seglab.platform.cli import main as cli_main


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEGLAB_ARTIFACT_ROOT", (tmp_path / "art").as_uri())
    return uri


def _child(exp, parent, key, label, method, baseline, miou, params, uri):
    run_id = tracking.find_or_create_child(exp, parent, key, label, params,
                                           {"seglab.method": method, "seglab.baseline": baseline,
                                            "seglab.label": label}, uri)
    c = tracking.client(uri)
    for epoch, value in enumerate(miou, start=1):
        c.log_metric(run_id, "val_miou", value, step=epoch)
    c.log_metric(run_id, "best_val_miou", max(miou))
    c.log_metric(run_id, "params_m", 1.5)
    return run_id


def test_rows_sorted_with_baseline_delta_and_idempotent_child(store):
    exp = tracking.ensure_experiment("t", store)
    assert tracking.ensure_experiment("t", store) == exp
    parent = tracking.start_parent_run(exp, "sweep", {"a": 1}, store)
    base = _child(exp, parent, "k0", "hrnet", "hrnet", "true", [0.40, 0.60], {}, store)
    a = _child(exp, parent, "k1", "ovenet τ=0.5", "ovenet", "false", [0.50, 0.65],
               {"loss.kappa": 0.5, "model.tau": 0.5}, store)
    b = _child(exp, parent, "k2", "ovenet τ=1", "ovenet", "false", [0.55], {"loss.kappa": 0.5, "model.tau": 1.0}, store)
    # the same trial key finds the same run (a restarted trial continues its run)
    assert tracking.find_or_create_child(exp, parent, "k1", "again", {}, {}, store) == a

    rows = report.collect(parent, store)
    assert [r["run_id"] for r in rows] == [a, base, b]
    assert rows[0]["delta"] == pytest.approx(5.0)  # (0.65 - 0.60) x 100 points
    assert rows[2]["delta"] == pytest.approx(-5.0)
    assert rows[1]["delta"] is None and rows[1]["mark"] == "*"
    assert rows[0]["tau"] == 0.5 and rows[0]["kappa"] == 0.5

    table = report.format_table(rows)
    lines = table.splitlines()
    assert "val mIoU" in lines[0] and "+5.00" in lines[2] and "0.6500" in lines[2]
    assert lines[3].startswith("| *")

    report.log_to_parent(parent, rows, table, store)
    names = {x.path for x in tracking.client(store).list_artifacts(parent)}
    assert names == {"comparison.md", "comparison.csv", "val_miou_curves.png"}
    assert tracking.client(store).get_run(parent).data.metrics["best_gain_over_baseline"] == pytest.approx(5.0)


def test_cli_compare_prints_latest_sweep(store, capsys):
    exp = tracking.ensure_experiment("seglab", store)
    parent = tracking.start_parent_run(exp, "sweep", {}, store)
    tracking.client(store).set_tag(parent, "seglab.kind", "sweep")
    _child(exp, parent, "k0", "hrnet_w18_small_v1", "hrnet", "true", [0.3], {}, store)
    assert cli_main(["compare"]) == 0
    out = capsys.readouterr().out
    assert parent in out and "hrnet_w18_small_v1" in out and "0.3000" in out


def test_cli_models_lists_every_model_with_published_counts(capsys):
    assert cli_main(["models", "--size", "1024x2048"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("hrnet_w48 "))
    params, gflops = (float(v) for v in line.split()[1:3])
    assert params == pytest.approx(65.86, abs=0.01) and gflops == pytest.approx(696.2, abs=0.1)
    assert "ovenet_hrnet_w48" in out


def test_cli_bad_size_is_one_line(capsys):
    with pytest.raises(SystemExit):
        cli_main(["models", "--size", "12"])
    assert "--size must be HxW" in capsys.readouterr().err
