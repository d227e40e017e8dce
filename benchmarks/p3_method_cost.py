"""P3: what each method costs over its baseline -- training-step time, parameters and GFLOPs.

    python benchmarks/p3_method_cost.py [--quick] [--pairs ovenet,semeda,phgmm] [--size 256x512]
                                        [--batch 2] [--repeats 5] [--warmup 1] [--markdown PATH]

Three pairs, each measured on one batch of random images with blocky random labels:

* ``ovenet``: OVeNet-HRNet-W48 (``ovenet_hrnet_w48``, loss ``ovenet``) / HRNet-W48 (``hrnet_w48``, ``ce``).
  Parameters (``count_parameters``) and GFLOPs at 1024x2048 (``count_flops``: conv + linear
  multiply-adds / 2^30, HRNet's convention) are compared with the thesis: 1.50x params, 1.35x GFLOPs.
* ``semeda``: the SEMEDA loss (frozen edge net inside the loss) / cross-entropy, same
  ``deeplabv3plus_r50`` model (frozen BN as in the paper); parameters include the edge net.
* ``phgmm``: PHGMM-R18 trained with its loss (PostNet and latent heads run on the labels) / the same
  network's encoder-decoder path trained with cross-entropy (called without labels, so PostNet does
  not run). Parameters: all of them / ``count_inference_parameters``.

For every variant: the training step (forward + loss + backward + SGD step, model called with the
labels as the training loop does) at ``--size`` and ``--batch``; the two variants of a pair alternate
step by step (who goes first flips each repeat) so machine noise hits both alike. "train GMACs" is
the forward of the training step (model + loss, every op FlopCounterMode counts) per image at
``--size``, in multiply-adds / 2^30. Ratios are method / baseline; the step-time ratio is the median
(min-max) of the per-repeat ratios. The LAST line is the headline (OVeNet-W48 / HRNet-W48).
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # seglab from this checkout

from seglab.losses import build_loss  # noqa: E402
from seglab.models import build_model  # noqa: E402
from seglab.models.complexity import count_flops, count_inference_parameters, count_parameters  # noqa: E402
from _common import log_mlflow  # noqa: E402 (benchmarks/ is on sys.path when a script runs)

THESIS = {"params": 1.50, "gflops": 1.35}


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.node()} ({platform.machine()}, {cores} cores)"


def spread(values, fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def versions() -> Dict[str, str]:
    out = {"torch": torch.__version__}
    for mod in ("ray", "mlflow"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = "absent"
    return out


class Variant:
    """One model + loss + optimiser; ``step()`` is one training step on the shared batch."""

    def __init__(self, label: str, model: torch.nn.Module, loss: torch.nn.Module, with_labels: bool,
                 params: int, extra_params: int = 0) -> None:
        self.label, self.model, self.loss, self.with_labels = label, model.train(), loss, with_labels
        self.params = params + extra_params
        self.opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=1e-4, momentum=0.9)
        self.times: List[float] = []
        self.gflops_1024: float = float("nan")

    def forward_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.model(x, y) if self.with_labels else self.model(x)
        return self.loss(out, y).total

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        t0 = time.perf_counter()
        total = self.forward_loss(x, y)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        return time.perf_counter() - t0

    def train_gmacs(self, x: torch.Tensor, y: torch.Tensor) -> float:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            self.forward_loss(x, y)
        return counter.get_total_flops() / 2 / 2**30 / x.shape[0]


def build_pair(name: str, classes: int) -> Tuple[str, Variant, Variant]:
    if name == "ovenet":
        base_m = build_model("hrnet_w48", num_classes=classes)
        meth_m = build_model("ovenet_hrnet_w48", num_classes=classes)
        base = Variant("HRNet-W48 + CE", base_m, build_loss("ce"), True, count_parameters(base_m))
        meth = Variant("OVeNet-HRNet-W48 + OVeNet loss", meth_m, build_loss("ovenet"), True, count_parameters(meth_m))
        base.gflops_1024 = count_flops(base_m, (1024, 2048))
        meth.gflops_1024 = count_flops(meth_m, (1024, 2048))
        return "OVeNet / HRNet (W48)", base, meth
    if name == "semeda":
        from seglab.losses.semeda import SemedaEdgeNet
        from seglab.models.frozen_bn import freeze_batchnorm

        model = freeze_batchnorm(build_model("deeplabv3plus_r50", num_classes=classes))
        edge = SemedaEdgeNet(classes)
        semeda = build_loss("semeda", edge_net=edge, lambda1=4.0, lambda2=2.0, lambda3=0.0, num_classes=classes)
        n = count_parameters(model)
        base = Variant("DeepLabv3+-R50 + CE", model, build_loss("ce"), True, n)
        meth = Variant("DeepLabv3+-R50 + SEMEDA", model, semeda, True, n, sum(p.numel() for p in edge.parameters()))
        base.gflops_1024 = meth.gflops_1024 = count_flops(model, (1024, 2048))
        return "SEMEDA / CE (DeepLabv3+-R50)", base, meth
    if name == "phgmm":
        model = build_model("phgmm_r18", num_classes=classes)
        base = Variant("PHGMM-R18 encoder-decoder path + CE", model, build_loss("ce"), False,
                       count_inference_parameters(model))
        meth = Variant("PHGMM-R18 + PHGMM loss (PostNet)", model, build_loss("phgmm"), True, count_parameters(model))
        base.gflops_1024 = meth.gflops_1024 = count_flops(model, (1024, 2048))
        return "PHGMM / its encoder-decoder (R18)", base, meth
    raise SystemExit(f"unknown pair {name!r} (ovenet, semeda, phgmm)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="64x128, batch 1, 3 repeats (about 2 min on 2 idle cores)")
    p.add_argument("--pairs", default="ovenet,semeda,phgmm")
    p.add_argument("--size", default=None, help="HxW of the step's input (default 256x512; --quick 64x128)")
    p.add_argument("--batch", type=int, default=None, help="default 2; --quick 1")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per variant (default 5; --quick 3)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--classes", type=int, default=19)
    p.add_argument("--markdown", default=None, help="write the table and the headline here")
    a = p.parse_args()
    size = a.size or ("64x128" if a.quick else "256x512")
    batch = a.batch or (1 if a.quick else 2)
    repeats = a.repeats or (3 if a.quick else 5)
    h, w = (int(v) for v in size.split("x"))
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    x = torch.randn(batch, 3, h, w)
    y = torch.randint(0, a.classes, (batch, h // 16 + 1, w // 16 + 1))
    y = y.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, :h, :w].contiguous()  # blocky maps: real edges
    y[:, : h // 10, : w // 10] = 255

    head = (f"P3 method cost: training step at batch {batch}x3x{h}x{w} on CPU ({torch.get_num_threads()} threads), "
            f"{repeats} interleaved repeats after {a.warmup} warm-up; GFLOPs@1024x2048 = count_flops (inference "
            f"forward, conv+linear MACs/2^30); train GMACs = training forward (model + loss) per image at {h}x{w}")
    lines = ["| pair | variant | params (M) | GFLOPs @1024x2048 | train GMACs/img | step ms median (min-max) |",
             "|---|---|---|---|---|---|"]
    metrics: Dict[str, float] = {}
    headline = None
    print(head, flush=True)
    for name in a.pairs.split(","):
        t0 = time.perf_counter()
        title, base, meth = build_pair(name, a.classes)
        gm = {v.label: v.train_gmacs(x, y) for v in (base, meth)}
        for i in range(a.warmup + repeats):
            for v in ((base, meth) if i % 2 == 0 else (meth, base)):
                dt = v.step(x, y)
                if i >= a.warmup:
                    v.times.append(dt)
        for v in (base, meth):
            lines.append(f"| {title} | {v.label} | {v.params / 1e6:.2f} | {v.gflops_1024:.1f} | {gm[v.label]:.2f} | "
                         f"{spread([t * 1e3 for t in v.times], '{:.0f}')} |")
        step_ratios = [m / b for m, b in zip(meth.times, base.times)]
        pr, fr, tr = meth.params / base.params, meth.gflops_1024 / base.gflops_1024, gm[meth.label] / gm[base.label]
        lines.append(f"| {title} | **ratio** | **{pr:.2f}x** | **{fr:.2f}x** | **{tr:.2f}x** | "
                     f"**{spread(step_ratios)}x** |")
        metrics.update({f"{name}_params_ratio": pr, f"{name}_gflops_ratio": fr, f"{name}_train_gmacs_ratio": tr,
                        f"{name}_step_ratio_median": statistics.median(step_ratios),
                        f"{name}_step_ratio_min": min(step_ratios), f"{name}_step_ratio_max": max(step_ratios)})
        print(f"  {title}: done in {time.perf_counter() - t0:.0f} s", flush=True)
        if name == "ovenet":
            ok = abs(pr - THESIS["params"]) <= 0.05 and abs(fr - THESIS["gflops"]) <= 0.05
            headline = (f"HEADLINE P3: OVeNet-W48 / HRNet-W48 = {pr:.2f}x params, {fr:.2f}x GFLOPs, step time "
                        f"{spread(step_ratios)}x (thesis 1.50x params, 1.35x GFLOPs: "
                        f"{'matches within 0.05' if ok else 'DIFFERS'})")
        del base, meth
        gc.collect()
    if headline is None:
        last = a.pairs.split(",")[-1]
        headline = (f"HEADLINE P3: {last} method / baseline step time "
                    f"{metrics[f'{last}_step_ratio_median']:.2f}x (no goal; OVeNet pair not run)")
    table = "\n".join(lines)
    print(table)
    md = f"{head}\n\n{table}\n\n**{headline}**\n"
    if a.markdown:
        Path(a.markdown).write_text(md)
    log_mlflow("p3_method_cost", {"machine": machine(), **versions(), "size": size, "batch": batch,
                                  "repeats": repeats, "pairs": a.pairs, "classes": a.classes, "quick": a.quick},
               metrics, md)
    print(headline)


if __name__ == "__main__":
    main()
