"""P7 (GPU only): HRNet-W48 and OVeNet-W48 training steps under the training loop's speed switches.

    python benchmarks/p7_gpu_step.py [--quick] [--models hrnet_w48,ovenet_hrnet_w48] [--size 512x1024]
                                     [--batch 2] [--variants fp32,bf16,bf16_cl,bf16_cl_compile]
                                     [--repeats 5] [--steps 3] [--warmup 3] [--peak-tflops N] [--markdown PATH]

One GPU (``cuda:0``), batch 2 of random 512x1024 images with blocky labels, per model four variants
built exactly as ``trainer.precision`` / ``trainer.channels_last`` / ``trainer.compile`` build them
(``seglab.platform.train.speed``: ``prepare_model``, ``compile_model``, ``autocast``, ``grad_scaler``,
``backward_step``, ``to_input``):

* ``fp32``; ``bf16`` (autocast); ``bf16_cl`` (+ channels_last); ``bf16_cl_compile`` (+ torch.compile).

A step = forward + loss (model called with the labels, as the loop does) + backward + SGD step.
After ``--warmup`` untimed steps each (the compile happens there), the variants of a model take
turns, ``--steps`` steps per turn, for ``--repeats`` turns (order rotated each turn) so clock and
thermal drift hit all alike. Reported per variant: images/s median (min-max over turns), peak
memory of a step (GiB: ``max_memory_allocated`` during its steps above what was resident before,
plus its own weights and optimizer state -- what a run of that variant alone would peak at), and
MFU = model FLOPs per step / step time / the GPU's dense bf16 peak. Model FLOPs are counted once per
model by ``torch.utils.flop_counter`` on an fp32 forward + loss + backward (2 FLOPs per multiply-add,
the same count for every variant). The dense bf16 peak comes from a table of known GPUs (printed)
or ``--peak-tflops``. The LAST line is the headline: bf16 + channels_last + compile over fp32 for
HRNet-W48, with OVeNet-W48's. Sized to finish in under 5 minutes on an H100/H200 class GPU.

Needs only torch, numpy and seglab's core (no Ray); logs to the MLflow experiment ``benchmarks`` only
when mlflow is importable. Without a CUDA GPU it prints one line and exits 0.
"""
from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # seglab from this checkout

from seglab.losses import build_loss  # noqa: E402
from seglab.models import build_model  # noqa: E402
from seglab.platform.train import speed  # noqa: E402
from _common import log_mlflow  # noqa: E402 (benchmarks/ is on sys.path when a script runs)

#: Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from the vendors' data sheets (SXM parts).
DENSE_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "GH200": 989.0, "B200": 2250.0,
                     "A100": 312.0, "A10G": 70.0, "A10": 125.0, "L40S": 362.0, "L40": 181.0, "L4": 121.0,
                     "RTX 4090": 165.0, "RTX 3090": 71.0, "A6000": 155.0, "V100": 125.0}
VARIANTS = {  # name: (precision, channels_last, compile)
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "bf16_cl": ("bf16", True, False),
    "bf16_cl_compile": ("bf16", True, True),
}
GIB = 2**30


def peak_tflops(name: str, override: float) -> tuple:
    if override:
        return override, "--peak-tflops"
    for key in sorted(DENSE_BF16_TFLOPS, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if key.lower() in name.lower():
            return DENSE_BF16_TFLOPS[key], f"data-sheet dense bf16 of {key}"
    return float("nan"), "unknown GPU: pass --peak-tflops"


def spread(values, fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


class Runner:
    def __init__(self, model_name: str, variant: str, classes: int, device: torch.device) -> None:
        precision, cl, comp = VARIANTS[variant]
        self.name, self.cl = variant, cl
        model = build_model(model_name, num_classes=classes).to(device).train()
        model = speed.prepare_model(model, device, channels_last=cl)
        self.own_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self.model = speed.compile_model(model, comp)
        self.loss = build_loss("ovenet" if model_name.startswith("ovenet") else "ce").to(device)
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        self.ctx = speed.autocast(precision, device)
        self.scaler = speed.grad_scaler(precision, device)
        self.rates: List[float] = []
        self.peak = 0

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        with self.ctx():
            total = self.loss(self.model(speed.to_input(x, self.cl), y), y).total
        speed.backward_step(total, self.opt, self.scaler)

    def timed(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
        self.opt.zero_grad(set_to_none=True)  # its gradients are re-made (and counted) inside the turn
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step(x, y)
        torch.cuda.synchronize()
        self.rates.append(steps * x.shape[0] / (time.perf_counter() - t0))
        state = sum(t.numel() * t.element_size() for s in self.opt.state.values() for t in s.values()
                    if torch.is_tensor(t))
        self.peak = max(self.peak, torch.cuda.max_memory_allocated() - before + self.own_bytes + state)


def step_flops(model_name: str, classes: int, x: torch.Tensor, y: torch.Tensor) -> float:
    model = build_model(model_name, num_classes=classes).to(x.device).train()
    loss = build_loss("ovenet" if model_name.startswith("ovenet") else "ce").to(x.device)
    counter = FlopCounterMode(display=False)
    with counter:
        loss(model(x, y), y).total.backward()
    del model
    return float(counter.get_total_flops())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 repeats of 2 steps (a smoke run)")
    p.add_argument("--models", default="hrnet_w48,ovenet_hrnet_w48")
    p.add_argument("--size", default="512x1024")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--repeats", type=int, default=None, help="turns per variant (default 5; --quick 2)")
    p.add_argument("--steps", type=int, default=None, help="steps per turn (default 3; --quick 2)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant (torch.compile compiles here)")
    p.add_argument("--classes", type=int, default=19)
    p.add_argument("--peak-tflops", type=float, default=0.0, help="the GPU's dense bf16 peak (default: known table)")
    p.add_argument("--markdown", default=None, help="write the table and the headline here")
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("P7 GPU step: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured")
        return
    repeats = a.repeats or (2 if a.quick else 5)
    steps = a.steps or (2 if a.quick else 3)
    variants = a.variants.split(",")
    device = torch.device("cuda:0")
    gpu = torch.cuda.get_device_name(device)
    peak, peak_src = peak_tflops(gpu, a.peak_tflops)
    h, w = (int(v) for v in a.size.split("x"))
    torch.manual_seed(0)
    x = torch.randn(a.batch, 3, h, w, device=device)
    y = torch.randint(0, a.classes, (a.batch, h // 16, w // 16), device=device)
    y = y.repeat_interleave(16, 1).repeat_interleave(16, 2).contiguous()
    y[:, : h // 10, : w // 10] = 255
    start = time.perf_counter()
    head = (f"P7 GPU training step: {gpu} (dense bf16 peak {peak:g} TFLOP/s, {peak_src}), batch {a.batch}x3x{h}x{w}, "
            f"{repeats} rotated turns x {steps} steps per variant after {a.warmup} warm-up; torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}, host {platform.node()}")
    print(head, flush=True)
    lines = ["| model | variant | images/s median (min-max) | vs fp32 | peak memory (GiB) | MFU |",
             "|---|---|---|---|---|---|"]
    metrics: Dict[str, float] = {}
    summary = {}
    for model_name in a.models.split(","):
        flops = step_flops(model_name, a.classes, x, y)
        gc.collect()
        torch.cuda.empty_cache()
        runners = []
        for v in variants:
            t0 = time.perf_counter()
            r = Runner(model_name, v, a.classes, device)
            for _ in range(a.warmup):
                r.step(x, y)
            torch.cuda.synchronize()
            print(f"  {model_name} {v}: built + {a.warmup} warm-up steps in {time.perf_counter() - t0:.1f} s", flush=True)
            runners.append(r)
        for i in range(repeats):
            for r in runners[i % len(runners):] + runners[: i % len(runners)]:
                r.timed(x, y, steps)
        base = statistics.median(runners[0].rates)
        for r in runners:
            ips = statistics.median(r.rates)
            mfu = flops * ips / a.batch / (peak * 1e12)
            lines.append(f"| {model_name} | {r.name} | {spread(r.rates, '{:.1f}')} | {ips / base:.2f}x | "
                         f"{r.peak / GIB:.1f} | {100 * mfu:.1f} % |")
            metrics.update({f"{model_name}.{r.name}.images_per_s": ips, f"{model_name}.{r.name}.peak_gib": r.peak / GIB,
                            f"{model_name}.{r.name}.mfu": mfu})
            summary[(model_name, r.name)] = (ips / base, mfu)
        metrics[f"{model_name}.step_tflops"] = flops / 1e12
        lines.append(f"| {model_name} | (model FLOPs per step) | {flops / 1e12:.2f} TFLOP | | | |")
        del runners
        gc.collect()
        torch.cuda.empty_cache()
    table = "\n".join(lines)
    print(table)
    last = variants[-1]
    parts = [f"{m}: {summary[(m, last)][0]:.2f}x images/s, MFU {100 * summary[(m, last)][1]:.1f} %"
             for m in a.models.split(",") if (m, last) in summary]
    headline = (f"HEADLINE P7: {last} over fp32 -- " + "; ".join(parts) +
                f" (MFU against {peak:g} TFLOP/s dense bf16; no goal set) [{time.perf_counter() - start:.0f} s]")
    md = f"{head}\n\n{table}\n\n**{headline}**\n"
    if a.markdown:
        Path(a.markdown).write_text(md)
    log_mlflow("p7_gpu_step", {"machine": f"{platform.node()} {gpu}", "torch": torch.__version__,
                               "cuda": torch.version.cuda, "size": a.size, "batch": a.batch, "variants": a.variants,
                               "repeats": repeats, "steps": steps, "peak_tflops": peak, "quick": a.quick}, metrics, md)
    print(headline)


if __name__ == "__main__":
    main()
