"""What a comparison does and does not show, in sentences (under the table), and the parent run's
honest headline (the claimable gain, or nothing)."""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Dict, List, Optional

from seglab.platform.report import stats
from seglab.platform.report.rows import RESULT

ZERO_IOU = 0.005  # a class IoU below this reads 0.00: "never predicted right"
BUDGETS = {
    "schedule": "schedule (every run trains the same epochs; training compute differs with the model, "
                "see train FLOPs: not an equal-compute comparison)",
    "flops": "flops (every run spends the baseline's training FLOPs: epochs scaled by the training-forward "
             "GFLOPs ratio)",
    "time": "time (every run gets the same seconds of training -- validation, pictures and checkpoints not "
            "counted; depends on the hardware it ran on)",
}


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


SHARED_SPLIT = "selection and report share one split"


def shares_split(row: Dict[str, Any]) -> bool:
    """True when the row's checkpoint (and configuration) were chosen on the split its scores are
    reported on (neither ``dataset.selection_fraction`` nor a test split separated them)."""
    sel = row.get("selection_split")
    return bool(sel) and sel == row.get("report_split")


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
        if shares_split(rs[0]):
            out.append(f"{prefix}{SHARED_SPLIT} ({rs[0]['report_split']}): the checkpoint was chosen on the "
                       f"split the test mIoU is reported on, so that score is biased upward; set "
                       f"dataset.selection_fraction (e.g. 0.1) or give a test split to separate them.")
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
    claim = str(pick.get("claim", ""))
    out["tags"] = {"seglab.headline_group": str(pick["group"]),
                   "seglab.claim": claim + (f" ({SHARED_SPLIT})" if claim and shares_split(pick) else "")}
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
