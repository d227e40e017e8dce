"""What a sweep runs: the list of runs a :class:`~seglab.platform.sweep.config.SweepConfig` expands to.

A sweep is always a comparison: the base network's run (the *baseline*, same data and schedule)
is planned next to the method's runs. Four shapes:

* a search over the dimensions the methods declare (:func:`seglab.platform.methods.search_keys`:
  OVeNet's ``kappa`` / ``lam`` / ``tau``, SEMEDA's ``lambda1..3``, PHGMM's ``k`` ...): ``grid`` (every combination),
  ``random`` (``num_samples`` seeded draws) or ``optuna`` (Optuna's TPE proposes ``num_samples``
  points while the sweep runs; :func:`plan_trials` then returns only the fixed runs, see
  :mod:`seglab.platform.sweep.search`);
* ``variants``: a list of named overrides of the base run (an ablation table, one row each);
* ``models``: one run per model with the same loss (the baseline zoo).

Runs whose ``model.body_checkpoint`` is :data:`~seglab.platform.sweep.config.FROM_BASELINE` start
from the baseline's trained weights; the sweep runs them after the baseline finishes (:func:`split_phases`).
Then seeds (:func:`with_seeds`), the budget (:func:`apply_budget`) and the warm start
(:func:`warm_start_run`, :func:`start_from`).
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from seglab.errors import check
from seglab.platform import methods
from seglab.platform.build import report_split_name, selection_is_report, selection_split_name
from seglab.platform.config import RunConfig, set_dotted
from seglab.platform.methods import describe
from seglab.platform.sweep.config import FROM_BASELINE, SweepConfig

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


def baseline_run(base: Dict[str, Any], sweep: SweepConfig) -> RunConfig:
    """The base network's run: ``sweep.baseline_model`` (null: the base run's model with all its
    options) + ``sweep.baseline_loss``, same data and schedule."""
    b = copy.deepcopy(base)
    if sweep.baseline_model is not None:
        b["model"] = {"name": sweep.baseline_model, "pretrained": base.get("model", {}).get("pretrained")}
    loss = sweep.baseline_loss
    b["loss"] = {"name": loss} if isinstance(loss, str) else dict(loss)
    b["baseline"] = True
    b["label"] = ""
    run = RunConfig.from_dict(b)
    run.label = describe(run)
    return run


def run_for_point(base: Dict[str, Any], point: Dict[str, Any]) -> RunConfig:
    """The method's run at a search point (e.g. ``{kappa: .., lam: .., tau: ..}``)."""
    d = copy.deepcopy(base)
    keys = methods.search_keys()
    for name, value in point.items():
        spec = keys[name]
        d = set_dotted(d, spec.key, int(round(value)) if spec.integer else value)
    d["baseline"] = False
    run = RunConfig.from_dict(d)
    run.label = describe(run)
    return run


def with_selection(base: Dict[str, Any], sweep: SweepConfig) -> Dict[str, Any]:
    """``base`` whose runs select their checkpoint on the sweep's selection metric (``sweep.metric``,
    ``sweep.mode`` -> ``trainer.selection_metric``, ``trainer.selection_mode``): one metric chooses
    everything."""
    trainer = {**(base.get("trainer") or {}), "selection_metric": sweep.metric, "selection_mode": sweep.mode}
    return {**base, "trainer": trainer}


def plan_trials(base: Dict[str, Any], sweep: SweepConfig) -> List[RunConfig]:
    """The runs of a sweep: the baseline (if included) first, then the method's runs, each selecting
    its checkpoint on the sweep's selection metric (:func:`with_selection`).

    For ``search=optuna`` the method's runs are proposed while the sweep runs, so this returns
    the baseline only; validate the method with ``run_for_point(base, representative_point(sweep))``.
    """
    base = with_selection(base, sweep)
    if sweep.models is not None:
        return _plan_models(base, sweep.models)
    runs: List[RunConfig] = [baseline_run(base, sweep)] if sweep.include_baseline else []
    if sweep.variants is not None:
        runs += _plan_variants(base, sweep.variants)
    elif sweep.search == "grid":
        runs += [run_for_point(base, p) for p in _grid(sweep.space)]
    elif sweep.search == "random":
        runs += [run_for_point(base, p) for p in _sample(sweep.space, sweep.num_samples, sweep.seed)]
    keys = [r.key() for r in runs]
    check(len(set(keys)) == len(keys), "the sweep contains the same run twice; check the search space")
    if any(r.model.body_checkpoint == FROM_BASELINE for r in runs):
        check(sweep.include_baseline, f"model.body_checkpoint={FROM_BASELINE} needs the sweep's baseline run; "
                                      "set sweep.include_baseline=true")
    return runs


def representative_point(sweep: SweepConfig) -> Dict[str, Any]:
    """A point of an Optuna space (lowest value of each dimension), to validate its runs up front."""
    point = {}
    for name, v in sweep.space.items():
        if isinstance(v, dict):
            point[name] = float(next(iter(v.values()))[0])
        elif isinstance(v, (list, tuple)):
            point[name] = v[0]
        else:
            point[name] = v
    return point


def _plan_variants(base: Dict[str, Any], variants: List[Dict[str, Any]]) -> List[RunConfig]:
    """One run per variant: its model/loss options override the base run's; a variant naming
    another model or loss starts from that one's defaults instead (e.g. a CE or Sobel baseline row
    in a SEMEDA sweep), keeping ``model.pretrained``."""
    runs = []
    for v in variants:
        d = copy.deepcopy(base)
        for group in ("model", "loss"):
            override = dict(v.get(group) or {})
            inherited = d.get(group, {})
            if "name" in override and override["name"] != inherited.get("name"):
                inherited = {"pretrained": inherited.get("pretrained")} if group == "model" else {}
            d[group] = {**inherited, **override}
        d["baseline"] = False
        d["label"] = v["label"]
        runs.append(RunConfig.from_dict(d))
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


def split_phases(runs: List[RunConfig]) -> Tuple[List[RunConfig], List[RunConfig]]:
    """(runs to start now, runs that need the baseline's trained weights: started after it)."""
    later = [r for r in runs if r.model.body_checkpoint == FROM_BASELINE]
    return [r for r in runs if r.model.body_checkpoint != FROM_BASELINE], later


def with_seeds(runs: List[RunConfig], seeds: int, first: int = 0, phase: Optional[str] = None) -> List[RunConfig]:
    """Every run repeated with seeds ``trainer.seed + first + 0 .. seeds-1`` (model init, data order,
    augmentation). The offsets are the same for every run, so the method's seed s and the
    baseline's seed s pair up. Labels gain ``seed=<s>`` when there is more than one."""
    out = []
    for run in runs:
        for i in range(seeds):
            r = RunConfig.from_dict(copy.deepcopy(run.to_dict()))
            r.trainer.seed = run.trainer.seed + first + i
            if phase is not None:
                r.phase = phase
            r.label = run.label if seeds == 1 and first == 0 else f"{run.label} seed={r.trainer.seed}"
            out.append(r)
    return out


def apply_budget(runs: List[RunConfig], summaries: List[Any], sweep: SweepConfig) -> List[RunConfig]:
    """Make the runs equal in what ``sweep.budget`` names: ``schedule`` leaves them as planned;
    ``flops`` scales each run's epochs by the baseline's training-forward GFLOPs over its own
    (``RunSummary.train_gflops``, one per run in ``summaries``: a model's training-only modules
    included; rounded, >= 1), so every run spends about the baseline's training compute;
    ``time`` gives every run ``trainer.time_limit_s = sweep.time_budget_s`` (training seconds; the
    lr schedule runs over them)."""
    if sweep.budget == "schedule":
        return runs
    out = []
    gflops = [s.train_gflops for s in summaries]
    reference = next((g for r, g in zip(runs, gflops) if r.baseline), gflops[0] if gflops else None)
    for run, g in zip(runs, gflops):
        r = RunConfig.from_dict(copy.deepcopy(run.to_dict()))
        r.label = run.label
        if sweep.budget == "flops":
            check(reference and g and math.isfinite(g) and math.isfinite(reference),
                  "sweep.budget=flops needs every run's GFLOPs; the FLOP count failed for one of them")
            r.trainer.epochs = max(1, int(round(run.trainer.epochs * reference / g)))
        else:
            r.trainer.time_limit_s = float(sweep.time_budget_s)
        out.append(r)
    return out


def warm_start_run(base: Dict[str, Any], sweep: SweepConfig) -> RunConfig:
    """The baseline trained ``sweep.warm_start_epochs`` epochs: the weights every compared run starts from."""
    run = baseline_run(base, sweep)
    run.trainer.epochs = sweep.warm_start_epochs
    run.phase = "warm_start"
    run.baseline = False
    run.label = f"warm start ({run.label}, {sweep.warm_start_epochs} epochs)"
    return run


def start_from(run: RunConfig, weights: str) -> RunConfig:
    """``run`` initialised from a seglab checkpoint, where its method says (:attr:`Method.warm_start_key`:
    ``model.pretrained`` by default, loading tensors whose names match; OVeNet's body and main head
    through ``model.body_checkpoint``)."""
    key = methods.for_run(run).warm_start_key
    r = RunConfig.from_dict(set_dotted(run.to_dict(), key, weights))
    r.label = run.label
    return r


def describe_protocol(sweep: SweepConfig, runs: List[RunConfig]) -> str:
    """What the comparison will mean, in one line per point (printed by a dry run)."""
    lines = [f"budget: {sweep.budget}" + {"schedule": " (every run trains the same epochs)",
                                           "flops": " (epochs scaled so every run spends the baseline's training FLOPs)",
                                           "time": f" ({sweep.time_budget_s} s of training per run)"}[sweep.budget],
             f"seeds: {sweep.seeds} per run, paired across runs" + (
                 f"; the configuration chosen on the selection split is re-run with {sweep.confirm_seeds} fresh seed(s)"
                 if sweep.confirm_seeds else "")]
    if sweep.warm_start_epochs:
        lines.append(f"warm start: the baseline trains {sweep.warm_start_epochs} epochs first; every run starts from it")
    if runs:
        d = runs[0].dataset
        lines.append(f"selection split: {selection_split_name(d)}; report split: {report_split_name(d)}"
                     + (" (the SAME split: set dataset.selection_fraction or give a test split)"
                        if selection_is_report(d) else ""))
    return "\n".join(lines)
