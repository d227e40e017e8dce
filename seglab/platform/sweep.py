"""Ray Tune sweeps: a method's search space plus its baseline, run as trials of Ray Train runs.

Every sweep is a comparison: :func:`plan_trials` always adds the baseline trial (same data, same
schedule) next to the method's trials. Concurrency is derived from the cluster's resources so
trials never deadlock (each trial's driver takes 0.1 CPU, its workers the rest).
"""
from __future__ import annotations

import itertools
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from seglab.errors import ConfigError, check
from seglab.platform import tracking
from seglab.platform.build import describe, validate_run
from seglab.platform.config import RunConfig, flatten, set_dotted

TRIAL_DRIVER_CPU = 0.1
# Named search dimensions of a sweep config -> the run-config key they set, and their lower bound
# (value, inclusive?).
SEARCH_KEYS = {"kappa": "loss.kappa", "lam": "loss.lam", "tau": "model.tau"}
SEARCH_LOWER_BOUNDS = {"kappa": (0.0, True), "lam": (0.0, True), "tau": (0.0, False)}


def _check_bound(name: str, value: float) -> None:
    low, inclusive = SEARCH_LOWER_BOUNDS[name]
    ok = value >= low if inclusive else value > low
    check(ok, f"sweep.{name} values must be {'>=' if inclusive else '>'} {low:g} (got {value:g})")


@dataclass
class SweepConfig:
    name: str = "ovenet_vs_hrnet"
    experiment: str = "seglab"
    include_baseline: bool = True
    baseline_model: str = "hrnet_w18_small_v1"
    baseline_loss: str = "ce"
    search: str = "grid"  # grid | random
    num_samples: int = 1  # random search: number of sampled method trials
    seed: int = 0
    space: Dict[str, Any] = field(default_factory=dict)  # name in SEARCH_KEYS -> list | {uniform|loguniform: [lo, hi]}
    metric: str = "val_miou"
    max_concurrent_trials: Optional[int] = None
    max_trial_failures: int = 1
    dry_run: bool = False  # validate and print the plan, start nothing
    # Baseline sweeps: one trial per model (a name or {name: ..., <option>: ...}), same loss and
    # schedule; the first is the reference row of the comparison. Excludes a search space.
    models: Optional[List[Any]] = None

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SweepConfig":
        d = dict(d)
        space = {k: d.pop(k) for k in list(d) if k in SEARCH_KEYS}
        known = set(cls.__dataclass_fields__) - {"space"}
        unknown = sorted(set(d) - known)
        check(not unknown, f"unknown key sweep.{unknown[0] if unknown else ''}; allowed: "
                           f"{', '.join(sorted(known | set(SEARCH_KEYS)))}")
        s = cls(**d, space={k: v for k, v in space.items() if v is not None})
        check(s.search in ("grid", "random"), f"sweep.search must be grid or random (got {s.search!r})")
        check(s.num_samples >= 1, f"sweep.num_samples must be >= 1 (got {s.num_samples})")
        for name, values in s.space.items():
            _check_dimension(name, values, s.search)
        if s.models is not None:
            check(isinstance(s.models, list) and len(s.models) > 0, "sweep.models must be a non-empty list of model names")
            check(not s.space, f"sweep.models and a search space (sweep.{next(iter(s.space), '')}) exclude each other")
            for m in s.models:
                check(isinstance(m, str) or (isinstance(m, dict) and "name" in m),
                      f"sweep.models entries must be a model name or {{name: ..., <option>: ...}} (got {m!r})")
        return s


def _check_dimension(name: str, values: Any, search: str) -> None:
    key = f"sweep.{name}"
    if isinstance(values, (list, tuple)):
        check(len(values) > 0, f"{key} is an empty list; give at least one value")
        for v in values:
            check(isinstance(v, (int, float)) and not isinstance(v, bool), f"{key} values must be numbers (got {v!r})")
            _check_bound(name, v)
        return
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        _check_bound(name, values)
        return
    check(isinstance(values, dict) and len(values) == 1 and next(iter(values)) in ("uniform", "loguniform"),
          f"{key} must be a number, a list, or {{uniform: [lo, hi]}} / {{loguniform: [lo, hi]}} (got {values!r})")
    check(search == "random", f"{key} is a distribution; set sweep.search=random to sample it")
    dist, bounds = next(iter(values.items()))
    check(isinstance(bounds, (list, tuple)) and len(bounds) == 2 and bounds[0] < bounds[1],
          f"{key}.{dist} needs [lo, hi] with lo < hi (got {bounds!r})")
    check(dist != "loguniform" or bounds[0] > 0, f"{key}.loguniform needs lo > 0 (got {bounds[0]})")
    _check_bound(name, bounds[0])


def _grid(space: Dict[str, Any]) -> List[Dict[str, Any]]:
    names = sorted(space)
    lists = [v if isinstance(v, (list, tuple)) else [v] for v in (space[n] for n in names)]
    return [dict(zip(names, combo)) for combo in itertools.product(*lists)]


def _sample(space: Dict[str, Any], num_samples: int, seed: int) -> List[Dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_samples):
        point = {}
        for name in sorted(space):
            v = space[name]
            if isinstance(v, dict):
                dist, (lo, hi) = next(iter(v.items()))
                x = rng.uniform(lo, hi) if dist == "uniform" else math.exp(rng.uniform(math.log(lo), math.log(hi)))
                point[name] = round(float(x), 4)
            elif isinstance(v, (list, tuple)):
                point[name] = v[int(rng.integers(len(v)))]
            else:
                point[name] = v
        out.append(point)
    return out


def plan_trials(base: Dict[str, Any], sweep: SweepConfig) -> List[RunConfig]:
    """The runs of a sweep: the baseline (if included) first, then one run per search point."""
    if sweep.models is not None:
        return _plan_models(base, sweep.models)
    points = _grid(sweep.space) if sweep.search == "grid" else _sample(sweep.space, sweep.num_samples, sweep.seed)
    runs: List[RunConfig] = []
    if sweep.include_baseline:
        b = dict(base)
        b["model"] = {"name": sweep.baseline_model, "pretrained": base.get("model", {}).get("pretrained")}
        b["loss"] = {"name": sweep.baseline_loss}
        b["baseline"] = True
        runs.append(RunConfig.from_dict(b))
    for point in points:
        d = dict(base)
        for name, value in point.items():
            d = set_dotted(d, SEARCH_KEYS[name], value)
        d["baseline"] = False
        runs.append(RunConfig.from_dict(d))
    keys = [r.key() for r in runs]
    check(len(set(keys)) == len(keys), "the sweep contains the same run twice; check the search space")
    for r in runs:
        r.label = describe(r)
    return runs


def _plan_models(base: Dict[str, Any], models: List[Any]) -> List[RunConfig]:
    runs = []
    for i, entry in enumerate(models):
        model = {"name": entry} if isinstance(entry, str) else dict(entry)
        model.setdefault("pretrained", base.get("model", {}).get("pretrained"))
        run = RunConfig.from_dict({**base, "model": model, "baseline": i == 0})
        run.label = describe(run)
        runs.append(run)
    specs = [json.dumps(r.to_dict()["model"], sort_keys=True, default=str) for r in runs]
    check(len(set(specs)) == len(specs), "sweep.models lists the same model twice")
    return runs


def plan_resources(runs: List[RunConfig], cluster: Dict[str, float], max_concurrent: Optional[int] = None
                   ) -> Tuple[int, bool]:
    """(concurrent trials, use_gpu) for ``runs`` on a cluster with ``cluster`` resources.

    Raises ConfigError when one trial can never fit (naming trainer.num_workers).
    """
    from seglab.platform.trainer import resolve_use_gpu

    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    t = runs[0].trainer  # every trial of a sweep shares the trainer config
    use_gpu = resolve_use_gpu(t.use_gpu, gpus)
    per_trial_cpu = TRIAL_DRIVER_CPU + t.num_workers * t.cpus_per_worker
    check(per_trial_cpu <= cpus + 1e-9,
          f"trainer.num_workers={t.num_workers} x trainer.cpus_per_worker={t.cpus_per_worker} "
          f"(+{TRIAL_DRIVER_CPU} for the trial driver) needs {per_trial_cpu:g} CPUs but the cluster has {cpus:g}; "
          f"lower trainer.num_workers or trainer.cpus_per_worker")
    concurrent = int(math.floor(cpus / per_trial_cpu + 1e-9))
    if use_gpu:
        check(t.num_workers <= gpus, f"trainer.num_workers={t.num_workers} needs {t.num_workers} GPUs with "
                                     f"trainer.use_gpu={t.use_gpu} but the cluster has {gpus:g}")
        concurrent = min(concurrent, int(gpus // t.num_workers))
    if max_concurrent:
        concurrent = min(concurrent, int(max_concurrent))
    return max(1, min(concurrent, len(runs))), use_gpu


@dataclass
class SweepResult:
    parent_run_id: str
    experiment_id: str
    rows: List[Dict[str, Any]]
    table: str
    storage_path: str
    errors: List[str]


def run_sweep(base: Dict[str, Any], sweep: SweepConfig, storage_root: Optional[str] = None) -> SweepResult:
    """Validate every trial, then run them on the Ray cluster (``RAY_ADDRESS`` or a local one)."""
    import ray
    from ray import tune

    from seglab.platform import report
    from seglab.platform.trainer import run_trial

    runs = plan_trials(base, sweep)
    summaries = [validate_run(r) for r in runs]  # fails with one line before Ray is asked for anything
    print(f"sweep '{sweep.name}': {len(runs)} trials", flush=True)
    for r, s in zip(runs, summaries):
        print(f"  - {r.label}{'  [baseline]' if r.baseline else ''}: {s.params / 1e6:.2f}M params, "
              f"{s.gflops:.1f} GFLOPs @ {s.flops_input_size[0]}x{s.flops_input_size[1]}", flush=True)

    uri = tracking.tracking_uri()
    experiment_id = tracking.ensure_experiment(sweep.experiment, uri)  # once, in the driver
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=True, include_dashboard=False,
                 configure_logging=True, logging_level="warning")
    concurrent, use_gpu = plan_resources(runs, ray.cluster_resources(), sweep.max_concurrent_trials)
    t = runs[0].trainer
    wait_for_free_cpus(TRIAL_DRIVER_CPU + t.num_workers * t.cpus_per_worker)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    storage = Path(storage_root or (tracking.home() / "runs")).resolve() / f"{sweep.name}-{stamp}"
    storage.mkdir(parents=True, exist_ok=True)
    parent_id = tracking.start_parent_run(
        experiment_id, f"{sweep.name}-{stamp}",
        {**flatten(base), **{f"sweep.{k}": v for k, v in flatten(sweep.__dict__).items()}, "sweep.trials": len(runs)},
        uri,
    )
    print(f"MLflow parent run {parent_id} in experiment '{sweep.experiment}' ({uri}); "
          f"{concurrent} trial(s) at a time, {'GPU' if use_gpu else 'CPU'} workers", flush=True)
    ctx = {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent_id,
           "storage_path": str(storage / "train"), "use_gpu": use_gpu}
    tuner = tune.Tuner(
        tune.with_resources(run_trial, {"CPU": TRIAL_DRIVER_CPU}),
        param_space={"trial": tune.grid_search([r.to_dict() for r in runs]), "ctx": ctx},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=concurrent,
            trial_name_creator=lambda trial: f"trial_{trial.trial_id}",
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name="tune", storage_path=str(storage), verbose=0,
            failure_config=tune.FailureConfig(max_failures=sweep.max_trial_failures),
        ),
    )
    grid = tuner.fit()
    errors = [f"{r.config['trial']['label']}: {type(r.error).__name__}: {str(r.error).strip().splitlines()[-1]}"
              for r in grid if r.error is not None]
    rows = report.collect(parent_id, uri)
    table = report.format_table(rows, metric=sweep.metric)
    report.log_to_parent(parent_id, rows, table, uri)
    tracking.set_terminated(parent_id, "FAILED" if errors else "FINISHED", uri)
    return SweepResult(parent_id, experiment_id, rows, table, str(storage), errors)


def wait_for_free_cpus(needed: float, timeout_s: float = 30.0) -> None:
    """Fail fast when the cluster's CPUs stay held (e.g. by placement groups of a killed driver).

    Ray releases a dead job's placement groups shortly after it dies, so wait ``timeout_s`` first.
    """
    import ray
    from ray.util.placement_group import placement_group_table

    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("CPU", 0.0) + 1e-9 < needed:
        if time.monotonic() > deadline:
            held = [pg for pg in placement_group_table().values() if pg.get("state") == "CREATED"]
            raise ConfigError(
                f"the Ray cluster has {ray.available_resources().get('CPU', 0.0):g} free CPUs, a trial needs "
                f"{needed:g}; {len(held)} placement group(s) hold the rest (another sweep, or one whose driver "
                f"was killed): wait for it, or restart the cluster (`ray stop; ray start --head`)")
        time.sleep(1.0)
