"""The comparison's rows, read back from the MLflow store (the source of truth): one per configuration.

The trial runs of a sweep are grouped by their tag ``seglab.group`` (one configuration, all its seeds;
a run without the tag is a group of its own), and every row states, over the group's seeds:

* ``test_miou``: the report-split score of the checkpoint chosen on the selection split, mean with the
  95 % t-interval (:mod:`.stats`); ``final_test_miou``: the same for the last epoch;
* ``delta``: the paired difference to the baseline over the seeds both have, with its interval;
* ``selection_score``: the best value of the sweep's selection metric on the *selection* split (the
  number the sweep selects on, labelled as such and never a result);
* pixel accuracy, parameters, GFLOPs, the training compute spent, wall time, GPU use, seeds, status,
  and the method's own fields (from the same checkpoint's ``test_*`` metrics).

A sweep with more than one method configuration searched: the configuration with the best mean
selection score is ``selected``, and only its ``confirm``-phase runs (fresh seeds) back a gain;
without them its claim is "selected, not confirmed".
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from seglab.platform import methods, tracking
from seglab.platform.monitoring.summary import report_fields
from seglab.platform.report import stats

RESULT, FINAL, SELECTION = "test_miou", "final_test_miou", "selection_score"


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
            "selection_metric": tags.get("seglab.selection_metric") or params.get("sweep.metric") or "val_miou",
            "selection_mode": tags.get("seglab.selection_mode") or params.get("sweep.mode") or "max",
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
        RESULT: m.get(RESULT), FINAL: m.get(FINAL), "best_val_miou": m.get("best_val_miou"),
        SELECTION: m.get(SELECTION, m.get("best_val_miou")),  # runs before selection_score: val mIoU selected
        "test_pixel_acc": m.get("test_pixel_acc"), "selected_epoch": m.get("selected_epoch"),
        "params_m": m.get("params_m"), "gflops": m.get("gflops"), "train_gflops_spent": m.get("train_gflops_spent"),
        "elapsed_s": m.get("elapsed_s"), "epochs": m.get("epoch"),
        "class_iou": {k[len("test_iou_"):]: v for k, v in m.items() if k.startswith("test_iou_")},
        **report_fields(m),  # "GPU util %" (mean over ranks), "GPU-hours"; None on CPU
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
    sign = -1.0 if info["selection_mode"] == "min" else 1.0  # +1: higher selection scores are better
    selected = _select(groups, method_groups, sign) if searched else (method_groups[0] if method_groups else None)
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
                       -(sign * r[SELECTION] if r[SELECTION] is not None else -math.inf), r["label"])
    rows.sort(key=order)
    return rows


def _select(groups, method_groups: List[str], sign: float = 1.0) -> Optional[str]:
    """The method group with the best mean selection score over its finished search-phase runs (the
    highest for ``sign`` +1, the lowest for -1; as the sweep chose the configuration it confirms:
    :func:`seglab.platform.sweep.phases.chosen_group`)."""
    def score(key: str) -> float:
        runs = [r for r in groups[key] if r["finished"] and r["phase"] == "search"]
        est = stats.mean_ci([r[SELECTION] for r in runs])
        return sign * est.mean if est is not None else -math.inf
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


def sweeps(rows: List[Dict[str, Any]]) -> "OrderedDict[Any, List[Dict[str, Any]]]":
    """The rows grouped by sweep, in order."""
    out: "OrderedDict[Any, List[Dict[str, Any]]]" = OrderedDict()
    for r in rows:
        out.setdefault(r.get("sweep_id"), []).append(r)
    return out


def display_name(row: Dict[str, Any]) -> str:
    """A row's name in legends: its label (prefixed with its sweep when several are compared)."""
    prefix = f"{row.get('sweep_name')}: " if row.get("several_sweeps") else ""
    return prefix + row["label"] + (" (baseline)" if row.get("baseline") else "")
