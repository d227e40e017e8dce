"""Run the CPU benchmark suite (issue 13's P-figures) and write BENCHMARKS.md.

    python benchmarks/run_all.py [--quick] [--full] [--only p6,p3] [--output BENCHMARKS.md]
                                 [--limit-scale 1.0]

Each script runs in its own process with a time limit (SIGINT, then SIGKILL 30 s later) and
``--markdown <tmp file>``; its output streams through, and its markdown (table + headline) becomes
one section of BENCHMARKS.md, which also records the date, machine, cores, versions and total wall
time. A script that fails or runs out of time gets a section saying so with the tail of its output.
Sections of P-figures not run this time (``--only``) keep their previous text from the existing
file, and so does the pasted P7 (GPU) block.

Sizes: by default the suite that ``make bench`` runs, sized to finish in under 15 minutes on
2 cores (P1, P2 and P6 at full size: 3 interleaved repeats; P3, P5 and P8 with ``--quick``); ``--quick`` passes ``--quick`` to every script; ``--full`` passes it to none (P8 at
full size takes about an hour or more). P7 is GPU-only and never run here: run
``python benchmarks/p7_gpu_step.py --markdown p7.md`` on a GPU machine and paste ``p7.md`` into the
P7 block of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# key, script, title, goal, suite args (make bench), time limit s (suite)
SCRIPTS = [
    # issue 20's before/after per-trial fixed cost was measured with `run_all.py --only p1` and P1's
    # `--before 307ef9a` (the last commit of the flat platform; it adds ~5 min, so not in the suite)
    ("p1", "p1_platform_overhead.py", "P1 platform overhead", ">= 0.97x of a bare PyTorch loop", [], 600),
    ("p2", "p2_ddp_scaling.py", "P2 DDP scaling", ">= 1.8x images/s, 2 workers vs 1 (2 cores)", [], 420),
    ("p3", "p3_method_cost.py", "P3 method cost", "OVeNet-W48 / HRNet-W48: 1.50x params, 1.35x GFLOPs (thesis)",
     ["--quick"], 300),
    ("p5", "data_pipeline.py", "P5 input pipeline vs model", "> 1: one loader core keeps up with a training step",
     ["--quick"], 360),
    ("p6", "p6_confusion.py", "P6 confusion matrix", ">= 5x over numpy bincount on CPU", [], 120),
    ("p8", "p8_search_efficiency.py", "P8 search efficiency",
     "<= 40 % of the grid's training compute to reach its best within 0.5 mIoU", ["--quick"], 480),
]
P7_COMMAND = "python benchmarks/p7_gpu_step.py --markdown p7.md   # on a machine with a CUDA GPU, < 5 min"
P7_START, P7_END = "<!-- P7 numbers: paste below this line -->", "<!-- P7 numbers end -->"


def version(mod: str) -> str:
    try:
        return __import__(mod).__version__
    except Exception:  # noqa: BLE001  (absent or broken: say so, keep going)
        return "absent"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_one(path: Path, args: List[str], limit: float, markdown: Path) -> tuple:
    """(status, wall s, last lines of output) of one script, its output streamed through."""
    cmd = [sys.executable, str(path), *args, "--markdown", str(markdown)]
    print(f"\n===== {' '.join(cmd[1:])}  (limit {limit:.0f} s)", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, start_new_session=True)
    tail: List[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line.rstrip("\n"))
            del tail[:-40]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    status = None
    try:
        rc = proc.wait(timeout=limit)
        status = "ok" if rc == 0 else f"failed (exit status {rc})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {limit:.0f} s"
        os.killpg(proc.pid, signal.SIGINT)  # its own process group (start_new_session): the script and its children
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    return status, time.perf_counter() - t0, tail


def old_sections(path: Path) -> dict:
    """key -> previous section text (between the section markers) of an existing BENCHMARKS.md."""
    if not path.is_file():
        return {}
    text = path.read_text()
    found = {m.group(1): m.group(2) for m in re.finditer(r"<!-- section (\w+) -->\n(.*?)<!-- /section \1 -->", text, re.S)}
    p7 = re.search(re.escape(P7_START) + r"\n(.*?)" + re.escape(P7_END), text, re.S)
    if p7:
        found["p7_numbers"] = p7.group(1)
    return found


def headline_of(md: str) -> str:
    lines = [ln.strip().strip("*") for ln in md.strip().splitlines() if ln.strip()]
    return next((ln for ln in reversed(lines) if ln.startswith("HEADLINE")), lines[-1] if lines else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="pass --quick to every script")
    size.add_argument("--full", action="store_true", help="default sizes everywhere (long: P8 alone ~1 h)")
    p.add_argument("--only", default=None, help="comma-separated keys: " + ",".join(s[0] for s in SCRIPTS))
    p.add_argument("--output", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--limit-scale", type=float, default=None,
                   help="multiply every time limit (default 1; --full 20)")
    a = p.parse_args()
    only = set(a.only.split(",")) if a.only else None
    scale = a.limit_scale or (20.0 if a.full else 1.0)
    out = Path(a.output)
    previous = old_sections(out)
    mode = "--quick everywhere" if a.quick else "--full (default sizes)" if a.full else "make bench suite"
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    start = time.perf_counter()
    sections, summary = {}, []
    for key, script, title, goal, suite_args, limit in SCRIPTS:
        path = HERE / script
        if only is not None and key not in only:
            continue
        if not path.is_file():
            sections[key] = f"## {title}\n\n_not run: `benchmarks/{script}` is not present._\n"
            summary.append((title, "absent", "", 0.0))
            continue
        args = ["--quick"] if a.quick else [] if a.full else list(suite_args)
        with tempfile.TemporaryDirectory() as tmp:
            md_path = Path(tmp) / f"{key}.md"
            status, wall, tail = run_one(path, args, limit * scale, md_path)
            md = md_path.read_text() if md_path.is_file() else ""
        when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        cmd = f"python benchmarks/{script} {' '.join(args)}".strip()
        body = f"## {title}\n\nGoal: {goal}. Run {when} as `{cmd}`: {status} in {wall:.0f} s.\n\n"
        if md and status == "ok":
            body += md.rstrip() + "\n"
            head = headline_of(md)
        else:
            body += "Last lines of its output:\n\n```\n" + "\n".join(tail[-20:]) + "\n```\n"
            head = status
        sections[key] = body
        summary.append((title, status, head, wall))
    total = time.perf_counter() - start

    now = dt.datetime.now().astimezone()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    doc = [
        "# Benchmarks (tracker issue 13)",
        "",
        "Written by `benchmarks/run_all.py` (`make bench`); edit only the P7 block by hand.",
        "",
        f"- date: {now:%Y-%m-%d %H:%M %Z}; last invocation: {mode}, ran {', '.join(sorted(sections)) or 'nothing'} "
        f"in {total / 60:.1f} min (each section says when and how it was run)",
        f"- machine: {platform.node()}, {cpu_model()}, {cores} cores, {platform.system()} {platform.release()}",
        f"- versions: Python {platform.python_version()}, torch {version('torch')}, ray {version('ray')}, "
        f"mlflow {version('mlflow')}, numpy {version('numpy')}, optuna {version('optuna')}",
        "- every script also logs its table to the MLflow experiment `benchmarks`; timings are medians with "
        "min-max over interleaved repeats",
        "",
        "| P-figure | status | headline | run at | wall s |",
        "|---|---|---|---|---|",
    ]
    texts = {}
    for key, script, title, *_ in SCRIPTS:
        if key in sections:
            texts[key] = sections[key]
        elif key in previous:
            texts[key] = previous[key].rstrip() + "\n"
        else:
            texts[key] = f"## {title}\n\n_not run yet._\n"
    for key, script, title, *_ in SCRIPTS:  # one row per section, this invocation's or an earlier one's
        text = texts[key]
        m = re.search(r"Run (\S+ \S+) as `[^`]*`: (.*?) in (\d+) s\.", text)
        when, status, wall = (m.group(1), m.group(2), m.group(3)) if m else ("", "see section", "")
        if "_not run" in text:
            when, status = "", "not run"
        head = headline_of(text) if status == "ok" or (not m and status != "not run") else ""
        doc.append(f"| {title} | {status} | {head.replace('|', '/')} | {when} | {wall} |")
    doc.append("")
    for key, script, title, *_ in SCRIPTS:
        text = texts[key]
        doc += [f"<!-- section {key} -->", text.rstrip(), f"<!-- /section {key} -->", ""]
        if key == "p6":  # P7 in its place, between P6 and P8
            pasted = previous.get("p7_numbers", "_No GPU numbers yet: paste the output of the command above here "
                                               "(its markdown table and headline, with the date and GPU)._\n")
            doc += ["## P7 GPU training step (GPU only)", "",
                    "HRNet-W48 and OVeNet-W48 training step at 512x1024, batch 2 per GPU: fp32 vs bf16 autocast vs "
                    "bf16 + channels_last vs + torch.compile, through `seglab.platform.train.speed` (what "
                    "`trainer.precision/channels_last/compile` do); images/s, peak memory, MFU against the GPU's "
                    "dense bf16 peak. Not part of the CPU suite. On a GPU machine (torch + CUDA; no Ray or MLflow "
                    "needed):", "", "```", P7_COMMAND, "```", "", P7_START, pasted.rstrip(), P7_END, ""]
    out.write_text("\n".join(doc))
    print(f"\nwrote {out} ({total / 60:.1f} min in all)")
    bad = [t for t, s, *_ in summary if s not in ("ok", "absent")]
    if bad:
        print("not ok: " + ", ".join(bad))
    print(f"run_all: {len(summary) - len(bad)}/{len(summary)} benchmark(s) ok in {total / 60:.1f} min "
          f"(goal: the make bench suite in < 15 min)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
