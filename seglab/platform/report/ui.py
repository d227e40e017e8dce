"""The comparison where the MLflow UI shows it first.

At the end of a sweep (:func:`seglab.platform.report.files.log_to_parent` calls :func:`publish`):

* the comparison table (markdown) becomes the parent run's description (the tag
  ``mlflow.note.content``, rendered as markdown at the top of the run page);
* the table's scalar fields are logged as an MLflow table artifact (``comparison_table.json``,
  opened as a table by the UI's artifact viewer);
* the runs table groups trial runs by the tag ``seglab.group_label`` (the configuration's label, the
  same for all its seeds; the trainer sets it when it creates the run, so grouping works while the
  sweep runs): a run without it (older runs) gets its table row's label, and two rows that share a
  label get their group key appended, so each group is one row of the table, its line the mean of
  the row's seeds;
* the experiment gets a shared view of the sweep (an experiment tag ``mlflow.sharedViewState.<key>``,
  the format the UI's own "share view" writes): the sweep's trial runs grouped that way, with
  the result columns (test mIoU at the selected checkpoint, final-epoch test mIoU, selection score,
  compute) already chosen.

:func:`ui_link_line` is what the sweep prints at its end: direct links to that view, to the parent
run's page (the description) and to MLflow's compare view of the trial runs.

MLflow 3.17's UI opens an experiment in its GenAI mode (a "Traces" overview) unless the browser chose
"Model training" (kept in the browser's local storage) or the link says ``workflowType=machine_learning``;
the experiment-kind tag that :func:`seglab.platform.tracking.ensure_experiment` sets
(``mlflow.experimentKind=custom_model_development``) is what other MLflow 3 versions read. Every link
made here carries ``workflowType=machine_learning``, so it opens on the runs whatever the browser chose.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from typing import Any, Dict, Iterable, List, Optional, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from seglab.platform import tracking

NOTE_TAG = "mlflow.note.content"  # a run's (or an experiment's) description, rendered as markdown
ROW_TAG = "seglab.group_label"  # a trial's configuration (its row of the comparison): the UI groups by it
VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # the UI's shared views (experiment tags, JSON)
TABLE_ARTIFACT = "comparison_table.json"
WORKFLOW = "workflowType=machine_learning"  # MLflow 3.17: open on the runs, not the GenAI overview
NOTE_LIMIT = 8000  # MLflow's limit on a tag value

#: Result columns of the shared view, in this order, when the trial runs have them.
VIEW_METRICS = ("test_miou", "final_test_miou", "selection_score", "best_val_miou", "train_gflops_spent", "elapsed_s")
VIEW_TAGS = ("seglab.seed", "seglab.phase")
RUN_NAME_COLUMN = "attributes.`Run Name`"
#: Columns of the table artifact, first (the other scalar fields of a row follow in row order).
TABLE_FIRST = ("mark", "label", "method", "test_miou", "test_miou_low", "test_miou_high", "delta", "delta_low",
               "delta_high", "delta_n", "final_test_miou", "final_test_miou_low", "final_test_miou_high",
               "selection_score", "best_val_miou", "test_pixel_acc", "seeds", "phase", "claim", "status", "params_m", "gflops",
               "train_gflops_spent", "wall_s", "group")
#: Fields of a row that are bookkeeping, not results: not in the table artifact.
TABLE_SKIP = ("run_id", "stats_run_ids", "methods", "several_sweeps", "searched", "sweep_variants")


# ------------------------------------------------------------------------------------------ links
def tracking_ui(uri: Optional[str] = None) -> str:
    """The UI's address for the store ``uri`` (default: :func:`tracking.tracking_uri`): a tracking
    server serves its own UI; a local store is shown by ``make ui`` on 127.0.0.1:$UI_PORT (5000)."""
    uri = uri or tracking.tracking_uri()
    if str(uri).lower().startswith(("http://", "https://")):
        parts = urlsplit(str(uri))
        host = parts.netloc.rsplit("@", 1)[-1]  # never print credentials written into the address
        return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    return f"http://127.0.0.1:{os.environ.get('UI_PORT') or 5000}"


def _ids(values: Iterable[str]) -> str:
    """A JSON list in a URL query, percent-encoded (terminals then link the whole address)."""
    return quote(json.dumps([str(v) for v in values], separators=(",", ":")), safe="")


def experiment_url(tracking_ui: str, experiment_id: str) -> str:
    """The experiment's runs table."""
    return f"{tracking_ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{WORKFLOW}"


def run_url(tracking_ui: str, experiment_id: str, run_id: str) -> str:
    """A run's page (its description, metrics, parameters, tags; artifacts in the Artifacts tab)."""
    return f"{tracking_ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{WORKFLOW}"


def artifact_url(tracking_ui: str, experiment_id: str, run_id: str, path: str) -> str:
    """A run's artifact, opened in the UI's artifact viewer."""
    return f"{tracking_ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/{path}?{WORKFLOW}"


def view_key(parent_run_id: str) -> str:
    """The key of the sweep's shared view (``viewStateShareKey`` in the URL)."""
    return f"seglab-{parent_run_id}"


def sweep_view_url(tracking_ui: str, experiment_id: str, parent_run_id: str) -> str:
    """The sweep's trial runs grouped by configuration, with the result columns (the shared view
    :func:`publish` stores in the experiment)."""
    return (f"{tracking_ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{WORKFLOW}"
            f"&viewStateShareKey={view_key(parent_run_id)}")


def compare_url(tracking_ui: str, experiment_id: str, run_ids: Sequence[str]) -> str:
    """MLflow's compare view of ``run_ids`` (parameters, metrics and plots side by side), as the UI's
    own route ``#/compare-runs?runs=[...]&experiments=[...]`` (MLflow 3.17)."""
    return (f"{tracking_ui.rstrip('/')}/#/compare-runs?runs={_ids(run_ids)}&experiments={_ids([experiment_id])}"
            f"&{WORKFLOW}")


def trial_runs(parent_run_id: str, uri: Optional[str] = None) -> List[Any]:
    """The sweep's trial runs (child runs tagged ``seglab.kind=trial``), oldest first."""
    runs = [r for r in tracking.child_runs(parent_run_id, uri) if r.data.tags.get("seglab.kind", "trial") == "trial"]
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def ui_link_line(parent_run_id: str, uri: Optional[str] = None, tracking_ui_url: Optional[str] = None) -> str:
    """The lines the sweep prints at its end: where its comparison is in the MLflow UI."""
    uri = uri or tracking.tracking_uri()
    base = tracking_ui_url or tracking_ui(uri)
    parent = tracking.client(uri).get_run(parent_run_id)
    experiment_id = parent.info.experiment_id
    runs = trial_runs(parent_run_id, uri)
    local = not str(uri).lower().startswith(("http://", "https://"))
    links = [("the comparison (the sweep run's description)", run_url(base, experiment_id, parent_run_id)),
             ("its trial runs, grouped by configuration", sweep_view_url(base, experiment_id, parent_run_id))]
    if runs:
        links.append((f"compare the {len(runs)} trial runs side by side",
                      compare_url(base, experiment_id, [r.info.run_id for r in runs])))
    width = max(len(name) for name, _ in links) + 1
    return "\n".join([f"MLflow UI{' (start it with `make ui`)' if local else ''}:"]
                     + [f"  {name + ':':<{width}} {url}" for name, url in links])


# ------------------------------------------------------------------------------------------ publish
def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):  # numpy scalars
        try:
            return _scalar(value.item())
        except (TypeError, ValueError):
            return None
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) for v in value):
        return ",".join(str(v) for v in value)
    return _SKIP


_SKIP = object()


def table_columns(rows: Sequence[Dict[str, Any]]) -> Dict[str, List[Any]]:
    """The rows' scalar fields as columns (strings, numbers, booleans; lists of ids joined by ","),
    the comparison's own columns first; a field a row lacks is None. Nested values (estimates,
    per-class dicts, the per-run records) are left out."""
    names: List[str] = []
    for row in rows:
        for key, value in row.items():
            if key not in names and key not in TABLE_SKIP and _scalar(value) is not _SKIP:
                names.append(key)
    names = [k for k in TABLE_FIRST if k in names] + [k for k in names if k not in TABLE_FIRST]
    out: Dict[str, List[Any]] = {k: [] for k in names}
    for row in rows:
        for key in names:
            value = _scalar(row.get(key))
            out[key].append(None if value is _SKIP else value)
    return out


def note(table_markdown: str) -> str:
    """The run description: the table, cut at a line (with a pointer to the full artifact) when it
    exceeds MLflow's 8000-character limit on a tag value."""
    text = table_markdown.strip() + "\n"
    if len(text) <= NOTE_LIMIT:
        return text
    tail = "\n\n... (cut to fit MLflow's description limit; the full table: artifact comparison.md)\n"
    cut = text[: NOTE_LIMIT - len(tail)]
    return cut[: cut.rfind("\n") + 1 if "\n" in cut else len(cut)].rstrip() + tail


def row_labels(rows: Sequence[Dict[str, Any]], current: Optional[Dict[str, Optional[str]]] = None
               ) -> Dict[str, str]:
    """run id -> its grouping label: the runs' own ``seglab.group_label`` (``current``: run id -> tag)
    when all runs of a row have the same one, else the row's label; a label that two rows share gets
    the row's group key appended (one UI group = one table row)."""
    current = current or {}
    chosen = []
    for row in rows:
        ids = [str(i) for i in (row.get("run_ids") or ([row["run_id"]] if row.get("run_id") else []))]
        tags = {current.get(i) for i in ids}
        own = tags.pop() if len(tags) == 1 else None
        chosen.append((ids, own or str(row.get("label") or row.get("group") or ""), row.get("group")))
    labels = [label for _, label, _ in chosen]
    out: Dict[str, str] = {}
    for ids, label, group in chosen:
        if labels.count(label) > 1:
            label = f"{label} [{group}]"
        out.update({i: label for i in ids})
    return out


def view_state(parent_run_id: str, runs: Sequence[Any]) -> Dict[str, Any]:
    """The shared view of a sweep, in the state format of MLflow 3.17's runs page: the sweep's trial
    runs, grouped by ``seglab.group_label`` (mean of the seeds in each group's line), result columns chosen."""
    present = set()
    for r in runs:
        present.update(r.data.metrics)
    metrics = [m for m in VIEW_METRICS if m in present]
    extra = sorted(m for m in present if m.startswith("test_") and m not in metrics  # a method's own scores
                   and not m.startswith(("test_iou_", "test_acc_", "test_pixel_acc", "test_mean_acc")))
    columns = [f"metrics.`{m}`" for m in metrics[:3] + extra[:3] + metrics[3:]] + [f"tags.`{t}`" for t in VIEW_TAGS]
    return {
        "searchFilter": f"tags.`{tracking.PARENT_TAG}` = '{parent_run_id}'",
        "orderByKey": "attributes.start_time", "orderByAsc": True,
        "selectedColumns": columns,
        "columnOrder": [RUN_NAME_COLUMN, *columns],  # the results next to the names, in this order
        "columnWidths": {RUN_NAME_COLUMN: 340, **{c: 135 for c in columns}},  # room for the names
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": ROW_TAG}]},
        "groupsExpanded": {},
    }


def _warn(what: str, exc: BaseException) -> None:
    print(f"seglab: could not publish {what} to the MLflow UI: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
          file=sys.stderr, flush=True)


def _log_table(client, run_id: str, columns: Dict[str, List[Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame(columns)
    existing = {f.path for f in client.list_artifacts(run_id)}
    if TABLE_ARTIFACT not in existing:
        client.log_table(run_id, data=frame, artifact_file=TABLE_ARTIFACT)
        return
    # log_table appends to an existing table: write it anew in the same format instead (a re-run of
    # the report replaces the comparison)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, TABLE_ARTIFACT)
        frame.to_json(path, orient="split", index=False, date_format="iso")
        client.log_artifact(run_id, path)


def publish(parent_run_id: str, table_markdown: str, rows: list, uri: Optional[str] = None) -> None:
    """Put the comparison where the MLflow UI shows it (see the module's docstring). A step that the
    store refuses prints one line on stderr and the others still run (the sweep's results are
    already logged; only their presentation is missing)."""
    from mlflow.exceptions import MlflowException

    uri = uri or tracking.tracking_uri()
    c = tracking.client(uri)
    failures = (MlflowException, OSError, ValueError)
    try:
        c.set_tag(parent_run_id, NOTE_TAG, note(table_markdown))
    except failures as exc:
        _warn("the run description", exc)
    try:
        _log_table(c, parent_run_id, table_columns(rows))
    except failures as exc:
        _warn(f"the table artifact {TABLE_ARTIFACT}", exc)
    try:
        runs = trial_runs(parent_run_id, uri)
        current = {r.info.run_id: r.data.tags.get(ROW_TAG) for r in runs}
        for run_id, label in row_labels(rows, current).items():
            if current.get(run_id) != label:
                c.set_tag(run_id, ROW_TAG, label[:NOTE_LIMIT])
        experiment_id = c.get_run(parent_run_id).info.experiment_id
        state = view_state(parent_run_id, runs)
        c.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + view_key(parent_run_id), json.dumps(state))
    except failures as exc:
        _warn("the grouped view of the trial runs", exc)
