"""What a sweep runs: its config (:class:`SweepConfig`) and the list of runs it expands to.

A sweep is always a comparison: the base network's run (the *baseline*, same data and schedule)
is planned next to the method's runs. Four shapes:

* a search over the dimensions the methods declare (:func:`seglab.platform.methods.search_keys`:
  OVeNet's ``kappa`` / ``lam`` / ``tau``, SEMEDA's ``lambda1..3``, PHGMM's ``k`` ...): ``grid`` (every combination),
  ``random`` (``num_samples`` seeded draws) or ``optuna`` (Optuna's TPE proposes ``num_samples``
  points while the sweep runs; :func:`plan_trials` then returns only the fixed runs and
  :func:`search_space` the space, see :mod:`seglab.platform.search`);
* ``variants``: a list of named overrides of the base run (an ablation table, one row each);
* ``models``: one run per model with the same loss (the baseline zoo).

Runs whose ``model.body_checkpoint`` is :data:`FROM_BASELINE` start from the baseline's trained
weights; the sweep runs them after the baseline finishes (:func:`split_phases`).
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from seglab.errors import check
from seglab.platform import methods
from seglab.platform.config import RunConfig, set_dotted
from seglab.platform.methods import describe

SEARCHES = ("grid", "random", "optuna")
BUDGETS = ("schedule", "flops", "time")
SCHEDULERS = ("asha",)
FROM_BASELINE = "@baseline"
"""``model.body_checkpoint`` value meaning: the best checkpoint of this sweep's baseline run."""


def _check_bound(name: str, value: float) -> None:
    spec = methods.search_keys()[name]
    ok = value >= spec.low if spec.inclusive else value > spec.low
    check(ok, f"sweep.{name} values must be {'>=' if spec.inclusive else '>'} {spec.low:g} (got {value:g})")
    check(not spec.integer or float(value).is_integer(), f"sweep.{name} values must be integers (got {value:g})")


@dataclass
class SweepConfig:
    name: str = "ovenet_vs_hrnet"
    experiment: str = "seglab"
    include_baseline: bool = True
    baseline_model: Optional[str] = "hrnet_w18_small_v1"  # null: the base run's own model (SEMEDA: same net, CE)
    baseline_loss: Any = "ce"  # a loss name or {name: ..., <option>: ...}
    search: str = "grid"  # grid | random | optuna
    num_samples: int = 1  # random / optuna: number of method trials
    seed: int = 0
    space: Dict[str, Any] = field(default_factory=dict)  # a method's search key -> list | {uniform|loguniform: [lo, hi]}
    metric: str = "val_miou"
    scheduler: Optional[str] = None  # null | asha (early stopping on `metric`; never stops the baseline)
    asha: Dict[str, Any] = field(default_factory=lambda: {"grace_period": 1, "reduction_factor": 2})
    max_concurrent_trials: Optional[int] = None
    max_trial_failures: int = 1
    dry_run: bool = False  # validate and print the plan, start nothing
    # true: continue the latest interrupted run of this sweep (same config); or a sweep folder path
    resume: Any = False
    # where it runs (experiments/conf/cluster/*.yaml): name, storage_path (root of the sweep
    # folders, shared by every node), tracking_uri (null: $MLFLOW_TRACKING_URI)
    cluster: Dict[str, Any] = field(default_factory=dict)
    # Baseline sweeps: one trial per model (a name or {name: ..., <option>: ...}), same loss and
    # schedule; the first is the reference row of the comparison. Excludes a search space.
    models: Optional[List[Any]] = None
    # Ablations: one trial per entry {label: ..., model: {...}, loss: {...}} overriding the base run.
    variants: Optional[List[Dict[str, Any]]] = None
    # Honest comparisons: every planned run is repeated with `seeds` seeds (trainer.seed + 0..N-1,
    # the same seeds for the method and the baseline: paired); a sweep that searched re-runs the
    # configuration chosen on the selection split, and the baseline, with `confirm_seeds` fresh seeds.
    seeds: int = 1
    confirm_seeds: int = 0
    # What "equal" means: schedule (same epochs), flops (epochs scaled so that every run spends the
    # baseline's training FLOPs), time (the same wall-clock seconds, time_budget_s, per run).
    budget: str = "schedule"
    time_budget_s: Optional[float] = None
    # > 0: first train the baseline this many epochs (a warm start, not a row of the comparison);
    # every compared run then starts from its weights (the method's body and main head).
    warm_start_epochs: int = 0

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SweepConfig":
        d = dict(d)
        keys = methods.search_keys()
        space = {k: d.pop(k) for k in list(d) if k in keys}
        known = set(cls.__dataclass_fields__) - {"space"}
        unknown = sorted(set(d) - known)
        check(not unknown, f"unknown key sweep.{unknown[0] if unknown else ''}; allowed: "
                           f"{', '.join(sorted(known | set(keys)))}")
        s = cls(**d, space={k: v for k, v in space.items() if v is not None})
        check(s.search in SEARCHES, f"sweep.search must be one of {', '.join(SEARCHES)} (got {s.search!r})")
        check(isinstance(s.num_samples, int) and s.num_samples >= 1, f"sweep.num_samples must be >= 1 (got {s.num_samples})")
        check(s.scheduler is None or s.scheduler in SCHEDULERS,
              f"sweep.scheduler must be null or one of {', '.join(SCHEDULERS)} (got {s.scheduler!r})")
        _check_asha(s.asha)
        for key in ("include_baseline", "dry_run"):
            check(isinstance(getattr(s, key), bool), f"sweep.{key} must be true or false (got {getattr(s, key)!r})")
        check(_is_int(s.seed), f"sweep.seed must be an integer (got {s.seed!r})")
        check(s.max_concurrent_trials is None or (_is_int(s.max_concurrent_trials) and s.max_concurrent_trials >= 1),
              f"sweep.max_concurrent_trials must be null or an integer >= 1 (got {s.max_concurrent_trials!r})")
        check(_is_int(s.max_trial_failures) and s.max_trial_failures >= -1,
              f"sweep.max_trial_failures must be an integer >= -1 (-1 = retry forever; got {s.max_trial_failures!r})")
        check(isinstance(s.experiment, str) and s.experiment.strip() != "",
              f"sweep.experiment must be the name of an MLflow experiment (got {s.experiment!r})")
        check(s.baseline_model is None or isinstance(s.baseline_model, str),
              f"sweep.baseline_model must be null or a model name (got {s.baseline_model!r})")
        _check_cluster(s.cluster)
        check(isinstance(s.resume, bool) or (isinstance(s.resume, str) and s.resume.strip()),
              f"sweep.resume must be true, false or the path of a sweep folder (got {s.resume!r})")
        for name, values in s.space.items():
            _check_dimension(name, values, s.search)
        check(s.search != "optuna" or s.space, "sweep.search=optuna needs at least one of "
                                                f"{', '.join('sweep.' + k for k in sorted(keys))} to search")
        check(isinstance(s.baseline_loss, str) or (isinstance(s.baseline_loss, dict) and "name" in s.baseline_loss),
              f"sweep.baseline_loss must be a loss name or {{name: ..., <option>: ...}} (got {s.baseline_loss!r})")
        shapes = [k for k, on in (("models", s.models is not None), ("variants", s.variants is not None),
                                  ("a search space", bool(s.space))) if on]
        check(len(shapes) <= 1, f"sweep: {' and '.join(shapes)} exclude each other; give one")
        if s.models is not None:
            check(isinstance(s.models, list) and len(s.models) > 0, "sweep.models must be a non-empty list of model names")
            for m in s.models:
                check(isinstance(m, str) or (isinstance(m, dict) and "name" in m),
                      f"sweep.models entries must be a model name or {{name: ..., <option>: ...}} (got {m!r})")
        if s.variants is not None:
            _check_variants(s.variants)
        for key in ("seeds",):
            check(_is_int(getattr(s, key)) and getattr(s, key) >= 1, f"sweep.{key} must be an integer >= 1 (got {getattr(s, key)!r})")
        for key in ("confirm_seeds", "warm_start_epochs"):
            check(_is_int(getattr(s, key)) and getattr(s, key) >= 0, f"sweep.{key} must be an integer >= 0 (got {getattr(s, key)!r})")
        check(s.budget in BUDGETS, f"sweep.budget must be one of {', '.join(BUDGETS)} (got {s.budget!r})")
        check(s.time_budget_s is None or (isinstance(s.time_budget_s, (int, float)) and not isinstance(s.time_budget_s, bool)
                                          and s.time_budget_s > 0),
              f"sweep.time_budget_s must be null or a number of seconds > 0 (got {s.time_budget_s!r})")
        check(s.budget != "time" or s.time_budget_s is not None,
              "sweep.budget=time needs sweep.time_budget_s (the wall-clock seconds every run trains)")
        check(s.seeds == 1 or s.search != "optuna",
              "sweep.seeds > 1 with sweep.search=optuna: Optuna proposes one run per point; use sweep.confirm_seeds "
              "to re-run its choice with fresh seeds")
        check(s.warm_start_epochs == 0 or s.include_baseline,
              "sweep.warm_start_epochs needs the sweep's baseline run; set sweep.include_baseline=true")
        return s


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


CLUSTER_KEYS = ("name", "storage_path", "tracking_uri")


def _check_cluster(cluster: Any) -> None:
    check(isinstance(cluster, dict), f"cluster must be a mapping of {', '.join(CLUSTER_KEYS)} (got {cluster!r})")
    extra = sorted(set(cluster) - set(CLUSTER_KEYS))
    check(not extra, f"unknown key cluster.{extra[0] if extra else ''}; allowed: {', '.join(CLUSTER_KEYS)}")
    for key in ("storage_path", "tracking_uri"):
        value = cluster.get(key)
        check(value is None or (isinstance(value, str) and value.strip()),
              f"cluster.{key} must be null or a non-empty string (got {value!r})")
    path = cluster.get("storage_path")
    check(path is None or "://" not in path, f"cluster.storage_path must be a POSIX path that every node mounts "
                                             f"(EFS, Filestore, NFS, GCS FUSE), not a URI (got {path!r})")


def _check_asha(asha: Any) -> None:
    check(isinstance(asha, dict) and set(asha) <= {"grace_period", "reduction_factor"},
          f"sweep.asha must be {{grace_period: int >= 1, reduction_factor: number > 1}} (got {asha!r})")
    grace = asha.get("grace_period", 1)
    factor = asha.get("reduction_factor", 2)
    check(isinstance(grace, int) and grace >= 1, f"sweep.asha.grace_period must be an integer >= 1 (got {grace!r})")
    check(isinstance(factor, (int, float)) and factor > 1, f"sweep.asha.reduction_factor must be > 1 (got {factor!r})")


def _check_variants(variants: Any) -> None:
    check(isinstance(variants, list) and len(variants) > 0,
          "sweep.variants must be a non-empty list of {label: ..., model: {...}, loss: {...}}")
    labels = []
    for i, v in enumerate(variants):
        check(isinstance(v, dict) and isinstance(v.get("label"), str) and v["label"],
              f"sweep.variants[{i}] needs a label (got {v!r})")
        extra = sorted(set(v) - {"label", "model", "loss"})
        check(not extra, f"sweep.variants[{i}].{extra[0] if extra else ''}: a variant overrides only model and loss "
                         f"(keys label, model, loss)")
        for group in ("model", "loss"):
            check(isinstance(v.get(group, {}), dict), f"sweep.variants[{i}].{group} must be a mapping of options")
        labels.append(v["label"])
    dup = sorted({x for x in labels if labels.count(x) > 1})
    check(not dup, f"sweep.variants: label '{dup[0] if dup else ''}' is used twice")


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
    check(search in ("random", "optuna"), f"{key} is a distribution; set sweep.search=random or optuna to sample it")
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


def plan_trials(base: Dict[str, Any], sweep: SweepConfig) -> List[RunConfig]:
    """The runs of a sweep: the baseline (if included) first, then the method's runs.

    For ``search=optuna`` the method's runs are proposed while the sweep runs, so this returns
    the baseline only; validate the method with ``run_for_point(base, representative_point(sweep))``.
    """
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
    ``time`` gives every run ``trainer.time_limit_s = sweep.time_budget_s`` (the lr schedule runs
    over that time)."""
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
    """``run`` initialised from a seglab checkpoint: an OVeNet model's body and main head
    (``model.body_checkpoint``), any other model where names match (``model.pretrained``)."""
    key = "model.body_checkpoint" if run.model.name.startswith("ovenet") else "model.pretrained"
    r = RunConfig.from_dict(set_dotted(run.to_dict(), key, weights))
    r.label = run.label
    return r


def describe_protocol(sweep: SweepConfig, runs: List[RunConfig]) -> str:
    """What the comparison will mean, in one line per point (printed by a dry run)."""
    from seglab.platform.build import report_split_name, selection_is_report, selection_split_name

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
