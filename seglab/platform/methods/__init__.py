"""Methods as plug-ins: a registry of :class:`~seglab.platform.methods.base.Method` objects.

>>> from seglab.platform import methods
>>> methods.for_run(run).name          # 'ovenet', 'semeda', 'phgmm' or 'generic'
>>> methods.search_keys()              # every sweep dimension any method declares

A new method adds one file here (its :class:`Method` subclass, registered with
:func:`register_method`), its core model/loss files, its configs and its entry script; nothing in
the trainer, sweep or report changes. A method returns data (metrics, pictures, :class:`Table`
objects); it never imports the report, which renders what methods return.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from seglab.errors import ConfigError
from seglab.platform.config import RunConfig
from seglab.platform.evaluation import EvalContext, Evaluator, SegmentationEvaluator
from seglab.platform.methods.base import Column, Method, MethodSet, SearchKey, Stage, StageContext, Table
from seglab.registry import Registry

METHODS = Registry("method")
GENERIC = Method()


def register_method(method: Method) -> Method:
    """Register a method instance under ``method.name``."""
    METHODS.register(method.name)(method)
    return method


def get(name: Optional[str]) -> Method:
    """The method registered as ``name``; the generic one for None / "" / "generic" / an unknown name
    (an old store may name a method this version does not know: its rows still show)."""
    if not name or name == GENERIC.name or name not in METHODS:
        return GENERIC
    return METHODS.get(name)


def all_methods() -> List[Method]:
    return [METHODS.get(n) for n in METHODS.list()]


def for_run(run: RunConfig) -> Method:
    """The method a run belongs to: the one naming its loss, else its model, else the generic one."""
    for m in all_methods():
        if run.loss.name in m.loss_names:
            return m
    for m in all_methods():
        if m.owns(run):
            return m
    return GENERIC


def for_sweep(base: Dict[str, Any], runs: List[RunConfig]) -> Method:
    """A sweep's method: the one owning its base run, else the first run a method owns."""
    try:
        method = for_run(RunConfig.from_dict(base))
    except ConfigError:  # a base without a model or loss group (a models-only sweep): look at the runs
        method = GENERIC
    if method is GENERIC:
        method = next((m for m in map(for_run, runs) if m is not GENERIC), GENERIC)
    return method


def for_trial(run: RunConfig, sweep_method: Optional[str] = None) -> MethodSet:
    """The methods that apply to a trial: its own and its sweep's."""
    own = for_run(run)
    sweep = get(sweep_method) if sweep_method else own
    return MethodSet([own] + ([sweep] if sweep is not own else []))


def evaluators_for(ctx: EvalContext, method_set: MethodSet) -> List[Evaluator]:
    """The evaluators of one evaluation of a run: the confusion matrix of its deployed map, then what
    its methods add (the one list the per-epoch validation and the report split share)."""
    return [SegmentationEvaluator(ctx), *method_set.evaluators(ctx)]


def search_keys() -> Dict[str, SearchKey]:
    """Every sweep dimension (``sweep.<name>``) declared by a registered method."""
    keys: Dict[str, SearchKey] = {}
    for m in all_methods():
        keys.update(m.search_keys)
    return keys


def describe(run: RunConfig) -> str:
    """A short human label of a run, written by its method."""
    return for_run(run).describe(run)


def tag(run: RunConfig) -> str:
    """The ``seglab.method`` tag of a run's MLflow run."""
    return for_run(run).tag(run)


# The built-in methods register themselves (imported last: they use the names above).
from seglab.platform.methods import ovenet as _ovenet  # noqa: E402,F401
from seglab.platform.methods import semeda as _semeda  # noqa: E402,F401
from seglab.platform.methods import phgmm as _phgmm  # noqa: E402,F401

__all__ = ["METHODS", "GENERIC", "Column", "Method", "MethodSet", "SearchKey", "Stage", "StageContext", "Table",
           "register_method", "get", "all_methods", "for_run", "for_sweep", "for_trial", "evaluators_for",
           "search_keys", "describe", "tag"]
