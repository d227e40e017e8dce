"""Shared plumbing of the experiment scripts: Hydra config -> plain dicts -> seglab.platform."""
from __future__ import annotations

import sys
from typing import Any, Dict, Tuple

from omegaconf import DictConfig, OmegaConf

from seglab.errors import ConfigError
from seglab.platform.quiet import quiet

quiet()


def split_config(cfg: DictConfig) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(base run dict, sweep dict): Hydra stops here, the platform gets plain values."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    sweep = container.pop("sweep", {}) or {}
    return container, sweep


def fail(error: ConfigError) -> None:
    """One line for a user error, no traceback; exit status 2."""
    print(f"seglab: error: {error}", file=sys.stderr, flush=True)
    sys.exit(2)


def run_entry(cfg: DictConfig) -> None:
    """Body of every sweep script: validate (dry run) or run the sweep, print the comparison."""
    from seglab.platform.sweep import SweepConfig, plan_trials, run_sweep, validate_sweep

    try:
        base, sweep_dict = split_config(cfg)
        sweep = SweepConfig.from_dict(sweep_dict)
        if sweep.dry_run:
            runs = plan_trials(base, sweep)
            for run, s in zip(runs, validate_sweep(base, sweep, runs)):
                print(f"{run.label}{'  [baseline]' if run.baseline else ''}: {s.params / 1e6:.2f}M params, "
                      f"{s.gflops:.1f} GFLOPs")
            if sweep.search == "optuna":
                print(f"+ {sweep.num_samples} run(s) proposed by Optuna over {', '.join(sorted(sweep.space))}")
            return
        result = run_sweep(base, sweep)
    except ConfigError as error:
        fail(error)
        return
    print("\n" + result.table, flush=True)
    print(f"\nMLflow: parent run {result.parent_run_id}; open the UI with `make ui` "
          f"(experiment '{sweep.experiment}').", flush=True)
    if result.errors:
        print("failed trials:\n  " + "\n  ".join(result.errors), file=sys.stderr, flush=True)
        sys.exit(1)
