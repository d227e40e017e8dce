"""The comparison as text: a caption (budget, seeds, splits, selection metric), one row per
configuration with the methods' columns, the legend and what the comparison does and does not show
(:mod:`.findings`); the methods' own tables (:class:`~seglab.platform.methods.Table`) rendered before it."""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from seglab.platform import methods
from seglab.platform.report.findings import SHARED_SPLIT, findings, shares_split

HEAD_COLUMNS = [("", "mark"), ("configuration", "label"), ("method", "method")]
SCORE_COLUMNS = [("test mIoU", "test_miou", "est"), ("final mIoU", "final_test_miou", "est"),
                 ("Δ vs base", "delta", "delta"), ("sel. score", "selection_score", "selection"),
                 ("pixel acc", "test_pixel_acc", "pct")]
TAIL_COLUMNS = [("seeds", "seeds", ""), ("params (M)", "params_m", ""), ("GFLOPs", "gflops", ""),
                ("train FLOPs", "train_gflops_spent", "compute"), ("wall (s)", "wall_s", ""),
                ("GPU util %", "gpu_util_pct", ""), ("GPU-hours", "gpu_hours", ""), ("status", "status", "")]
#: Selection metrics that are fractions in [0, 1], shown x100 like the scores.
FRACTION_METRIC = re.compile(r"miou|acc|iou|f1|precision|recall|emeasure")


def selection_metrics(rows: List[Dict[str, Any]]) -> List[str]:
    """The selection metrics of the rows' sweeps (one, unless sweeps that selected differently are compared)."""
    return list(OrderedDict.fromkeys(f"{r.get('selection_metric') or 'val_miou'} ({r.get('selection_mode') or 'max'})"
                                     for r in rows))


def _compute_unit(rows: List[Dict[str, Any]]) -> Tuple[str, float]:
    """(header, divisor) for the training compute column: GFLOPs, TFLOPs or PFLOPs (powers of 2^10)."""
    top = max((r.get("train_gflops_spent") or 0 for r in rows), default=0)
    if top >= 2 ** 20:
        return "train PFLOPs", 2.0 ** 20
    if top >= 2 ** 10:
        return "train TFLOPs", 2.0 ** 10
    return "train GFLOPs", 1.0


def columns(rows: List[Dict[str, Any]]) -> List[Tuple[str, str, str]]:
    """``(header, row key, format)`` of the table: generic columns around the methods' own."""
    names = rows[0]["methods"] if rows else ()
    extra = [c for n in names for c in methods.get(n).columns]
    knobs = [(c.header, c.key, c.fmt) for c in extra if c.where == "knobs"]
    scores = [(c.header, c.key, c.fmt) for c in extra if c.where == "scores"]
    head = [(h, k, "") for h, k in HEAD_COLUMNS]
    if any(r.get("several_sweeps") for r in rows):
        head.insert(1, ("sweep", "sweep_name", "text"))
    unit = _compute_unit(rows)[0]
    tail = [(unit if k == "train_gflops_spent" else h, k, f) for h, k, f in TAIL_COLUMNS]
    return head + knobs + list(SCORE_COLUMNS) + scores + tail


def _cell(key: str, value: Any, fmt: str = "", row: Optional[Dict[str, Any]] = None,
          rows: Optional[List[Dict[str, Any]]] = None) -> str:
    if fmt == "est":
        est = (row or {}).get(f"{key}_est")
        return "-" if est is None else est.format(scale=100)
    if fmt == "delta":
        est = (row or {}).get("delta_est")
        return "-" if est is None else est.format(scale=100, signed=True)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if fmt == "selection":
        metric = (row or {}).get("selection_metric") or "val_miou"
        return f"{100 * value:.2f}" if FRACTION_METRIC.search(metric) else f"{value:.4g}"
    if fmt == "compute":
        return f"{value / _compute_unit(rows or [row or {}])[1]:.3g}"
    if fmt == "miou":
        return f"{value:.4f}"
    if fmt == "pct":
        return f"{100 * value:.2f}"
    if fmt == "3g":
        return f"{value:.3g}"
    if key in ("params_m",):
        return f"{value:.2f}"
    if key in ("gflops", "wall_s"):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def markdown_table(header: List[str], body: List[List[str]], footnote: str) -> str:
    """Cells -> an aligned Markdown table (readable in a terminal, rendered by the MLflow UI); the
    footnote follows after a blank line (GitHub-flavoured Markdown would read a line right under
    the table as one more row)."""
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line(b) for b in body] + ([""] + footnote.splitlines() if footnote else []))


def caption(rows: List[Dict[str, Any]]) -> str:
    """The line above the table: budget, seeds, selection and report splits (per sweep when they differ)."""
    by_sweep = [{**r, "seeds_planned": r.get("seeds_planned") or max(x.get("seeds") or 1 for x in rows
                                                                     if x.get("sweep_id") == r.get("sweep_id")),
                 "selection": selection_metrics([r])[0]}
                for r in OrderedDict((r.get("sweep_id"), r) for r in rows).values()]
    sweeps = lambda key: [(r.get("sweep_name", ""), r.get(key)) for r in by_sweep]  # noqa: E731
    parts = []
    for key, fmt in (("budget", lambda v: f"budget: {v or 'schedule'}"),
                     ("seeds_planned", lambda v: f"seeds: {v or 1} per configuration (paired with the baseline)"),
                     ("selection_split", lambda v: f"checkpoint selected on split: {v or 'not recorded'}"),
                     ("selection", lambda v: f"selection metric: {v}"),
                     ("report_split", lambda v: f"scores reported on split: {v or 'not recorded'}")):
        parts.append(_one(sweeps(key), fmt))
    shared = [r.get("sweep_name", "") for r in by_sweep if shares_split(r)]
    if shared:
        parts.append(f"**{SHARED_SPLIT}**" + (f" ({', '.join(shared)})" if len(shared) < len(by_sweep) else ""))
    return "**Comparison** · " + " · ".join(parts)


def _one(pairs: List[Tuple[str, Any]], fmt) -> str:
    distinct = list(OrderedDict.fromkeys(v for _, v in pairs))
    if len(distinct) == 1:
        return fmt(distinct[0])
    return "; ".join(f"{fmt(v)} ({', '.join(s for s, x in pairs if x == v)})" for v in distinct)



def format_table(rows: List[Dict[str, Any]]) -> str:
    """The comparison: a caption (budget, seeds, splits, selection metric), one row per configuration
    with the methods' columns, the legend and what the comparison does and does not show."""
    cols = columns(rows)
    body = [[_cell(k, r.get(k), f, r, rows) for _, k, f in cols] for r in rows]
    unit = _compute_unit(rows)[0]
    metric = " / ".join(selection_metrics(rows)) or "val_miou (max)"
    notes = [methods.get(n).notes for n in (rows[0]["methods"] if rows else ()) if methods.get(n).notes]
    legend = [
        f"* = baseline; sel = the configuration chosen on the selection split (best mean sel. score). test mIoU = "
        f"report-split mIoU of the checkpoint chosen on the selection split (best epoch by {metric}); final mIoU = "
        f"report split, last epoch; both in points (x100), mean ± half-width of the 95 % t-interval over seeds "
        f"(n=1, or the same value on every seed: no interval). Δ vs base = paired difference to the baseline over "
        f"the seeds both have, points. sel. score = the selection metric {metric} of the chosen epoch on the "
        f"selection split: what selection used, not a result.",
        f"GFLOPs = conv+linear multiply-adds / 2^30 at the logged model.flops_input size; {unit} = training compute "
        f"spent (3 x training forward, a model's training-only modules included, x training images, powers of 2^10 "
        f"of those GFLOPs); wall, GPU columns: mean per run.",
    ] + notes
    text = markdown_table([h for h, _, _ in cols], body,
                          "\n".join(f"- {line}" for line in legend + ["**What this shows:**"])
                          + "\n" + "\n".join(f"  - {line}" for line in findings(rows)))
    return caption(rows) + "\n\n" + text if rows else text


def method_tables(rows: List[Dict[str, Any]], sweep: Any = None) -> List[str]:
    """The tables the rows' methods add (e.g. OVeNet's ablation), one set per sweep, rendered."""
    from seglab.platform.report.rows import sweeps

    out = []
    for name in (rows[0]["methods"] if rows else ()):
        for sweep_rows in sweeps(rows).values():
            out += [markdown_table(t.header, t.body, t.footnote) for t in methods.get(name).tables(sweep_rows, sweep)]
    return out


def comparison_text(rows: List[Dict[str, Any]], sweep: Any = None) -> str:
    """What a sweep (or ``seglab compare``) prints and logs: the methods' tables, then the comparison."""
    return "\n\n".join(method_tables(rows, sweep) + [format_table(rows)])
