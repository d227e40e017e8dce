"""P2 DDP scaling: 2 Ray Train workers x 1 thread vs 1 worker x 1 thread, same global batch, as images/s.

    python benchmarks/p2_ddp_scaling.py [--quick] [--repeats 3] [--epochs 3] [--samples 96]
                                        [--global-batch 8] [--size 128x256] [--markdown PATH]

Both variants are seglab trials (``seglab.platform.sweep.trial.run_trial`` -> Ray Train ``TorchTrainer``,
DDP over gloo, MLflow logging into a SQLite store in a temp dir, a checkpoint per epoch) of
HRNet-W18-small-v1 + CE on the embedded synthetic data set, with the same global batch, crop,
optimizer and number of optimizer steps per epoch:

- ``1x1``: ``trainer.num_workers=1``, ``cpus_per_worker=0.9`` (1 torch thread), batch = global;
- ``2x1``: ``trainer.num_workers=2``, ``cpus_per_worker=0.9`` (1 torch thread each), batch = global / 2.

Throughput is the runs' logged ``images_per_s`` (global images per second of training) over the
epochs after the first. The variants are interleaved (1x1, 2x1, 1x1, 2x1, ...) so machine noise hits
both alike; the table gives median and min-max over repeats. The ideal on a 2-core machine is 2.0x;
the cores this process may use are printed. Logged to the MLflow experiment ``benchmarks``. The
last line printed is the headline ratio (goal >= 1.8).
"""
from __future__ import annotations

import argparse
import os
import platform as _platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from p1_platform_overhead import (TrialStore, compose, cores, emit, log_to_mlflow, med, platform_trial,  # noqa: E402
                                  row, run_overrides, start_ray, versions)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 repeat, 2 epochs of 48 images (about a minute)")
    p.add_argument("--repeats", type=int, default=None, help="1x1/2x1 pairs (default 3, quick 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run, the first is warm-up (default 3, quick 2)")
    p.add_argument("--samples", type=int, default=None, help="training images per epoch (default 96, quick 48)")
    p.add_argument("--val", type=int, default=8, help="validation images per epoch")
    p.add_argument("--global-batch", type=int, default=8, help="images per optimizer step, over all workers")
    p.add_argument("--size", default="128x256", help="HxW of the images and the training crop")
    p.add_argument("--markdown", default=None, help="also write the table + headline to this file")
    a = p.parse_args()
    repeats = a.repeats or (1 if a.quick else 3)
    epochs = a.epochs or (2 if a.quick else 3)
    samples = a.samples or (48 if a.quick else 96)
    if epochs < 2:
        p.error("--epochs must be >= 2 (the first epoch is warm-up)")
    if a.global_batch % 2:
        p.error("--global-batch must be even (split over 2 workers)")
    size = tuple(int(v) for v in a.size.split("x"))
    n_cores = cores()
    common = dict(epochs=epochs, samples=samples, val=a.val, size=size, cpus=0.9)
    variants = {
        "1x1": compose(run_overrides(workers=1, batch=a.global_batch, **common)),
        "2x1": compose(run_overrides(workers=2, batch=a.global_batch // 2, **common)),
    }
    load0 = os.getloadavg()[0]
    print(f"P2 DDP scaling: hrnet_w18_small_v1 + CE, global batch {a.global_batch}, {size[0]}x{size[1]}, {samples} "
          f"images x {epochs} epochs ({samples // a.global_batch} steps/epoch), 1 thread per worker, {repeats} repeat(s), "
          f"{n_cores} cores ({_platform.node()}), load average {load0:.2f}", flush=True)
    ray_start = start_ray(num_cpus=2)
    print(f"Ray start-up (local cluster, 2 CPUs, no dashboard): {ray_start:.1f} s", flush=True)
    store = TrialStore("p2_ddp_scaling")
    ips = {k: [] for k in variants}
    walls = {k: [] for k in variants}
    try:
        for r in range(repeats):  # interleaved
            for name, base in variants.items():
                out = platform_trial(base, store, f"p2-{name}")
                ips[name].append(med(out["images_per_s"]))
                walls[name].append(out["wall_s"])
                print(f"  repeat {r + 1}: {name} {ips[name][-1]:.2f} img/s (trial {out['wall_s']:.1f} s)", flush=True)
    finally:
        store.close()
        import ray

        ray.shutdown()  # only the cluster this process started
    load1 = os.getloadavg()[0]
    ratio = med(ips["2x1"]) / med(ips["1x1"])
    v = versions()
    lines = [
        f"### P2 DDP scaling ({n_cores} cores, {_platform.node()}; torch {v['torch']}, ray {v['ray']})",
        "",
        f"hrnet_w18_small_v1 + CE, global batch {a.global_batch}, crop {size[0]}x{size[1]}, {samples} images/epoch, "
        f"{epochs} epochs (steady state = epochs 2..{epochs}), gloo DDP, 1 torch thread per worker, "
        f"cpus_per_worker=0.9; images/s = the runs' logged global images_per_s. "
        f"Load average {load0:.2f} before, {load1:.2f} after.",
        "",
        "| variant | images/s median | min–max | repeats |",
        "|---|---|---|---|",
        row(f"1 worker x 1 thread (batch {a.global_batch})", ips["1x1"], repeats),
        row(f"2 workers x 1 thread (batch {a.global_batch // 2} each)", ips["2x1"], repeats),
        "",
        f"Ray start-up (apart): {ray_start:.1f} s; trial wall (median, incl. worker start-up): "
        f"1x1 {med(walls['1x1']):.1f} s, 2x1 {med(walls['2x1']):.1f} s.",
    ]
    text = "\n".join(lines)
    headline = f"P2 DDP 2x1 / 1x1 images/s: {ratio:.2f} (goal >= 1.8, {n_cores} cores)"
    log_to_mlflow("p2_ddp_scaling",
                  {"machine": _platform.node(), "cores": n_cores, "torch": v["torch"], "ray": v["ray"],
                   "mlflow": v["mlflow"], "python": v["python"], "model": "hrnet_w18_small_v1",
                   "global_batch": a.global_batch, "size": a.size, "samples": samples, "epochs": epochs,
                   "repeats": repeats, "quick": a.quick},
                  {"images_per_s_1x1": med(ips["1x1"]), "images_per_s_2x1": med(ips["2x1"]),
                   "ray_startup_s": ray_start, "trial_wall_s_1x1": med(walls["1x1"]),
                   "trial_wall_s_2x1": med(walls["2x1"]), "load_avg_before": load0, "load_avg_after": load1,
                   "ratio": ratio},
                  text + "\n\n" + headline)
    emit(text, headline, a.markdown)


if __name__ == "__main__":
    main()
