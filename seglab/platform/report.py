"""The comparison at the end of a sweep: a table (one row per trial) and learning curves.

Rows are read back from the MLflow store (the source of truth), sorted by best validation mIoU,
with the baseline marked and every method's gain over it ("Δ mIoU", in mIoU points × 100). The
sweep's method (:mod:`seglab.platform.methods`) adds its own columns and tables.
"""
from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from seglab.platform import gpu_monitor, methods, tracking

HEAD_COLUMNS = [("", "mark"), ("trial", "label"), ("method", "method")]
SCORE_COLUMNS = [("val mIoU", "best_val_miou"), ("Δ vs base", "delta"), ("pixel acc", "val_pixel_acc")]
TAIL_COLUMNS = [("params (M)", "params_m"), ("GFLOPs", "gflops"), ("wall (s)", "wall_s"),
                ("GPU util %", "gpu_util_pct"), ("GPU-hours", "gpu_hours"), ("status", "status")]
CSV_KEYS = ["best_val_miou", "delta", "val_pixel_acc", "params_m", "gflops", "wall_s", "gpu_util_pct", "gpu_hours",
            "epochs", "status", "run_id"]


def collect(parent_run_id: str, uri: Optional[str] = None) -> List[Dict[str, Any]]:
    """One dict per trial run of ``parent_run_id``, sorted by best val mIoU (best first); the
    fields of the sweep's method (and of any method named by a trial) are filled in by it."""
    c = tracking.client(uri)
    trials = [r for r in tracking.child_runs(parent_run_id, uri) if r.data.tags.get("seglab.kind", "trial") == "trial"]
    names = [c.get_run(parent_run_id).data.tags.get("seglab.method")]
    names += [r.data.tags.get("seglab.method") for r in trials]
    used = []
    for name in names:
        m = methods.get(name)
        if m is not methods.GENERIC and m.name not in used:
            used.append(m.name)
    rows = []
    for run in trials:
        m, p, tags = run.data.metrics, run.data.params, run.data.tags
        row = {
            "run_id": run.info.run_id,
            "label": tags.get("seglab.label", run.info.run_name),
            "method": tags.get("seglab.method", ""),
            "baseline": tags.get("seglab.baseline") == "true",
            "best_val_miou": m.get("best_val_miou"), "val_pixel_acc": m.get("val_pixel_acc"),
            "params_m": m.get("params_m"), "gflops": m.get("gflops"), "wall_s": m.get("elapsed_s"),
            "epochs": m.get("epoch"), "status": _status(run.info.status, tags.get("seglab.failure")),
            "failed": run.info.status == "FAILED",
            "stopped_early": tags.get("seglab.stopped_early") == "true",
            "model": tags.get("seglab.model", ""), "methods": tuple(used),
            **gpu_monitor.report_fields(m),  # "GPU util %" (mean over ranks), "GPU-hours"; None on CPU
        }
        for name in used:
            row.update(methods.get(name).row_fields(p, m, tags))
        rows.append(row)
    base = next((r["best_val_miou"] for r in rows if r["baseline"] and r["best_val_miou"] is not None), None)
    for r in rows:
        r["mark"] = "*" if r["baseline"] else ""
        r["delta"] = None if base is None or r["best_val_miou"] is None or r["baseline"] else 100 * (r["best_val_miou"] - base)
    # failed trials stay in the table (with their reason), after the others
    rows.sort(key=lambda r: (r["failed"], -(r["best_val_miou"] if r["best_val_miou"] is not None else -math.inf)))
    return rows


def _status(status: str, failure: Optional[str]) -> str:
    """The run's MLflow status, with the reason of a failure the platform diagnosed."""
    return f"{status}: {failure}" if failure and status == "FAILED" else status


def columns(rows: List[Dict[str, Any]]) -> List[Tuple[str, str, str]]:
    """``(header, row key, format)`` of the table: generic columns around the methods' own."""
    names = rows[0]["methods"] if rows else ()
    extra = [c for n in names for c in methods.get(n).columns]
    knobs = [(c.header, c.key, c.fmt) for c in extra if c.where == "knobs"]
    scores = [(c.header, c.key, c.fmt) for c in extra if c.where == "scores"]
    plain = lambda cols: [(h, k, "") for h, k in cols]  # noqa: E731
    return plain(HEAD_COLUMNS) + knobs + plain(SCORE_COLUMNS) + scores + plain(TAIL_COLUMNS)


def _cell(key: str, value: Any, fmt: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if fmt == "miou" or key in ("best_val_miou", "val_pixel_acc"):
        return f"{value:.4f}"
    if fmt == "pct":
        return f"{100 * value:.2f}"
    if fmt == "3g":
        return f"{value:.3g}"
    if key == "delta":
        return f"{value:+.2f}"
    if key in ("params_m",):
        return f"{value:.2f}"
    if key in ("gflops", "wall_s"):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def markdown_table(header: List[str], body: List[List[str]], footnote: str) -> str:
    """Cells -> an aligned Markdown table (readable in a terminal, rendered by the MLflow UI)."""
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line(b) for b in body] + [footnote])


def format_table(rows: List[Dict[str, Any]], metric: str = "val_miou") -> str:
    """The comparison: one row per trial, the methods' columns included."""
    cols = columns(rows)
    body = [[_cell(k, r.get(k), f) for _, k, f in cols] for r in rows]
    notes = [methods.get(n).notes for n in (rows[0]["methods"] if rows else ()) if methods.get(n).notes]
    return markdown_table([h for h, _, _ in cols], body,
                          "\n".join([f"* = baseline. Sorted by best {metric}; Δ vs base in mIoU points (x100). "
                                     f"GFLOPs = conv+linear multiply-adds / 2^30 at the logged model.flops_input size."]
                                    + notes))


def to_csv(rows: List[Dict[str, Any]]) -> str:
    buf = io.StringIO()
    knobs = [k for _, k, f in columns(rows)[len(HEAD_COLUMNS):] if k not in CSV_KEYS and k != "delta"]
    keys = ["label", "method", "baseline"] + knobs + CSV_KEYS
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def plot_curves(rows: List[Dict[str, Any]], path: str, uri: Optional[str] = None) -> None:
    """Val mIoU per epoch of every trial (baseline dashed) -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = tracking.client(uri)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for r in rows:
        hist = sorted(c.get_metric_history(r["run_id"], "val_miou"), key=lambda m: m.step)
        if hist:
            ax.plot([m.step for m in hist], [m.value for m in hist], "--" if r["baseline"] else "-", marker="o",
                    markersize=3, label=r["label"] + (" (baseline)" if r["baseline"] else ""))
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mIoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("validation mIoU per epoch")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def log_to_parent(parent_run_id: str, rows: List[Dict[str, Any]], table: str, uri: Optional[str] = None) -> None:
    c = tracking.client(uri)
    with tempfile.TemporaryDirectory() as folder:
        for name, text in (("comparison.md", table + "\n"), ("comparison.csv", to_csv(rows))):
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)
        plot_curves(rows, os.path.join(folder, "val_miou_curves.png"), uri)
        c.log_artifacts(parent_run_id, folder)
    best_method = next((r for r in rows if not r["baseline"] and not r.get("failed") and r["best_val_miou"] is not None),
                       None)
    if best_method is not None:
        c.log_metric(parent_run_id, "best_method_val_miou", best_method["best_val_miou"])
        if best_method["delta"] is not None:
            c.log_metric(parent_run_id, "best_gain_over_baseline", best_method["delta"])
