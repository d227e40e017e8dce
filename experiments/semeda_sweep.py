"""SEMEDA vs PPCE (and Sobel): edge-net pre-training (stage 1), then the trials on Ray Train.

    python experiments/semeda_sweep.py                                  # SEMEDA (4,2,0) vs PPCE, embedded data
    python experiments/semeda_sweep.py sweep=semeda_lambdas             # paper Table 1: PPCE + Sobel + 8 SEMEDA
    python experiments/semeda_sweep.py "sweep.lambda1=[1,2,4]" model=deeplabv3plus_r50 trainer=semeda
    ray job submit --working-dir . -- python experiments/semeda_sweep.py trainer.epochs=20

Before the trials the sweep pre-trains SEMEDA's edge network on the data set's ground-truth masks
(once per data set; cached) and logs it as its own MLflow run.

Results land in MLflow (one parent run, one child run per trial); `make ui` shows them.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from _entry import run_entry, run_hydra  # noqa: E402


@hydra.main(config_path="conf", config_name="semeda", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_entry(cfg)


if __name__ == "__main__":
    run_hydra(main)  # any user error, Hydra's included: one line on stderr, exit status 2
