"""Ray Tune glue for searched sweeps: Optuna proposes the method's points, ASHA stops weak trials.

Two small wrappers keep the sweep a fair comparison:

* :class:`FixedThenSearch` hands out the fixed runs first (the baseline), then asks the inner
  searcher (Optuna's TPE via ``ray.tune.search.optuna.OptunaSearch``) for points and turns each
  into a full run config. The fixed runs' results are not fed to Optuna (they are not points of
  its space).
* :class:`BaselineProtectingASHA` is Tune's ASHA that never stops a baseline trial (the
  baseline must train the full schedule: it is the reference every row is compared with), and
  that stops the others *gracefully*: instead of having Tune kill the trial's actor (which
  cannot interrupt a running ``TorchTrainer.fit()`` and would leave its workers holding their
  CPUs), it writes the run's stop marker (:func:`seglab.platform.train_loop.stop_marker`); the
  training loop sees it before the next epoch, closes its MLflow run with the tag
  ``seglab.stopped_early=true`` and returns, so the trial ends normally.

The trial function always receives ``{"trial": <run dict>, "ctx": <sweep context>}``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler
from ray.tune.search import Searcher

from seglab.platform.plan import SweepConfig


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
    """ASHA (asynchronous successive halving) that lets baseline trials run to the end and stops
    the others through their stop marker (see the module docstring)."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: Dict) -> str:
        run = trial.config.get("trial") or {}
        if run.get("baseline"):
            return TrialScheduler.CONTINUE
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP:
            from seglab.platform.config import RunConfig
            from seglab.platform.train_loop import stop_marker

            marker = stop_marker(trial.config["ctx"]["storage_path"], RunConfig.from_dict(run).key())
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"stopped by ASHA after {self._time_attr}={result.get(self._time_attr)}: "
                              f"{self._metric}={result.get(self._metric)}\n")
            return TrialScheduler.CONTINUE  # the trial stops itself before its next epoch
        return decision


def make_searcher(sweep: SweepConfig, fixed: List[Dict[str, Any]],
                  make_config: Callable[[Dict[str, Any]], Dict[str, Any]]) -> FixedThenSearch:
    """Optuna's TPE (seeded with ``sweep.seed``) over ``sweep.space``, maximising ``sweep.metric``."""
    from ray.tune.search.optuna import OptunaSearch

    inner = OptunaSearch(space=optuna_space(sweep.space), metric=sweep.metric, mode="max", seed=sweep.seed)
    return FixedThenSearch(inner, fixed, make_config, metric=sweep.metric)


def make_scheduler(sweep: SweepConfig, max_epochs: int) -> Optional[TrialScheduler]:
    """``sweep.scheduler=asha`` -> :class:`BaselineProtectingASHA` over epochs, else ``None``."""
    if sweep.scheduler != "asha":
        return None
    return BaselineProtectingASHA(
        time_attr="training_iteration", metric=sweep.metric, mode="max", max_t=max_epochs,
        grace_period=min(int(sweep.asha.get("grace_period", 1)), max_epochs),
        reduction_factor=float(sweep.asha.get("reduction_factor", 2)),
    )
