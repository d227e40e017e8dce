"""The comparison at the end of a sweep (and of ``seglab compare``): one row per configuration.

Rows are read back from the MLflow store (the source of truth). The trial runs of a sweep are
grouped by their tag ``seglab.group`` (one configuration, all its seeds; a run without the tag is a
group of its own), and every row states, over the group's seeds:

* ``test mIoU``: the report-split score of the checkpoint chosen on the selection split
  (``test_miou``), mean ± half-width of the 95 % t-interval (:mod:`seglab.platform.stats`);
* ``final mIoU``: the report-split score of the last epoch (``final_test_miou``);
* ``Δ vs base``: the paired difference to the baseline over the seeds both have, with its interval;
* ``sel. val``: the best validation mIoU on the *selection* split (``best_val_miou``), the number
  the sweep selects on, labelled as such and never a result;
* pixel accuracy, parameters, GFLOPs, the training compute spent, wall time, GPU use, seeds, status.

A sweep with more than one method configuration searched: the configuration with the best mean
selection score is marked ``sel``, and only its ``confirm``-phase runs (fresh seeds) back a gain;
without them its row says "selected, not confirmed". The sweep's method
(:mod:`seglab.platform.methods`) adds its own columns (from the same checkpoint's ``test_*``
metrics) and tables. Under the table: what the comparison does and does not show.
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
import tempfile
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from seglab.platform import gpu_monitor, methods, stats, tracking

RESULT, FINAL, SELECTION = "test_miou", "final_test_miou", "best_val_miou"
ZERO_IOU = 0.005  # a class IoU below this reads 0.00: "never predicted right"
BUDGETS = {
    "schedule": "schedule (every run trains the same epochs; training compute differs with the model, "
                "see train FLOPs: not an equal-compute comparison)",
    "flops": "flops (every run spends the baseline's training FLOPs: epochs scaled by the training-forward GFLOPs ratio)",
    "time": "time (every run gets the same wall-clock seconds; depends on the hardware it ran on)",
}

HEAD_COLUMNS = [("", "mark"), ("configuration", "label"), ("method", "method")]
SCORE_COLUMNS = [("test mIoU", "test_miou", "est"), ("final mIoU", "final_test_miou", "est"),
                 ("Δ vs base", "delta", "delta"), ("sel. val", "best_val_miou", "pct"),
                 ("pixel acc", "test_pixel_acc", "pct")]
TAIL_COLUMNS = [("seeds", "seeds", ""), ("params (M)", "params_m", ""), ("GFLOPs", "gflops", ""),
                ("train FLOPs", "train_gflops_spent", "compute"), ("wall (s)", "wall_s", ""),
                ("GPU util %", "gpu_util_pct", ""), ("GPU-hours", "gpu_hours", ""), ("status", "status", "")]
CSV_KEYS = ["group", "seeds", "phase", "test_miou", "test_miou_low", "test_miou_high", "final_test_miou",
            "final_test_miou_low", "final_test_miou_high", "delta", "delta_low", "delta_high", "delta_n",
            "best_val_miou", "test_pixel_acc", "params_m", "gflops", "train_gflops_spent", "wall_s", "gpu_util_pct",
            "gpu_hours", "epochs", "selected", "claim", "status", "sweep_id", "run_ids"]
RUN_CSV_KEYS = ["sweep_id", "group", "label", "method", "baseline", "seed", "phase", "status", "selected_epoch",
                "test_miou", "final_test_miou", "best_val_miou", "test_pixel_acc", "train_gflops_spent", "elapsed_s",
                "run_id"]


# ------------------------------------------------------------------------------------------ reading
def collect(parent_run_id: Union[str, Sequence[str]], uri: Optional[str] = None) -> List[Dict[str, Any]]:
    """One dict per configuration (group of seeds) of the sweep(s) ``parent_run_id`` (one id or a
    list): the sweep's rows in order baseline, method rows by selection score, failed last."""
    parents = [parent_run_id] if isinstance(parent_run_id, str) else list(parent_run_id)
    rows: List[Dict[str, Any]] = []
    for parent in parents:
        rows += _collect_sweep(parent, uri, several=len(parents) > 1)
    return rows


def _sweep_info(parent, trials) -> Dict[str, Any]:
    tags, params = parent.data.tags, parent.data.params
    first = lambda key: next((r.data.tags[key] for r in trials if r.data.tags.get(key)), None)  # noqa: E731
    scale = []
    if params.get("dataset.name"):
        scale.append(f"data set {params['dataset.name']}")
    size = re.findall(r"\d+", params.get("dataset.image_size") or "")
    if size:
        scale.append(f"images {'x'.join(size)}")
    if params.get("dataset.train.num_samples") not in (None, "None"):
        scale.append(f"{params['dataset.train.num_samples']} training images")
    for split in ("test", "val"):
        if params.get(f"dataset.{split}.num_samples") not in (None, "None"):
            scale.append(f"{params[f'dataset.{split}.num_samples']} {split} images")
    if params.get("trainer.epochs") not in (None, "None"):
        scale.append(f"{params['trainer.epochs']} epochs")
    return {"sweep_id": parent.info.run_id, "sweep_name": parent.info.run_name or parent.info.run_id,
            "budget": tags.get("seglab.budget") or params.get("sweep.budget") or "schedule",
            "seeds_planned": tags.get("seglab.seeds") or params.get("sweep.seeds"),
            "confirm_seeds": tags.get("seglab.confirm_seeds") or params.get("sweep.confirm_seeds"),
            "selection_split": first("seglab.selection_split") or tags.get("seglab.selection_split"),
            "report_split": first("seglab.report_split") or tags.get("seglab.report_split"),
            "scale": ", ".join(scale), "sweep_variants": params.get("sweep.variants") not in (None, "", "None"),
            # a zoo (sweep.models) or an ablation (sweep.variants): every row planned, none selected
            "planned": any(params.get(k) not in (None, "", "None") for k in ("sweep.models", "sweep.variants"))}


def _run_record(run, used: List[str]) -> Dict[str, Any]:
    m, p, tags = run.data.metrics, run.data.params, run.data.tags
    seed = tags.get("seglab.seed")
    if seed in (None, ""):
        seed = p.get("trainer.seed")  # the seed the run trained with (runs before seglab.seed)
    rec = {
        "run_id": run.info.run_id, "label": tags.get("seglab.label", run.info.run_name),
        "method": tags.get("seglab.method", ""), "baseline": tags.get("seglab.baseline") == "true",
        "group": tags.get("seglab.group") or f"run:{run.info.run_id}",
        "seed": seed if seed not in (None, "", "None") else f"run:{run.info.run_id}",
        "phase": tags.get("seglab.phase") or "search",
        "status": _status(run.info.status, tags.get("seglab.failure")), "failed": run.info.status == "FAILED",
        "finished": run.info.status == "FINISHED",
        "stopped_early": tags.get("seglab.stopped_early") == "true", "model": tags.get("seglab.model", ""),
        RESULT: m.get(RESULT), FINAL: m.get(FINAL), SELECTION: m.get(SELECTION),
        "test_pixel_acc": m.get("test_pixel_acc"), "selected_epoch": m.get("selected_epoch"),
        "params_m": m.get("params_m"), "gflops": m.get("gflops"), "train_gflops_spent": m.get("train_gflops_spent"),
        "elapsed_s": m.get("elapsed_s"), "epochs": m.get("epoch"),
        "class_iou": {k[len("test_iou_"):]: v for k, v in m.items() if k.startswith("test_iou_")},
        **gpu_monitor.report_fields(m),  # "GPU util %" (mean over ranks), "GPU-hours"; None on CPU
    }
    fields: Dict[str, Any] = {}
    for name in used:
        fields.update(methods.get(name).row_fields(p, m, tags))
    rec["fields"] = fields
    return rec


def _collect_sweep(parent_run_id: str, uri: Optional[str], several: bool = False) -> List[Dict[str, Any]]:
    c = tracking.client(uri)
    parent = c.get_run(parent_run_id)
    trials = [r for r in tracking.child_runs(parent_run_id, uri) if r.data.tags.get("seglab.kind", "trial") == "trial"]
    names = [parent.data.tags.get("seglab.method")] + [r.data.tags.get("seglab.method") for r in trials]
    used: List[str] = []
    for name in names:
        m = methods.get(name)
        if m is not methods.GENERIC and m.name not in used:
            used.append(m.name)
    info = _sweep_info(parent, trials)
    groups: "OrderedDict[str, List[Dict[str, Any]]]" = OrderedDict()
    for run in sorted(trials, key=lambda r: r.info.start_time or 0):
        rec = _run_record(run, used)
        groups.setdefault(rec["group"], []).append(rec)

    base_runs = next((g for g in groups.values() if any(r["baseline"] for r in g)), [])
    method_groups = [k for k, g in groups.items() if not any(r["baseline"] for r in g)]
    confirmed = any(r["phase"] == "confirm" for g in groups.values() for r in g)
    searched = len(method_groups) > 1 and (not info["planned"] or confirmed)
    selected = _select(groups, method_groups) if searched else (method_groups[0] if method_groups else None)
    rows = []
    for key, runs in groups.items():
        row = _group_row(key, runs, base_runs, used, info)
        row["selected"] = searched and key == selected
        row["searched"] = searched
        row["claim"] = _claim(row, searched, len(method_groups))
        row["mark"] = "*" if row["baseline"] else ("sel" if row["selected"] else "")
        if row["claim"].startswith("selected"):
            row["status"] = f"{row['status']}; {row['claim']}"
        row["several_sweeps"] = several
        rows.append(row)
    order = lambda r: (r["failed"], not r["baseline"], not r["selected"],  # noqa: E731
                       -(r[SELECTION] if r[SELECTION] is not None else -math.inf), r["label"])
    rows.sort(key=order)
    return rows


def _select(groups, method_groups: List[str]) -> Optional[str]:
    """The method group with the best mean selection score over its finished search-phase runs (as
    the sweep chose the configuration it confirms: ``seglab.platform.sweep.chosen_group``)."""
    def score(key: str) -> float:
        runs = [r for r in groups[key] if r["finished"] and r["phase"] == "search"]
        est = stats.mean_ci([r[SELECTION] for r in runs])
        return est.mean if est is not None else -math.inf
    best = max(method_groups, key=score)
    return best if score(best) > -math.inf else None


def _claim(row: Dict[str, Any], searched: bool, configurations: int = 1) -> str:
    """How far a row's Δ may be read as a result: "single configuration" (nothing was selected),
    "planned comparison" (a zoo or ablation: every row planned), "search" (a searched configuration
    that was not chosen), "selected, not confirmed" or "selected, confirmed (N fresh seeds)"."""
    if row["baseline"]:
        return ""
    if not searched:
        return "single configuration" if configurations <= 1 else "planned comparison"
    if not row["selected"]:
        return "search"
    return f"selected, confirmed ({row['seeds']} fresh seeds)" if row["phase"] == "confirm" \
        else "selected, not confirmed"


def _group_label(runs: List[Dict[str, Any]]) -> str:
    labels = [r["label"] for r in runs]
    if len(set(labels)) == 1:
        return labels[0]
    stripped = {re.sub(r"[\s,·(\[]*\b(seed|s)\s*[=:]?\s*\d+[)\]]?\s*$", "", lab) for lab in labels}
    return stripped.pop() if len(stripped) == 1 else labels[0]


def _group_row(key: str, runs: List[Dict[str, Any]], base_runs: List[Dict[str, Any]], used: List[str],
               info: Dict[str, Any]) -> Dict[str, Any]:
    runs = sorted(runs, key=lambda r: stats.seed_order(r["seed"]))
    confirm = [r for r in runs if r["phase"] == "confirm"]
    pool = confirm or runs
    ok = [r for r in pool if not r["failed"]]
    first = runs[0]
    row: Dict[str, Any] = {
        "group": key, "label": _group_label(runs), "method": first["method"], "model": first["model"],
        "baseline": any(r["baseline"] for r in runs), "phase": "confirm" if confirm else "search",
        "run_ids": [r["run_id"] for r in runs], "run_id": first["run_id"], "runs": runs,
        "stats_run_ids": [r["run_id"] for r in ok],
        "failed": all(r["failed"] for r in runs), "stopped_early": any(r["stopped_early"] for r in runs),
        "status": _group_status(runs), "methods": tuple(used), **info,
    }
    for name in (RESULT, FINAL, "test_pixel_acc", SELECTION):
        est = stats.mean_ci([r[name] for r in ok])
        row[f"{name}_est"] = est
        row[name] = None if est is None else est.mean
        row[f"{name}_low"] = None if est is None else est.low
        row[f"{name}_high"] = None if est is None else est.high
    sel_pool = [r for r in runs if r["finished"] and r["phase"] == "search"] or ok
    sel = stats.mean_ci([r[SELECTION] for r in sel_pool])  # the number the sweep selected on
    row[SELECTION] = None if sel is None else sel.mean
    row["seeds"] = sum(r[RESULT] is not None for r in ok) or (len(ok) if ok else 0)
    row["seed_list"] = [r["seed"] for r in ok]
    for name in ("params_m", "gflops", "train_gflops_spent", "gpu_util_pct", "gpu_hours"):
        row[name] = _mean([r[name] for r in ok or runs])
    row["wall_s"] = _mean([r["elapsed_s"] for r in ok or runs])
    row["epochs"] = max((r["epochs"] for r in runs if r["epochs"] is not None), default=None)
    row["class_iou"] = _class_estimates(ok)
    row.update(_method_fields([r["fields"] for r in ok or runs]))
    # Δ vs the baseline: paired over the seeds both have (the baseline's runs of the same phase first)
    row["delta_est"] = None
    if not row["baseline"] and base_runs:
        mine = {r["seed"]: r[RESULT] for r in ok}
        theirs: Dict[Any, float] = {}
        for r in sorted(base_runs, key=lambda r: r["phase"] == row["phase"]):  # same phase wins a shared seed
            if not r["failed"]:
                theirs[r["seed"]] = r[RESULT]
        diff = stats.paired_difference(mine, theirs)
        row["delta_est"] = diff
        row["unpaired_seeds"] = [] if diff is None else list(diff.dropped_a)
    diff = row["delta_est"]
    row["delta"] = None if diff is None else 100 * diff.mean
    row["delta_low"] = None if diff is None or diff.low is None else 100 * diff.low
    row["delta_high"] = None if diff is None or diff.high is None else 100 * diff.high
    row["delta_n"] = None if diff is None else diff.n
    return row


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def _class_estimates(runs: List[Dict[str, Any]]) -> Dict[str, Optional[stats.Estimate]]:
    names: List[str] = []
    for r in runs:
        names += [n for n in r["class_iou"] if n not in names]
    return {n: stats.mean_ci([r["class_iou"].get(n) for r in runs]) for n in names}


def _method_fields(per_run: List[Dict[str, Any]]) -> Dict[str, Any]:
    """A method's values over the group's runs: numbers averaged, anything else from the first run."""
    out: Dict[str, Any] = {}
    for key in {k for f in per_run for k in f}:
        values = [f.get(key) for f in per_run if f.get(key) is not None]
        numeric = values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        out[key] = _mean(values) if numeric else (values[0] if values else None)
    return out


def _status(status: str, failure: Optional[str]) -> str:
    """The run's MLflow status, with the reason of a failure the platform diagnosed."""
    return f"{status}: {failure}" if failure and status == "FAILED" else status


def _group_status(runs: List[Dict[str, Any]]) -> str:
    statuses = [r["status"] for r in runs]
    if len(set(statuses)) == 1:
        return statuses[0]
    counts: "OrderedDict[str, int]" = OrderedDict()
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    return ", ".join(f"{n}x {s}" for s, n in counts.items())


# ------------------------------------------------------------------------------------------ the table
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
                                                                     if x.get("sweep_id") == r.get("sweep_id"))}
                for r in OrderedDict((r.get("sweep_id"), r) for r in rows).values()]
    sweeps = lambda key: [(r.get("sweep_name", ""), r.get(key)) for r in by_sweep]  # noqa: E731
    parts = []
    for key, fmt in (("budget", lambda v: f"budget: {v or 'schedule'}"),
                     ("seeds_planned", lambda v: f"seeds: {v or 1} per configuration (paired with the baseline)"),
                     ("selection_split", lambda v: f"checkpoint selected on split: {v or 'not recorded'}"),
                     ("report_split", lambda v: f"scores reported on split: {v or 'not recorded'}")):
        parts.append(_one(sweeps(key), fmt))
    return "**Comparison** · " + " · ".join(parts)


def _one(pairs: List[Tuple[str, Any]], fmt) -> str:
    distinct = list(OrderedDict.fromkeys(v for _, v in pairs))
    if len(distinct) == 1:
        return fmt(distinct[0])
    return "; ".join(f"{fmt(v)} ({', '.join(s for s, x in pairs if x == v)})" for v in distinct)


def zero_classes(rows: List[Dict[str, Any]]) -> List[str]:
    """Classes whose report-split IoU reads 0.00 in every run that scored them."""
    seen: "OrderedDict[str, bool]" = OrderedDict()
    for row in rows:
        for run in row.get("runs", []):
            for name, value in run["class_iou"].items():
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                seen[name] = seen.get(name, True) and value < ZERO_IOU
    return [n for n, zero in seen.items() if zero]


def findings(rows: List[Dict[str, Any]]) -> List[str]:
    """What the comparison does and does not show, one sentence per point."""
    out: List[str] = []
    for sweep_id in OrderedDict.fromkeys(r.get("sweep_id") for r in rows):
        rs = [r for r in rows if r.get("sweep_id") == sweep_id]
        prefix = f"{rs[0].get('sweep_name')}: " if any(r.get("several_sweeps") for r in rs) else ""
        budget = rs[0].get("budget") or "schedule"
        out.append(f"{prefix}budget: {BUDGETS.get(budget, budget)}.")
        n = max((r.get("seeds") or 0 for r in rs), default=0)
        if n <= 1:
            out.append(f"{prefix}seeds: 1 per configuration: no confidence interval; one seed cannot tell a "
                       f"method's effect from seed-to-seed noise, so no difference below is a finding.")
        else:
            out.append(f"{prefix}seeds: up to {n} per configuration, paired with the baseline's; 95 % t-intervals "
                       f"(with few seeds they are wide: a real effect smaller than the interval goes unseen).")
        if rs[0].get("scale"):
            out.append(f"{prefix}scale: {rs[0]['scale']}; what holds at this scale need not hold at a paper's "
                       f"(full data, full resolution, longer schedules).")
        if any(r.get(RESULT) is None for r in rs if not r.get("failed")):
            out.append(f"{prefix}rows with '-' under test mIoU have no report-split score (runs older than the "
                       f"selection/report separation, or runs that did not finish).")
        base = next((r for r in rs if r.get("baseline")), None)
        if base is None:
            out.append(f"{prefix}no baseline in this sweep: no Δ computed, the rows compare only with each other.")
        for r in rs:
            if r.get("baseline") or r.get("failed"):
                continue
            if base is None:
                continue
            claim = r.get("claim", "")
            if claim == "search":
                continue  # a searched, unselected configuration: its Δ is in the table, no claim
            sentence = stats.verdict(r.get("delta_est"))
            if claim == "selected, not confirmed":
                sentence += ("; chosen as the best of a search on the selection split and not re-run with fresh "
                             "seeds: its score is biased upward, no gain is claimed")
            elif claim.startswith("selected, confirmed"):
                sentence += " (confirm-phase runs with fresh seeds)"
            if r.get("unpaired_seeds"):
                seeds = ", ".join(map(str, r["unpaired_seeds"]))
                sentence += f"; seed(s) {seeds} have no baseline run and are left out"
            out.append(f"{prefix}Δ of {r['label']} vs {base['label']}: {sentence}.")
        planned = sum(1 for r in rs if r.get("claim") == "planned comparison")
        if planned > 1:
            out.append(f"{prefix}{planned} planned comparisons against one baseline: at 95 % about one in 20 "
                       f"differences that are really zero looks significant; read a lone significant row with care.")
        if any(r.get("searched") for r in rs):
            others = sum(1 for r in rs if r.get("claim") == "search")
            out.append(f"{prefix}{others + 1} configurations were searched; the other rows' Δ are search results "
                       f"(the best of several is biased upward), not claims.")
    zeros = zero_classes(rows)
    if zeros:
        out.append(f"class(es) {', '.join(zeros)} score test IoU 0.00 in every run (never predicted right; at this "
                   f"resolution they may be thinner than the output stride): they count as 0 in every mIoU above.")
    return out


def format_table(rows: List[Dict[str, Any]], metric: str = "val_miou") -> str:
    """The comparison: a caption (budget, seeds, splits), one row per configuration with the
    methods' columns, the legend and what the comparison does and does not show. ``metric`` is
    the sweep's selection metric (named in the legend)."""
    cols = columns(rows)
    body = [[_cell(k, r.get(k), f, r, rows) for _, k, f in cols] for r in rows]
    unit = _compute_unit(rows)[0]
    notes = [methods.get(n).notes for n in (rows[0]["methods"] if rows else ()) if methods.get(n).notes]
    legend = [
        f"* = baseline; sel = the configuration chosen on the selection split (best mean sel. val). test mIoU = "
        f"report-split mIoU of the checkpoint chosen on the selection split (best {metric}); final mIoU = report "
        f"split, last epoch; both in points (x100), mean ± half-width of the 95 % t-interval over seeds (n=1: no "
        f"interval). Δ vs base = paired difference to the baseline over the seeds both have, points. sel. val = "
        f"best val mIoU on the selection split: what selection used, not a result.",
        f"GFLOPs = conv+linear multiply-adds / 2^30 at the logged model.flops_input size; {unit} = training compute "
        f"spent (3 x training forward, a model's training-only modules included, x training images, "
        f"powers of 2^10 of those GFLOPs); wall, GPU columns: mean per run.",
    ] + notes
    text = markdown_table([h for h, _, _ in cols], body,
                          "\n".join(f"- {line}" for line in legend + ["**What this shows:**"])
                          + "\n" + "\n".join(f"  - {line}" for line in findings(rows)))
    return caption(rows) + "\n\n" + text if rows else text


# ------------------------------------------------------------------------------------------ files
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


def plot_curves(rows: List[Dict[str, Any]], path: str, uri: Optional[str] = None) -> None:
    """Val mIoU (selection split) per epoch: per configuration the mean over seeds with a band from
    the lowest to the highest seed (baseline dashed) -> PNG."""
    from seglab.platform import compare

    compare.plot_learning_curves(rows, path, uri)


def headline(rows: List[Dict[str, Any]], sweep_id: Optional[str] = None) -> Dict[str, Any]:
    """The parent run's honest summary: the claimable method row's test mIoU and its paired gain over
    the baseline (gain in points), or nothing but the claim's label when no gain may be claimed."""
    rs = [r for r in rows if sweep_id is None or r["sweep_id"] == sweep_id]
    base = next((r for r in rs if r["baseline"]), None)
    pick = next((r for r in rs if r.get("selected")), None) or \
        next((r for r in rs if not r["baseline"] and r.get("claim") == "single configuration"), None)
    out: Dict[str, Any] = {"metrics": {}, "tags": {}}
    if pick is None:
        return out
    out["tags"] = {"seglab.headline_group": str(pick["group"]), "seglab.claim": pick.get("claim", "")}
    claim = str(pick.get("claim", ""))
    claimable = claim == "single configuration" or claim.startswith("selected, confirmed")
    if not claimable:
        return out
    m = out["metrics"]
    if pick[RESULT] is not None:
        m["method_test_miou_mean"] = pick[RESULT]
    if base is not None and base[RESULT] is not None:
        m["baseline_test_miou_mean"] = base[RESULT]
    d = pick.get("delta_est")
    if d is not None:
        m["gain_over_baseline_mean"] = 100 * d.mean
        if d.has_interval:
            m["gain_ci_low"], m["gain_ci_high"] = 100 * d.low, 100 * d.high
        m["seeds"] = d.n
    return out


def log_to_parent(parent_run_id: str, rows: List[Dict[str, Any]], table: str, uri: Optional[str] = None) -> None:
    """comparison.md / .csv, comparison_runs.csv and the plots as artifacts of the sweep's parent
    run, the honest headline as its metrics (``method_test_miou_mean``, ``gain_over_baseline_mean``,
    ``gain_ci_low``, ``gain_ci_high`` in mIoU points, ``seeds``) and, through
    :func:`seglab.platform.ui.publish`, the table as the run's description."""
    from seglab.platform import compare

    c = tracking.client(uri)
    mine = [r for r in rows if r.get("sweep_id", parent_run_id) == parent_run_id] or rows
    with tempfile.TemporaryDirectory() as folder:
        for name, text in (("comparison.md", table + "\n"), ("comparison.csv", to_csv(mine)),
                           ("comparison_runs.csv", runs_csv(mine))):
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)
        compare.write_plots(mine, folder, uri)
        c.log_artifacts(parent_run_id, folder)
    head = headline(mine, parent_run_id if any("sweep_id" in r for r in mine) else None)
    for key, value in head["metrics"].items():
        c.log_metric(parent_run_id, key, float(value))
    for key, value in head["tags"].items():
        c.set_tag(parent_run_id, key, value)
    try:
        from seglab.platform import ui
    except ImportError:
        return
    ui.publish(parent_run_id, table, mine, uri)
