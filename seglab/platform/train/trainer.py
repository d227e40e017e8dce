"""The Trainer: one run's training loop, with no Ray in it (DDP through whatever ``wrap`` it is given).

:meth:`Trainer.from_run` builds a run's data, model, loss and optimizer from its config
(:mod:`seglab.platform.build`); :meth:`Trainer.fit` trains ``trainer.epochs`` epochs:

    before_train hooks
    for each epoch: before_epoch hooks (may stop) -> train_epoch -> validate -> selection -> after_epoch hooks
    the report split, scored once with the selected epoch's weights (``test_*``) and the last ones (``final_test_*``)
    after_train hooks

:meth:`train_step` is one optimiser step (a non-finite loss on any rank raises :class:`NonFiniteLoss`
on every rank, naming the epoch, the step and the loss terms; :meth:`fit` turns it into
:attr:`failure`); :meth:`validate` runs the evaluators of the run's method on the selection split;
:meth:`state_dict` / :meth:`load_state_dict` are the checkpoint (weights, optimiser, the selection
state, the training time) from which a resumed run continues exactly. The selection metric is
``trainer.selection_metric`` (``sweep.metric``), best by ``trainer.selection_mode``.

The behaviours around the loop (stop marker, time budget, pictures, samplers, tracking ...) are hooks
(:mod:`.hooks`); the Ray Train adapter (:mod:`.worker`) adds its per-epoch report.
"""
from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from seglab.platform import checkpoint as ckpt
from seglab.platform import comm
from seglab.platform.config import RunConfig
from seglab.platform.train import speed
from seglab.platform.train.data import RunData, build_run_data
from seglab.platform.train.hooks import HookBase
from seglab.platform.train.sampler import seed_epoch
from seglab.platform.train.schedule import build_optimizer, poly_lr, schedule_step


class NonFiniteLoss(FloatingPointError):
    """The loss was NaN or infinite on some rank (every rank raises it together)."""


class NullWriter:
    """The tracking writer of a run that logs nowhere (other ranks, tests, benchmarks)."""

    active = False

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: str, folder: str) -> None:
        pass

    def log_artifacts(self, folder: str, artifact_path: str) -> None:
        pass

    def set_tag(self, key: str, value: Any) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


def renamed(metrics: Dict[str, float], prefix: str) -> Dict[str, float]:
    """``val_<name>`` -> ``<prefix><name>`` (the report split's scores, named after the per-epoch ones)."""
    return {prefix + k[len("val_"):]: v for k, v in metrics.items() if k.startswith("val_")}


def _cpu_copy(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in ckpt.unwrap(model).state_dict().items()}


class Trainer:
    """One run's loop (see the module docstring). ``data`` holds the loaders and what evaluation needs
    (:class:`~seglab.platform.train.data.RunData`); ``wrap`` turns the prepared model into the
    distributed one (Ray's ``prepare_model``, torch's DDP; default: moved to ``data.device``)."""

    def __init__(self, run: RunConfig, data: RunData, model: nn.Module, criterion: nn.Module, *,
                 hooks: Sequence[HookBase] = (), wrap: Optional[Callable[[nn.Module], nn.Module]] = None,
                 writer: Any = None, label: str = "", say: Optional[Callable[[str], None]] = None,
                 train_forward_gflops: Optional[Dict[str, float]] = None) -> None:
        t = run.trainer
        # one image's training-forward GFLOPs by "HxW", as the sweep's driver counted them (else counted here)
        self.train_forward_gflops = dict(train_forward_gflops or {})
        self.run, self.data, self.label = run, data, label or run.label
        self.rank, self.world, self.device = comm.rank(), comm.world_size(), data.device
        self.writer = writer if writer is not None else NullWriter()
        self._say = say or (lambda text: print(text, flush=True))
        self.criterion = criterion.to(self.device)
        self.optimizer = build_optimizer(model, t)
        model = speed.prepare_model(model, self.device, channels_last=t.channels_last, sync_bn=t.sync_bn,
                                    distributed=self.world > 1, say=self.say)
        model = wrap(model) if wrap is not None else model.to(self.device)
        self.model = speed.compile_model(model, t.compile, say=self.say)
        self.forward_context, self.scaler = speed.autocast(t.precision, self.device), speed.grad_scaler(t.precision,
                                                                                                        self.device)
        self.selection_metric, self.mode = t.selection_metric, t.selection_mode
        self.steps_per_epoch = len(data.train_loader)
        self.total_steps = t.epochs * self.steps_per_epoch
        # the loop's state (what a checkpoint restores)
        self.start_epoch, self.last_epoch, self.resumed = 1, 0, False
        self.best_score = -math.inf if self.mode == "max" else math.inf
        self.best_val_miou, self.best_epoch, self.selected_weights = -1.0, 0, None
        self.elapsed_before, self.train_time_before, self.last_metrics = 0.0, 0.0, {}
        # this process's epochs
        self.epoch_times: List[float] = []
        self.train_epoch_times: List[float] = []
        self.improved, self.failure, self.stop_reason = False, None, None
        self.final_scores: Dict[str, float] = {}
        self.last_evaluators: List[Any] = []
        self.last_state: Optional[Dict[str, Any]] = None
        self.train_hw: Optional[Tuple[int, int]] = None
        self.epoch = self.step_in_epoch = 0
        self.clock: Callable[[], float] = time.perf_counter  # seconds; tests give a clock of their own
        self.hooks: List[HookBase] = []
        self.register(hooks)

    @classmethod
    def from_run(cls, run: RunConfig, *, device: Optional[torch.device] = None, method: Optional[str] = None,
                 resources: Optional[Dict[str, Any]] = None, mlflow_run_id: Optional[str] = None,
                 load_weights: bool = True, **kwargs: Any) -> "Trainer":
        """The trainer of ``run`` on this rank: its data (:func:`~seglab.platform.train.data.build_run_data`),
        model (with ``model.pretrained`` / ``model.body_checkpoint`` when ``load_weights``) and loss;
        ``kwargs`` go to :class:`Trainer` (hooks, wrap, writer, label, say, train_forward_gflops)."""
        from seglab.platform.build import build_loss, build_model

        data = build_run_data(run, rank=comm.rank(), world=comm.world_size(), device=device, method=method,
                              resources=resources, mlflow_run_id=mlflow_run_id)
        criterion = build_loss(run.loss, data.eval_context.ignore_index, data.num_classes)
        data.eval_context.criterion = criterion  # evaluators may read the loss (SEMEDA's edge net)
        model = build_model(run.model, data.num_classes, load_weights=load_weights)
        return cls(run, data, model, criterion, **kwargs)

    # ------------------------------------------------------------------ wiring
    def register(self, hooks: Sequence[HookBase]) -> None:
        for h in hooks:
            h.trainer = self
            self.hooks.append(h)

    def say(self, text: str) -> None:
        """One line of this run's progress (rank 0 only)."""
        if self.rank == 0:
            self._say(f"[{self.label}] {text}")

    def stop(self, reason: str) -> None:
        """Ask :meth:`fit` to stop before this epoch (a hook's call; every rank must make it)."""
        self.stop_reason = reason

    @property
    def val_dataset(self):
        return self.data.val_dataset

    @property
    def method_set(self):
        return self.data.method_set

    @property
    def eval_context(self):
        return self.data.eval_context

    # ------------------------------------------------------------------ steps
    def lr_at(self, step: int, epoch_fraction: float = 0.0) -> float:
        """The learning rate of optimiser step ``step`` (with a time budget: of the training time it
        is estimated to have reached, ``epoch_fraction`` into the current epoch; the same on every rank)."""
        t = self.run.trainer
        if t.time_limit_s is not None:
            spent, mean = self.agreed_train_time()
            step = schedule_step(step, self.total_steps, t.time_limit_s, spent + mean * epoch_fraction)
        return poly_lr(t.lr, step, self.total_steps, t.poly_power, t.warmup_steps)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, lr: float) -> Dict[str, float]:
        """One optimiser step at ``lr``; returns the loss terms (floats). Raises :class:`NonFiniteLoss`
        on every rank when the loss is not finite on some rank (before any weight changes)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        self.train_hw = tuple(images.shape[-2:])
        images = speed.to_input(images, self.run.trainer.channels_last)
        with self.forward_context():  # the labels also go to the model: it may train a label-conditioned part
            result = self.criterion(self.model(images, labels), labels)
        terms = {name: float(value) for name, value in result.terms.items()}
        if not comm.all_agree(bool(torch.isfinite(result.total.detach()).all())):
            raise NonFiniteLoss(f"non-finite loss at epoch {self.epoch} step {self.step_in_epoch + 1} (loss terms "
                                + ", ".join(f"{k}={v:.4g}" for k, v in terms.items()) + ")")
        self.optimizer.zero_grad(set_to_none=True)
        speed.backward_step(result.total, self.optimizer, self.scaler)
        return terms

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        """Train one epoch; returns ``lr``, ``train_<term>`` (means over every rank's images) and ``images_per_s``."""
        self.epoch, t0 = epoch, self.clock()
        self.data.sampler.set_epoch(epoch)
        seed_epoch(self.run.trainer.seed, self.rank, epoch)
        self.model.train()
        sums: Dict[str, float] = {}
        seen, lr = 0, self.run.trainer.lr
        for i, (images, labels) in enumerate(self.data.train_loader):
            self.step_in_epoch = i
            lr = self.lr_at((epoch - 1) * self.steps_per_epoch + i, i / self.steps_per_epoch)
            terms = self.train_step(images, labels, lr)
            seen += images.shape[0]
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value * images.shape[0]
        names = sorted(sums)
        totals = comm.all_reduce_sum(torch.tensor([sums[k] for k in names] + [float(seen)], dtype=torch.float64))
        train_time = self.clock() - t0
        self.train_epoch_times.append(train_time)
        total_seen = totals[-1].item()
        out = {f"train_{k}": (totals[j] / total_seen).item() for j, k in enumerate(names)}
        out.update(lr=lr, images_per_s=total_seen / train_time, train_epoch_time_s=train_time)
        return out

    def agreed_train_time(self) -> Tuple[float, float]:
        """(training seconds spent so far, mean training seconds of an epoch), the maximum over ranks
        (every rank takes the same decisions from them)."""
        times = self.train_epoch_times
        spent, mean = self.train_time_before + sum(times), sum(times) / max(len(times), 1)
        return tuple(comm.agreed_max(spent, mean))  # type: ignore[return-value]

    # ------------------------------------------------------------------ evaluation
    def evaluators(self, ctx=None) -> List[Any]:
        from seglab.platform.methods import evaluators_for

        return evaluators_for(ctx or self.data.eval_context, self.data.method_set)

    def validate(self) -> Dict[str, float]:
        """The selection split's ``val_*`` metrics (every rank calls it; the evaluators all-reduce)."""
        from seglab.platform.evaluation import evaluate

        self.last_evaluators = self.evaluators()
        return evaluate(self.model, self.data.val_loader, self.last_evaluators, self.device)

    def _select(self, metrics: Dict[str, float], epoch: int) -> None:
        name = self.selection_metric
        if name not in metrics:
            from seglab.errors import ConfigError

            raise ConfigError(f"sweep.metric={name} is not a metric this run validates; it has "
                              f"{', '.join(sorted(k for k in metrics if k.startswith('val_'))[:12])} ...")
        score = metrics[name]
        better = score > self.best_score if self.mode == "max" else score < self.best_score
        self.improved = bool(better)
        if better:  # every rank keeps the weights: all of them score the report split with them
            self.best_score, self.best_epoch, self.selected_weights = score, epoch, _cpu_copy(self.model)
        self.best_val_miou = max(self.best_val_miou, metrics.get("val_miou", -1.0))

    def score_report_split(self) -> Dict[str, float]:
        """The result: the report split scored once, with the selected epoch's weights (``test_*``) and
        the last epoch's (``final_test_*``; the same numbers when the last epoch is the selected one),
        plus ``selected_epoch``. The model keeps the last epoch's weights afterwards."""
        from seglab.platform.evaluation import evaluate

        ctx = self.data.report_context()
        loader = self.data.report_loader()
        final = evaluate(self.model, loader, self.evaluators(ctx), self.device)
        out = renamed(final, "final_test_")
        selected_epoch = self.best_epoch or self.last_epoch
        if self.selected_weights is None or selected_epoch == self.last_epoch:
            out.update(renamed(final, "test_"))
            selected_epoch = self.last_epoch
        else:
            module = ckpt.unwrap(self.model)
            last = _cpu_copy(module)
            module.load_state_dict(self.selected_weights)
            out.update(renamed(evaluate(self.model, loader, self.evaluators(ctx), self.device), "test_"))
            module.load_state_dict(last)
        out["selected_epoch"] = float(selected_epoch)
        return out

    def split_tags(self) -> Dict[str, str]:
        from seglab.platform.build import report_split_name, selection_split_name

        return {"seglab.selection_split": selection_split_name(self.run.dataset),
                "seglab.report_split": report_split_name(self.run.dataset)}

    # ------------------------------------------------------------------ checkpoint
    def state_dict(self) -> Dict[str, Any]:
        """What a resumed run needs (and what ``seglab eval`` rebuilds the model from)."""
        return {"model": ckpt.unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "epoch": self.last_epoch, "best_score": self.best_score, "best_epoch": self.best_epoch,
                "best_miou": self.best_val_miou, "selection_metric": self.selection_metric,
                "elapsed_s": self.elapsed_before + sum(self.epoch_times),
                "train_time_s": self.train_time_before + sum(self.train_epoch_times),
                "num_classes": self.data.num_classes, "class_names": list(self.data.class_names),
                "run": self.run.to_dict(), "mlflow_run_id": self.data.mlflow_run_id,
                "metrics": {k: float(v) for k, v in self.last_metrics.items()}}

    def load_state_dict(self, state: Dict[str, Any], selected_weights: Optional[Dict[str, torch.Tensor]] = None
                        ) -> None:
        """Continue from ``state`` (a :meth:`state_dict`); ``selected_weights``: the weights of the
        selected epoch (``best.pt``), else the run re-selects from the epochs it trains now."""
        ckpt.unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.last_epoch = int(state["epoch"])
        self.start_epoch, self.resumed = self.last_epoch + 1, True
        self.best_val_miou = float(state.get("best_miou", -1.0))
        self.best_score = float(state.get("best_score", self.best_val_miou))
        self.best_epoch = int(state.get("best_epoch", state["epoch"]))
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        self.train_time_before = float(state.get("train_time_s", self.elapsed_before))
        self.last_metrics = dict(state.get("metrics") or {})
        self.last_state = state
        self.selected_weights = selected_weights

    # ------------------------------------------------------------------ the loop
    def _call(self, event: str, *args) -> None:
        for h in self.hooks:
            getattr(h, event)(*args)

    def run_epoch(self, epoch: int) -> Dict[str, float]:
        """Train and validate one epoch; returns its metrics (also kept as :attr:`last_metrics`)."""
        t0 = self.clock()
        metrics: Dict[str, float] = {"epoch": epoch, **self.train_epoch(epoch)}
        val = self.validate()
        metrics.update(val)
        self.epoch_times.append(self.clock() - t0)
        self.last_epoch = epoch
        self._select(val, epoch)
        t = self.run.trainer
        train_time = self.train_time_before + sum(self.train_epoch_times)
        metrics.update(epoch_time_s=self.epoch_times[-1], best_val_miou=self.best_val_miou,
                       selection_score=self.best_score, elapsed_s=self.elapsed_before + sum(self.epoch_times),
                       train_time_s=train_time,
                       progress=min(1.0, train_time / t.time_limit_s) if t.time_limit_s else epoch / t.epochs)
        self.last_metrics = metrics
        return metrics

    def fit(self) -> Dict[str, float]:
        """Train from :attr:`start_epoch` to ``trainer.epochs`` (see the module docstring); returns the
        report split's scores (empty for a warm start, a failed run or one with nothing trained)."""
        self._call("before_train")
        try:
            for epoch in range(self.start_epoch, self.run.trainer.epochs + 1):
                self._call("before_epoch", epoch)
                if self.stop_reason is not None:
                    self.say(self.stop_reason)
                    break
                metrics = self.run_epoch(epoch)
                self._call("after_epoch", epoch, metrics)
        except NonFiniteLoss as error:
            self.failure = str(error)
        if self.failure is None and self.last_epoch > 0 and self.run.phase != "warm_start":  # a warm start is no result
            self.final_scores = self.finish_scores()
        self._call("after_train")
        return self.final_scores

    def finish_scores(self) -> Dict[str, float]:
        """The report split's scores with the training compute spent and the scoring time."""
        t0 = self.clock()
        scores = self.score_report_split()
        t = self.run.trainer
        images = self.last_epoch * self.steps_per_epoch * t.batch_size * self.world
        hw = self.train_hw or tuple(getattr(self.data.train_dataset, "image_size", (0, 0)))
        if self.rank == 0 and min(hw) > 0:
            known = self.train_forward_gflops.get("x".join(map(str, hw)))
            scores["train_gflops_spent"] = (3.0 * known * images if known is not None
                                            else training_gflops(self.run, self.data.num_classes, hw, images))
        scores["report_eval_s"] = self.clock() - t0
        if self.rank == 0:
            split = self.split_tags()["seglab.report_split"]
            self.say(f"{split} mIoU {scores.get('test_miou', float('nan')):.3f} with the weights of epoch "
                     f"{int(scores['selected_epoch'])} (chosen on {self.split_tags()['seglab.selection_split']} by "
                     f"{self.selection_metric}); last epoch's weights: {scores.get('final_test_miou', float('nan')):.3f}")
        return scores


def training_gflops(run: RunConfig, num_classes: int, hw: Tuple[int, int], images: int) -> float:
    """Training compute spent: 3 x the training-forward GFLOPs of one ``hw`` image (targets given,
    train mode, so a model's training-only modules count; forward + backward, the usual
    1:2 estimate) x the images trained on, in the ``gflops`` metric's convention."""
    import json

    return 3.0 * _training_forward_gflops(json.dumps(run.model.to_dict(), sort_keys=True), num_classes,
                                          tuple(hw)) * images


@functools.lru_cache(maxsize=64)
def _training_forward_gflops(model: str, num_classes: int, hw: Tuple[int, int]) -> float:
    """One image's training-forward GFLOPs, counted once per architecture and size in a process
    (an in-process sweep's trials share most architectures)."""
    import json

    from seglab.models.complexity import count_flops
    from seglab.platform.build import build_model
    from seglab.platform.config import ModelConfig

    with torch.device("meta"):
        net = build_model(ModelConfig.from_dict(json.loads(model)), num_classes, load_weights=False)
    return count_flops(net, input_size=hw, train=True)


def resumed_trainer(trainer: Trainer, state: Optional[Dict[str, Any]], trial_dir: Optional[Path]) -> Trainer:
    """``trainer`` continued from ``state`` (None: a fresh run), with the selected weights of
    ``<trial_dir>/best.pt`` when that file exists (the trial folder is on storage every node sees)."""
    if state is None:
        return trainer
    best = Path(trial_dir) / "best.pt" if trial_dir else None
    selected = ckpt.load(str(best))["model"] if best is not None and best.is_file() else None
    trainer.load_state_dict(state, selected)
    return trainer


