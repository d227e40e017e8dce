"""Data-loading rate of the Cityscapes training pipeline against the training-step rate, in one run.

    python benchmarks/data_pipeline.py [--images 12] [--workers 0,1,2] [--batch 2] [--epochs 2]
                                       [--models hrnet_w18_small_v1,ovenet_hrnet_w18_small_v1]
                                       [--steps 2] [--device cpu|cuda] [--keep DIR]

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
assertion.
"""
from __future__ import annotations

import argparse
import os
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=12, help="fixture images (1024x2048)")
    p.add_argument("--workers", default="0,1,2", help="DataLoader worker counts to time")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2, help="passes over the fixture per worker count")
    p.add_argument("--models", default="hrnet_w18_small_v1,ovenet_hrnet_w18_small_v1")
    p.add_argument("--steps", type=int, default=2, help="timed training steps per model (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--keep", default=None, help="write the fixture here (kept) instead of a temporary folder")
    a = p.parse_args()
    device = torch.device(a.device)
    pin = torch.cuda.is_available()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    with tempfile.TemporaryDirectory() as tmp:
        root = a.keep or tmp
        t0 = time.perf_counter()
        files = write_cityscapes(root, {"train": a.images}, size=(1024, 2048), block=64)["train"]
        mb = sum(f.stat().st_size for f in files) / len(files) / 2**20
        print(f"Cityscapes fixture: {a.images} images 1024x2048 ({mb:.1f} MB PNG each) written in "
              f"{time.perf_counter() - t0:.1f} s to {root}; {cores} CPU cores, torch threads {torch.get_num_threads()}")
        print(f"pipeline: decode + base 2048 + scale 0.5-2.0 + pad + crop {CROP[0]}x{CROP[1]} + flip + normalise "
              f"+ collate, batch {a.batch}, {a.epochs} epochs, pin_memory={pin}, OpenCV 1 thread/process")
        print(f"{'workers':>7} {'img/s':>8} {'cores':>6} {'img/s/core':>11}")
        cv2_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        rates = {}
        batch = None
        for w in (int(v) for v in a.workers.split(",")):
            rate, batch = time_pipeline(root, w, a.batch, a.epochs, pin)
            used = max(w, 1)
            rates[w] = rate
            print(f"{w:>7} {rate:>8.2f} {used:>6} {rate / used:>11.2f}", flush=True)
        cv2.setNumThreads(cv2_threads)
        best_w = max(rates, key=rates.get)

        print(f"\ntraining step on {device}: batch {a.batch}x3x{CROP[0]}x{CROP[1]}, forward+backward+SGD, "
              f"median of {a.steps} (after {a.warmup} warm-up)")
        print(f"{'model':<28} {'img/s':>8} {'pipeline/step':>14}")
        for name in a.models.split(","):
            step_rate = time_steps(name, batch, device, a.steps, a.warmup)
            print(f"{name:<28} {step_rate:>8.2f} {rates[best_w] / step_rate:>14.1f}", flush=True)
        print(f"\npipeline/step: the pipeline's rate with {best_w} worker(s) ({rates[best_w]:.2f} img/s) over the "
              f"step rate; > 1 means data loading is not the bottleneck.")
        if a.keep:
            print(f"fixture kept in {Path(a.keep).resolve()}")


if __name__ == "__main__":
    main()
