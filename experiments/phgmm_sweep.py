"""PHGMM and its cluster-count (K) sweep against baselines trained from scratch.

    python experiments/phgmm_sweep.py                                   # PHGMM (K=12) vs HRNet, embedded 11-class data
    python experiments/phgmm_sweep.py "sweep.k=[1,4,8,12,16]"           # a grid over K
    python experiments/phgmm_sweep.py sweep=phgmm_k model=phgmm_r101 trainer=phgmm dataset=cityscapes11
    ray job submit --working-dir . -- python experiments/phgmm_sweep.py trainer.epochs=20

Results land in MLflow (one parent run, one child run per trial); `make ui` shows them.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from _entry import run_entry, run_hydra  # noqa: E402


@hydra.main(config_path="conf", config_name="phgmm", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_entry(cfg)


if __name__ == "__main__":
    run_hydra(main)  # any user error, Hydra's included: one line on stderr, exit status 2
