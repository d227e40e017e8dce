"""Train several baselines with the same data, loss and schedule, side by side in MLflow.

    python experiments/baselines.py                                   # HRNet-W18-small-v1 vs its OCR version
    python experiments/baselines.py "sweep.models=[hrnet_w48,hrnet_w48_ocr,deeplabv3plus_r101]" loss=ohem
    ray job submit --working-dir . -- python experiments/baselines.py trainer.epochs=20
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from _entry import run_entry, run_hydra  # noqa: E402


@hydra.main(config_path="conf", config_name="baselines", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_entry(cfg)


if __name__ == "__main__":
    run_hydra(main)  # any user error, Hydra's included: one line on stderr, exit status 2
