"""The phases of a sweep, each one Ray Tune ``Tuner`` of Ray Train runs.

1. ``warm-start`` (``sweep.warm_start_epochs``): the baseline alone; every compared run starts from it.
2. ``tune`` (the search): the planned runs x seeds, or the baseline plus Optuna's proposals. The only
   phase with an early-stopping scheduler (``sweep.scheduler=asha``).
3. ``tune-from-baseline``: runs whose ``model.body_checkpoint`` is ``@baseline``, each from the baseline
   run of its own seed (seeds stay paired).
4. ``confirm`` (``sweep.confirm_seeds``): the configuration the search chose on the selection split and
   the baseline, re-run with fresh seeds. Only these runs may back a claimed gain.

Every phase but the search trains the full schedule: a confirmation (or any planned comparison) that
ASHA cut at a rung would be paired with a full-length baseline run.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from seglab.platform import methods, tracking
from seglab.platform.cluster.resources import TRIAL_DRIVER_CPU
from seglab.platform.config import RunConfig, TrainerConfig, set_dotted
from seglab.platform.sweep.config import INPROCESS, SweepConfig
from seglab.platform.sweep.plan import run_for_point, split_phases, start_from, warm_start_run, with_seeds


@dataclass
class SweepState:
    """What the phases of one sweep share: its config, base run, method, the trials' context, its
    folder, how many trials run at once, whether it resumes, and the errors so far."""

    sweep: SweepConfig
    base: Dict[str, Any]
    method: methods.Method
    ctx: Dict[str, Any]
    storage: Path
    concurrent: int
    resume: bool = False
    errors: List[str] = field(default_factory=list)

    def best_checkpoint(self, run: RunConfig) -> Path:
        """Where ``run``'s trial keeps the checkpoint chosen on the selection split."""
        return Path(self.ctx["storage_path"]) / run.key() / "best.pt"


def tune_config(state: SweepState, runs: List[RunConfig], *, search: bool = False, concurrent: Optional[int] = None):
    """``(param_space, TuneConfig)`` of a phase over ``runs``: only the search phase (``search=True``)
    gets the sweep's scheduler (ASHA) and, for ``sweep.search=optuna``, the searcher's proposals; every
    other phase trains its runs' full schedules."""
    from ray import tune

    from seglab.platform.sweep.search import make_scheduler, make_searcher

    sweep, ctx = state.sweep, state.ctx
    fixed = [{"trial": r.to_dict(), "ctx": ctx} for r in runs]
    if search and sweep.search == "optuna":
        resources = ctx.get("resources") or {}
        searcher = make_searcher(sweep, fixed, lambda p: {
            "trial": state.method.prepare_run(run_for_point(state.base, p), resources).to_dict(), "ctx": ctx})
        param_space, num_samples = None, len(fixed) + sweep.num_samples
    else:
        searcher, num_samples = None, 1
        param_space = {"trial": tune.grid_search([r.to_dict() for r in runs]), "ctx": ctx}
    return param_space, tune.TuneConfig(
        search_alg=searcher, scheduler=make_scheduler(sweep, planned_epochs(state)) if search else None,
        num_samples=num_samples, max_concurrent_trials=concurrent or state.concurrent,
        trial_name_creator=lambda trial: f"trial_{trial.trial_id}",
        trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}")


def fit_phase(state: SweepState, runs: List[RunConfig], name: str, *, search: bool = False,
              concurrent: Optional[int] = None) -> List[str]:
    """Run ``runs`` as one Tuner named ``name`` (:func:`tune_config`); return the errors. With the
    in-process executor (``cluster=inprocess``), one after another in this process instead.

    With ``state.resume`` the Tuner saved under ``storage/name`` is restored when there is one
    (finished trials are kept, unfinished ones run again and their Train runs resume from their
    latest checkpoints)."""
    if state.ctx.get("executor") == INPROCESS:
        from seglab.platform.sweep.inprocess import fit_inprocess

        return fit_inprocess(state, runs, name, search=search)
    from ray import tune

    from seglab.platform.sweep.trial import run_trial

    sweep = state.sweep
    # Tune saves its experiment state (which trials finished) every few seconds: a resumed sweep
    # re-runs as little as possible (a finished trial restarted anyway trains no epoch again).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    trainable = tune.with_resources(run_trial, {"CPU": TRIAL_DRIVER_CPU})
    path = state.storage / name
    if state.resume and tune.Tuner.can_restore(str(path)):
        print(f"sweep '{sweep.name}': resuming the trials of {path} (finished ones are kept)", flush=True)
        return errors_of(tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True).fit())
    param_space, config = tune_config(state, runs, search=search, concurrent=concurrent)
    tuner = tune.Tuner(trainable, param_space=param_space, tune_config=config,
                       run_config=tune.RunConfig(name=name, storage_path=str(state.storage), verbose=0,
                                                 failure_config=tune.FailureConfig(max_failures=sweep.max_trial_failures)))
    return errors_of(tuner.fit())


def planned_epochs(state: SweepState) -> int:
    """The epochs of the planned schedule (the base run's, before a budget scales any run's)."""
    return TrainerConfig.from_dict(dict(state.base.get("trainer") or {})).epochs


def errors_of(grid) -> List[str]:
    """One line per failed trial of a Tune result grid: its label and the last line of its error."""
    return [f"{r.config['trial']['label']}: {type(r.error).__name__}: {str(r.error).strip().splitlines()[-1]}"
            for r in grid if r.error is not None]


def warm_start(state: SweepState, runs: List[RunConfig], cluster_cpus: float, use_gpu: bool) -> List[RunConfig]:
    """Train the warm start alone (its workers get the cluster's CPUs) and return ``runs`` starting
    from its selected checkpoint; raise RuntimeError when it left none."""
    sweep = state.sweep
    warm = state.method.prepare_run(warm_start_run(state.base, sweep), state.ctx.get("resources") or {})
    share = math.floor(10 * (cluster_cpus - TRIAL_DRIVER_CPU) / warm.trainer.num_workers) / 10
    if not use_gpu and share > warm.trainer.cpus_per_worker:  # e.g. 2 torch threads instead of 1 on 2 cores
        warm.trainer.cpus_per_worker = share
    state.errors += fit_phase(state, [warm], "warm-start", concurrent=1)
    weights = state.best_checkpoint(warm)
    if not weights.is_file():
        raise RuntimeError(f"sweep '{sweep.name}': the warm-start run left no checkpoint ({weights}): "
                           + "; ".join(state.errors))
    print(f"sweep '{sweep.name}': every compared run starts from the warm start's weights ({weights})", flush=True)
    return [start_from(r, str(weights)) for r in runs]


def search_and_from_baseline(state: SweepState, planned: List[RunConfig]) -> None:
    """The search phase over ``planned`` x seeds, then the runs that start from the baseline's weights."""
    sweep = state.sweep
    first, later = split_phases(with_seeds(planned, sweep.seeds))
    state.errors += fit_phase(state, first, "tune", search=True)
    resolved = []
    for r in later:  # each starts from the baseline run of its own seed (seeds stay paired)
        baseline = next(b for b in first if b.baseline and b.trainer.seed == r.trainer.seed)
        best = state.best_checkpoint(baseline)
        if not best.is_file():
            state.errors.append(f"{r.label}: skipped: the baseline run left no checkpoint ({best})")
            continue
        r2 = RunConfig.from_dict(set_dotted(r.to_dict(), "model.body_checkpoint", str(best)))
        r2.label = r.label
        resolved.append(r2)
    if resolved:
        print(f"sweep '{sweep.name}': {len(resolved)} run(s) start from the baseline's weights", flush=True)
        state.errors += fit_phase(state, resolved, "tune-from-baseline", concurrent=min(state.concurrent, len(resolved)))


def chosen_group(parent_run_id: str, uri: str, mode: str = "max") -> Tuple[Optional[str], int]:
    """The method configuration (``seglab.group``) with the best mean selection score over its
    search-phase seeds (the lowest for ``mode="min"``), and how many method groups competed. Never a report-split number: the
    choice must not see the test split. The score is ``selection_score`` (the sweep's selection
    metric, best over epochs); runs from before it existed fall back to ``best_val_miou``."""
    scores: Dict[str, List[float]] = {}
    for r in tracking.child_runs(parent_run_id, uri):
        tags = r.data.tags
        if (tags.get("seglab.kind", "trial") != "trial" or tags.get("seglab.baseline") == "true"
                or tags.get("seglab.phase", "search") != "search" or r.info.status != "FINISHED"):
            continue
        value = r.data.metrics.get("selection_score", r.data.metrics.get("best_val_miou"))
        if value is not None and tags.get("seglab.group"):
            scores.setdefault(tags["seglab.group"], []).append(value)
    if not scores:
        return None, 0
    sign = -1.0 if mode == "min" else 1.0
    best = max(scores, key=lambda g: sign * sum(scores[g]) / len(scores[g]))
    return best, len(scores)


def confirm(state: SweepState, planned: List[RunConfig]) -> None:
    """Re-run the configuration the search chose (on the selection split) and the baseline with
    ``sweep.confirm_seeds`` fresh seeds, training the full schedule (no scheduler)."""
    sweep, ctx = state.sweep, state.ctx
    group, competing = chosen_group(ctx["parent_run_id"], ctx["tracking_uri"], sweep.mode)
    if competing < 2:
        print(f"sweep '{sweep.name}': sweep.confirm_seeds={sweep.confirm_seeds}: nothing was searched "
              f"({competing} method configuration); the seeds above are the evidence, no confirmation run", flush=True)
        return
    chosen = next((r for r in planned if r.group_key() == group), None)
    baseline = next((r for r in planned if r.baseline), None)
    if chosen is None:  # an Optuna proposal: not in the plan
        print(f"sweep '{sweep.name}': the chosen configuration was proposed by the searcher and is not "
              f"re-run; its row stays 'selected, not confirmed'", flush=True)
        return
    runs = with_seeds([r for r in (baseline, chosen) if r is not None], sweep.confirm_seeds, first=sweep.seeds,
                      phase="confirm")
    print(f"sweep '{sweep.name}': confirming {chosen.label} (best mean selection score of {competing} "
          f"configurations) against the baseline with {sweep.confirm_seeds} fresh seed(s)", flush=True)
    state.errors += fit_phase(state, runs, "confirm")
