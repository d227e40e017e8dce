"""OVeNet vs HRNet: a Ray Tune sweep over kappa / lambda / tau plus the HRNet baseline trial.

    python experiments/ovenet_sweep.py                                  # local Ray, embedded data
    python experiments/ovenet_sweep.py sweep.kappa=[0.25,0.5] trainer.num_workers=2
    ray job submit --working-dir . -- python experiments/ovenet_sweep.py trainer.epochs=20

Results land in MLflow (one parent run, one child run per trial); `make ui` shows them.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from _entry import fail, split_config  # noqa: E402
from seglab.errors import ConfigError  # noqa: E402


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from seglab.platform.build import validate_run
    from seglab.platform.sweep import SweepConfig, plan_trials, run_sweep

    try:
        base, sweep_dict = split_config(cfg)
        sweep = SweepConfig.from_dict(sweep_dict)
        if sweep.dry_run:
            for run in plan_trials(base, sweep):
                s = validate_run(run)
                print(f"{run.label}{'  [baseline]' if run.baseline else ''}: {s.params / 1e6:.2f}M params, "
                      f"{s.gflops:.1f} GFLOPs")
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


if __name__ == "__main__":
    main()
