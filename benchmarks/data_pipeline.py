"""Data-loading rate of the Cityscapes training pipeline against the training-step rate, in one run.

    python benchmarks/data_pipeline.py [--images 12] [--workers 0,1,2] [--batch 2] [--epochs 2]
                                       [--models hrnet_w18_small_v1,ovenet_hrnet_w18_small_v1]
                                       [--steps 2] [--repeats 3] [--device cpu|cuda] [--keep DIR]
                                       [--quick] [--markdown PATH]

Writes a Cityscapes fixture at full resolution (1024x2048, official layout) to a temporary folder,
then times the training pipeline -- PNG decode + label mapping + HRNet-protocol augmentation (long
side 2048, random scale 0.5-2.0, pad, crop 512x1024, flip, ImageNet normalisation) + collate --
through a ``torch.utils.data.DataLoader`` with each number of worker processes (``pin_memory``
when CUDA is available); worker start-up and the first batch are not timed. OpenCV is limited to
one thread per process, so "per core" is the rate of one worker (the main process for 0 workers).

Next to it, the training-step rate (forward + backward + SGD step, median of ``--steps``) of each
model at batch ``--batch`` of 512x1024 on ``--device``, on batches from the same pipeline. Prints
images/s and the ratio pipeline / step for each model: above 1 the pipeline keeps up with the step
(here the pipeline's best worker count against a step on this machine's own device). No timed
assertion. The pipeline and the steps alternate over ``--repeats`` rounds (median and min-max over
rounds); the LAST line is the headline (P5): loader images/s per core over the first model's step
rate. ``--markdown PATH`` writes the table there; results go to the MLflow experiment ``benchmarks``
when mlflow is importable.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import torch
from torch.utils.data import DataLoader

from seglab.datasets.cityscapes import Cityscapes
from seglab.datasets.fixtures.cityscapes import write_cityscapes
from seglab.losses import build_loss
from seglab.models import build_model
from _common import log_mlflow  # noqa: E402 (benchmarks/ is on sys.path when a script runs)

CROP = (512, 1024)


def _one_cv2_thread(_worker_id: int) -> None:
    cv2.setNumThreads(1)


def time_pipeline(root: str, workers: int, batch: int, epochs: int, pin: bool, seed: int = 0):
    """(images/s over the timed batches, the last batch) for ``workers`` DataLoader processes."""
    ds = Cityscapes("train", root=root, crop_size=CROP, base_size=2048, seed=seed)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=pin, drop_last=True,
                        worker_init_fn=_one_cv2_thread if workers else None,
                        generator=torch.Generator().manual_seed(seed))
    images = 0
    start = None
    last = None
    for _ in range(epochs):
        for images_t, labels_t in loader:
            assert tuple(images_t.shape) == (batch, 3, *CROP) and tuple(labels_t.shape) == (batch, *CROP)
            last = (images_t, labels_t)
            if start is None:  # worker start-up and the first batch are not timed
                start = time.perf_counter()
                continue
            images += images_t.shape[0]
    return images / (time.perf_counter() - start), last


def time_steps(name: str, batch, device: torch.device, steps: int, warmup: int) -> float:
    """Median images/s of forward + backward + SGD step of model ``name`` on ``batch``."""
    model = build_model(name, num_classes=19).to(device).train()
    loss = build_loss("ovenet" if name.startswith("ovenet") else "ce")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = batch[0].to(device), batch[1].to(device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        total = loss(model(x), y).total
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return x.shape[0] / statistics.median(times)


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.node()} ({platform.machine()}, {cores} cores)"


def spread(values, fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="4 images, workers 0,1, 1 epoch, 1 step, 2 repeats, first model only (a few min on 2 cores)")
    p.add_argument("--images", type=int, default=None, help="fixture images (1024x2048; default 12, --quick 4)")
    p.add_argument("--workers", default=None, help="DataLoader worker counts to time (default 0,1,2; --quick 0,1)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--epochs", type=int, default=None, help="passes over the fixture per worker count and repeat "
                                                            "(default 2; --quick 1)")
    p.add_argument("--models", default=None,
                   help="default hrnet_w18_small_v1,ovenet_hrnet_w18_small_v1; --quick the first only")
    p.add_argument("--steps", type=int, default=None, help="timed training steps per model and repeat (median; "
                                                           "default 2, --quick 1)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds of pipeline + steps (default 3; "
                                                             "--quick 2)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--keep", default=None, help="write the fixture here (kept) instead of a temporary folder")
    p.add_argument("--markdown", default=None, help="write the table and the headline here")
    a = p.parse_args()
    images = a.images or (4 if a.quick else 12)
    workers = [int(v) for v in (a.workers or ("0,1" if a.quick else "0,1,2")).split(",")]
    epochs = a.epochs or (1 if a.quick else 2)
    steps = a.steps or (1 if a.quick else 2)
    repeats = a.repeats or (2 if a.quick else 3)
    models = (a.models or ("hrnet_w18_small_v1" if a.quick else "hrnet_w18_small_v1,ovenet_hrnet_w18_small_v1")).split(",")
    device = torch.device(a.device)
    pin = torch.cuda.is_available()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    with tempfile.TemporaryDirectory() as tmp:
        root = a.keep or tmp
        t0 = time.perf_counter()
        files = write_cityscapes(root, {"train": images}, size=(1024, 2048), block=64)["train"]
        mb = sum(f.stat().st_size for f in files) / len(files) / 2**20
        print(f"Cityscapes fixture: {images} images 1024x2048 ({mb:.1f} MB PNG each) written in "
              f"{time.perf_counter() - t0:.1f} s to {root}; {cores} CPU cores, torch threads {torch.get_num_threads()}")
        head = (f"P5 input pipeline vs model: decode + base 2048 + scale 0.5-2.0 + pad + crop {CROP[0]}x{CROP[1]} + "
                f"flip + normalise + collate, batch {a.batch}, {images} fixture images x {epochs} epoch(s), "
                f"pin_memory={pin}, OpenCV 1 thread/process; training step (forward+backward+SGD, median of "
                f"{steps} after {a.warmup} warm-up) on {device}; {repeats} interleaved rounds (pipeline, then "
                f"steps); {cores} cores, torch {torch.__version__}")
        print(head, flush=True)
        cv2_threads = cv2.getNumThreads()
        rates = {w: [] for w in workers}
        step_rates = {m: [] for m in models}
        batch = None
        for r in range(repeats):
            cv2.setNumThreads(1)
            for w in (workers if r % 2 == 0 else list(reversed(workers))):
                rate, batch = time_pipeline(root, w, a.batch, epochs, pin, seed=r)
                rates[w].append(rate)
            cv2.setNumThreads(cv2_threads)
            for name in (models if r % 2 == 0 else list(reversed(models))):
                step_rates[name].append(time_steps(name, batch, device, steps, a.warmup))
            print(f"  round {r + 1}/{repeats} done", flush=True)
        lines = ["| what | img/s median (min-max) | cores | img/s per core |", "|---|---|---|---|"]
        for w in workers:
            used = max(w, 1)
            lines.append(f"| pipeline, {w} worker(s) | {spread(rates[w])} | {used} | "
                         f"{statistics.median(rates[w]) / used:.2f} |")
        for name in models:
            lines.append(f"| training step, {name} | {spread(step_rates[name])} | {device} | |")
        # per core: the best worker count's rate per process, round by round
        per_core = [max(rates[w][r] / max(w, 1) for w in workers) for r in range(repeats)]
        ratios = {name: [pc / s for pc, s in zip(per_core, step_rates[name])] for name in models}
        for name in models:
            lines.append(f"| pipeline per core / step, {name} | {spread(ratios[name])}x | | |")
        table = "\n".join(lines)
        print(table)
        ref = models[0]
        med = statistics.median(ratios[ref])
        headline = (f"HEADLINE P5: loader images/s per core / {ref} step images/s on {device} = {med:.2f}x "
                    f"(min-max {min(ratios[ref]):.2f}-{max(ratios[ref]):.2f}x; goal > 1: one loader core keeps up "
                    f"with the step: {'met' if med > 1 else 'NOT met'})")
        md = f"{head}\n\n{table}\n\n**{headline}**\n"
        if a.markdown:
            Path(a.markdown).write_text(md)
        metrics = {f"pipeline_w{w}_img_s": statistics.median(rates[w]) for w in workers}
        metrics.update({f"step_{n}_img_s": statistics.median(step_rates[n]) for n in models})
        metrics.update({f"per_core_over_step_{n}": statistics.median(ratios[n]) for n in models})
        log_mlflow("p5_data_pipeline", {"machine": machine(), "torch": torch.__version__, "images": images,
                                        "workers": workers, "batch": a.batch, "epochs": epochs, "steps": steps,
                                        "repeats": repeats, "models": ",".join(models), "device": str(device),
                                        "quick": a.quick}, metrics, md)
        if a.keep:
            print(f"fixture kept in {Path(a.keep).resolve()}")
        print(headline)


if __name__ == "__main__":
    main()
