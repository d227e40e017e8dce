"""P8: search efficiency -- ASHA + Optuna against the full (kappa, lambda, tau) grid of OVeNet.

    python benchmarks/p8_search_efficiency.py [--quick] [--samples N] [--markdown PATH]

Runs the real sweep machinery (``seglab.platform.sweep.run_sweep`` on a private local Ray
cluster, configs composed with Hydra exactly as ``experiments/ovenet_sweep.py`` composes them) twice
on the embedded synthetic data set (``dataset=synthetic``), same model, data and schedule:

* the grid: ``sweep=ovenet_kappa_lambda_tau_grid`` (every (kappa, lambda, tau), each run in full);
* the search: ``sweep=ovenet_kappa_lambda_tau`` (Optuna TPE proposals with ASHA early stopping).

The base network is left out of both (``sweep.include_baseline=false``): it is the same in both.
Training compute of a trial = epochs it trained x its GFLOPs (as the sweep reports them). The
headline is the search's compute as a fraction of the grid's, when the search's best val mIoU comes
within 0.5 mIoU points of the grid's best (goal <= 40 %); otherwise it says the search did not reach
it. The whole search's compute is counted (an upper bound on the compute "to reach" the score).

Sizes (printed): the default is the full 3 x 3 x 4 = 36-point grid and 16 Optuna trials at 64x128,
32 training images, 6 epochs, 1 DDP worker per trial: expect about 1-1.5 hours on 2 CPU cores.
``--quick`` shrinks everything -- a 2 x 1 x 2 sub-grid (kappa 0.5/1.0, lambda 0.5, tau 0.2/1.0), 4 Optuna
trials over the same sub-ranges, 32x64 images, 8 samples, 4 epochs -- to a few minutes: a smoke
run whose ratio says little about the method. Sweeps log to the MLflow experiment ``benchmarks_p8``;
the summary to ``benchmarks``.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # seglab and experiments from this checkout

from _common import log_mlflow  # noqa: E402 (benchmarks/ is on sys.path when a script runs)

CONF = REPO / "experiments" / "conf"
GOAL = 0.40
TOLERANCE = 0.005  # 0.5 mIoU points (mIoU in [0, 1])


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.node()} ({platform.machine()}, {cores} cores)"


def versions() -> Dict[str, str]:
    out = {}
    for mod in ("torch", "ray", "mlflow", "optuna"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = "absent"
    return out


def compose(overrides: List[str]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(base, sweep dict) exactly as experiments/ovenet_sweep.py composes its config."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from experiments._entry import split_config

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return split_config(cfg)


def sizes(quick: bool, samples: int) -> Tuple[List[str], List[str], List[str], str]:
    """(common overrides, grid overrides, search overrides, description)."""
    if quick:
        common = ["model=ovenet_hrnet_w18_small_v1", "dataset=synthetic", "trainer=tiny", "trainer.num_workers=1",
                  "trainer.epochs=4", "dataset.image_size=[32,64]", "dataset.train.num_samples=8",
                  "dataset.train.crop_size=[32,64]", "dataset.val.num_samples=4", "dataset.test.num_samples=4"]
        sub = ["sweep.kappa=[0.5,1.0]", "sweep.lam=[0.5]", "sweep.tau=[0.2,1.0]"]
        search = ["sweep.kappa={uniform:[0.5,1.0]}", "sweep.lam={uniform:[0.4,0.6]}", "sweep.tau=[0.2,1.0]",
                  f"sweep.num_samples={samples or 4}"]
        desc = ("--quick (smoke size, says little about the method): 2x1x2 sub-grid, "
                f"{samples or 4} Optuna trials, 32x64 images, 8 train / 4 val samples, 4 epochs, 1 worker per trial")
        return common, sub, search, desc
    common = ["model=ovenet_hrnet_w18_small_v1", "dataset=synthetic", "trainer=tiny", "trainer.num_workers=1",
              "trainer.epochs=6", "dataset.image_size=[64,128]", "dataset.train.num_samples=32",
              "dataset.train.crop_size=[64,128]", "dataset.val.num_samples=8", "dataset.test.num_samples=8"]
    desc = (f"full size: 36-point grid, {samples or 16} Optuna trials, 64x128 images, 32 train / 8 val samples, "
            "6 epochs, 1 worker per trial (expect about 1-1.5 h on 2 CPU cores)")
    return common, [], [f"sweep.num_samples={samples or 16}"], desc


def run(name: str, overrides: List[str], storage: str) -> List[Dict[str, Any]]:
    from seglab.platform.sweep import SweepConfig, run_sweep

    base, sweep_dict = compose(overrides)
    sweep_dict.update(include_baseline=False, experiment="benchmarks_p8")
    result = run_sweep(base, SweepConfig.from_dict(sweep_dict), storage_root=storage)
    if result.errors:
        print(f"{name}: {len(result.errors)} failed trial(s): " + "; ".join(result.errors[:3]), flush=True)
    return result.rows


def summarise(rows: List[Dict[str, Any]]) -> Dict[str, float]:
    done = [r for r in rows if not r["failed"] and r["best_val_miou"] is not None]
    compute = sum((r["epochs"] or 0) * (r["gflops"] or 0) for r in rows)
    return {"trials": len(rows), "ok": len(done), "stopped_early": sum(bool(r["stopped_early"]) for r in rows),
            "epochs": sum(r["epochs"] or 0 for r in rows), "compute": compute,
            "best": max((r["best_val_miou"] for r in done), default=float("nan")),
            "wall_s": sum(r["wall_s"] or 0 for r in rows)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few minutes: sub-grid, tiny images, few epochs")
    p.add_argument("--samples", type=int, default=0, help="Optuna trials (default 16; --quick 4)")
    p.add_argument("--markdown", default=None, help="write the table and the headline here")
    a = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    common, grid_o, search_o, desc = sizes(a.quick, a.samples)
    print(f"P8 search efficiency: {desc}", flush=True)
    import ray

    from seglab.platform.cluster.local import init_local

    start = time.perf_counter()
    init_local(num_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2,
               include_dashboard=True, log_to_driver=False,
               runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1"}})
    try:
        with tempfile.TemporaryDirectory(prefix="p8-") as storage:
            # the two sweeps run one after the other (a sweep is minutes, not a step: no finer interleaving)
            grid = summarise(run("grid", [*common, "sweep=ovenet_kappa_lambda_tau_grid", *grid_o], storage))
            search = summarise(run("search", [*common, "sweep=ovenet_kappa_lambda_tau", *search_o], storage))
    finally:
        ray.shutdown()
    wall = time.perf_counter() - start
    lines = ["| sweep | trials (ok) | stopped early | epochs trained | compute (epoch x GFLOPs) | best val mIoU | "
             "trial wall s (sum) |", "|---|---|---|---|---|---|---|"]
    for name, s in (("grid (ovenet_kappa_lambda_tau_grid)", grid), ("ASHA + Optuna (ovenet_kappa_lambda_tau)", search)):
        lines.append(f"| {name} | {s['trials']} ({s['ok']}) | {s['stopped_early']} | {s['epochs']:.0f} | "
                     f"{s['compute']:.1f} | {100 * s['best']:.2f} | {s['wall_s']:.0f} |")
    fraction = search["compute"] / grid["compute"] if grid["compute"] else float("nan")
    reached = search["best"] >= grid["best"] - TOLERANCE
    lines.append(f"| **search / grid** | | | | **{100 * fraction:.1f} %** | "
                 f"**{100 * (search['best'] - grid['best']):+.2f} points** | |")
    head = f"P8 search efficiency, {desc}; total wall {wall:.0f} s"
    table = "\n".join(lines)
    print(table)
    if reached:
        headline = (f"HEADLINE P8: ASHA+Optuna reached the grid's best within 0.5 mIoU with {100 * fraction:.1f} % of "
                    f"the grid's training compute (goal <= {100 * GOAL:.0f} %: {'met' if fraction <= GOAL else 'NOT met'}"
                    f"{'; --quick smoke size' if a.quick else ''}; one run per sweep, no repeats)")
    else:
        headline = (f"HEADLINE P8: ASHA+Optuna did NOT reach the grid's best within 0.5 mIoU "
                    f"({100 * search['best']:.2f} vs {100 * grid['best']:.2f}) using {100 * fraction:.1f} % of the "
                    f"grid's compute (goal: reach it with <= {100 * GOAL:.0f} %: NOT met"
                    f"{'; --quick smoke size' if a.quick else ''})")
    md = f"{head}\n\n{table}\n\n**{headline}**\n"
    if a.markdown:
        Path(a.markdown).write_text(md)
    log_mlflow("p8_search_efficiency", {"machine": machine(), **versions(), "size": desc, "quick": a.quick},
               {"compute_fraction": fraction, "grid_best_miou": grid["best"], "search_best_miou": search["best"],
                "grid_compute": grid["compute"], "search_compute": search["compute"], "wall_s": wall}, md)
    print(headline)


if __name__ == "__main__":
    main()
