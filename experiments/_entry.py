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
