"""Does seglab's GPU sampler read what ``nvidia-smi`` reads? A short 1-GPU training run, side by side.

    python benchmarks/gpu_check.py [--model hrnet_w18_small_v1] [--size 512x1024] [--batch 2]
                                   [--seconds 60] [--device 0] [--interval 5]

Trains ``--model`` on random images on ``cuda:<device>`` for ``--seconds`` while
:class:`seglab.platform.monitoring.gpu.GpuMonitor` samples that GPU (into memory, no MLflow) and
``nvidia-smi --query-gpu=... -l 1`` samples the same GPU (by the UUID the monitor resolved) in
parallel, then prints mean utilisation %, max memory (GB = 1e9 bytes) and mean power (W) from
each over the same time window, with their ratio, and the CUDA -> NVML device mapping used.
Needs only torch, numpy, seglab's core and ``nvidia-ml-py`` (no Ray, no MLflow). Without a CUDA
GPU it prints one line and exits 0. No timed assertion: read the ratios (expect ~1.0; utilisation
may differ by a few points, nvidia-smi reading once a second at other instants).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # seglab from this checkout

SMI_FIELDS = "timestamp,uuid,utilization.gpu,memory.used,power.draw"
MIB = 2**20
GB = 1e9


def parse_smi_time(text: str) -> float:
    """nvidia-smi's ``timestamp`` ("2026/11/30 12:00:01.123", local time) -> seconds since the epoch."""
    return dt.datetime.strptime(text.strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()


def _number(text: str):
    try:
        return float(text.strip())
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def smi_rows(lines: Iterable[str], t0: float, t1: float) -> List[Dict[str, float]]:
    """The rows of ``nvidia-smi --query-gpu=<SMI_FIELDS> --format=csv,noheader,nounits`` taken
    within [t0, t1] (seconds since the epoch); malformed lines are skipped."""
    rows = []
    for line in lines:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        try:
            t = parse_smi_time(parts[0])
        except ValueError:
            continue
        if t0 <= t <= t1:
            rows.append({"t": t, "uuid": parts[1], "util": _number(parts[2]), "mem_mib": _number(parts[3]),
                         "power": _number(parts[4])})
    return rows


def smi_summary(rows: List[Dict[str, float]]) -> Dict[str, float]:
    """Mean utilisation, max memory (GB), mean power over ``rows`` (readings nvidia-smi lacks left out)."""
    def values(key):
        return [r[key] for r in rows if r[key] is not None]

    util, mem, power = values("util"), values("mem_mib"), values("power")
    out = {"samples": len(rows)}
    if util:
        out["util_pct_mean"] = sum(util) / len(util)
    if mem:
        out["mem_used_gb_max"] = max(mem) * MIB / GB
    if power:
        out["power_w_mean"] = sum(power) / len(power)
    return out


class MemorySink:
    """Where the monitor logs in this script: a list, no MLflow."""

    def __init__(self) -> None:
        self.metrics, self.tags = [], {}

    def log_metrics(self, metrics, step) -> None:
        self.metrics.append((time.time(), step, dict(metrics)))

    def set_tag(self, key, value) -> None:
        self.tags[key] = value


def training_step(model_name: str, classes: int, batch: int, h: int, w: int, device) -> Callable[[], None]:
    """One SGD step of ``model_name`` on a fixed random batch on ``device``, as a function."""
    import torch

    from seglab.models import build_model

    model = build_model(model_name, num_classes=classes).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=255)
    images = torch.randn(batch, 3, h, w, device=device)
    labels = torch.randint(0, classes, (batch, h, w), device=device)

    def step() -> None:
        logits = model(images).logits
        if logits.shape[-2:] != labels.shape[-2:]:
            logits = torch.nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear",
                                                     align_corners=False)
        loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def print_comparison(ours: Dict[str, float], theirs: Dict[str, float]) -> None:
    """The table of GpuMonitor's and nvidia-smi's summaries side by side, with their ratio."""
    print(f"| {'quantity':<16} | {'GpuMonitor':>10} | {'nvidia-smi':>10} | {'ratio':>6} |")
    print(f"|{'-' * 18}|{'-' * 12}|{'-' * 12}|{'-' * 8}|")
    for label, key, fmt in (("mean util %", "util_pct_mean", ".1f"), ("max mem (GB)", "mem_used_gb_max", ".2f"),
                            ("mean power (W)", "power_w_mean", ".1f")):
        mine, other = ours.get(key), theirs.get(key)
        cell = lambda v: format(v, fmt) if v is not None else "-"  # noqa: E731
        ratio = f"{mine / other:.3f}" if mine is not None and other else "-"
        print(f"| {label:<16} | {cell(mine):>10} | {cell(other):>10} | {ratio:>6} |")


class SmiReader:
    """``nvidia-smi ... -l 1`` for one GPU in a subprocess, its lines gathered by a thread."""

    def __init__(self, uuid: str) -> None:
        self.lines: List[str] = []
        self.proc = subprocess.Popen(["nvidia-smi", f"--id={uuid}", f"--query-gpu={SMI_FIELDS}",
                                      "--format=csv,noheader,nounits", "-l", "1"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> List[str]:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.thread.join(timeout=5)
        return self.lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hrnet_w18_small_v1")
    p.add_argument("--size", default="512x1024")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--classes", type=int, default=19)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--device", type=int, default=0, help="CUDA ordinal of this process")
    p.add_argument("--interval", type=float, default=5.0, help="GpuMonitor's logging interval (s)")
    a = p.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible to torch: nothing to compare (exit 0)")
        return 0
    try:
        import pynvml  # noqa: F401
    except ImportError:
        print("gpu_check: pynvml is missing: pip install nvidia-ml-py")
        return 2
    if shutil.which("nvidia-smi") is None:
        print("gpu_check: nvidia-smi is not on PATH")
        return 2

    from seglab.platform.monitoring.devices import torch_cuda_uuid
    from seglab.platform.monitoring.gpu import GpuMonitor

    h, w = (int(v) for v in a.size.split("x"))
    device = torch.device("cuda", a.device)
    torch.cuda.set_device(device)
    step = training_step(a.model, a.classes, a.batch, h, w, device)
    for _ in range(3):  # warm-up (cuDNN autotuning, allocator)
        step()
    torch.cuda.synchronize()

    sink = MemorySink()
    monitor = GpuMonitor(0, sink, a.interval, devices=[device]).start()
    if not monitor.active:
        print(f"gpu_check: GpuMonitor found no GPU ({monitor.off_reason})")
        return 1
    uuid = monitor.devices[0]["uuid"]
    smi = SmiReader(uuid)
    t0 = time.time()
    steps = 0
    while time.time() - t0 < a.seconds:
        step()
        steps += 1
        if steps % 10 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    t1 = time.time()
    summary = monitor.stop()
    lines = smi.stop()

    rows = smi_rows(lines, t0, t1)
    theirs = smi_summary(rows)
    ours = {k.rsplit("/", 1)[1]: v for k, v in summary.items()}
    polls = sum(1 for _, _, m in sink.metrics if "gpu/rank0/util_pct" in m)
    print(f"gpu_check: {a.model} {h}x{w} batch {a.batch} on cuda:{a.device}: {steps} steps in {t1 - t0:.1f} s "
          f"({steps * a.batch / (t1 - t0):.1f} img/s)")
    print(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} "
          f"CUDA_DEVICE_ORDER={os.environ.get('CUDA_DEVICE_ORDER')!r}; torch's UUID of cuda:{a.device}: "
          f"{torch_cuda_uuid(a.device)}")
    print(f"GpuMonitor: {monitor.devices[0]['name']} {uuid} found by {monitor.devices[0]['how']}; "
          f"{polls} logged intervals of {a.interval:g} s; nvidia-smi: {theirs['samples']} readings in the window "
          f"(of {len(lines)} lines)")
    print()
    print_comparison(ours, theirs)
    if not rows:
        print("gpu_check: nvidia-smi gave no readings in the window; its output was:\n" + "\n".join(lines[-5:]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
