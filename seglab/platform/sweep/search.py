"""Ray Tune glue for searched sweeps: Optuna proposes the method's points, ASHA stops weak trials.

Two small wrappers keep the sweep a fair comparison:

* :class:`FixedThenSearch` hands out the fixed runs first (the baseline), then asks the inner
  searcher (Optuna's TPE via ``ray.tune.search.optuna.OptunaSearch``) for points and turns each
  into a full run config. The fixed runs' results are not fed to Optuna (they are not points of
  its space).
* :class:`BaselineProtectingASHA` is Tune's ASHA that never stops a baseline trial (the
  baseline must train the full schedule: it is the reference every row is compared with) nor a
  confirm-phase one, measures time in each run's own progress through its schedule, and
  that stops the others *gracefully*: instead of having Tune kill the trial's actor (which
  cannot interrupt a running ``TorchTrainer.fit()`` and would leave its workers holding their
  CPUs), it writes the run's stop marker (:func:`seglab.platform.train.hooks.stop_marker`); the
  training loop sees it before the next epoch, closes its MLflow run with the tag
  ``seglab.stopped_early=true`` and returns, so the trial ends normally.

The trial function always receives ``{"trial": <run dict>, "ctx": <sweep context>}``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler
from ray.tune.search import Searcher

from seglab.platform.sweep.config import SweepConfig

#: What ASHA's rungs are measured in: each run's own progress through its schedule (epoch / its epochs,
#: or its training seconds / its time budget), so a run the budget gave more epochs is compared with the
#: others at the same fraction of its schedule and never cut before its lr schedule ends.
PROGRESS = "progress"


def optuna_space(space: Dict[str, Any]) -> Dict[str, Any]:
    """Sweep dimensions -> Tune domains (a list -> choice, a number -> choice of one, a distribution)."""
    from ray import tune

    out = {}
    for name, v in space.items():
        if isinstance(v, dict):
            dist, (lo, hi) = next(iter(v.items()))
            out[name] = tune.uniform(lo, hi) if dist == "uniform" else tune.loguniform(lo, hi)
        elif isinstance(v, (list, tuple)):
            out[name] = tune.choice(list(v))
        else:
            out[name] = tune.choice([v])
    return out


class FixedThenSearch(Searcher):
    """Suggest ``fixed`` configs first, then ``make_config(inner.suggest(...))`` for the rest."""

    def __init__(self, inner: Searcher, fixed: List[Dict[str, Any]],
                 make_config: Callable[[Dict[str, Any]], Dict[str, Any]], metric: str, mode: str = "max") -> None:
        super().__init__(metric=metric, mode=mode)
        self.inner = inner
        self.pending = list(fixed)
        self.make_config = make_config
        self.fixed_ids: set = set()

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: Dict, **spec: Any) -> bool:
        return True  # the inner searcher was given its space, metric and mode

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        if self.pending:
            self.fixed_ids.add(trial_id)
            return self.pending.pop(0)
        point = self.inner.suggest(trial_id)
        if point is None or point == Searcher.FINISHED:
            return point
        return self.make_config({k: (round(v, 4) if isinstance(v, float) else v) for k, v in point.items()})

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        if trial_id not in self.fixed_ids and self.metric in result:
            self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        if trial_id not in self.fixed_ids:
            self.inner.on_trial_complete(trial_id, result=result, error=error)


class BaselineProtectingASHA(AsyncHyperBandScheduler):
    """ASHA (asynchronous successive halving) over :data:`PROGRESS` that lets baseline and confirm-phase
    trials run to the end (a planned comparison trains its full schedule) and stops the others through
    their stop marker (see the module docstring)."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: Dict) -> str:
        run = trial.config.get("trial") or {}
        if run.get("baseline") or run.get("phase", "search") != "search":
            return TrialScheduler.CONTINUE
        if float(result.get(self._time_attr, 0.0)) >= 1.0:  # its schedule is over: nothing to stop
            return TrialScheduler.CONTINUE
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP:
            from seglab.platform.config import RunConfig
            from seglab.platform.train.hooks import stop_marker

            marker = stop_marker(trial.config["ctx"]["storage_path"], RunConfig.from_dict(run).key())
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"stopped by ASHA at {self._time_attr}={result.get(self._time_attr)}: "
                              f"{self._metric}={result.get(self._metric)}\n")
            return TrialScheduler.CONTINUE  # the trial stops itself before its next epoch
        return decision


def make_searcher(sweep: SweepConfig, fixed: List[Dict[str, Any]],
                  make_config: Callable[[Dict[str, Any]], Dict[str, Any]]) -> FixedThenSearch:
    """Optuna's TPE (seeded with ``sweep.seed``) over ``sweep.space``, optimising ``sweep.metric`` (``sweep.mode``)."""
    from ray.tune.search.optuna import OptunaSearch

    inner = OptunaSearch(space=optuna_space(sweep.space), metric=sweep.metric, mode=sweep.mode, seed=sweep.seed)
    return FixedThenSearch(inner, fixed, make_config, metric=sweep.metric, mode=sweep.mode)


def make_scheduler(sweep: SweepConfig, epochs: int) -> Optional[TrialScheduler]:
    """``sweep.scheduler=asha`` -> :class:`BaselineProtectingASHA`, else ``None``.

    Its time is each run's :data:`PROGRESS` (0..1 of its own schedule); ``max_t`` = 1 and the first rung
    at ``sweep.asha.grace_period`` epochs of the planned schedule (``epochs``, before any budget scaling),
    i.e. at progress ``grace_period / epochs``."""
    if sweep.scheduler != "asha":
        return None
    grace = min(int(sweep.asha.get("grace_period", 1)), epochs) / max(epochs, 1)
    return BaselineProtectingASHA(
        time_attr=PROGRESS, metric=sweep.metric, mode=sweep.mode, max_t=1.0,
        grace_period=grace * (1 - 1e-9),  # a run at exactly the rung's progress reaches it despite rounding
        reduction_factor=float(sweep.asha.get("reduction_factor", 2)),
    )
