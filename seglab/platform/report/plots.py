"""The comparison's pictures (matplotlib, Agg back end; no display needed):

* ``val_miou_curves.png``: selection-split val mIoU per epoch, mean over seeds with a band from the
  lowest to the highest seed;
* ``per_class_iou.png``: report-split IoU per class, the baseline next to the method's reference row
  (the selected configuration, or the only one), bars = mean over seeds, whiskers = 95 % t-interval;
* ``miou_vs_gflops.png``: test mIoU (mean ± interval) against the forward GFLOPs of every row.

Rows come from :func:`seglab.platform.report.rows.collect`.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional

from seglab.platform import tracking
from seglab.platform.report.rows import display_name, sweeps

CURVES, PER_CLASS, SCATTER = "val_miou_curves.png", "per_class_iou.png", "miou_vs_gflops.png"



def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def reference_rows(rows: List[Dict[str, Any]], limit: int = 3) -> List[Dict[str, Any]]:
    """The rows a per-class picture compares: the baseline, then the selected configuration (or the
    only one; else the first ``limit - 1`` method rows in table order), failed rows left out."""
    base = [r for r in rows if r.get("baseline") and not r.get("failed")][:1]
    methods_ = [r for r in rows if not r.get("baseline") and not r.get("failed")]
    chosen = [r for r in methods_ if r.get("selected")] or methods_[: max(limit - len(base), 1)]
    return base + chosen


def learning_curves(rows: List[Dict[str, Any]], uri: Optional[str] = None, metric: str = "val_miou"
                    ) -> "OrderedDict[str, Dict[str, Any]]":
    """Per configuration (keyed by its label): ``epochs`` and, over its seeds, the ``mean``, ``low``
    (lowest seed) and ``high`` of ``metric`` per epoch, and ``n`` (seeds)."""
    import numpy as np

    c = tracking.client(uri)
    out: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()
    for row in rows:
        by_epoch: Dict[int, List[float]] = {}
        for run in row.get("runs", []) or [{"run_id": row["run_id"]}]:
            for m in c.get_metric_history(run["run_id"], metric):
                by_epoch.setdefault(int(m.step), []).append(m.value)
        if not by_epoch:
            continue
        epochs = sorted(by_epoch)
        out[display_name(row)] = {"epochs": epochs, "mean": [float(np.mean(by_epoch[e])) for e in epochs],
                           "low": [min(by_epoch[e]) for e in epochs], "high": [max(by_epoch[e]) for e in epochs],
                           "n": max(len(v) for v in by_epoch.values()), "baseline": bool(row.get("baseline"))}
    return out


def plot_learning_curves(rows: List[Dict[str, Any]], path: str, uri: Optional[str] = None) -> bool:
    """Selection-split val mIoU per epoch of every configuration: mean over its seeds, band min..max."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.4), dpi=110)
    curves = learning_curves(rows, uri)
    for name, cv in curves.items():
        pct = lambda v: [100 * x for x in v]  # noqa: E731
        line, = ax.plot(cv["epochs"], pct(cv["mean"]), "--" if cv["baseline"] else "-", marker="o", markersize=3,
                        label=f"{name} (n={cv['n']})")
        if cv["n"] > 1:
            ax.fill_between(cv["epochs"], pct(cv["low"]), pct(cv["high"]), color=line.get_color(), alpha=0.18,
                            linewidth=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mIoU (%)")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7)
    ax.set_title("selection-split mIoU per epoch: mean over seeds, band = lowest..highest seed", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return bool(curves)


def plot_per_class(rows: List[Dict[str, Any]], path: str) -> bool:
    """Per-class report-split IoU, baseline vs the method's reference row, one panel per sweep."""
    import numpy as np

    panels = []
    for sweep_rows in sweeps(rows).values():
        chosen = [r for r in reference_rows(sweep_rows) if r.get("class_iou")]
        if chosen:
            panels.append(chosen)
    if not panels:
        return False
    plt = _plt()
    names_per = [list(OrderedDict.fromkeys(n for r in p for n in r["class_iou"])) for p in panels]
    width = max(7.0, 0.45 * max(len(n) for n in names_per) + 2)
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, 3.6 * len(panels)), dpi=110, squeeze=False)
    for ax, panel, names in zip(axes[:, 0], panels, names_per):
        x = np.arange(len(names))
        step = 0.8 / len(panel)
        for i, row in enumerate(panel):
            ests = [row["class_iou"].get(n) for n in names]
            means = [100 * e.mean if e is not None else 0.0 for e in ests]
            errs = [100 * e.half_width if e is not None and e.has_interval else 0.0 for e in ests]
            n = max((e.n for e in ests if e is not None), default=0)
            ax.bar(x + (i - (len(panel) - 1) / 2) * step, means, step, yerr=errs, capsize=2,
                   label=f"{display_name(row)} (n={n})", hatch="//" if row.get("baseline") else None,
                   edgecolor="black", linewidth=0.4)
        ax.set_xticks(x)
        ax.set_xticklabels([n.replace("_", " ") for n in names], rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("test IoU (%)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_title("report-split IoU per class (selected checkpoint): mean over seeds, whiskers = 95 % CI",
                         fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_miou_vs_gflops(rows: List[Dict[str, Any]], path: str) -> bool:
    """Test mIoU (mean ± 95 % interval) against forward GFLOPs, one point per configuration."""
    points = [r for r in rows if r.get("test_miou") is not None and r.get("gflops") and not r.get("failed")]
    if not points:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=110)
    same: Dict[float, int] = {}
    for r in points:
        est = r.get("test_miou_est")
        err = 100 * est.half_width if est is not None and est.has_interval else 0.0
        k = same[r["gflops"]] = same.get(r["gflops"], -1) + 1  # rows of one model: side by side, not on top
        x = r["gflops"] * (1 + 0.012 * ((k + 1) // 2) * (1 if k % 2 else -1))
        ax.errorbar([x], [100 * r["test_miou"]], yerr=[err], fmt="s" if r.get("baseline") else "o",
                    capsize=3, markersize=6, label=f"{display_name(r)} (n={r.get('seeds', 1)})")
    ax.set_xlabel("forward GFLOPs (multiply-adds / 2^30 at the logged input size)")
    ax.set_ylabel("test mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("report-split mIoU vs compute: mean over seeds, bars = 95 % CI", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_plots(rows: List[Dict[str, Any]], folder: str, uri: Optional[str] = None) -> List[str]:
    """The three pictures into ``folder``; returns the file names written (a picture without data,
    e.g. per-class IoU of runs that logged none, is left out)."""
    plot_learning_curves(rows, os.path.join(folder, CURVES), uri)
    written = [CURVES]
    if plot_per_class(rows, os.path.join(folder, PER_CLASS)):
        written.append(PER_CLASS)
    if plot_miou_vs_gflops(rows, os.path.join(folder, SCATTER)):
        written.append(SCATTER)
    return written
