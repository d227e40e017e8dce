"""Ray Tune sweeps: a method's runs plus its baseline, run as trials of Ray Train runs.

What runs is planned in :mod:`seglab.platform.plan` (grid / random / Optuna search, ablation
variants, model lists); this module validates every run before Ray is asked for anything, then
runs them as Tune trials. Concurrency is derived from the cluster's resources so trials never
deadlock (each trial's driver takes 0.1 CPU, its workers the rest). Runs that start from the
baseline's trained weights (``model.body_checkpoint=@baseline``) run in a second phase, after it.

The sweep's method (:func:`seglab.platform.methods.for_sweep`) runs its stages (work needed once
before any trial, e.g. pre-training a frozen auxiliary network) after validation and before the
trials, prepares the runs with what they produced, and adds its tables to the comparison.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from seglab.errors import ConfigError, check
from seglab.platform import methods, tracking
from seglab.platform.build import RunSummary, flops_key, validate_run, verify_datasets
from seglab.platform.config import RunConfig, flatten, set_dotted
from seglab.platform.plan import (SweepConfig, plan_trials,  # noqa: F401 (SweepConfig, plan_trials re-exported)
                                  apply_budget, representative_point, run_for_point, split_phases, start_from,
                                  warm_start_run, with_seeds)

TRIAL_DRIVER_CPU = 0.1
SWEEP_STATE = "sweep.json"
"""The file in a sweep's folder recording its MLflow parent run, configuration and status (for ``sweep.resume``)."""
# Keys that may differ when a sweep is resumed (they do not change what the trials compute).
RESUME_FREE_KEYS = ("resume", "dry_run", "max_concurrent_trials")


def plan_resources(runs: List[RunConfig], cluster: Dict[str, float], max_concurrent: Optional[int] = None,
                   total: Optional[int] = None) -> Tuple[int, bool]:
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
    return max(1, min(concurrent, total or len(runs))), use_gpu


@dataclass
class SweepResult:
    parent_run_id: str
    experiment_id: str
    rows: List[Dict[str, Any]]
    table: str
    storage_path: str
    errors: List[str]


def validate_sweep(base: Dict[str, Any], sweep: SweepConfig, runs: List[RunConfig], verify_data: bool = True
                   ) -> List[RunSummary]:
    """Validate every run (and a representative Optuna point) and scan each distinct data set once.

    Raises ConfigError with one line on the first problem; nothing on the cluster is touched.
    """
    extra = [run_for_point(base, representative_point(sweep))] if sweep.search == "optuna" else []
    summaries = [validate_run(r) for r in runs + extra]
    if verify_data:
        seen = set()
        for r in runs + extra:
            blob = repr(sorted(flatten(r.to_dict()["dataset"]).items()))
            if blob not in seen:
                seen.add(blob)
                verify_datasets(r.dataset)
    return summaries[: len(runs)]


def _fingerprint(base: Dict[str, Any], sweep: SweepConfig) -> Dict[str, Any]:
    """What must be equal for a sweep to be resumed: the base run and the sweep, flattened to dotted keys."""
    blob = {**{f"run.{k}": v for k, v in flatten(base).items()},
            **{f"sweep.{k}": v for k, v in flatten(sweep.__dict__).items() if k.split(".")[0] not in RESUME_FREE_KEYS}}
    return json.loads(json.dumps(blob, default=str))


def _write_state(folder: Path, state: Dict[str, Any]) -> None:
    from seglab.platform.checkpoint import write_text_atomic

    write_text_atomic(str(folder / SWEEP_STATE), json.dumps(state, indent=1, sort_keys=True) + "\n")


def find_resumable(root: Path, base: Dict[str, Any], sweep: SweepConfig, uri: str
                   ) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """``sweep.resume``: the sweep folder to continue and its recorded state, or None (a new sweep).

    ``true`` picks the latest folder of this sweep's name under ``root`` that did not finish;
    a path names the folder. The configuration must equal the interrupted one (except
    ``sweep.resume``/``dry_run``/``max_concurrent_trials``), and so must the MLflow store, else a
    one-line ConfigError before anything starts.
    """
    if sweep.resume is False:
        return None
    if sweep.resume is True:
        candidates = []
        for f in root.glob(f"{sweep.name}-*/{SWEEP_STATE}"):
            try:
                state = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if state.get("name") == sweep.name and state.get("status") != "FINISHED":
                candidates.append((f.stat().st_mtime, f.parent, state))
        check(bool(candidates), f"sweep.resume=true: no interrupted run of sweep '{sweep.name}' under {root} "
                                f"(a finished sweep is not resumed; drop sweep.resume to start a new one)")
        _, folder, state = max(candidates, key=lambda c: c[0])
    else:
        folder = Path(str(sweep.resume)).expanduser().resolve()
        check((folder / SWEEP_STATE).is_file(), f"sweep.resume={sweep.resume}: not a sweep folder (no {SWEEP_STATE} "
                                                f"in {folder}); give true or a folder under {root}")
        try:
            state = json.loads((folder / SWEEP_STATE).read_text())
        except ValueError as exc:
            raise ConfigError(f"sweep.resume: {folder / SWEEP_STATE} is not valid JSON ({exc})") from None
        check(state.get("status") != "FINISHED", f"sweep.resume={sweep.resume}: that sweep finished; nothing to resume")
    old, new = state.get("config") or {}, _fingerprint(base, sweep)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    check(not changed, f"sweep.resume: {folder} ran with another configuration ({', '.join(changed[:4])}"
                       f"{' ...' if len(changed) > 4 else ''} differ); rerun with the same overrides")
    check(state.get("tracking_uri") == uri, f"sweep.resume: {folder} logged to MLflow at {state.get('tracking_uri')}, "
                                            f"not {uri}; set MLFLOW_TRACKING_URI to it")
    return folder, state


def _fit(runs: List[RunConfig], ctx: Dict[str, Any], sweep: SweepConfig, storage: Path, name: str,
         concurrent: int, base: Optional[Dict[str, Any]] = None, method: methods.Method = methods.GENERIC,
         resume: bool = False) -> List[str]:
    """Run ``runs`` (plus, for Optuna, ``sweep.num_samples`` proposed runs) as one Tuner; return errors.

    ``resume``: restore the Tuner saved under ``storage/name`` when there is one (finished trials
    are kept, unfinished ones run again and their Train runs resume from their latest checkpoints)."""
    from ray import tune

    from seglab.platform.search import make_scheduler, make_searcher

    # Tune saves its experiment state (which trials finished) every few seconds: a resumed sweep
    # re-runs as little as possible (a finished trial restarted anyway trains no epoch again).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    from seglab.platform.trainer import run_trial

    fixed = [{"trial": r.to_dict(), "ctx": ctx} for r in runs]
    epochs = runs[0].trainer.epochs if runs else int(base["trainer"].get("epochs", 1))  # type: ignore[index]
    if sweep.search == "optuna" and base is not None:
        resources = ctx.get("resources") or {}
        searcher = make_searcher(sweep, fixed, lambda p: {
            "trial": method.prepare_run(run_for_point(base, p), resources).to_dict(), "ctx": ctx})
        param_space, num_samples = None, len(fixed) + sweep.num_samples
    else:
        searcher, num_samples = None, 1
        param_space = {"trial": tune.grid_search([r.to_dict() for r in runs]), "ctx": ctx}
    trainable = tune.with_resources(run_trial, {"CPU": TRIAL_DRIVER_CPU})
    path = storage / name
    if resume and tune.Tuner.can_restore(str(path)):
        print(f"sweep '{sweep.name}': resuming the trials of {path} (finished ones are kept)", flush=True)
        grid = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True).fit()
        return _errors(grid)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=make_scheduler(sweep, epochs), num_samples=num_samples,
            max_concurrent_trials=concurrent,
            trial_name_creator=lambda trial: f"trial_{trial.trial_id}",
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), verbose=0,
            failure_config=tune.FailureConfig(max_failures=sweep.max_trial_failures),
        ),
    )
    return _errors(tuner.fit())


def chosen_group(parent_run_id: str, uri: str) -> Tuple[Optional[str], int]:
    """The method configuration (``seglab.group``) with the best mean selection score
    (``best_val_miou``, the selection split's) over its search-phase seeds, and how many method
    groups competed. Never a report-split number: the choice must not see the test split."""
    scores: Dict[str, List[float]] = {}
    for r in tracking.child_runs(parent_run_id, uri):
        tags = r.data.tags
        if (tags.get("seglab.kind", "trial") != "trial" or tags.get("seglab.baseline") == "true"
                or tags.get("seglab.phase", "search") != "search" or r.info.status != "FINISHED"):
            continue
        value = r.data.metrics.get("best_val_miou")
        if value is not None and tags.get("seglab.group"):
            scores.setdefault(tags["seglab.group"], []).append(value)
    if not scores:
        return None, 0
    best = max(scores, key=lambda g: sum(scores[g]) / len(scores[g]))
    return best, len(scores)


def _confirm(planned: List[RunConfig], ctx: Dict[str, Any], sweep: SweepConfig, storage: Path, concurrent: int,
             resume: bool) -> List[str]:
    """Re-run the configuration the search chose (on the selection split) and the baseline with
    ``sweep.confirm_seeds`` fresh seeds: only these runs may back a claimed gain."""
    group, competing = chosen_group(ctx["parent_run_id"], ctx["tracking_uri"])
    if competing < 2:
        print(f"sweep '{sweep.name}': sweep.confirm_seeds={sweep.confirm_seeds}: nothing was searched "
              f"({competing} method configuration); the seeds above are the evidence, no confirmation run", flush=True)
        return []
    chosen = next((r for r in planned if r.group_key() == group), None)
    baseline = next((r for r in planned if r.baseline), None)
    if chosen is None:  # an Optuna proposal: not in the plan
        print(f"sweep '{sweep.name}': the chosen configuration was proposed by the searcher and is not "
              f"re-run; its row stays 'selected, not confirmed'", flush=True)
        return []
    confirm = with_seeds([r for r in (baseline, chosen) if r is not None], sweep.confirm_seeds, first=sweep.seeds,
                         phase="confirm")
    print(f"sweep '{sweep.name}': confirming {chosen.label} (best mean selection score of {competing} "
          f"configurations) against the baseline with {sweep.confirm_seeds} fresh seed(s)", flush=True)
    return _fit(confirm, ctx, sweep, storage, "confirm", concurrent, resume=resume)


def _errors(grid) -> List[str]:
    return [f"{r.config['trial']['label']}: {type(r.error).__name__}: {str(r.error).strip().splitlines()[-1]}"
            for r in grid if r.error is not None]


def run_sweep(base: Dict[str, Any], sweep: SweepConfig, storage_root: Optional[str] = None) -> SweepResult:
    """Validate every trial, then run them on the Ray cluster (``RAY_ADDRESS`` or a local one)."""
    import ray

    from seglab.platform import report

    runs = plan_trials(base, sweep)
    summaries = validate_sweep(base, sweep, runs)  # fails with one line before Ray is asked for anything
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
                                                           else f"{r.trainer.time_limit_s:g} s"), flush=True)
    if sweep.warm_start_epochs:
        check(not any(r.model.body_checkpoint for r in runs),
              "sweep.warm_start_epochs and model.body_checkpoint both set: every run starts from the warm start; "
              "unset model.body_checkpoint")
        print(f"  warm start: the baseline trains {sweep.warm_start_epochs} epochs first; every compared run "
              f"starts from its weights", flush=True)
    if sweep.seeds > 1:
        print(f"  each run x {sweep.seeds} seeds (trainer.seed + 0..{sweep.seeds - 1}, paired across runs)", flush=True)

    cluster = sweep.cluster or {}
    if cluster.get("tracking_uri"):  # the cluster's tracking server (experiments/conf/cluster/)
        os.environ["MLFLOW_TRACKING_URI"] = str(cluster["tracking_uri"])
    uri = tracking.tracking_uri()
    root = Path(storage_root or cluster.get("storage_path") or (tracking.home() / "runs")).resolve()
    resumed = find_resumable(root, base, sweep, uri)  # a one-line error before Ray, like validation
    experiment_id = tracking.ensure_experiment(sweep.experiment, uri)  # once, in the driver
    if not ray.is_initialized():
        from seglab.platform.raylocal import init_ray

        # RAY_ADDRESS's cluster, the one the last `ray start` recorded, or a new one on 127.0.0.1 only;
        # outside a Ray job (whose runtime env sets them), the trials' actors get the tracking
        # server's address and credentials from this driver
        env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", *tracking.CREDENTIAL_VARS) if os.environ.get(k)}
        in_job = bool(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))  # set by Ray for a submitted job's driver
        init_ray(**({"runtime_env": {"env_vars": env}} if env and not in_job else {}))
    sized = runs or [run_for_point(base, representative_point(sweep))]
    concurrent, use_gpu = plan_resources(sized, ray.cluster_resources(), sweep.max_concurrent_trials, total=total)
    t = sized[0].trainer
    wait_for_free_cpus(TRIAL_DRIVER_CPU + t.num_workers * t.cpus_per_worker)
    root.mkdir(parents=True, exist_ok=True)
    check_shared_storage(root)  # every node must see the sweep folders (checkpoints, resume)
    if resumed is not None:
        storage, state = resumed
        parent_id = state["parent_run_id"]
        tracking.client(uri).update_run(parent_id, status="RUNNING")
        state["resumed"] = int(state.get("resumed", 0)) + 1
        tracking.client(uri).set_tag(parent_id, "seglab.resumed", state["resumed"])
        print(f"sweep '{sweep.name}': resuming {storage} (MLflow parent run {parent_id}, resume {state['resumed']})",
              flush=True)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        storage = root / f"{sweep.name}-{stamp}"
        storage.mkdir(parents=True, exist_ok=True)
        parent_id = tracking.start_parent_run(
            experiment_id, f"{sweep.name}-{stamp}",
            {**flatten(base), **{f"sweep.{k}": v for k, v in flatten(sweep.__dict__).items()}, "sweep.trials": total},
            uri, tags={"seglab.method": method.name, "seglab.sweep_folder": str(storage),
                       "seglab.budget": sweep.budget, "seglab.seeds": str(sweep.seeds),
                       "seglab.confirm_seeds": str(sweep.confirm_seeds)},
        )
        state = {"name": sweep.name, "parent_run_id": parent_id, "experiment_id": experiment_id, "tracking_uri": uri,
                 "config": _fingerprint(base, sweep)}
    state["status"] = "RUNNING"
    _write_state(storage, state)
    print(f"MLflow parent run {parent_id} in experiment '{sweep.experiment}' ({uri}); "
          f"{concurrent} trial(s) at a time, {'GPU' if use_gpu else 'CPU'} workers; sweep folder {storage} "
          f"(interrupted? rerun the same command with sweep.resume=true)", flush=True)
    resources: Dict[str, Any] = {}
    stage_ctx = methods.StageContext(uri, experiment_id, parent_id, str(root / "cache"), use_gpu)
    try:
        for stage in method.stages():
            resources.update(stage.run(runs + ([run_for_point(base, representative_point(sweep))]
                                               if sweep.search == "optuna" else []), stage_ctx))
        runs = [method.prepare_run(r, resources) for r in runs]
    except BaseException:  # a failed stage fails the sweep; nothing is left RUNNING in MLflow
        tracking.mark_unfinished_children(parent_id, uri)
        tracking.set_terminated(parent_id, "FAILED", uri)
        _write_state(storage, {**state, "status": "FAILED"})
        raise
    gflops = {flops_key(r): (x.gflops, x.train_gflops) for r, x in zip(runs, summaries)
              if math.isfinite(x.gflops) and math.isfinite(x.train_gflops)}
    ctx = {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent_id, "gflops": gflops,
           "storage_path": str(storage / "train"), "use_gpu": use_gpu, "method": method.name, "resources": resources}
    errors: List[str] = []
    if sweep.warm_start_epochs:
        warm = method.prepare_run(warm_start_run(base, sweep), resources)
        # it runs alone: its workers get the cluster's CPUs (e.g. 2 torch threads instead of 1 on 2 cores)
        free = ray.cluster_resources().get("CPU", 1.0) - TRIAL_DRIVER_CPU
        share = math.floor(10 * free / warm.trainer.num_workers) / 10
        if not use_gpu and share > warm.trainer.cpus_per_worker:
            warm.trainer.cpus_per_worker = share
        errors += _fit([warm], ctx, sweep, storage, "warm-start", 1, resume=resumed is not None)
        weights = Path(ctx["storage_path"]) / warm.key() / "best.pt"
        if not weights.is_file():
            tracking.mark_unfinished_children(parent_id, uri, ctx["storage_path"])
            tracking.set_terminated(parent_id, "FAILED", uri)
            _write_state(storage, {**state, "status": "FAILED"})
            raise RuntimeError(f"sweep '{sweep.name}': the warm-start run left no checkpoint ({weights}): "
                               + "; ".join(errors))
        print(f"sweep '{sweep.name}': every compared run starts from the warm start's weights ({weights})", flush=True)
        runs = [start_from(r, str(weights)) for r in runs]
    planned = runs  # one per configuration, before seeds: what a confirmation re-runs
    first, later = split_phases(with_seeds(runs, sweep.seeds))
    errors += _fit(first, ctx, sweep, storage, "tune", concurrent, base if sweep.search == "optuna" else None,
                   method, resume=resumed is not None)
    if later:
        resolved = []
        for r in later:  # each starts from the baseline run of its own seed (seeds stay paired)
            baseline = next(b for b in first if b.baseline and b.trainer.seed == r.trainer.seed)
            best = Path(ctx["storage_path"]) / baseline.key() / "best.pt"
            if not best.is_file():
                errors.append(f"{r.label}: skipped: the baseline run left no checkpoint ({best})")
                continue
            r2 = RunConfig.from_dict(set_dotted(r.to_dict(), "model.body_checkpoint", str(best)))
            r2.label = r.label
            resolved.append(r2)
        if resolved:
            print(f"sweep '{sweep.name}': {len(resolved)} run(s) start from the baseline's weights", flush=True)
            errors += _fit(resolved, ctx, sweep, storage, "tune-from-baseline", min(concurrent, len(resolved)),
                           resume=resumed is not None)
    if sweep.confirm_seeds:
        errors += _confirm(planned, ctx, sweep, storage, concurrent, resume=resumed is not None)
    tracking.mark_unfinished_children(parent_id, uri, ctx["storage_path"])
    rows = report.collect(parent_id, uri)
    table = "\n\n".join(method.tables(rows, sweep) + [report.format_table(rows, metric=sweep.metric)])
    report.log_to_parent(parent_id, rows, table, uri)
    from seglab.platform import ui

    print(ui.ui_link_line(parent_id, uri), flush=True)  # the parent run, the grouped view, the compare view
    tracking.set_terminated(parent_id, "FAILED" if errors else "FINISHED", uri)
    _write_state(storage, {**state, "status": "FAILED" if errors else "FINISHED"})
    return SweepResult(parent_id, experiment_id, rows, table, str(storage), errors)


def check_shared_storage(root: Path, timeout_s: float = 120.0) -> None:
    """On a cluster of several nodes: every node must read and write ``root`` (Ray Train keeps
    checkpoints there, trials resume from it on any node). One task per node reads a token file
    the driver wrote and writes its own; a node that cannot fails the sweep with one line naming
    the path and the node, before any trial starts. A single node always passes."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return
    token = uuid.uuid4().hex
    probe = root / f".storage-check-{token}"
    probe.write_text(token)

    @ray.remote(num_cpus=0, max_retries=0)
    def look(path: str, expected: str, node: str) -> bool:
        try:
            if Path(path).read_text() != expected:
                return False
            Path(f"{path}.{node}").write_text(expected)
            return True
        except OSError:
            return False

    try:
        refs = [look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(probe), token, n["NodeID"][:12]) for n in nodes]
        seen = ray.get(refs, timeout=timeout_s)
        bad = [f"{n['NodeManagerAddress']} ({n['NodeID'][:12]})" for n, ok in zip(nodes, seen)
               if not (ok and _holds(Path(f"{probe}.{n['NodeID'][:12]}"), token))]
    finally:
        for f in root.glob(f"{probe.name}*"):
            f.unlink(missing_ok=True)
    check(not bad, f"storage path {root} is not shared: node(s) {', '.join(bad)} cannot read or write it; mount one "
                   f"shared file system (EFS, Filestore, NFS, GCS FUSE) at the same path on every node and set "
                   f"cluster.storage_path to it (infra/README.md)")


def _holds(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text
    except OSError:
        return False


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
