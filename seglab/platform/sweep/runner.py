"""``run_sweep``: a method's runs plus its baseline, validated, then run as Ray Tune trials of Ray Train runs.

In order: plan the runs (:mod:`.plan`) and validate every one before Ray is asked for anything
(:mod:`.validate`), apply the budget, open the MLflow parent run and the sweep folder (or the
interrupted one, :mod:`.state`), size the concurrency from the cluster (:mod:`seglab.platform.cluster`),
run the method's stages (e.g. SEMEDA's edge net), then the phases (:mod:`.phases`: warm start,
search, runs from the baseline, confirmation), and finally the comparison (:mod:`seglab.platform.report`).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from seglab.errors import check
from seglab.platform import methods, tracking
from seglab.platform.config import RunConfig, flatten
from seglab.platform.sweep.config import INPROCESS, SweepConfig
from seglab.platform.sweep.phases import SweepState, confirm, search_and_from_baseline, warm_start
from seglab.platform.sweep.plan import apply_budget, plan_trials, representative_point, run_for_point, with_selection
from seglab.platform.sweep.state import find_resumable, fingerprint, write_state
from seglab.platform.sweep.validate import RunSummary, flops_key, validate_sweep


@dataclass
class SweepResult:
    parent_run_id: str
    experiment_id: str
    rows: List[Dict[str, Any]]
    table: str
    storage_path: str
    errors: List[str]


def plan_and_validate(base: Dict[str, Any], sweep: SweepConfig
                      ) -> Tuple[List[RunConfig], List[RunSummary], methods.Method, int]:
    """(runs, their summaries, the sweep's method, the number of trials), printed; budget applied.
    Fails with one line (ConfigError) before Ray is asked for anything."""
    runs = plan_trials(base, sweep)
    summaries = validate_sweep(base, sweep, runs)
    method = methods.for_sweep(base, runs)
    total = len(runs) + (sweep.num_samples if sweep.search == "optuna" else 0)
    print(f"sweep '{sweep.name}' ({method.name}): {total} trials", flush=True)
    for r, s in zip(runs, summaries):
        print(f"  - {r.label}{'  [baseline]' if r.baseline else ''}: {s.params / 1e6:.2f}M params, "
              f"{s.gflops:.1f} GFLOPs @ {s.flops_input_size[0]}x{s.flops_input_size[1]}", flush=True)
    if sweep.search == "optuna":
        print(f"  - {sweep.num_samples} run(s) proposed by Optuna (TPE, seed {sweep.seed}) over "
              f"{', '.join(sorted(sweep.space))}" + (", ASHA early stopping" if sweep.scheduler == "asha" else ""),
              flush=True)
    runs = apply_budget(runs, summaries, sweep)
    if sweep.budget != "schedule":
        for r in runs:
            print(f"  budget={sweep.budget}: {r.label}: " + (f"{r.trainer.epochs} epochs" if sweep.budget == "flops"
                                                           else f"{r.trainer.time_limit_s:g} s of training"), flush=True)
    if sweep.warm_start_epochs:
        check(not any(r.model.body_checkpoint for r in runs),
              "sweep.warm_start_epochs and model.body_checkpoint both set: every run starts from the warm start; "
              "unset model.body_checkpoint")
        print(f"  warm start: the baseline trains {sweep.warm_start_epochs} epochs first; every compared run "
              f"starts from its weights", flush=True)
    if sweep.seeds > 1:
        print(f"  each run x {sweep.seeds} seeds (trainer.seed + 0..{sweep.seeds - 1}, paired across runs)", flush=True)
    return runs, summaries, method, total


def connect_ray() -> None:
    """RAY_ADDRESS's cluster, the one the last ``ray start`` recorded, or a new one on 127.0.0.1 only.
    Outside a Ray job (whose runtime env sets them), the trials' actors get the tracking server's
    address and credentials from this driver."""
    import ray

    if ray.is_initialized():
        return
    from seglab.platform.cluster.local import init_ray

    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", *tracking.CREDENTIAL_VARS) if os.environ.get(k)}
    in_job = bool(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))  # set by Ray for a submitted job's driver
    init_ray(**({"runtime_env": {"env_vars": env}} if env and not in_job else {}))


def open_sweep(base: Dict[str, Any], sweep: SweepConfig, method: methods.Method, total: int, uri: str,
               experiment_id: str, root: Path, resumed, ray_job: Optional[str] = None) -> Tuple[Path, Dict[str, Any]]:
    """The sweep's folder and state: the interrupted one (``resumed``) with its MLflow parent run set
    RUNNING again, or a new folder and parent run. The state lists the Ray job of every driver
    (``ray_job``: this one's), whose leftovers a resumed driver releases."""
    c = tracking.client(uri)
    if resumed is not None:
        storage, state = resumed
        c.update_run(state["parent_run_id"], status="RUNNING")
        state["resumed"] = int(state.get("resumed", 0)) + 1
        c.set_tag(state["parent_run_id"], "seglab.resumed", state["resumed"])
        print(f"sweep '{sweep.name}': resuming {storage} (MLflow parent run {state['parent_run_id']}, resume "
              f"{state['resumed']})", flush=True)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        storage = root / f"{sweep.name}-{stamp}"
        storage.mkdir(parents=True, exist_ok=True)
        parent_id = tracking.start_parent_run(
            experiment_id, f"{sweep.name}-{stamp}",
            {**flatten(base), **{f"sweep.{k}": v for k, v in flatten(sweep.__dict__).items()}, "sweep.trials": total},
            uri, tags={"seglab.method": method.name, "seglab.sweep_folder": str(storage),
                       "seglab.budget": sweep.budget, "seglab.seeds": str(sweep.seeds),
                       "seglab.confirm_seeds": str(sweep.confirm_seeds), "seglab.selection_metric": sweep.metric,
                       "seglab.selection_mode": sweep.mode})
        state = {"name": sweep.name, "parent_run_id": parent_id, "experiment_id": experiment_id, "tracking_uri": uri,
                 "config": fingerprint(base, sweep)}
    state["status"] = "RUNNING"
    if ray_job:
        state["ray_jobs"] = [*state.get("ray_jobs", []), ray_job]
    write_state(storage, state)
    return storage, state


def summaries_for_trials(runs: List[RunConfig], summaries: List[RunSummary]) -> Dict[str, Dict[str, Any]]:
    """What the driver counted, by :func:`flops_key`: a trial of the same architecture logs these
    instead of building a meta model and counting FLOPs again."""
    out = {}
    for r, s in zip(runs, summaries):
        if math.isfinite(s.gflops):
            out[flops_key(r)] = {"params": s.params, "gflops": s.gflops, "train_gflops": s.train_gflops,
                                 "flops_input_size": list(s.flops_input_size),
                                 "inference_params": s.inference_params, "num_classes": s.num_classes,
                                 "train_forward_gflops": dict(s.train_forward_gflops)}
    return out


def run_sweep(base: Dict[str, Any], sweep: SweepConfig, storage_root: Optional[str] = None) -> SweepResult:
    """Validate every trial, then run them on the Ray cluster (``RAY_ADDRESS`` or a local one), or one
    after another in this process with ``cluster=inprocess``."""
    base = with_selection(base, sweep)
    runs, summaries, method, total = plan_and_validate(base, sweep)
    cluster = sweep.cluster or {}
    if cluster.get("tracking_uri"):  # the cluster's tracking server (experiments/conf/cluster/)
        os.environ["MLFLOW_TRACKING_URI"] = str(cluster["tracking_uri"])
    uri = tracking.tracking_uri()
    root = Path(storage_root or cluster.get("storage_path") or (tracking.home() / "runs")).resolve()
    resumed = find_resumable(root, base, sweep, uri)  # a one-line error before Ray, like validation
    experiment_id = tracking.ensure_experiment(sweep.experiment, uri)  # once, in the driver
    sized = runs or [run_for_point(base, representative_point(sweep))]
    placement = place_trials(sized, sweep, total, root, earlier_jobs=resumed[1].get("ray_jobs", []) if resumed else [])
    storage, state = open_sweep(base, sweep, method, total, uri, experiment_id, root, resumed, placement.get("job"))
    parent_id = state["parent_run_id"]
    print(f"MLflow parent run {parent_id} in experiment '{sweep.experiment}' ({uri}); {placement['say']}; "
          f"sweep folder {storage} (interrupted? rerun the same command with sweep.resume=true)", flush=True)
    ctx = {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent_id,
           "summaries": summaries_for_trials(runs, summaries), "storage_path": str(storage / "train"),
           "use_gpu": placement["use_gpu"], "executor": placement["executor"], "single_node": placement["single_node"],
           "method": method.name, "resources": {}}
    phases = SweepState(sweep, base, method, ctx, storage, placement["concurrent"], resume=resumed is not None)
    try:
        planned = run_stages(phases, runs, str(root / "cache"))  # one per configuration: what a confirmation re-runs
        if sweep.warm_start_epochs:
            planned = warm_start(phases, planned, placement["cpus"], placement["use_gpu"])
    except BaseException:  # a failed stage or warm start fails the sweep; nothing is left RUNNING in MLflow
        tracking.mark_unfinished_children(parent_id, uri, ctx["storage_path"])
        tracking.set_terminated(parent_id, "FAILED", uri)
        write_state(storage, {**state, "status": "FAILED"})
        raise
    search_and_from_baseline(phases, planned)
    if sweep.confirm_seeds:
        confirm(phases, planned)
    return finish(phases, state, experiment_id)


def place_trials(sized: List[RunConfig], sweep: SweepConfig, total: int, root: Path,
                 earlier_jobs: Iterable[str] = ()) -> Dict[str, Any]:
    """Where the trials run: with ``cluster=inprocess`` here, one at a time (this process's GPU when
    there is one and ``trainer.use_gpu`` allows it); else on the Ray cluster (connected or started
    here), as many at a time as its resources allow, once what the sweep's ``earlier_jobs`` (Ray job
    ids of its interrupted drivers) left is released, after checking that every node shares ``root``."""
    t = sized[0].trainer
    if (sweep.cluster or {}).get("name") == INPROCESS:
        import torch

        from seglab.platform.cluster.resources import resolve_use_gpu

        use_gpu = resolve_use_gpu(t.use_gpu, torch.cuda.device_count())
        root.mkdir(parents=True, exist_ok=True)
        return {"executor": INPROCESS, "concurrent": 1, "use_gpu": use_gpu, "cpus": 1.0, "single_node": True,
                "say": f"trials one after another in this process on the {'GPU' if use_gpu else 'CPU'} (no Ray)"}
    import ray

    from seglab.platform.cluster.resources import (TRIAL_DRIVER_CPU, plan_resources,
                                                   release_leftover_placement_groups, wait_for_free_cpus)
    from seglab.platform.cluster.storage import check_shared_storage

    connect_ray()
    release_leftover_placement_groups(earlier_jobs)
    concurrent, use_gpu = plan_resources(sized, ray.cluster_resources(), sweep.max_concurrent_trials, total=total)
    wait_for_free_cpus(TRIAL_DRIVER_CPU + t.num_workers * t.cpus_per_worker)
    root.mkdir(parents=True, exist_ok=True)
    check_shared_storage(root)  # every node must see the sweep folders (checkpoints, resume)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {"executor": "ray", "job": ray.get_runtime_context().get_job_id(),
            "concurrent": concurrent, "use_gpu": use_gpu, "cpus": ray.cluster_resources().get("CPU", 1.0),
            "single_node": len(nodes) == 1 and (sweep.cluster or {}).get("name", "local") == "local",
            "say": f"{concurrent} trial(s) at a time, {'GPU' if use_gpu else 'CPU'} workers"}


def run_stages(phases: SweepState, runs: List[RunConfig], cache_dir: str) -> List[RunConfig]:
    """The method's stages (work done once before any trial), then every run prepared with what they produced."""
    ctx, sweep = phases.ctx, phases.sweep
    stage_ctx = methods.StageContext(ctx["tracking_uri"], ctx["experiment_id"], ctx["parent_run_id"], cache_dir,
                                     ctx["use_gpu"], inprocess=ctx["executor"] == INPROCESS)
    extra = [run_for_point(phases.base, representative_point(sweep))] if sweep.search == "optuna" else []
    for stage in phases.method.stages():
        ctx["resources"].update(stage.run(runs + extra, stage_ctx))
    return [phases.method.prepare_run(r, ctx["resources"]) for r in runs]


def finish(phases: SweepState, state: Dict[str, Any], experiment_id: str) -> SweepResult:
    """Close what the trials left open, build the comparison, log it to the parent run and end the sweep."""
    from seglab.platform import report

    ctx, sweep = phases.ctx, phases.sweep
    parent_id, uri = ctx["parent_run_id"], ctx["tracking_uri"]
    tracking.mark_unfinished_children(parent_id, uri, ctx["storage_path"])
    rows = report.collect(parent_id, uri)
    table = report.comparison_text(rows, sweep)
    report.log_to_parent(parent_id, rows, table, uri)
    from seglab.platform.serve.registry import register_sweep_model

    register_sweep_model(sweep, rows, parent_id, uri, ctx["storage_path"])  # the winner in MLflow's model registry
    print(report.ui_link_line(parent_id, uri), flush=True)  # the parent run, the grouped view, the compare view
    status = "FAILED" if phases.errors else "FINISHED"
    tracking.set_terminated(parent_id, status, uri)
    write_state(phases.storage, {**state, "status": status})
    return SweepResult(parent_id, experiment_id, rows, table, str(phases.storage), phases.errors)
