"""Sweeps: what a comparison runs, checked up front, then run as Ray Tune trials of Ray Train runs.

* :mod:`.config` -- :class:`SweepConfig` (the ``sweep`` config group) and its one-line checks;
* :mod:`.plan` -- the runs a sweep expands to: baseline + method (grid / random / Optuna, variants, model
  lists), seeds, budgets, warm start;
* :mod:`.validate` -- every run built on the meta device and counted (:class:`RunSummary`) before Ray is asked;
* :mod:`.state` -- the sweep folder's ``sweep.json`` and ``sweep.resume``;
* :mod:`.search` -- Ray Tune glue: Optuna proposals after the fixed runs, ASHA that spares the baseline;
* :mod:`.phases` -- warm start, search, runs from the baseline, confirmation (one Tuner each);
* :mod:`.trial` -- the Tune trial function: one Ray Train ``TorchTrainer`` run and its MLflow child run;
* :mod:`.runner` -- :func:`run_sweep`, the whole sweep from validation to the comparison.
"""
from seglab.platform.sweep.config import SweepConfig
from seglab.platform.sweep.plan import plan_trials
from seglab.platform.sweep.runner import SweepResult, run_sweep
from seglab.platform.sweep.validate import RunSummary, validate_run, validate_sweep

__all__ = ["SweepConfig", "plan_trials", "SweepResult", "run_sweep", "RunSummary", "validate_run", "validate_sweep"]
