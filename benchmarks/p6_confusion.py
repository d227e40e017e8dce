"""P6: ``ConfusionMatrix.update`` against a plain numpy ``bincount`` reference, on the same batches.

    python benchmarks/p6_confusion.py [--quick] [--classes 19] [--size 512x1024] [--batch 8]
                                      [--repeats 9] [--warmup 1] [--threads 2] [--markdown PATH]

Both variants get the same (B, H, W) int64 predictions and labels (about 5 % void = 255) and
produce the same (C, C) matrix (checked once). The numpy reference is what an evaluation script
does without seglab: ``mask = t != 255; np.bincount(C * t[mask] + p[mask], minlength=C*C)``.
Their calls alternate (who goes first flips each repeat) so machine noise hits both alike.
Reports median and min-max ms per batch and Mpixel/s; the LAST line is the headline: the
speed-up of ``ConfusionMatrix.update`` over the numpy reference (goal >= 5x on CPU).
Logs the table to the MLflow experiment ``benchmarks`` when mlflow is importable.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # seglab from this checkout

from seglab.metrics.confusion import ConfusionMatrix  # noqa: E402
from _common import log_mlflow  # noqa: E402 (benchmarks/ is on sys.path when a script runs)

GOAL = 5.0


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.node()} ({platform.machine()}, {cores} cores)"


def spread(values) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def numpy_reference(pred: np.ndarray, target: np.ndarray, c: int, ignore: int = 255) -> np.ndarray:
    mask = target != ignore
    return np.bincount(c * target[mask] + pred[mask], minlength=c * c).reshape(c, c)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="5 repeats instead of 9 (same sizes)")
    p.add_argument("--classes", type=int, default=19)
    p.add_argument("--size", default="512x1024")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=None, help="timed calls per variant (default 9; --quick 5)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: all cores)")
    p.add_argument("--markdown", default=None, help="write the table and the headline here")
    a = p.parse_args()
    repeats = a.repeats or (5 if a.quick else 9)
    if a.threads:
        torch.set_num_threads(a.threads)
    h, w = (int(v) for v in a.size.split("x"))
    c = a.classes
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, c, (a.batch, h, w), generator=g, dtype=torch.int64)
    target[torch.rand(a.batch, h, w, generator=g) < 0.05] = 255
    pred = torch.randint(0, c, (a.batch, h, w), generator=g, dtype=torch.int64)
    pred_np, target_np = pred.numpy(), target.numpy()

    cm = ConfusionMatrix(c)
    cm.update(pred, target)
    ref = numpy_reference(pred_np, target_np, c)
    if not np.array_equal(cm.matrix.numpy(), ref):
        raise SystemExit("ConfusionMatrix.update and the numpy reference disagree")

    variants = {
        "numpy bincount (reference)": lambda: numpy_reference(pred_np, target_np, c),
        "ConfusionMatrix.update": lambda: cm.update(pred, target),
    }
    times = {k: [] for k in variants}
    for i in range(a.warmup + repeats):
        order = list(variants) if i % 2 == 0 else list(reversed(list(variants)))
        for name in order:
            t0 = time.perf_counter()
            variants[name]()
            dt = time.perf_counter() - t0
            if i >= a.warmup:
                times[name].append(dt)

    pixels = a.batch * h * w
    ref_t = times["numpy bincount (reference)"]
    ratios = [r / s for r, s in zip(ref_t, times["ConfusionMatrix.update"])]  # per interleaved repeat
    head = (f"P6 confusion matrix, {c} classes, batch {a.batch}x{h}x{w} ({pixels / 1e6:.1f} Mpixel), "
            f"{repeats} interleaved repeats after {a.warmup} warm-up, torch threads {torch.get_num_threads()}, "
            f"torch {torch.__version__}, numpy {np.__version__}")
    lines = [
        "| variant | ms/batch median (min-max) | Mpixel/s median |",
        "|---|---|---|",
    ]
    for name, ts in times.items():
        ms = [t * 1e3 for t in ts]
        lines.append(f"| {name} | {spread(ms)} | {pixels / statistics.median(ts) / 1e6:.0f} |")
    ratio = statistics.median(ratios)
    verdict = "met" if ratio >= GOAL else "NOT met"
    headline = (f"HEADLINE P6: ConfusionMatrix.update speed-up over numpy bincount = {ratio:.2f}x "
                f"(min-max {min(ratios):.2f}-{max(ratios):.2f}x; goal >= {GOAL:g}x: {verdict})")
    table = "\n".join(lines)
    print(head)
    print(table)
    md = f"{head}\n\n{table}\n\n**{headline}**\n"
    if a.markdown:
        Path(a.markdown).write_text(md)
    log_mlflow("p6_confusion", {"machine": machine(), "torch": torch.__version__, "numpy": np.__version__,
                                "classes": c, "size": a.size, "batch": a.batch, "repeats": repeats,
                                "threads": torch.get_num_threads(), "quick": a.quick},
               {"speedup_median": ratio, "speedup_min": min(ratios), "speedup_max": max(ratios),
                "update_ms_median": statistics.median(times["ConfusionMatrix.update"]) * 1e3,
                "numpy_ms_median": statistics.median(ref_t) * 1e3}, md)
    print(headline)


if __name__ == "__main__":
    main()
