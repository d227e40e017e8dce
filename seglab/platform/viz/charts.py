"""Plots drawn by evaluators (matplotlib, Agg backend) returned as ``(H, W, 3)`` uint8 RGB pictures.

* :func:`trimap_curve` -- boundary-band mIoU, non-boundary mIoU and band pixel error against the
  band width (SEMEDA's trimap figure, PHGMM's Fig. 7).
* :func:`embedding_scatter` -- a 2-D embedding of latent points coloured by label (PHGMM's t-SNE).
* :func:`bar_chart` -- one bar per named value (e.g. mixture weights).
* :func:`curve` -- one value per step (e.g. a loss curve).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_to_rgb(fig: Any) -> np.ndarray:
    """Render a matplotlib figure -> ``(H, W, 3)`` uint8 RGB (and close it)."""
    plt = _pyplot()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def trimap_curve(result: Dict[int, Dict[str, Any]], title: str = "trimap: scores vs band width") -> np.ndarray:
    """``{w: {"boundary_miou", "nonboundary_miou", "boundary_pixel_error"}}`` -> a line plot over w
    (mIoU on the left axis, pixel error on the right)."""
    plt = _pyplot()
    widths = sorted(result)
    fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=100)
    ax.plot(widths, [result[w]["boundary_miou"] for w in widths], "o-", label="boundary band mIoU")
    ax.plot(widths, [result[w]["nonboundary_miou"] for w in widths], "s--", label="non-boundary mIoU")
    ax.set_xlabel("band width w (px)")
    ax.set_ylabel("mIoU")
    ax.grid(alpha=0.3)
    err = ax.twinx()
    err.plot(widths, [result[w]["boundary_pixel_error"] for w in widths], "^:", color="tab:red",
             label="band pixel error")
    err.set_ylabel("pixel error in band", color="tab:red")
    lines = ax.get_lines() + err.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return figure_to_rgb(fig)


def embedding_scatter(points: np.ndarray, labels: np.ndarray, names: Optional[Sequence[str]] = None,
                      title: str = "") -> np.ndarray:
    """``(N, 2)`` points coloured by integer ``labels`` (a legend with ``names[label]``) -> picture."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=100)
    cmap = plt.get_cmap("tab20")
    for k in np.unique(labels):
        sel = labels == k
        name = names[int(k)] if names is not None and int(k) < len(names) else str(int(k))
        ax.scatter(points[sel, 0], points[sel, 1], s=10, color=cmap(int(k) % 20), label=name)
    if len(np.unique(labels)) <= 20:
        ax.legend(fontsize=6, markerscale=1.5, loc="best", ncol=2)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return figure_to_rgb(fig)


def bar_chart(values: Sequence[float], names: Sequence[str], ylabel: str, title: str = "",
              errors: Optional[Sequence[float]] = None) -> np.ndarray:
    """One bar per value (optional error bars) -> picture."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(3.6, 0.35 * len(values) + 1.6), 3.2), dpi=100)
    ax.bar(range(len(values)), values, yerr=errors, color="tab:blue", capsize=2)
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(list(names), fontsize=7, rotation=45 if len(values) > 8 else 0)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return figure_to_rgb(fig)


def curve(values: Sequence[float], xlabel: str, ylabel: str, title: str = "", log_y: bool = False) -> np.ndarray:
    """``values[i]`` at step ``i + 1`` as a line -> picture."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.plot(range(1, len(values) + 1), values)
    ax.set(xlabel=xlabel, ylabel=ylabel, yscale="log" if log_y else "linear")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_to_rgb(fig)
