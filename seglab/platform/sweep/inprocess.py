"""The in-process executor (``cluster=inprocess``): a sweep's trials one after another in this process.

No Ray at all: each trial is the same :class:`~seglab.platform.train.trainer.Trainer` with the same
hooks, MLflow child run, checkpoints and report split as on a Ray cluster, trained on this process's
device (one GPU or the CPU) with the trial's CPU budget as torch's thread count and ``trainer.seed``
as its seed, as a Ray worker (the process's thread count is given back afterwards), so a sweep can be
stepped through in a debugger, run in a notebook or checked quickly on a laptop. Everything before
and after the trials (plan, validation, stages, phases, the comparison) is the Ray path's own code.

What Ray adds and this executor does not: DDP over several workers (``trainer.num_workers`` is read
as 1), concurrent trials, ASHA (``sweep.scheduler=asha`` is refused with one line), and restarts of a
crashed worker group (a failing trial is retried ``trainer.max_failures`` times from its latest
checkpoint, ``<trial>/checkpoint.pt``). ``sweep.resume`` re-runs the phases; each trial continues
from its latest checkpoint (a finished one trains nothing and reports again).
"""
from __future__ import annotations

import traceback
from typing import Any, Dict, List

from seglab.platform.config import RunConfig
from seglab.platform.sweep.trial import OpenTrial, TrialFailed, close_trial, open_trial


def run_trial_inprocess(config: Dict[str, Any]) -> Dict[str, Any]:
    """The in-process twin of :func:`~seglab.platform.sweep.trial.run_trial` (same config and result)."""
    trial = open_trial(config, workers=1)
    attempts = max(0, trial.run.trainer.max_failures) + 1
    for attempt in range(attempts):
        try:
            return close_trial(trial, _train(trial))
        except TrialFailed:
            raise
        except Exception as error:  # noqa: BLE001 - like a crashed worker group: retried from the checkpoint
            if attempt + 1 >= attempts:
                from seglab.platform import tracking

                tracking.set_terminated(trial.run_id, "FAILED", trial.ctx["tracking_uri"])
                raise
            print(f"[{trial.label}] {type(error).__name__}: {error}; restarting from the latest checkpoint "
                  f"({attempt + 1} of trainer.max_failures={trial.run.trainer.max_failures})", flush=True)
    raise AssertionError("unreachable")


def _train(trial: OpenTrial) -> Dict[str, float]:
    import torch

    from seglab.platform import checkpoint as ckpt
    from seglab.platform.train.hooks import LatestCheckpoint
    from seglab.platform.train.setup import make_writer, trial_hooks
    from seglab.platform.train.trainer import Trainer, resumed_trainer

    config = trial.train_config()
    run = RunConfig.from_dict(config["run"])
    run.trainer.num_workers = 1
    device = torch.device("cuda") if trial.ctx.get("use_gpu") else torch.device("cpu")
    threads = torch.get_num_threads()  # given back after the trial
    torch.set_num_threads(int(config.get("threads", 1)))  # as a Ray worker: the trial's CPU budget, and its seed
    torch.manual_seed(run.trainer.seed)
    writer, trainer = make_writer(config, 0, trial.trial_dir), None
    try:
        trainer = Trainer.from_run(run, device=device, method=config.get("method"), resources=config.get("resources"),
                                   mlflow_run_id=trial.run_id, writer=writer, label=trial.label,
                                   train_forward_gflops=config.get("train_forward_gflops"))
        latest = trial.trial_dir / ckpt.CHECKPOINT_NAME
        resumed_trainer(trainer, ckpt.load(str(latest)) if latest.is_file() else None, trial.trial_dir)
        trainer.register(trial_hooks(trainer, trial.trial_dir, writer, 0, config, last=[LatestCheckpoint(latest)]))
        writer.set_tag("seglab.num_nodes", 1)
        trainer.fit()
        return dict(trainer.last_metrics)
    except BaseException:
        _stop_crashed_attempt(trainer, writer)
        raise
    finally:
        torch.set_num_threads(threads)


def _stop_crashed_attempt(trainer: Any, writer: Any) -> None:
    """What a crashed Ray worker's death stops, for an attempt that raised in this process: its samplers
    (the system sampler keeps its step file, so the next attempt numbers on) and its writer (no end
    record; its journal is left to the next attempt's writer)."""
    from seglab.platform.train.hooks import Samplers

    for hook in getattr(trainer, "hooks", []):
        if isinstance(hook, Samplers):
            hook.abandon()
    writer.abandon()


def fit_inprocess(state: Any, runs: List[RunConfig], name: str, search: bool = False) -> List[str]:
    """Run a phase's trials one after another (a search phase with ``sweep.search=optuna``: the fixed
    runs, then Optuna's proposals, each told its result); returns one line per failed trial, as the
    Ray phases do."""
    sweep, ctx = state.sweep, state.ctx
    if search and sweep.search == "optuna":
        from seglab.platform.sweep.plan import run_for_point
        from seglab.platform.sweep.search import make_searcher

        resources = ctx.get("resources") or {}
        searcher = make_searcher(sweep, [{"trial": r.to_dict(), "ctx": ctx} for r in runs], lambda p: {
            "trial": state.method.prepare_run(run_for_point(state.base, p), resources).to_dict(), "ctx": ctx})
        configs = None
        total = len(runs) + sweep.num_samples
    else:
        searcher, configs, total = None, [{"trial": r.to_dict(), "ctx": ctx} for r in runs], len(runs)
    print(f"sweep '{sweep.name}': {name}: {total} trial(s) in this process, one after another", flush=True)
    errors = []
    for i in range(total):
        trial_id = f"{name}_{i:05d}"
        config = configs[i] if searcher is None else searcher.suggest(trial_id)
        try:
            result = run_trial_inprocess(config)
        except Exception as error:  # noqa: BLE001 - the sweep goes on with its other trials
            lines = str(error).strip().splitlines() or [traceback.format_exception_only(type(error), error)[-1]]
            errors.append(f"{config['trial']['label']}: {type(error).__name__}: {lines[-1]}")
            result = None
        if searcher is not None:
            searcher.on_trial_complete(trial_id, result=result, error=result is None)
    return errors
