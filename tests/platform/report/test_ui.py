"""seglab.platform.report.ui without a browser: the links' formats, the description's length limit, the
table artifact's columns, the grouping tag, and the experiment kind (a real SQLite store).
The browser checks are in tests/integration/test_mlflow_ui.py."""
import json
import math
from urllib.parse import parse_qs

import pytest

from seglab.platform import tracking
from seglab.platform.report import ui
from tests.conftest import new_mlflow_store


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = new_mlflow_store(tmp_path, "m.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SEGLAB_ARTIFACT_ROOT", (tmp_path / "art").as_uri())
    return uri


def test_compare_url_is_the_ui_route_with_json_lists():
    url = ui.compare_url("http://127.0.0.1:5000/", "7", ["a1", "b2"])
    base, fragment = url.split("#", 1)
    assert base == "http://127.0.0.1:5000/"
    path, query = fragment.split("?", 1)
    assert path == "/compare-runs"
    q = parse_qs(query)  # percent-decoded as the UI's router decodes it
    assert json.loads(q["runs"][0]) == ["a1", "b2"] and json.loads(q["experiments"][0]) == ["7"]
    assert q["workflowType"] == ["machine_learning"]
    assert '"' not in url and "[" not in url  # a terminal links the whole address


def test_links_open_the_model_training_pages():
    assert ui.experiment_url("http://h:1", "3") == "http://h:1/#/experiments/3/runs?workflowType=machine_learning"
    assert ui.run_url("http://h:1", "3", "r") == "http://h:1/#/experiments/3/runs/r?workflowType=machine_learning"
    assert ui.sweep_view_url("http://h:1", "3", "p") == \
        "http://h:1/#/experiments/3/runs?workflowType=machine_learning&viewStateShareKey=seglab-p"


def test_tracking_ui_address(monkeypatch):
    monkeypatch.delenv("UI_PORT", raising=False)
    assert ui.tracking_ui("sqlite:////x/mlflow.db") == "http://127.0.0.1:5000"
    monkeypatch.setenv("UI_PORT", "5123")
    assert ui.tracking_ui("sqlite:////x/mlflow.db") == "http://127.0.0.1:5123"
    assert ui.tracking_ui("https://alice:secret@mlflow.example.org:8443/") == "https://mlflow.example.org:8443"


def test_note_fits_mlflows_tag_limit_and_cuts_at_a_line():
    short = "| a |\n|---|\n| 1 |"
    assert ui.note(short) == short + "\n"
    lines = [f"| row {i:05d} | {'x' * 80} |" for i in range(200)]  # 200 x 95 characters > 8000
    text = ui.note("\n".join(lines))
    assert len(text) <= 8000
    body = text.split("\n\n... (cut")[0].splitlines()
    # whole lines only: 96 characters + newline each, before the 86-character pointer to the artifact
    assert body == lines[: len(body)] and len(body) == (8000 - 86) // 97 == 81
    assert "comparison.md" in text


def test_table_columns_keep_scalars_in_comparison_order():
    rows = [{"label": "base", "group": "g1", "test_miou": 0.62, "test_miou_est": object(), "run_ids": ["r1", "r2"],
             "class_iou": {"road": 0.9}, "delta": None, "mark": "*", "extra": float("nan"), "run_id": "r1"},
            {"label": "m", "group": "g2", "test_miou": 0.66, "delta": 4.0, "mark": "", "extra": 1.5}]
    cols = ui.table_columns(rows)
    assert list(cols) == ["mark", "label", "test_miou", "delta", "group", "run_ids", "extra"]
    assert cols["run_ids"] == ["r1,r2", None] and cols["delta"] == [None, 4.0] and cols["extra"] == [None, 1.5]
    assert not any(isinstance(v, float) and math.isnan(v) for col in cols.values() for v in col)


def test_row_labels_group_seeds_and_keep_rows_apart():
    rows = [{"label": "hrnet seed=0", "group": "g0", "run_ids": ["a", "b"]},
            {"label": "ovenet", "group": "g1", "run_ids": ["c"]},
            {"label": "ovenet", "group": "g2", "run_ids": ["d"]},
            {"label": "semeda", "group": "g3", "run_ids": ["e", "f"]}]
    tags = {"a": "hrnet", "b": "hrnet", "e": "semeda x", "f": None}  # the trainer's seglab.group_label
    assert ui.row_labels(rows, tags) == {"a": "hrnet", "b": "hrnet", "c": "ovenet [g1]", "d": "ovenet [g2]",
                                         "e": "semeda", "f": "semeda"}


def test_experiments_are_model_training_experiments(store):
    c = tracking.client(store)
    exp = tracking.ensure_experiment("new", store)
    assert c.get_experiment(exp).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    old = c.create_experiment("old")  # made before seglab tagged experiments
    chosen = c.create_experiment("chosen", tags={tracking.EXPERIMENT_KIND_TAG: "genai_development"})
    assert tracking.ensure_experiment("old", store) == old
    assert c.get_experiment(old).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    tracking.ensure_experiment("chosen", store)
    assert c.get_experiment(chosen).tags[tracking.EXPERIMENT_KIND_TAG] == "genai_development"  # kept


def test_publish_writes_description_table_grouping_and_view(store, tmp_path):
    c = tracking.client(store)
    exp = tracking.ensure_experiment("seglab", store)
    parent = tracking.start_parent_run(exp, "sweep", {}, store)
    kids = [tracking.find_or_create_child(exp, parent, f"k{i}", f"t{i}", {}, {"seglab.kind": "trial"}, store)
            for i in range(3)]
    for i, k in enumerate(kids):
        c.log_metric(k, "test_miou", 0.5 + i / 10)
        c.log_metric(k, "test_boundary_f1", 0.3)  # a method's own score: a column of the view
        c.log_metric(k, "test_iou_road", 0.9)  # per class: not a column
    c.set_tag(kids[2], ui.ROW_TAG, "m (the trainer's label)")
    rows = [{"label": "base", "baseline": True, "run_ids": kids[:2], "test_miou": 0.55},
            {"label": "m", "run_ids": kids[2:], "test_miou": 0.7}]
    ui.publish(parent, "| a |\n|---|\n| 1 |", rows, store)
    run = c.get_run(parent)
    assert run.data.tags[ui.NOTE_TAG] == "| a |\n|---|\n| 1 |\n"
    assert {"path": ui.TABLE_ARTIFACT, "type": "table"} in json.loads(run.data.tags["mlflow.loggedArtifacts"])
    table = json.loads((tmp_path / "art" / "seglab" / parent / "artifacts" / ui.TABLE_ARTIFACT).read_text())
    assert table["columns"][:2] == ["label", "test_miou"] and table["data"][1][:2] == ["m", 0.7]
    assert [c.get_run(k).data.tags[ui.ROW_TAG] for k in kids] == ["base", "base", "m (the trainer's label)"]
    state = json.loads(c.get_experiment(exp).tags[ui.VIEW_TAG_PREFIX + ui.view_key(parent)])
    assert state["searchFilter"] == f"tags.`mlflow.parentRunId` = '{parent}'"
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": ui.ROW_TAG}]
    assert state["selectedColumns"][:2] == ["metrics.`test_miou`", "metrics.`test_boundary_f1`"]
    assert not any("test_iou_road" in col for col in state["selectedColumns"])
