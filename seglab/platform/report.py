"""The comparison at the end of a sweep: a table (one row per trial) and learning curves.

Rows are read back from the MLflow store (the source of truth), sorted by best validation mIoU,
with the baseline marked and every method's gain over it ("Δ mIoU", in mIoU points × 100).
"""
from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from typing import Any, Dict, List, Optional

from seglab.platform import tracking

COLUMNS = [
    ("", "mark"), ("trial", "label"), ("method", "method"), ("κ", "kappa"), ("λ", "lam"), ("τ", "tau"),
    ("val mIoU", "best_val_miou"), ("Δ vs base", "delta"), ("pixel acc", "val_pixel_acc"),
    ("params (M)", "params_m"), ("GFLOPs", "gflops"), ("wall (s)", "wall_s"), ("status", "status"),
]


def _num(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value not in (None, "", "None") else None
    except ValueError:
        return None


def collect(parent_run_id: str, uri: Optional[str] = None) -> List[Dict[str, Any]]:
    """One dict per child run of ``parent_run_id``, sorted by best val mIoU (best first)."""
    rows = []
    for run in tracking.child_runs(parent_run_id, uri):
        m, p, tags = run.data.metrics, run.data.params, run.data.tags
        rows.append({
            "run_id": run.info.run_id,
            "label": tags.get("seglab.label", run.info.run_name),
            "method": tags.get("seglab.method", ""),
            "baseline": tags.get("seglab.baseline") == "true",
            "kappa": _num(p.get("loss.kappa")), "lam": _num(p.get("loss.lam")), "tau": _num(p.get("model.tau")),
            "best_val_miou": m.get("best_val_miou"), "val_pixel_acc": m.get("val_pixel_acc"),
            "params_m": m.get("params_m"), "gflops": m.get("gflops"), "wall_s": m.get("elapsed_s"),
            "epochs": m.get("epoch"), "status": run.info.status,
            "stopped_early": tags.get("seglab.stopped_early") == "true",
            # OVeNet: the initial / seed heads (S_i, S_s) and the ablation switches
            "val_miou_initial": m.get("val_miou_initial"), "val_miou_seed": m.get("val_miou_seed"),
            "frozen": p.get("model.freeze_body") == "True", "branch": _num(p.get("model.branch_stage")),
            "cascade": _num(p.get("model.cascade_steps")), "loss_name": p.get("loss.name"),
            "criterion": p.get("loss.criterion") or p.get("loss.criterion.name"),
            "model": tags.get("seglab.model", ""),
        })
    base = next((r["best_val_miou"] for r in rows if r["baseline"] and r["best_val_miou"] is not None), None)
    for r in rows:
        r["mark"] = "*" if r["baseline"] else ""
        r["delta"] = None if base is None or r["best_val_miou"] is None or r["baseline"] else 100 * (r["best_val_miou"] - base)
    rows.sort(key=lambda r: -(r["best_val_miou"] if r["best_val_miou"] is not None else -math.inf))
    return rows


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in ("best_val_miou", "val_pixel_acc"):
        return f"{value:.4f}"
    if key == "delta":
        return f"{value:+.2f}"
    if key in ("params_m",):
        return f"{value:.2f}"
    if key in ("gflops", "wall_s"):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_table(rows: List[Dict[str, Any]], metric: str = "val_miou") -> str:
    """A Markdown table (readable in a terminal and rendered by the MLflow UI)."""
    header = [h for h, _ in COLUMNS]
    body = [[_cell(k, r.get(k)) for _, k in COLUMNS] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(b) for b in body]
    out.append(f"* = baseline. Sorted by best {metric}; Δ vs base in mIoU points (x100). "
               f"GFLOPs = conv+linear multiply-adds / 2^30 at the logged model.flops_input size.")
    return "\n".join(out)


def _uses_ohem(row: Dict[str, Any]) -> bool:
    return row.get("loss_name") == "ohem" or row.get("criterion") == "ohem"


def format_ablation_table(rows: List[Dict[str, Any]]) -> str:
    """The ablation shaped like OVeNet's Table 5 (paper) / 5.11 (thesis): one row per variant with
    its switches (Fr = frozen body from the baseline's weights, Br = branch stage, τ, Ref = cascade
    steps, OHEM) and the val mIoU of S_f, plus S_i and S_s, in the sweep's order (baseline first)."""
    header = ["variant", "Fr", "Br", "τ", "Ref", "OHEM", "mIoU", "S_i", "S_s", "Δ vs base"]
    ordered = sorted(rows, key=lambda r: (not r["baseline"], r["label"]))
    body = []
    for r in ordered:
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
        ovenet = not r["baseline"]
        body.append([
            r["label"] + (" (baseline)" if r["baseline"] else "") + (" (stopped early)" if r.get("stopped_early") else ""),
            "✓" if r.get("frozen") else "",
            f"{r['branch']:g}" if ovenet and r.get("branch") is not None else "",
            f"{r['tau']:g}" if ovenet and r.get("tau") is not None else "",
            f"{r['cascade']:g}" if ovenet and r.get("cascade") else "",
            "✓" if _uses_ohem(r) else "",
            pct(r["best_val_miou"]), pct(r.get("val_miou_initial")), pct(r.get("val_miou_seed")),
            "-" if r["delta"] is None else f"{r['delta']:+.2f}",
        ])
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(b) for b in body]
    out.append("mIoU = best val mIoU of S_f (x100); S_i / S_s = last-epoch val mIoU of the initial and seed heads; "
               "Fr = body and first head frozen at the baseline's trained weights.")
    return "\n".join(out)


def to_csv(rows: List[Dict[str, Any]]) -> str:
    buf = io.StringIO()
    keys = ["label", "method", "baseline", "kappa", "lam", "tau", "best_val_miou", "delta", "val_pixel_acc",
            "params_m", "gflops", "wall_s", "epochs", "status", "run_id"]
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
    best_method = next((r for r in rows if not r["baseline"] and r["best_val_miou"] is not None), None)
    if best_method is not None:
        c.log_metric(parent_run_id, "best_method_val_miou", best_method["best_val_miou"])
        if best_method["delta"] is not None:
            c.log_metric(parent_run_id, "best_gain_over_baseline", best_method["delta"])
