"""A sweep's configuration (:class:`SweepConfig`, the ``sweep`` group of the experiment configs),
validated with one-line errors naming the key before anything starts.

A sweep is always a comparison: the base network's run (the *baseline*) is planned next to the
method's runs (:mod:`seglab.platform.sweep.plan`). Its dimensions are the ones the methods declare
(:func:`seglab.platform.methods.search_keys`), e.g. ``sweep.kappa=[0.25,0.5]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from seglab.errors import check, is_int
from seglab.platform import methods

SEARCHES = ("grid", "random", "optuna")
BUDGETS = ("schedule", "flops", "time")
SCHEDULERS = ("asha",)
MODES = ("max", "min")
INPROCESS = "inprocess"
"""``cluster.name`` of the in-process executor (:mod:`seglab.platform.sweep.inprocess`): no Ray."""
FROM_BASELINE = "@baseline"
"""``model.body_checkpoint`` value meaning: the best checkpoint of this sweep's baseline run."""


def _check_bound(name: str, value: float) -> None:
    spec = methods.search_keys()[name]
    ok = value >= spec.low if spec.inclusive else value > spec.low
    check(ok, f"sweep.{name} values must be {'>=' if spec.inclusive else '>'} {spec.low:g} (got {value:g})")
    check(not spec.integer or float(value).is_integer(), f"sweep.{name} values must be integers (got {value:g})")


@dataclass
class SweepConfig:
    name: str = "sweep"
    experiment: str = "seglab"
    include_baseline: bool = True
    baseline_model: Optional[str] = "hrnet_w18_small_v1"  # null: the base run's own model (SEMEDA: same net, CE)
    baseline_loss: Any = "ce"  # a loss name or {name: ..., <option>: ...}
    search: str = "grid"  # grid | random | optuna
    num_samples: int = 1  # random / optuna: number of method trials
    seed: int = 0
    space: Dict[str, Any] = field(default_factory=dict)  # a method's search key -> list | {uniform|loguniform: [lo, hi]}
    # The selection metric, one for everything that chooses: the checkpoint of every run (its best
    # epoch), ASHA's rungs, Optuna's proposals and the configuration a confirmation re-runs. A per-epoch
    # metric of the selection split (val_*); mode: max (higher is better) or min (e.g. val_trimap_error_w3).
    metric: str = "val_miou"
    mode: str = "max"
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
    # baseline's training FLOPs), time (the same seconds of training, time_budget_s, per run; validation excluded).
    budget: str = "schedule"
    time_budget_s: Optional[float] = None
    # > 0: first train the baseline this many epochs (a warm start, not a row of the comparison);
    # every compared run then starts from its weights (the method's body and main head).
    warm_start_epochs: int = 0
    # At the end: log the selected configuration's best checkpoint as an MLflow model and register it
    # under the sweep's name, one version per sweep (seglab.platform.serve.registry).
    register_model: bool = True

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
        check(isinstance(s.metric, str) and s.metric.startswith("val_"),
              f"sweep.metric must be a per-epoch metric of the selection split, val_<name> (got {s.metric!r})")
        check(s.mode in MODES, f"sweep.mode must be one of {', '.join(MODES)} (got {s.mode!r})")
        for key in ("include_baseline", "dry_run", "register_model"):
            check(isinstance(getattr(s, key), bool), f"sweep.{key} must be true or false (got {getattr(s, key)!r})")
        check(is_int(s.seed), f"sweep.seed must be an integer (got {s.seed!r})")
        check(s.max_concurrent_trials is None or (is_int(s.max_concurrent_trials) and s.max_concurrent_trials >= 1),
              f"sweep.max_concurrent_trials must be null or an integer >= 1 (got {s.max_concurrent_trials!r})")
        check(is_int(s.max_trial_failures) and s.max_trial_failures >= -1,
              f"sweep.max_trial_failures must be an integer >= -1 (-1 = retry forever; got {s.max_trial_failures!r})")
        check(isinstance(s.experiment, str) and s.experiment.strip() != "",
              f"sweep.experiment must be the name of an MLflow experiment (got {s.experiment!r})")
        check(s.baseline_model is None or isinstance(s.baseline_model, str),
              f"sweep.baseline_model must be null or a model name (got {s.baseline_model!r})")
        _check_cluster(s.cluster)
        check(not (s.scheduler and s.cluster.get("name") == INPROCESS),
              "sweep.scheduler=asha needs Ray Tune: cluster=inprocess runs trials one after another; "
              "drop sweep.scheduler or run on a Ray cluster (cluster=local)")
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
            check(is_int(getattr(s, key)) and getattr(s, key) >= 1, f"sweep.{key} must be an integer >= 1 (got {getattr(s, key)!r})")
        for key in ("confirm_seeds", "warm_start_epochs"):
            check(is_int(getattr(s, key)) and getattr(s, key) >= 0, f"sweep.{key} must be an integer >= 0 (got {getattr(s, key)!r})")
        check(s.budget in BUDGETS, f"sweep.budget must be one of {', '.join(BUDGETS)} (got {s.budget!r})")
        check(s.time_budget_s is None or (isinstance(s.time_budget_s, (int, float)) and not isinstance(s.time_budget_s, bool)
                                          and s.time_budget_s > 0),
              f"sweep.time_budget_s must be null or a number of seconds > 0 (got {s.time_budget_s!r})")
        check(s.budget != "time" or s.time_budget_s is not None,
              "sweep.budget=time needs sweep.time_budget_s (the seconds of training every run gets)")
        check(s.seeds == 1 or s.search != "optuna",
              "sweep.seeds > 1 with sweep.search=optuna: Optuna proposes one run per point; use sweep.confirm_seeds "
              "to re-run its choice with fresh seeds")
        check(s.warm_start_epochs == 0 or s.include_baseline,
              "sweep.warm_start_epochs needs the sweep's baseline run; set sweep.include_baseline=true")
        return s



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
