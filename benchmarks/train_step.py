"""Training-step throughput of a method against its baseline, measured side by side in one run.

    python benchmarks/train_step.py [--models hrnet_w18_small_v1,ovenet_hrnet_w18_small_v1]
                                    [--size 128x256] [--batch 8] [--steps 5] [--device cpu|cuda] [--amp]

Prints images/s per model and the ratio to the first model (the reference); no timed assertion.
Interleaves the models' steps so machine noise hits every model alike.
"""
from __future__ import annotations

import argparse
import time

import torch

from seglab.losses import build_loss
from seglab.models import build_model
from seglab.models.complexity import count_flops, count_parameters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="hrnet_w18_small_v1,ovenet_hrnet_w18_small_v1")
    p.add_argument("--size", default="128x256")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--classes", type=int, default=19)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true")
    a = p.parse_args()
    h, w = (int(v) for v in a.size.split("x"))
    device = torch.device(a.device)
    names = a.models.split(",")
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    setups = []
    for name in names:
        model = build_model(name, num_classes=a.classes).to(device, memory_format=fmt).train()
        loss = build_loss("ovenet" if name.startswith("ovenet") else "ce")
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        setups.append((name, model, loss, opt))
    x = torch.randn(a.batch, 3, h, w, device=device).to(memory_format=fmt)
    y = torch.randint(0, a.classes, (a.batch, h, w), device=device)

    def step(model, loss, opt):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.amp):
            out = model(x)
            total = loss(out, y).total
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    times = {n: [] for n in names}
    for i in range(a.warmup + a.steps):
        for name, model, loss, opt in setups:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(model, loss, opt)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= a.warmup:
                times[name].append(time.perf_counter() - t0)
    ref = None
    print(f"device {device}, input {a.batch}x3x{h}x{w}, {a.steps} timed steps (median), amp={a.amp}")
    print(f"{'model':<28} {'params (M)':>10} {'GFLOPs':>8} {'img/s':>8} {'ratio':>6}")
    for name, model, _, _ in setups:
        med = sorted(times[name])[len(times[name]) // 2]
        ips = a.batch / med
        ref = ref or ips
        print(f"{name:<28} {count_parameters(model) / 1e6:>10.2f} {count_flops(model, (h, w)):>8.2f} "
              f"{ips:>8.1f} {ips / ref:>6.2f}")


if __name__ == "__main__":
    main()
