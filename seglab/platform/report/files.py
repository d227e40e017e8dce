"""The comparison's files: ``comparison.md`` / ``.csv`` (one line per configuration),
``comparison_runs.csv`` (one line per trial run: the numbers behind every mean) and the plots, logged to
the sweep's parent run with its headline metrics and, through :mod:`.ui`, the table as its description."""
from __future__ import annotations

import csv
import io
import os
import tempfile
from typing import Any, Dict, List, Optional

from seglab.platform import tracking
from seglab.platform.report.findings import headline
from seglab.platform.report.plots import write_plots
from seglab.platform.report.table import HEAD_COLUMNS, columns
from seglab.platform.report.ui import publish

CSV_KEYS = ["group", "seeds", "phase", "test_miou", "test_miou_low", "test_miou_high", "final_test_miou",
            "final_test_miou_low", "final_test_miou_high", "delta", "delta_low", "delta_high", "delta_n",
            "selection_score", "selection_metric", "best_val_miou", "test_pixel_acc", "params_m", "gflops", "train_gflops_spent", "wall_s", "gpu_util_pct",
            "gpu_hours", "epochs", "selected", "claim", "status", "sweep_id", "run_ids"]
RUN_CSV_KEYS = ["sweep_id", "group", "label", "method", "baseline", "seed", "phase", "status", "selected_epoch",
                "test_miou", "final_test_miou", "selection_score", "best_val_miou", "test_pixel_acc", "train_gflops_spent", "elapsed_s",
                "run_id"]


def to_csv(rows: List[Dict[str, Any]]) -> str:
    """One line per configuration (means and interval ends; Δ in points)."""
    buf = io.StringIO()
    knobs = [k for _, k, f in columns(rows)[len(HEAD_COLUMNS):] if k not in CSV_KEYS and f not in ("est", "delta")
             and k != "sweep_name"]
    keys = ["label", "method", "baseline"] + knobs + CSV_KEYS
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "run_ids": " ".join(r.get("run_ids", []))})
    return buf.getvalue()


def runs_csv(rows: List[Dict[str, Any]]) -> str:
    """One line per trial run (seed): the numbers behind every mean, for re-analysis."""
    buf = io.StringIO()
    names: List[str] = []
    for row in rows:
        for run in row.get("runs", []):
            names += [n for n in run["class_iou"] if n not in names]
    writer = csv.DictWriter(buf, fieldnames=RUN_CSV_KEYS + [f"test_iou_{n}" for n in names], extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        for run in row.get("runs", []):
            writer.writerow({**run, "sweep_id": row.get("sweep_id"),
                             **{f"test_iou_{n}": v for n, v in run["class_iou"].items()}})
    return buf.getvalue()


def log_to_parent(parent_run_id: str, rows: List[Dict[str, Any]], table: str, uri: Optional[str] = None) -> None:
    """comparison.md / .csv, comparison_runs.csv and the plots as artifacts of the sweep's parent
    run, the honest headline as its metrics (``method_test_miou_mean``, ``gain_over_baseline_mean``,
    ``gain_ci_low``, ``gain_ci_high`` in mIoU points, ``seeds``) and, through
    :func:`seglab.platform.report.ui.publish`, the table as the run's description."""
    c = tracking.client(uri)
    mine = [r for r in rows if r.get("sweep_id", parent_run_id) == parent_run_id] or rows
    with tempfile.TemporaryDirectory() as folder:
        for name, text in (("comparison.md", table + "\n"), ("comparison.csv", to_csv(mine)),
                           ("comparison_runs.csv", runs_csv(mine))):
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)
        write_plots(mine, folder, uri)
        c.log_artifacts(parent_run_id, folder)
    head = headline(mine, parent_run_id if any("sweep_id" in r for r in mine) else None)
    for key, value in head["metrics"].items():
        c.log_metric(parent_run_id, key, float(value))
    for key, value in head["tags"].items():
        c.set_tag(parent_run_id, key, value)
    publish(parent_run_id, table, mine, uri)
