"""P1 platform overhead: one Ray Train worker + MLflow logging + checkpointing vs the Trainer alone.

    python benchmarks/p1_platform_overhead.py [--quick] [--repeats 3] [--epochs 3] [--samples 128]
                                              [--batch 8] [--size 128x256] [--threads 1] [--markdown PATH]
                                              [--before GIT_REF]

Both variants train the same model (HRNet-W18-small-v1 + CE), on the same embedded data set
(seglab's synthetic street scenes with the training augmentation, seglab's seeded sampler), with the
same batch, crop size, optimizer (the trainer's SGD + poly LR), number of steps and torch threads:

- ``platform``: ``seglab.platform.sweep.trial.run_trial`` -> a Ray Train ``TorchTrainer`` with one
  worker (``trainer.num_workers=1``, ``cpus_per_worker=0.9`` -> 1 thread) on a local Ray cluster,
  MLflow logging from the worker into a SQLite store in a temp dir, a checkpoint reported every epoch;
- ``inprocess``: the same trial through ``seglab.platform.sweep.inprocess.run_trial_inprocess``
  (``cluster=inprocess``): the same MLflow child run, hooks and checkpoints, no Ray;
- ``bare``: the same run through seglab's ``Trainer`` in this process (no Ray, no MLflow, no hook but
  a checkpoint written every epoch): the loop the platform's worker runs, without the platform around it.

Each trial's fixed cost is its wall time minus its epochs' train+val time (worker start-up, the MLflow
child run, FLOP count, checkpoints, the report split, teardown). ``--before GIT_REF`` also measures it
for an earlier commit, side by side: that commit's own P1 script runs in a temporary ``git worktree``
(one repeat per repeat here, interleaved) and its "outside the epochs" figure is read from its output.

The headline is steady-state training throughput (images/s of the epochs after the first: the
platform's logged ``images_per_s`` metric, the bare loop timed the same way). A second row compares
the whole epoch cycle (train + validation + checkpoint + logging: time between the ends of
consecutive epochs). Ray start-up and each trial's worker start-up are reported apart. The variants
are interleaved (bare, platform, bare, platform, ...) so machine noise hits both alike; the table
gives the median and min-max over repeats. The result is logged to the MLflow experiment
``benchmarks`` ($MLFLOW_TRACKING_URI, else seglab's default store). The last line printed is the
headline ratio (goal >= 0.97).
"""
from __future__ import annotations

import argparse
import os
import platform as _platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # see ../shared/STACK.md (token auth trap)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "experiments" / "conf"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------- shared helpers (also used by P2)

def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def compose(overrides: Sequence[str]) -> Dict[str, Any]:
    """The run dict exactly as the experiment scripts compose it (Hydra stops here)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from experiments._entry import split_config

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    base, _ = split_config(cfg)
    return base


def run_overrides(*, workers: int, cpus: float, epochs: int, samples: int, val: int, batch: int,
                  size: Sequence[int]) -> List[str]:
    h, w = size
    return ["model=hrnet_w18_small_v1", "loss=ce", "dataset=synthetic", "trainer=default",
            f"trainer.num_workers={workers}", f"trainer.cpus_per_worker={cpus}", f"trainer.epochs={epochs}",
            f"trainer.batch_size={batch}", "trainer.viz_samples=0", "trainer.max_failures=0",
            f"dataset.image_size=[{h},{w}]", f"dataset.train.crop_size=[{h},{w}]",
            f"dataset.train.num_samples={samples}", f"dataset.val.num_samples={val}",
            f"dataset.test.num_samples={val}"]


def start_ray(num_cpus: int = 2) -> float:
    """A new local Ray cluster (never an existing one); returns its start-up time in seconds."""
    from seglab.platform.cluster.local import init_local

    t0 = time.perf_counter()
    init_local(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
               configure_logging=True, logging_level="warning",
               runtime_env={"env_vars": {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"],
                                         "NO_ALBUMENTATIONS_UPDATE": "1"}})
    return time.perf_counter() - t0


class TrialStore:
    """A throwaway SQLite MLflow store (and Ray Train storage) for the platform's trials."""

    def __init__(self, experiment: str) -> None:
        from seglab.platform import tracking

        self._tmp = tempfile.TemporaryDirectory(prefix="seglab-bench-")
        self.root = Path(self._tmp.name)
        self.uri = f"sqlite:///{self.root / 'mlflow.db'}"
        self.experiment_id = tracking.ensure_experiment(experiment, self.uri)  # created once, in the driver
        self.parent = tracking.start_parent_run(self.experiment_id, experiment, {}, self.uri)
        self.count = 0

    def close(self) -> None:
        self._tmp.cleanup()


def platform_trial(base: Dict[str, Any], store: TrialStore, label: str, inprocess: bool = False) -> Dict[str, Any]:
    """One trial through seglab's trial function (on Ray Train, or ``inprocess``: the in-process
    executor's); its per-epoch metrics read back from MLflow."""
    from seglab.platform import tracking
    from seglab.platform.config import RunConfig
    from seglab.platform.sweep.inprocess import run_trial_inprocess
    from seglab.platform.sweep.trial import run_trial

    store.count += 1
    run = RunConfig.from_dict(base)
    run.label = f"{label}-{store.count}"
    run.trainer.seed = store.count  # a fresh run key per repeat (no resume from an earlier repeat)
    ctx = {"tracking_uri": store.uri, "experiment_id": store.experiment_id, "parent_run_id": store.parent,
           "storage_path": str(store.root / f"runs-{store.count}"), "use_gpu": False}
    t0 = time.perf_counter()
    result = (run_trial_inprocess if inprocess else run_trial)({"trial": run.to_dict(), "ctx": ctx})
    wall = time.perf_counter() - t0
    client = tracking.client(store.uri)
    rid = result["mlflow_run_id"]

    def history(name: str):
        return sorted(client.get_metric_history(rid, name), key=lambda m: m.step)

    ips = history("images_per_s")
    epoch_time = history("epoch_time_s")
    stamps = [m.timestamp / 1000.0 for m in ips]  # logged at the end of each epoch (worker's clock)
    steady = [m.value for m in ips if m.step >= 2]
    periods = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"images_per_s": steady, "periods": periods, "wall_s": wall,
            "epochs_s": sum(m.value for m in epoch_time), "run_id": rid}


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def row(name: str, values: Sequence[float], repeats: int, unit_fmt: str = "{:.2f}") -> str:
    if not values:
        return f"| {name} | n/a | n/a | {repeats} |"
    lo, hi = min(values), max(values)
    return f"| {name} | {unit_fmt.format(med(values))} | {unit_fmt.format(lo)}–{unit_fmt.format(hi)} | {repeats} |"


def versions() -> Dict[str, str]:
    import mlflow
    import ray
    import torch

    return {"torch": torch.__version__, "ray": ray.__version__, "mlflow": mlflow.__version__,
            "python": _platform.python_version()}


def log_to_mlflow(script: str, params: Dict[str, Any], metrics: Dict[str, float], text: str) -> Optional[str]:
    """One run in experiment ``benchmarks`` of the store seglab uses ($MLFLOW_TRACKING_URI or the default)."""
    from seglab.platform import tracking

    uri = tracking.tracking_uri()
    try:
        exp = tracking.ensure_experiment("benchmarks", uri)
        c = tracking.client(uri)
        run = c.create_run(exp, run_name=script, tags={"seglab.kind": "benchmark", "mlflow.note.content": text})
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        c.log_batch(run.info.run_id,
                    metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v == v],
                    params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        c.log_text(run.info.run_id, text, f"{script}.md")
        c.set_terminated(run.info.run_id, "FINISHED")
        print(f"logged to MLflow {uri}: experiment 'benchmarks', run {run.info.run_id}", flush=True)
        return run.info.run_id
    except Exception as exc:  # the measurement stands without the log
        print(f"warning: MLflow logging to {uri} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return None


def emit(text: str, headline: str, markdown: Optional[str]) -> None:
    print(text, flush=True)
    print(headline, flush=True)
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown).write_text(text + "\n\n" + headline + "\n")


# ---------------------------------------------------------------- the reference: the Trainer, no Ray

def bare_trial(base: Dict[str, Any], threads: int, seed: int) -> Dict[str, Any]:
    """The same run through seglab's Trainer in this process: the model, data, optimizer, schedule and
    steps of the platform's worker, a checkpoint written every epoch, no Ray, no MLflow, no other hook."""
    import torch

    from seglab.platform.config import RunConfig
    from seglab.platform.train.hooks import HookBase, LatestCheckpoint
    from seglab.platform.train.trainer import Trainer

    class EpochEnds(HookBase):
        def __init__(self) -> None:
            self.ends: List[float] = []

        def after_epoch(self, epoch: int, metrics: Dict[str, float]) -> None:
            self.ends.append(time.perf_counter())

    torch.set_num_threads(threads)
    run = RunConfig.from_dict(base)
    run.trainer.seed = seed
    torch.manual_seed(seed)
    ends = EpochEnds()
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer.from_run(run, say=lambda text: None,
                                   hooks=[LatestCheckpoint(Path(folder) / "checkpoint.pt"), ends])
        history: List[Dict[str, float]] = []
        trainer.register([type("Keep", (HookBase,), {"after_epoch": lambda self, e, m: history.append(m)})()])
        trainer.fit()
    ips = [m["images_per_s"] for m in history if m["epoch"] >= 2]
    periods = [b - a for a, b in zip(ends.ends, ends.ends[1:])]
    return {"images_per_s": ips, "periods": periods}


# ---------------------------------------------------------------- an earlier commit, side by side

class Before:
    """An earlier commit's P1 script in a temporary ``git worktree`` of this repository, run once per call
    with this run's sizes; :meth:`fixed_cost` reads its trial's seconds outside the epochs."""

    def __init__(self, ref: str, args: List[str]) -> None:
        import subprocess

        self._tmp = tempfile.TemporaryDirectory(prefix="seglab-p1-before-")
        self.tree = Path(self._tmp.name) / "tree"
        out = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(self.tree), ref],
                             capture_output=True, text=True)
        if out.returncode != 0:
            self._tmp.cleanup()
            raise SystemExit(f"--before {ref}: git worktree add failed: {out.stderr.strip().splitlines()[-1:]}")
        self.ref = subprocess.run(["git", "-C", str(self.tree), "rev-parse", "--short", "HEAD"],
                                  capture_output=True, text=True).stdout.strip()
        self.args = args

    def fixed_cost(self) -> float:
        import re
        import subprocess

        env = dict(os.environ, PYTHONPATH=str(self.tree))
        with tempfile.TemporaryDirectory() as store:  # its benchmark log goes to a throwaway store
            env["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(store) / 'mlflow.db'}"
            out = subprocess.run([sys.executable, str(self.tree / "benchmarks" / "p1_platform_overhead.py"),
                                  "--repeats", "1", *self.args], cwd=self.tree, env=env, capture_output=True, text=True)
        found = re.findall(r"of which ([0-9.]+) s outside the epochs", out.stdout)
        if out.returncode != 0 or not found:
            raise RuntimeError(f"P1 of {self.ref} failed (exit {out.returncode}): {(out.stdout + out.stderr)[-800:]}")
        return float(found[0])

    def close(self) -> None:
        import subprocess

        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(self.tree)], capture_output=True)
        self._tmp.cleanup()


# ---------------------------------------------------------------- main

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 repeat, 2 epochs of 48 images (about a minute)")
    p.add_argument("--repeats", type=int, default=None, help="bare/platform pairs (default 3, quick 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run, the first is warm-up (default 3, quick 2)")
    p.add_argument("--samples", type=int, default=None, help="training images per epoch (default 96, quick 48)")
    p.add_argument("--val", type=int, default=8, help="validation images per epoch")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", default="128x256", help="HxW of the images and the training crop")
    p.add_argument("--threads", type=int, default=1, help="torch threads of both variants (the platform: floor(cpus_per_worker))")
    p.add_argument("--markdown", default=None, help="also write the table + headline to this file")
    p.add_argument("--before", default=None, metavar="GIT_REF",
                   help="also measure the per-trial fixed cost of this earlier commit's platform, interleaved")
    a = p.parse_args()
    repeats = a.repeats or (1 if a.quick else 3)
    epochs = a.epochs or (2 if a.quick else 3)
    samples = a.samples or (48 if a.quick else 96)
    if epochs < 2:
        p.error("--epochs must be >= 2 (the first epoch is warm-up)")
    size = tuple(int(v) for v in a.size.split("x"))
    cpus = 0.9 if a.threads == 1 else float(a.threads)  # the worker runs floor(cpus_per_worker) torch threads
    base = compose(run_overrides(workers=1, cpus=cpus, epochs=epochs, samples=samples, val=a.val, batch=a.batch,
                                 size=size))

    print(f"P1 platform overhead: hrnet_w18_small_v1 + CE, batch {a.batch}, {size[0]}x{size[1]}, {samples} images x "
          f"{epochs} epochs ({samples // a.batch} steps/epoch), {a.threads} thread(s), {repeats} repeat(s), "
          f"{cores()} cores ({_platform.node()}), load average {os.getloadavg()[0]:.2f}", flush=True)
    load0 = os.getloadavg()[0]
    ray_start = start_ray(num_cpus=min(2, cores()) if cores() >= 2 else 1)
    print(f"Ray start-up (local cluster, no dashboard): {ray_start:.1f} s", flush=True)
    store = TrialStore("p1_platform_overhead")
    bare_ips, plat_ips, bare_cycle, plat_cycle, walls, startups = [], [], [], [], [], []
    local_ips, local_fixed, before_fixed = [], [], []
    before = Before(a.before, ["--epochs", str(epochs), "--samples", str(samples), "--val", str(a.val), "--batch",
                               str(a.batch), "--size", a.size, "--threads", str(a.threads)]) if a.before else None
    per_epoch = (samples // a.batch) * a.batch
    try:
        for r in range(repeats):  # interleaved
            b = bare_trial(base, a.threads, seed=r + 1)
            bare_ips.append(med(b["images_per_s"]))
            bare_cycle.append(per_epoch / med(b["periods"]) if b["periods"] else float("nan"))
            print(f"  repeat {r + 1}: bare {bare_ips[-1]:.2f} img/s", flush=True)
            pl = platform_trial(base, store, "p1-platform")
            plat_ips.append(med(pl["images_per_s"]))
            if pl["periods"]:
                plat_cycle.append(per_epoch / med(pl["periods"]))
            walls.append(pl["wall_s"])
            startups.append(pl["wall_s"] - pl["epochs_s"])
            print(f"  repeat {r + 1}: platform {plat_ips[-1]:.2f} img/s (trial {pl['wall_s']:.1f} s, of which "
                  f"{startups[-1]:.1f} s outside the epochs' train+val)", flush=True)
            local = platform_trial(base, store, "p1-inprocess", inprocess=True)
            local_ips.append(med(local["images_per_s"]))
            local_fixed.append(local["wall_s"] - local["epochs_s"])
            print(f"  repeat {r + 1}: in process {local_ips[-1]:.2f} img/s (trial {local['wall_s']:.1f} s, of which "
                  f"{local_fixed[-1]:.1f} s outside the epochs' train+val)", flush=True)
            if before is not None:
                before_fixed.append(before.fixed_cost())
                print(f"  repeat {r + 1}: {before.ref}'s platform trial: {before_fixed[-1]:.1f} s outside the epochs",
                      flush=True)
    finally:
        store.close()
        if before is not None:
            before.close()
        import ray

        ray.shutdown()  # only the cluster this process started

    ratio = med(plat_ips) / med(bare_ips)
    cycle_ratio = med(plat_cycle) / med(bare_cycle) if plat_cycle and bare_cycle else float("nan")
    lines = [
        f"### P1 platform overhead ({cores()} cores, {_platform.node()}; torch {versions()['torch']}, ray {versions()['ray']})",
        "",
        f"hrnet_w18_small_v1 + CE, batch {a.batch}, crop {size[0]}x{size[1]}, {samples} images/epoch, {epochs} epochs "
        f"(steady state = epochs 2..{epochs}), {a.threads} torch thread(s), SGD + poly LR; platform = 1 Ray Train worker "
        f"+ MLflow (SQLite) + a checkpoint per epoch. Load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after.",
        "",
        "| variant | images/s median | min–max | repeats |",
        "|---|---|---|---|",
        row("Trainer in this process (train)", bare_ips, repeats),
        row("platform, 1 worker (train, logged images_per_s)", plat_ips, repeats),
        row("platform in process, cluster=inprocess (train, logged images_per_s)", local_ips, repeats),
        row("Trainer: whole epoch cycle (train+val+checkpoint)", bare_cycle, repeats),
        row("platform: whole epoch cycle (train+val+checkpoint+MLflow+report)", plat_cycle, repeats),
        "",
        f"Ray start-up (apart): {ray_start:.1f} s; platform trial wall {med(walls):.1f} s (median), of which "
        f"{med(startups):.1f} s outside the epochs (worker start-up, checkpoints, MLflow, teardown).",
        f"Whole-epoch-cycle ratio platform/bare: {cycle_ratio:.3f}",
        "",
        "| per-trial fixed cost (trial wall − its epochs' train+val), s | median | min–max | repeats |",
        "|---|---|---|---|",
        row("Ray Train trial, 1 worker (this commit)", startups, repeats, "{:.1f}"),
        row("in-process trial, cluster=inprocess (this commit)", local_fixed, repeats, "{:.1f}"),
    ]
    if before is not None:
        lines.append(row(f"Ray Train trial, 1 worker (commit {before.ref}, its own P1, interleaved)", before_fixed,
                         repeats, "{:.1f}"))
        lines += ["", f"P1 per-trial fixed cost, Ray Train trial: {med(before_fixed):.1f} s at {before.ref} -> "
                      f"{med(startups):.1f} s now ({med(startups) / med(before_fixed):.2f}x); in process "
                      f"{med(local_fixed):.1f} s"]
    text = "\n".join(lines)
    headline = f"P1 platform/bare throughput ratio: {ratio:.3f} (goal >= 0.97)"
    v = versions()
    log_to_mlflow("p1_platform_overhead",
                  {"machine": _platform.node(), "cores": cores(), "torch": v["torch"], "ray": v["ray"],
                   "mlflow": v["mlflow"], "python": v["python"], "model": "hrnet_w18_small_v1", "batch": a.batch,
                   "size": a.size, "samples": samples, "epochs": epochs, "threads": a.threads, "repeats": repeats,
                   "quick": a.quick},
                  {"bare_images_per_s": med(bare_ips), "platform_images_per_s": med(plat_ips),
                   "bare_cycle_images_per_s": med(bare_cycle), "platform_cycle_images_per_s": med(plat_cycle),
                   "ray_startup_s": ray_start, "platform_trial_wall_s": med(walls),
                   "platform_outside_epochs_s": med(startups), "inprocess_outside_epochs_s": med(local_fixed),
                   "inprocess_images_per_s": med(local_ips),
                   "before_outside_epochs_s": med(before_fixed), "load_avg_before": load0, "cycle_ratio": cycle_ratio, "ratio": ratio},
                  text + "\n\n" + headline)
    emit(text, headline, a.markdown)


if __name__ == "__main__":
    main()
