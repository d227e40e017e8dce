"""Typed run configuration: plain dataclasses built from a nested dict (Hydra stops before this).

A *run* is one training job (one Tune trial): model + loss + dataset + trainer. The dict form is
what travels to Ray workers; :func:`RunConfig.from_dict` validates it and raises a one-line
:class:`~seglab.errors.ConfigError` naming the key for anything a user can get wrong.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional, Tuple

from seglab.errors import ConfigError, check, is_int

_MODEL_RESERVED = ("name", "pretrained", "body_checkpoint", "freeze_bn")
_DATASET_RESERVED = ("name", "train", "val", "test", "selection_fraction")
ROLES = ("train", "val", "test")
PHASES = ("search", "confirm", "warm_start")
OPTIMIZERS = ("sgd", "adam", "adamw")
LOG_CHECKPOINTS = ("best", "last", "none")
PRECISIONS = ("fp32", "bf16", "fp16")  # seglab.platform.speed (not imported here: config stays light)



@dataclass
class ModelConfig:
    name: str
    kwargs: Dict[str, Any] = field(default_factory=dict)
    pretrained: Optional[str] = None  # ImageNet (or other) weights, loaded where names match
    # A trained baseline's checkpoint loaded into the shared body + main head (OVeNet's "Fr"
    # ablation with model.freeze_body=true); "@baseline" = the sweep's own baseline run.
    body_checkpoint: Optional[str] = None
    # Every BatchNorm frozen at its (pretrained / initial) statistics and affine parameters, in
    # training too (FrozenBatchNorm2d): how SEMEDA's paper trains DeepLab at small batches.
    freeze_bn: bool = False

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ModelConfig":
        check("name" in d, "model.name is missing; set model=<name> (see `seglab models`)")
        kwargs = {k: v for k, v in d.items() if k not in _MODEL_RESERVED}
        freeze_bn = d.get("freeze_bn", False)
        check(isinstance(freeze_bn, bool), f"model.freeze_bn must be true or false (got {freeze_bn!r})")
        for key in ("pretrained", "body_checkpoint"):
            check(d.get(key) is None or isinstance(d[key], str),
                  f"model.{key} must be null or the path of a checkpoint file (got {d.get(key)!r})")
        return cls(name=str(d["name"]), kwargs=kwargs, pretrained=d.get("pretrained"),
                   body_checkpoint=d.get("body_checkpoint"), freeze_bn=freeze_bn)

    def to_dict(self) -> Dict[str, Any]:
        out = {"name": self.name, **self.kwargs, "pretrained": self.pretrained}
        if self.body_checkpoint is not None:
            out["body_checkpoint"] = self.body_checkpoint
        if self.freeze_bn:
            out["freeze_bn"] = True
        return out


@dataclass
class LossConfig:
    name: str
    kwargs: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "LossConfig":
        check("name" in d, "loss.name is missing; set loss=<name>")
        return cls(name=str(d["name"]), kwargs={k: v for k, v in d.items() if k != "name"})


@dataclass
class DatasetConfig:
    """``common`` kwargs go to every split; ``train``/``val``/``test`` hold role-specific kwargs.

    Roles: ``train`` trains; ``val`` is the *selection* split (checkpoint choice, ASHA, Optuna,
    every per-epoch ``val_*`` metric); the *report* split, scored once at the end of a run, is
    ``test`` when the data set config has a ``test`` role (the embedded data set's generated test
    split), else the data set's ``val`` split. With ``selection_fraction`` (a real data set without
    a labelled test split), the selection split is that fraction of the ``train`` split, held out
    from training deterministically by file name, and ``val`` becomes the report split.
    """

    name: str
    common: Dict[str, Any] = field(default_factory=dict)
    train: Dict[str, Any] = field(default_factory=dict)
    val: Dict[str, Any] = field(default_factory=dict)
    test: Optional[Dict[str, Any]] = None
    selection_fraction: Optional[float] = None

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "DatasetConfig":
        check("name" in d, "dataset.name is missing; set dataset=<name>")
        common = {k: v for k, v in d.items() if k not in _DATASET_RESERVED}
        for role in ROLES:
            check(d.get(role) is None or isinstance(d[role], dict),
                  f"dataset.{role} must be a mapping of options, e.g. dataset.{role}.augment=false (got {d.get(role)!r})")
        fraction = d.get("selection_fraction")
        check(fraction is None or (isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
                                   and 0 < fraction < 1),
              f"dataset.selection_fraction must be null or a number in (0, 1) (got {fraction!r})")
        check(fraction is None or d.get("test") is None,
              "dataset.selection_fraction and dataset.test both set: with a test split, selection is on "
              "dataset.val; set one of them to null")
        test = d.get("test")
        return cls(str(d["name"]), common, dict(d.get("train") or {}), dict(d.get("val") or {}),
                   None if test is None else dict(test), None if fraction is None else float(fraction))

    def role_options(self, role: str) -> Dict[str, Any]:
        return {"train": self.train, "val": self.val, "test": self.test or {}}[role]

    def split_kwargs(self, split: str) -> Dict[str, Any]:
        """Options of the ``train``, ``val`` or ``test`` role, without ``split`` (see :meth:`split_name`)."""
        kwargs = {**self.common, **self.role_options(split)}
        kwargs.pop("split", None)
        return kwargs

    def split_name(self, role: str) -> str:
        """The data set split that plays ``role`` (``train``/``val``/``test``): ``dataset.<role>.split``
        when set (e.g. ``dataset.train.split=trainval`` to train on train+val), else the role."""
        return str(self.role_options(role).get("split", role))

    def to_dict(self) -> Dict[str, Any]:
        out = {"name": self.name, **self.common, "train": self.train, "val": self.val}
        if self.test is not None:
            out["test"] = self.test
        if self.selection_fraction is not None:
            out["selection_fraction"] = self.selection_fraction
        return out


@dataclass
class TrainerConfig:
    """Schedule and resources of one training run (the same for every trial of a sweep)."""

    num_workers: int = 2
    cpus_per_worker: float = 0.9
    use_gpu: Any = "auto"  # true / false / "auto" (GPU when the cluster has one)
    epochs: int = 10
    batch_size: int = 8  # per worker
    optimizer: str = "sgd"  # sgd (momentum) | adam | adamw
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    warmup_steps: int = 0  # linear lr warm-up over this many optimizer steps, then poly decay
    # Training-time budget (s) of the run (sweep.budget=time sets it): seconds spent in training steps,
    # validation and checkpoints excluded; the lr schedule runs over this time and training stops at
    # the last epoch boundary that fits; null = by epochs only.
    time_limit_s: Optional[float] = None
    max_failures: int = 1
    seed: int = 0
    # DataLoader processes per worker; "auto": none for generated data (cheap to make) and on
    # CPU-only workers, else one per spare CPU of the worker (2..8) to decode and augment files.
    loader_workers: Any = "auto"
    flops_input_size: Tuple[int, int] = (1024, 2048)
    # A protocol's training crop [H, W] (e.g. SEMEDA's 321x321): when set, it replaces
    # dataset.train.crop_size, so a trainer preset carries the whole protocol.
    crop_size: Optional[Tuple[int, int]] = None
    viz_samples: int = 4  # fixed validation images drawn (the method's picture) and logged to MLflow; 0 = off
    viz_every: int = 1  # draw them every this many epochs (and at the last)
    # Band widths (px) of the trimap metric (boundary-band mIoU vs width), for methods whose
    # sweeps evaluate it (SEMEDA, PHGMM); the band of width w = pixels within Chebyshev distance
    # w - 1 of a ground-truth edge.
    trimap_widths: Tuple[int, ...] = (1, 2, 3, 5, 7, 10, 15, 20)
    # Testing hook: crash rank 0 once at the start of this epoch (1-based) to exercise resume.
    fail_once_at_epoch: Optional[int] = None
    # Which checkpoint becomes an MLflow artifact of the run (through the tracking server's
    # artifact proxy when MLFLOW_TRACKING_URI is a server): best (by val mIoU) | last | none.
    log_checkpoints: str = "best"
    # Speed (seglab/platform/speed.py): autocast dtype fp32 | bf16 | fp16 (+ GradScaler), NHWC
    # weights and inputs, torch.compile (eager fallback), SyncBatchNorm for DDP on GPUs.
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    # The selection metric (set by the sweep from sweep.metric / sweep.mode): the epoch whose weights
    # are the run's result ("best.pt", scored on the report split) is the best one by this metric.
    selection_metric: str = "val_miou"
    selection_mode: str = "max"

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainerConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        check(not unknown, f"unknown key trainer.{unknown[0] if unknown else ''}; allowed: {', '.join(sorted(known))}")
        t = cls(**d)
        check(isinstance(t.flops_input_size, (list, tuple)) and len(t.flops_input_size) == 2
              and all(is_int(v) for v in t.flops_input_size),
              f"trainer.flops_input_size must be [H, W] with positive integers (got {t.flops_input_size!r})")
        t.flops_input_size = tuple(int(v) for v in t.flops_input_size)  # type: ignore[assignment]
        widths = t.trimap_widths
        check(isinstance(widths, (list, tuple)) and len(widths) > 0
              and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)
              and len(set(widths)) == len(widths),
              f"trainer.trimap_widths must be a list of distinct positive integers (pixels), e.g. [1, 2, 3, 5] "
              f"(got {widths!r})")
        t.trimap_widths = tuple(widths)
        if t.crop_size is not None:
            crop = t.crop_size
            check(isinstance(crop, (list, tuple)) and len(crop) == 2
                  and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in crop),
                  f"trainer.crop_size must be null or [H, W] with positive integers (got {crop!r})")
            t.crop_size = tuple(crop)  # type: ignore[assignment]
        check(is_int(t.viz_samples) and t.viz_samples >= 0,
              f"trainer.viz_samples must be an integer >= 0 (got {t.viz_samples!r})")
        for key in ("num_workers", "epochs", "batch_size", "viz_every"):
            value = getattr(t, key)
            check(is_int(value) and value >= 1, f"trainer.{key} must be an integer >= 1 (got {value!r})")
        for key in ("cpus_per_worker", "lr", "momentum", "weight_decay", "poly_power"):
            value = getattr(t, key)
            check(isinstance(value, (int, float)) and not isinstance(value, bool) and value == value,
                  f"trainer.{key} must be a number (got {value!r})")
        check(t.time_limit_s is None or (isinstance(t.time_limit_s, (int, float)) and not isinstance(t.time_limit_s, bool)
                                         and t.time_limit_s > 0),
              f"trainer.time_limit_s must be null or a number of seconds > 0 (got {t.time_limit_s!r})")
        check(is_int(t.warmup_steps) and t.warmup_steps >= 0,
              f"trainer.warmup_steps must be an integer >= 0 (got {t.warmup_steps!r})")
        for key in ("max_failures", "seed"):
            check(is_int(getattr(t, key)), f"trainer.{key} must be an integer (got {getattr(t, key)!r})")
        check(t.poly_power >= 0, f"trainer.poly_power must be >= 0 (got {t.poly_power})")
        check(t.fail_once_at_epoch is None or (is_int(t.fail_once_at_epoch) and t.fail_once_at_epoch >= 1),
              f"trainer.fail_once_at_epoch must be null or an integer >= 1 (got {t.fail_once_at_epoch!r})")
        check(t.cpus_per_worker > 0, f"trainer.cpus_per_worker must be > 0 (got {t.cpus_per_worker})")
        check(t.lr > 0, f"trainer.lr must be > 0 (got {t.lr})")
        check(t.optimizer in OPTIMIZERS, f"trainer.optimizer must be one of {', '.join(OPTIMIZERS)} (got {t.optimizer!r})")
        check(0 <= t.momentum < 1, f"trainer.momentum must be in [0, 1) (got {t.momentum})")
        check(t.weight_decay >= 0, f"trainer.weight_decay must be >= 0 (got {t.weight_decay})")
        check(t.max_failures >= -1, f"trainer.max_failures must be >= -1 (-1 = retry forever; got {t.max_failures})")
        check(t.loader_workers == "auto" or (isinstance(t.loader_workers, int) and not isinstance(t.loader_workers, bool)
                                             and t.loader_workers >= 0),
              f"trainer.loader_workers must be auto or an integer >= 0 (got {t.loader_workers!r})")
        check(t.precision in PRECISIONS, f"trainer.precision must be one of {', '.join(PRECISIONS)} "
                                         f"(got {t.precision!r})")
        for key in ("channels_last", "compile", "sync_bn"):
            check(isinstance(getattr(t, key), bool), f"trainer.{key} must be true or false (got {getattr(t, key)!r})")
        check(t.log_checkpoints in LOG_CHECKPOINTS, f"trainer.log_checkpoints must be one of "
                                                    f"{', '.join(LOG_CHECKPOINTS)} (got {t.log_checkpoints!r})")
        check(isinstance(t.selection_metric, str) and t.selection_metric.startswith("val_"),
              f"trainer.selection_metric must be a per-epoch metric val_<name> (got {t.selection_metric!r})")
        check(t.selection_mode in ("max", "min"), f"trainer.selection_mode must be max or min "
                                                   f"(got {t.selection_mode!r})")
        check(t.use_gpu in (True, False, "auto"), f"trainer.use_gpu must be true, false or auto (got {t.use_gpu!r})")
        check(len(t.flops_input_size) == 2 and min(t.flops_input_size) > 0,
              f"trainer.flops_input_size must be [H, W] with positive sizes (got {list(t.flops_input_size)})")
        return t


@dataclass
class RunConfig:
    """Everything one training run needs; ``label``/``baseline`` describe it in reports."""

    model: ModelConfig
    loss: LossConfig
    dataset: DatasetConfig
    trainer: TrainerConfig
    label: str = ""
    baseline: bool = False
    # search: a run of the sweep's plan; confirm: the chosen configuration re-run with fresh seeds;
    # warm_start: the run whose weights every compared run starts from (not a row of the comparison)
    phase: str = "search"

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunConfig":
        for key in ("model", "loss", "dataset"):
            check(isinstance(d.get(key), dict), f"config group '{key}' is missing; set {key}=<name>")
        run = cls(
            model=ModelConfig.from_dict(d["model"]),
            loss=LossConfig.from_dict(d["loss"]),
            dataset=DatasetConfig.from_dict(d["dataset"]),
            trainer=TrainerConfig.from_dict(dict(d.get("trainer") or {})),
            label=str(d.get("label", "")),
            baseline=bool(d.get("baseline", False)),
            phase=str(d.get("phase", "search")),
        )
        check(run.phase in PHASES, f"phase must be one of {', '.join(PHASES)} (got {run.phase!r})")
        if run.trainer.crop_size is not None:
            run.dataset.train["crop_size"] = list(run.trainer.crop_size)
        return run

    def to_dict(self) -> Dict[str, Any]:
        model = self.model.to_dict()
        dataset = self.dataset.to_dict()
        trainer = asdict(self.trainer)
        trainer["flops_input_size"] = list(self.trainer.flops_input_size)
        trainer["trimap_widths"] = list(self.trainer.trimap_widths)
        trainer["crop_size"] = None if self.trainer.crop_size is None else list(self.trainer.crop_size)
        return {
            "model": model,
            "loss": {"name": self.loss.name, **self.loss.kwargs},
            "dataset": dataset,
            "trainer": trainer,
            "label": self.label,
            "baseline": self.baseline,
            **({"phase": self.phase} if self.phase != "search" else {}),  # search runs keep their old keys
        }

    def key(self) -> str:
        """A stable short hash of everything that defines the run (used to resume it)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def group_key(self) -> str:
        """The same for every seed (and phase) of one configuration: what a comparison row pools."""
        d = self.to_dict()
        d["trainer"]["seed"] = None
        d.pop("phase", None)
        d["label"] = ""
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


def flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` (lists are kept as values)."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def set_dotted(d: Dict[str, Any], dotted: str, value: Any) -> Dict[str, Any]:
    """Return a deep copy of ``d`` with ``d[a][b] = value`` for ``dotted = "a.b"``."""
    out = copy.deepcopy(d)
    node = out
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}: {p} is not a group")
    node[leaf] = value
    return out
