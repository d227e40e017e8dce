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

from _entry import run_entry, run_hydra  # noqa: E402


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_entry(cfg)


if __name__ == "__main__":
    run_hydra(main)  # any user error, Hydra's included: one line on stderr, exit status 2
