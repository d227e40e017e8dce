"""Training-step time of the SEMEDA loss against plain cross-entropy, on the same model and batch.

    python benchmarks/semeda_step.py [--model deeplabv3plus_r50] [--size 161x161] [--batch 2]
                                     [--classes 21] [--repeats 20] [--warmup 2] [--threads 2]
                                     [--device cpu|cuda] [--no-frozen-bn]

The paper says SEMEDA's overhead is negligible (S:432: the frozen edge net only runs inside the
loss); the target here is <= 1.03x. One model, one optimiser and one batch are shared by both
variants; their steps (forward + loss + backward + SGD step) are interleaved so machine noise hits
both alike, after warm-up steps. The edge net is freshly initialised (its weights do not change the
time). BN is frozen as in the paper (S:199) unless ``--no-frozen-bn``. The loss alone (forward +
backward on fixed logits) is timed too, to show where the overhead comes from.

Prints a table; the LAST line is the headline ratio. No timed assertion.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List

import torch

from seglab.losses import build_loss
from seglab.losses.semeda import SemedaEdgeNet
from seglab.models import build_model
from seglab.models.frozen_bn import freeze_batchnorm
from seglab.models.outputs import SegOutput


def quartiles(values: List[float]) -> tuple:
    """(p25, median, p75) of ``values``."""
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return q[0], q[1], q[2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="deeplabv3plus_r50")
    p.add_argument("--size", default="161x161", help="HxW of the input crop")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--classes", type=int, default=21, help="C (21 = VOC with background)")
    p.add_argument("--repeats", type=int, default=20, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    p.add_argument("--lambdas", default="4,2,0", help="lambda1,lambda2,lambda3 of SEMEDA")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-frozen-bn", action="store_true", help="keep trainable BatchNorm")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    h, w = (int(v) for v in (a.size.split("x") if "x" in a.size else (a.size, a.size)))
    device = torch.device(a.device)
    l1, l2, l3 = (float(v) for v in a.lambdas.split(","))

    model = build_model(a.model, num_classes=a.classes)
    if not a.no_frozen_bn:
        model = freeze_batchnorm(model)
    model = model.to(device).train()
    optimizer = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=1e-4, momentum=0.9)
    losses = {
        "ce": build_loss("ce").to(device),
        "semeda": build_loss("semeda", edge_net=SemedaEdgeNet(a.classes), lambda1=l1, lambda2=l2, lambda3=l3,
                             num_classes=a.classes).to(device),
    }
    images = torch.randn(a.batch, 3, h, w, device=device)
    labels = torch.randint(0, a.classes, (a.batch, h // 8, w // 8), device=device)
    labels = labels.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, :h, :w]  # blocky maps: real edges
    labels = torch.nn.functional.pad(labels, (0, w - labels.shape[2], 0, h - labels.shape[1]), value=255)
    labels[:, : h // 10, : w // 10] = 255  # some void

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn: Callable[[], None]) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    def train_step(name: str) -> None:
        out = model(images)
        total = losses[name](out, labels).total
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    with torch.no_grad():
        fixed = model(images).logits.detach()

    def loss_only(name: str) -> None:
        logits = fixed.clone().requires_grad_(True)
        losses[name](SegOutput(logits=logits), labels).total.backward()

    steps: Dict[str, List[float]] = {n: [] for n in losses}
    alone: Dict[str, List[float]] = {n: [] for n in losses}
    for i in range(a.warmup + a.repeats):
        order = list(losses) if i % 2 == 0 else list(reversed(list(losses)))  # alternate who goes first
        for name in order:
            t = timed(lambda: train_step(name))
            if i >= a.warmup:
                steps[name].append(t)
    for i in range(a.warmup + 3 * a.repeats):
        for name in losses:
            t = timed(lambda: loss_only(name))
            if i >= a.warmup:
                alone[name].append(t)

    frozen = "frozen BN" if not a.no_frozen_bn else "trainable BN"
    print(f"{a.model} ({frozen}), input {a.batch}x3x{h}x{w}, {a.classes} classes, device {device}, "
          f"{a.threads} threads, {a.repeats} timed steps per variant after {a.warmup} warm-up, interleaved")
    print(f"SEMEDA lambdas ({l1:g}, {l2:g}, {l3:g}), edge net C->16->32->2 (3x3), logits at "
          f"{tuple(fixed.shape[-2:])} upsampled to {(h, w)}")
    print(f"{'what':<34} {'median ms':>10} {'p25 ms':>9} {'p75 ms':>9} {'min ms':>9} {'max ms':>9}")
    rows = [(f"train step, {n}", steps[n]) for n in losses] + [(f"loss alone (fwd+bwd), {n}", alone[n]) for n in losses]
    for label, values in rows:
        q1, med, q3 = quartiles(values)
        print(f"{label:<34} {1e3 * med:>10.1f} {1e3 * q1:>9.1f} {1e3 * q3:>9.1f} {1e3 * min(values):>9.1f} "
              f"{1e3 * max(values):>9.1f}")
    med = {n: statistics.median(steps[n]) for n in losses}
    extra_loss = statistics.median(alone["semeda"]) - statistics.median(alone["ce"])
    print(f"loss-alone overhead (SEMEDA - CE): {1e3 * extra_loss:.1f} ms = {100 * extra_loss / med['ce']:.1f}% "
          f"of a CE step")
    ratios = sorted(s / c for s, c in zip(steps["semeda"], steps["ce"]))
    print(f"per-iteration SEMEDA/CE ratio: min {ratios[0]:.3f}, median {statistics.median(ratios):.3f}, "
          f"max {ratios[-1]:.3f}")
    print(f"SEMEDA / CE step time: {med['semeda'] / med['ce']:.2f}x (target <= 1.03x)")


if __name__ == "__main__":
    main()
